"""An obedient build of a scenario family: what tags that obey the engine's reporting-rate
commands send, closed loop against the engine's own decisions.

Each tag's fixes were sampled on a dense grid (`Ctx.dense` per family interval, every
`kit.FAST_S` seconds, correlated error and bursts included). A tag sends a dense fix when
at least its current rate (less half a dense step) has passed since its last one: every
family interval until the engine asks for faster, then every FAST_S seconds, back to the
family interval when asked (a command never slows a tag below its family interval).

The engine is a callback (devices/ never imports the engine's core): `Feed` is fed every
publication's lines as it arrives, in arrival order, and returns the (tag, rate_s)
commands the engine emitted on them; a command takes effect for dense fixes after that
arrival. Deliveries apply after thinning, as in `catalog._deliveries`: live latency, a
late `/fixes` batch (held fixes go up after `late_after` resumed live fixes), bounded
shuffles, duplicates, the victim phone's reports; their random draws come from each
episode's own stream in the loop's order, so the same seed and the same engine give the
same bytes. Because every arrival is fed before anything later happens, a replay of the
written file one record per batch sees exactly what the loop's engine saw."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from devices.families.kit import Ctx, Outcome
from devices.sim import delivery as dv
from engine.wire import payloads

# lines of one publication, in order -> the (tag, rate_s) commands the engine sent after them
Feed = Callable[[Sequence[dv.Line]], list[tuple[str, float]]]
# (zones.geojson, subjects.toml) of the run -> a fresh engine's Feed
ObeyFactory = Callable[[Path, Path], Feed]
Command = tuple[float, str, float]  # (arrival time it answered, tag, rate_s)

_ARRIVE, _FIX = 0, 1  # at equal times an arrival (and its commands) comes first


@dataclass
class _Tag:
    """One obedient tag in the loop."""

    ctx: Ctx
    o: Outcome
    seq: int
    rows: list[tuple[float, float, float, float, int, str]]
    i: int = 0  # next dense fix
    rate: float | None = None  # last commanded rate
    last: float | None = None  # event time of the last fix it sent
    held: list[dv.Line] = field(default_factory=list)  # taken in late_span, not yet sent
    resumed: list[float] = field(default_factory=list)  # live arrivals after late_span
    released: bool = False

    @property
    def step(self) -> float:
        return self.ctx.interval / self.ctx.dense

    def sends(self, t: float) -> bool:
        rate = self.ctx.interval if self.rate is None else min(self.rate, self.ctx.interval)
        return self.last is None or t - self.last >= rate - 0.5 * self.step


class _Loop:
    """The event loop: dense fix times and arrivals, in time order."""

    def __init__(self, feed: Feed) -> None:
        self.feed = feed
        self.heap: list[tuple[float, int, int, object]] = []
        self.n = 0  # creation counter: ties in arrival keep creation order
        self.out: list[dv.Delivery] = []
        self.tags: dict[str, _Tag] = {}
        self.commands: list[Command] = []

    def push(self, d: dv.Delivery) -> None:
        self.out.append(d)
        heapq.heappush(self.heap, (d.arrival, _ARRIVE, self.n, d))
        self.n += 1

    def publish(self, st: _Tag, d: dv.Delivery) -> None:
        """A tag's publication, and maybe its QoS 1 resend (`Outcome.dup_p`)."""
        self.push(d)
        o, rng = st.o, st.ctx.rng
        if o.dup_p > 0 and rng.random() < o.dup_p:
            again = round(d.arrival + float(rng.uniform(0.0, 5 * st.ctx.interval)), 3)
            self.push(dv.Delivery(again, d.device, d.channel, d.records))

    def release(self, st: _Tag, after: float) -> None:
        st.released = True
        at = round(after + float(st.ctx.rng.uniform(1.0, 20.0)), 3)
        self.publish(st, dv.Delivery(at, st.ctx.tag, "fixes", tuple(st.held)))

    def send(self, st: _Tag, row: tuple[float, float, float, float, int, str], now: float) -> None:
        t, la, lo, a, b, s = row
        line = payloads.replay_line(st.ctx.tag, "fix", payloads.fix(st.seq, t, la, lo, a, b, s))
        st.seq += 1
        st.last = t
        o, rng = st.o, st.ctx.rng
        span = o.late_span
        if span is not None and span[0] <= t < span[1]:
            st.held.append(line)
            return
        if span is None and o.shuffle_s > 0:
            arrival = round(t + float(rng.uniform(0.0, o.shuffle_s)), 3)
        else:
            arrival = round(t + float(rng.uniform(*dv.LATENCY_S)), 3)
        self.publish(st, dv.Delivery(arrival, st.ctx.tag, "fix", (line,)))
        if span is not None and st.held and not st.released and arrival >= span[1]:
            st.resumed.append(arrival)
            if len(st.resumed) >= o.late_after > 0:
                self.release(st, arrival)

    def fix(self, st: _Tag, now: float) -> None:
        row = st.rows[st.i]
        st.i += 1
        if st.sends(row[0]):
            self.send(st, row, now)
        if st.i < len(st.rows):
            heapq.heappush(self.heap, (st.rows[st.i][0], _FIX, self.n, st))
            self.n += 1
        elif st.held and not st.released:  # too few live fixes after the gap
            span = st.o.late_span
            assert span is not None
            self.release(st, max(st.resumed[-1] if st.resumed else span[1], now))

    def arrive(self, d: dv.Delivery) -> None:
        for tag, rate in self.feed(d.records):
            st = self.tags.get(tag)
            if st is not None:
                st.rate = float(rate)
                self.commands.append((d.arrival, tag, float(rate)))

    def run(self) -> None:
        while self.heap:
            now, kind, _, x = heapq.heappop(self.heap)
            if kind == _ARRIVE:
                assert isinstance(x, dv.Delivery)
                self.arrive(x)
            else:
                assert isinstance(x, _Tag)
                self.fix(x, now)


def obey(
    episodes: Sequence[tuple[Ctx, Outcome, int]], feed: Feed
) -> tuple[list[dv.Delivery], list[Command]]:
    """Deliveries (creation order; sort with `dv.arrival_order`) of every episode's tag as
    an obedient tag sends them, and the commands it obeyed. `episodes`: (ctx, outcome with
    dense fixes, first seq) in episode order."""
    loop = _Loop(feed)
    for ctx, o, seq0 in episodes:
        st = _Tag(ctx, o, seq0, list(dv.tag_rows(ctx.frame, o.fixes)))
        loop.tags[ctx.tag] = st
        if st.rows:
            heapq.heappush(loop.heap, (st.rows[0][0], _FIX, loop.n, st))
            loop.n += 1
        if o.phone is not None and o.phone_fixes is not None:
            phone = dv.phone_lines(o.phone.device, ctx.frame, o.phone_fixes)
            for d in dv.live(phone, ctx.rng, "owntracks"):
                loop.push(d)
    loop.run()
    return loop.out, loop.commands
