"""Reporting-rate control for live runs: a run's planned messages plus extra fixes while
the engine asks a tag to report faster, every tag record renumbered in send order.

Pure and deterministic (no I/O, no clock): `RateControl` is fed commands at sim times and
yields what to send next; `live.py` drives it from the broker and the warped clock, and
`schedule` drives it offline from a list of commands (the same output for the same input).

Extra fixes follow the run's noise model as far as the tag's own planned GPS fixes show
it: the true position at the extra's time (`Plan.path.at(t)`) plus an error drawn from an
Ornstein-Uhlenbeck bridge (the continuous Gauss-Markov error) between the errors of the
fixes either side (the last fix sent, planned or extra, and the next planned one), with
sigma estimated from the planned fixes (robustly: median absolute error) and the
correlation time tau from their lag-one autocorrelation; `acc` is drawn from those fixes'
`acc` values. An error beyond 4 sigma (a multipath burst, a wild jump) is not bridged
from; multipath and wild jumps are not reproduced between planned fixes. With no
correlation to learn (tau ~ 0) an extra's error is independent, sigma per axis.

`obey` closes the loop offline: every publication is fed to an engine callback (devices/
never imports the engine's core; `engine.replay.Obeyer` is one) in send order, and the
commands it returns are obeyed from that publication's time on (`simulate --obey`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from devices.motion.paths import TruePath
from devices.sim.fleet import Message, SimRun
from engine.wire import payloads, topics
from engine.wire.commands import CommandError, clamp_rate

GAP_FACTOR = 3.0  # planned messages further apart than this x interval: offline, no extras
MIN_LEAD = 0.5  # no extra closer than this x rate before the tag's next planned fix
NO_POSITION_EVENTS = frozenset({"no_gps", "power_off"})  # no GPS until the next GPS fix
FALLBACK_SIGMA_M = 3.0  # a tag with no usable planned fix to learn from (SimpleGpsNoise)
SIGMA_LIMITS_M = (1.0, 50.0)
TAU_LIMITS_S = (1e-3, 3600.0)  # the correlation time learned: ~0 means independent errors
OUTLIER_SIGMAS = 4.0  # a planned error beyond this is a burst or a jump: not bridged from


@dataclass(frozen=True)
class _Noise:
    """What a tag's planned GPS fixes say of its error: per-axis sigma, correlation time,
    reported acc values, and the fixes' times and errors (outliers dropped) to bridge."""

    sigma: float
    tau: float
    accs: np.ndarray
    rng: np.random.Generator
    t: np.ndarray
    ex: np.ndarray
    ey: np.ndarray

    def bridge(self, t: float, before: tuple[float, float, float] | None) -> np.ndarray:
        """Mean and sd (per axis) of the error at t given the last error sent (`before`,
        when later than the planned fix before t) and the next planned fix's error."""
        i = int(np.searchsorted(self.t, t, side="right"))
        a = (float(self.t[i - 1]), float(self.ex[i - 1]), float(self.ey[i - 1])) if i else None
        if before is not None and (a is None or before[0] >= a[0]):
            a = before
        b = (float(self.t[i]), float(self.ex[i]), float(self.ey[i])) if i < len(self.t) else None
        p1 = math.exp(-(t - a[0]) / self.tau) if a else 0.0
        p2 = math.exp(-(b[0] - t) / self.tau) if b else 0.0
        den = 1.0 - (p1 * p2) ** 2
        if den < 1e-12:  # at a known fix
            assert a is not None
            return np.array([[a[1], a[2]], [0.0, 0.0]])
        ea = np.array(a[1:]) if a else np.zeros(2)
        eb = np.array(b[1:]) if b else np.zeros(2)
        mean = (ea * p1 * (1.0 - p2 * p2) + eb * p2 * (1.0 - p1 * p1)) / den
        sd = self.sigma * math.sqrt(max(0.0, (1.0 - p1 * p1) * (1.0 - p2 * p2) / den))
        return np.array([mean, [sd, sd]])


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One publication as sent (tag records renumbered); `planned` is its index in
    `SimRun.messages`, None for an extra fix."""

    message: Message
    planned: int | None

    @property
    def extra(self) -> bool:
        return self.planned is None


@dataclass
class _Tag:
    """Live state of one tag: where its planned messages are, what it last sent."""

    plan: int  # index into SimRun.plans
    path: TruePath
    msgs: list[int] = field(default_factory=list)  # its planned messages (run indices)
    next_fix: list[float] = field(default_factory=list)  # per msgs[k]: next planned fix t
    ptr: int = 0  # next of msgs to send
    prev_t: float | None = None  # send time of its last planned message
    last_t: float = -math.inf  # latest send time of anything it sent
    anchor: float | None = None  # event time of its last fix (planned or extra)
    positioned: bool = False  # last planned fix was GPS, no no_gps / power_off since
    batt: int | None = None
    rate: float | None = None  # commanded rate; None: never commanded
    since: float = -math.inf  # sim time of the last command
    seq: int = 0  # live seq counter
    noise: _Noise | None = None  # learned lazily
    last_err: tuple[float, float, float] | None = None  # (t, ex, ey) of its last extra


class RateControl:
    """Merges a run's planned messages with extra fixes at commanded rates, in sim-time
    order (at equal times planned first, extras by tag). With `renumber` (the default),
    every tag record is given the next seq of its tag's live counter as it is popped, so
    the engine sees 0, 1, 2, ... per tag in send order; event times never change and
    OwnTracks messages are untouched. Without it, planned messages go out as planned
    (only sensible when no commands are given)."""

    def __init__(self, run: SimRun, *, renumber: bool = True) -> None:
        self.run = run
        self.renumber = renumber
        self.interval = float(run.config.fix_interval_s)
        self.seed = run.world.seed if run.config.seed is None else run.config.seed
        self._tags: dict[str, _Tag] = {
            p.subject.tag: _Tag(i, p.path) for i, p in enumerate(run.plans)
        }
        for i, m in enumerate(run.messages):
            st = None if m.is_owntracks else self._tags.get(m.device)
            if st is not None:
                st.msgs.append(i)
        for st in self._tags.values():
            nxt = math.inf
            st.next_fix = [math.inf] * (len(st.msgs) + 1)
            for k in range(len(st.msgs) - 1, -1, -1):
                m = run.messages[st.msgs[k]]
                if m.kind in ("fix", "fixes"):
                    nxt = m.t
                st.next_fix[k] = nxt
        self._end_t = run.end_t
        self._fast: dict[str, float | None] = {}  # tags faster than planned: next extra due
        self._pick_cache: tuple[float, str | None] | None = None
        self._stale = True  # _pick_cache must be recomputed
        self._i = 0  # next planned message
        self.popped_planned = 0
        self.popped_extra = 0

    @property
    def tags(self) -> frozenset[str]:
        return frozenset(self._tags)

    @property
    def done(self) -> bool:
        return self._i >= len(self.run.messages)

    def rate(self, tag: str) -> float | None:
        """The tag's commanded rate; None if never commanded (or not a tag of this run)."""
        st = self._tags.get(tag)
        return None if st is None else st.rate

    def command(self, tag: str, rate_s: float, t: float) -> None:
        """The engine asked `tag` at sim time `t` to report every `rate_s` seconds (clamped).
        Faster than planned: extra fixes from then on; otherwise only the planned ones."""
        st = self._tags.get(tag)
        if st is None:
            raise CommandError(f"unknown tag {tag!r}")
        if not self.renumber:
            raise CommandError("not renumbering: extra fixes would reuse planned seqs")
        st.rate = clamp_rate(rate_s)
        st.since = float(t)
        self._fast.pop(tag, None)
        if st.rate < self.interval:
            self._fast[tag] = self._due(tag)
        self._stale = True

    def _changed(self, tag: str) -> None:
        if tag in self._fast:
            self._fast[tag] = self._due(tag)
        self._stale = True

    # -- the stream ------------------------------------------------------------------------

    def _due(self, tag: str) -> float | None:
        """When `tag`'s next extra fix is due, or None: none before its next planned fix."""
        st = self._tags[tag]
        rate = st.rate
        if rate is None or not st.positioned or st.anchor is None or st.prev_t is None:
            return None
        if st.ptr >= len(st.msgs):
            return None  # its last planned message went out: no extras after it
        if self.run.messages[st.msgs[st.ptr]].t - st.prev_t > GAP_FACTOR * self.interval:
            return None  # coverage gap or powered off: nothing goes out between
        due = round(max(st.anchor + rate, st.since, st.last_t), 3)
        if due >= st.next_fix[st.ptr] - MIN_LEAD * rate or due >= self._end_t:
            return None
        return due

    def _pick(self) -> tuple[float, str | None] | None:
        if not self._stale:
            return self._pick_cache
        best: tuple[float, int, str] | None = None
        if self._i < len(self.run.messages):
            best = (self.run.messages[self._i].t, 0, "")
        for tag, due in self._fast.items():
            if due is not None and (best is None or (due, 1, tag) < best):
                best = (due, 1, tag)
        pick = None if best is None else (best[0], (best[2] if best[1] else None))
        self._pick_cache, self._stale = pick, False
        return pick

    def next_t(self) -> float | None:
        """Sim time of the next publication; None when everything planned has been popped."""
        pick = self._pick()
        return None if pick is None else pick[0]

    def pop(self) -> Outgoing:
        """The next publication, renumbered; IndexError when there is none."""
        pick = self._pick()
        if pick is None:
            raise IndexError("nothing left to send")
        t, tag = pick
        self._stale = True
        if tag is not None:
            self.popped_extra += 1
            extra = self._extra(tag, t)
            self._changed(tag)
            return Outgoing(extra, None)
        i = self._i
        self._i += 1
        self.popped_planned += 1
        m = self.run.messages[i]
        st = None if m.is_owntracks else self._tags.get(m.device)
        if st is None:
            return Outgoing(m, i)
        st.ptr += 1
        st.prev_t = m.t
        st.last_t = max(st.last_t, m.t)
        records = m.payload if m.kind == "fixes" else [m.payload]
        out = [self._observe(st, m.kind, p) for p in records]
        self._changed(m.device)
        if self.renumber:
            payload: Any = out if m.kind == "fixes" else out[0]
            m = Message(m.t, m.device, m.topic, payload)
        return Outgoing(m, i)

    def _observe(self, st: _Tag, kind: str, p: dict[str, Any]) -> dict[str, Any]:
        """Update the tag's state from one planned record; the record as sent."""
        if kind == "event":
            if p.get("event") in NO_POSITION_EVENTS:
                st.positioned = False
        else:
            st.anchor = float(p["t"]) if st.anchor is None else max(st.anchor, float(p["t"]))
            st.positioned = p.get("src", "gps") == "gps"
        if isinstance(p.get("batt"), int):
            st.batt = p["batt"]
        if not self.renumber:
            return p
        q = {**p, "seq": st.seq}
        st.seq += 1
        return q

    def _extra(self, tag: str, t: float) -> Message:
        st = self._tags[tag]
        noise = self._noise(st)
        rng, accs = noise.rng, noise.accs
        tx, ty = st.path.at(np.array([t]))
        mean, sd = noise.bridge(t, st.last_err)
        err = mean + sd * rng.normal(0.0, 1.0, 2)
        st.last_err = (t, float(err[0]), float(err[1]))
        lat, lon = self.run.world.frame.to_latlon(tx + err[0], ty + err[1])
        acc = round(float(accs[rng.integers(len(accs))]), 1)
        p = payloads.fix(
            st.seq, t, round(float(lat[0]), 7), round(float(lon[0]), 7), acc, st.batt, "gps"
        )
        st.seq += 1
        st.anchor = t
        st.last_t = max(st.last_t, t)
        return Message(t, tag, topics.fix(tag), p)

    def _noise(self, st: _Tag) -> _Noise:
        """The tag's error as its planned GPS fixes show it (`_Noise`), and its own
        generator for extras (seeded by the run's seed and the subject)."""
        if st.noise is None:
            rng = np.random.default_rng([self.seed, 9, st.plan])
            rows = [
                p
                for i in st.msgs
                for p in self._records(self.run.messages[i])
                if "lat" in p and p.get("src", "gps") == "gps"
            ]
            none = np.zeros(0)
            if not rows:
                st.noise = _Noise(FALLBACK_SIGMA_M, TAU_LIMITS_S[0], np.array([5.0, 15.0]),
                                  rng, none, none, none)  # fmt: skip
            else:
                t = np.array([p["t"] for p in rows], dtype=np.float64)
                x, y = self.run.world.frame.to_xy(
                    np.array([p["lat"] for p in rows]), np.array([p["lon"] for p in rows])
                )
                tx, ty = st.path.at(t)
                ex, ey = x - tx, y - ty
                err = np.abs(np.concatenate([ex, ey]))
                sigma = float(np.median(err)) / 0.6745  # median |N(0, s)| = 0.6745 s
                sigma = min(max(sigma, SIGMA_LIMITS_M[0]), SIGMA_LIMITS_M[1])
                keep = np.hypot(ex, ey) <= OUTLIER_SIGMAS * sigma
                t, ex, ey = t[keep], ex[keep], ey[keep]
                accs = np.array([float(p["acc"]) for p in rows])
                st.noise = _Noise(sigma, self._tau(t, ex, ey), accs, rng, t, ex, ey)
        return st.noise

    def _tau(self, t: np.ndarray, ex: np.ndarray, ey: np.ndarray) -> float:
        """Correlation time from the lag-one autocorrelation of consecutive planned errors
        about one interval apart: rho = exp(-dt / tau); ~0 unless rho is clearly (two
        standard errors) above 0."""
        dt = np.diff(t)
        near = dt <= 1.5 * self.interval
        if near.sum() < 3:
            return TAU_LIMITS_S[0]
        e0 = np.concatenate([ex[:-1][near], ey[:-1][near]])
        e1 = np.concatenate([ex[1:][near], ey[1:][near]])
        denom = float(np.sum(e0 * e0))
        rho = float(np.sum(e0 * e1)) / denom if denom > 0 else 0.0
        if rho <= 2.0 / math.sqrt(len(e0)):  # not told apart from none: independent
            return TAU_LIMITS_S[0]
        tau = -float(np.median(dt[near])) / math.log(min(rho, 0.999))
        return min(max(tau, TAU_LIMITS_S[0]), TAU_LIMITS_S[1])

    @staticmethod
    def _records(m: Message) -> list[dict[str, Any]]:
        return list(m.payload) if m.kind == "fixes" else [m.payload]


def schedule(
    run: SimRun, commands: Iterable[tuple[float, str, float]] = (), *, renumber: bool = True
) -> Iterator[Outgoing]:
    """Everything a live run sends when the engine's commands (sim time, tag, rate_s)
    arrive at those times: the offline twin of `run_live`, for tests and inspection.
    A command takes effect before anything at or after its time."""
    ctl = RateControl(run, renumber=renumber)
    pending = sorted(commands, key=lambda c: c[0])
    k = 0
    while True:
        t = ctl.next_t()
        while k < len(pending) and (t is None or pending[k][0] <= t):
            ct, tag, rate = pending[k]
            ctl.command(tag, rate, ct)
            k += 1
            t = ctl.next_t()
        if t is None:
            return
        yield ctl.pop()


def obey(
    run: SimRun, feed: Callable[[Sequence[dict[str, Any]]], list[tuple[str, float]]]
) -> Iterator[Outgoing]:
    """Everything a run's tags send when they obey an engine fed what they send, in send
    order: each publication's replay lines go to `feed`, and the (tag, rate_s) commands
    it returns take effect from that publication's time (as `schedule` does for a given
    list). Same run, same engine: same output."""
    ctl = RateControl(run)
    while ctl.next_t() is not None:
        out = ctl.pop()
        for tag, rate in feed(out.message.replay_records()):
            if tag in ctl.tags:
                ctl.command(tag, rate, out.message.t)
        yield out
