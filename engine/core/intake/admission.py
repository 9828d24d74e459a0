"""Admission: input limits that need the engine's clock or memory, applied to each batch
before any state sees it (dedupe, ordering, health, decisions).

Decode (engine/wire/decode.py) bounds what one message can be: its size, a /fixes batch's
length, id lengths, every field's type and range, times within 2000-2100. What it cannot
know is *when* the engine is and what a device sent before:

- **Time.** A record whose event time is more than `max_future_s` ahead of the engine's
  clock, or more than `max_past_s` behind it, comes from a device with a broken clock (a
  GPS week-number rollover puts a tag 19.6 years in the past; an RTC reset puts it in 2038)
  and is dead-lettered with the distance and the limit in the reason.
- **Rate.** A token bucket per device slot on the same clock: `rate_max_per_s` sustained,
  `rate_burst` at once (several full /fixes store-and-forward uploads fit in the burst).
  A device that sends more (a firmware loop, a replayed capture) has the excess
  dead-lettered.

The clocks. Live, the engine's clock is wall time. Replay has none: its clock is the
running latest event time of the records admitted so far (as `engine.core.health.ArrivalClock`),
kept honest by the rules in `_admit`: one device can never move it far, and a jump the
whole fleet makes (a file spanning months) costs at most one record, never the fleet.

Live, the clock is the host's wall time, kept by NTP (docs/durability.md): a record
outside [wall - max_past_s, wall + max_future_s] is dead-lettered, the very first record
the engine hears included (an event clock that no second device has confirmed yet must not
let a tag dated a year ahead open a breach a year ahead). Warped or historical time (a
simulator, a test harness) is allowed only by the explicit setting live_clock = "fleet":
then the same event-time clock runs beside wall time as a second witness and a record is
rejected for its time only when it disagrees with *both*.

A rejected record changes nothing: not the clocks, not the device's bucket, not the seq
dedupe window (admission runs before dedupe, so a record rejected now and sent again later
is still new). The one exception is a far-future record kept as the candidate for a jump
of the event clock (live_clock "fleet" and replay only). So the live engine stores no
ledger row for any other refused record (a flood over the rate limit costs a dead-letter
budget, not the disk): restart recovery replays the steps without them and judges every
other record exactly as before. Each record is decided in arrival order from state carried between batches,
so replay gives the same result whatever the batch size. The state is sequential by nature
(each decision depends on the ones before), so it is one compiled pass over the batch
arrays, like the dedupe and ordering kernels.
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.core.registry import Registry
from engine.settings import Settings
from engine.wire.bounds import T_MAX, T_MIN
from zones.jit import njit

if TYPE_CHECKING:
    from engine.core.remap import Remap

__all__ = ["Admission"]

# Verdicts, one per record
ADMIT = 0
FUTURE = 1
PAST = 2
RATE = 3
BAD_TIME = 4
BAD_SEQ = 5
CANDIDATE = 6  # too far ahead, and kept as the candidate for a jump of the event clock
# Refusals that changed no state (everything but CANDIDATE): the live engine stores no
# ledger row for such a record, and the steps recovery replays judge the others the same
TRACELESS = (FUTURE, PAST, RATE, BAD_TIME, BAD_SEQ)

# The ordering works out the seq each tag owes next as seq + 1 in int64; decode accepts
# any seq up to 2^63-1, whose successor does not exist (a fuzzing find: it crashed
# Reorderer.give_up with OverflowError, and silently reset the tag's frontier elsewhere).
SEQ_LIMIT = 2**63 - 2

# The event-time clock's scalar state, kept in one float64 array the kernel updates
_NOW, _CONFIRMED, _ANCHOR, _CAND_SLOT, _CAND_T = range(5)


@njit
def _admit(
    slot: np.ndarray,
    seq: np.ndarray,
    t: np.ndarray,
    wall: float,
    wall_only: bool,
    horizon: float,
    past: float,
    rate: float,
    burst: float,
    clk: np.ndarray,
    tokens: np.ndarray,
    last: np.ndarray,
    full_t: np.ndarray,
    extra: np.ndarray,
    verdict: np.ndarray,
    ref: np.ndarray,
    since: np.ndarray,
) -> None:
    """Judge each record in arrival order; `verdict[i]` and the clock it was judged
    against, `ref[i]` (wall time live; the event clock in replay; NaN before one exists);
    for a rate verdict `since[i]`, the clock at which the device's bucket was last full.

    `wall` is NaN in replay. Live with `wall_only` (the default, Settings.live_clock
    "wall") wall time alone decides, from the very first record heard; the event clock
    below still follows the admitted records. The event clock `now` is the latest event time admitted.
    Until a second device has been heard within `horizon` of it (`confirmed`) nothing is
    rejected for its time: there is no clock to trust yet (a one-device file never has
    one), the clock follows forward jumps, and two devices agreeing far behind it correct
    a wild first record. Once confirmed:

    - within [now - past, now + horizon]: admitted; the clock moves to it if later.
    - more than `horizon` ahead: dead-lettered and remembered as the *candidate*; the next
      far record from a *different* device that agrees with it (within `horizon`) confirms
      the jump, is admitted and moves the clock, unless a record at the clock's own time
      was admitted in between (the fleet is still where the clock is). A device's very
      first record is admitted as the candidate instead (it has no clock of its own to be
      wrong about yet). So a jump the fleet makes together costs at most its first record
      (none when it comes from a new device, none after a store-and-forward outage, whose
      backlog walks the clock forward), never the fleet; one device with a wild clock never
      moves the clock.
    - more than `past` behind: dead-lettered. Late records never move the clock back.

    Live with live_clock "fleet" (simulators, tests in warped or historical time), a
    record within [wall - past, wall + horizon] is admitted whatever the event clock says (wall time vouches for it; the event clock moves only if its own rules
    admit the record). While the event clock is confirmed and within those bounds too
    (the fleet agrees with wall: a healthy host) wall alone decides, so one device
    drifting ahead cannot drag the event clock with it. Otherwise (the fleet disagrees
    with wall: a host clock that is off, a simulator in historical time; or no fleet yet)
    the event clock's rules decide: a record is rejected only when it disagrees with both.

    Rate: each device's bucket holds up to `burst` tokens, refilled at `rate` a second of
    the clock (wall live, the event clock in replay), one spent per admitted record; then
    `extra` (engine downtime credit)."""
    live = wall == wall
    now = clk[_NOW]
    confirmed = clk[_CONFIRMED] != 0.0
    anchor = int(clk[_ANCHOR])
    cs = int(clk[_CAND_SLOT])
    ct = clk[_CAND_T]
    for i in range(t.shape[0]):
        s = slot[i]
        x = t[i]
        ref[i] = wall if live else now
        if not (x >= T_MIN and x < T_MAX):  # NaN fails too
            verdict[i] = BAD_TIME
            continue
        if seq[i] > SEQ_LIMIT or seq[i] < 0:
            verdict[i] = BAD_SEQ
            continue
        vouched = live and wall - past <= x <= wall + horizon
        # the event clock this record would leave behind, if admitted
        n_now, n_conf, n_anchor, n_cs, n_ct = now, confirmed, anchor, cs, ct
        reject = ADMIT
        if not math.isfinite(now):
            n_now, n_anchor = x, s
        elif x <= now + horizon and x >= now - (past if confirmed else horizon):
            n_now = max(now, x)
            if abs(x - now) <= horizon:
                n_cs, n_ct = -1, math.nan  # heard at the clock's time: no jump pending
                if not confirmed and s != anchor:
                    n_conf = True
        else:
            ahead = x > now
            agree = (
                cs >= 0
                and cs != s
                and abs(x - ct) <= horizon
                and (ct > now) == ahead
                and (ahead or not confirmed)
            )
            if agree:  # two devices say the clock is far off: take the nearer of the two
                n_now = min(x, ct) if ahead else max(x, ct)
                n_conf = True
                n_anchor = s
                n_cs, n_ct = -1, math.nan
            elif not confirmed:
                if ahead:
                    n_now, n_anchor = x, s
                else:
                    n_cs, n_ct = s, x
            elif ahead and last[s] != last[s]:
                n_cs, n_ct = s, x  # a new device: admitted as the candidate
            else:
                reject = FUTURE if ahead else PAST
        trust = live and (wall_only or (confirmed and wall - past <= now <= wall + horizon))
        if vouched:
            if reject != ADMIT:  # admitted on wall's word; the event clock stays
                n_now, n_conf, n_anchor, n_cs, n_ct = now, confirmed, anchor, cs, ct
                reject = ADMIT
        elif trust:  # the fleet agrees with wall: wall decides
            reject = FUTURE if x > wall else PAST
        if reject != ADMIT:
            if reject == FUTURE and not trust:
                cs, ct = s, x  # the candidate for a jump a second device may confirm
                reject = CANDIDATE
            verdict[i] = reject
            continue
        # rate: refill the device's bucket to the clock before this record. Written back
        # only when the record is admitted: a refused record leaves no trace, so the steps
        # recovery replays can leave it out and still judge the others the same
        c = wall if live else (now if math.isfinite(now) else x)
        tk, lt, ft = tokens[s], last[s], full_t[s]
        if lt != lt:
            tk, lt, ft = burst, c, c
        elif c > lt:
            tk = min(burst, tk + (c - lt) * rate)
            lt = c
            if tk >= burst:
                ft = c
        if tk >= 1.0:
            tk -= 1.0
        elif extra[s] >= 1.0:
            extra[s] -= 1.0
        else:
            ref[i] = c
            since[i] = ft
            verdict[i] = RATE
            continue
        tokens[s], last[s], full_t[s] = tk, lt, ft
        verdict[i] = ADMIT
        now, confirmed, anchor, cs, ct = n_now, n_conf, n_anchor, n_cs, n_ct
    clk[_NOW] = now
    clk[_CONFIRMED] = 1.0 if confirmed else 0.0
    clk[_ANCHOR] = anchor
    clk[_CAND_SLOT] = cs
    clk[_CAND_T] = ct


def _iso(t: float) -> str:
    if not math.isfinite(t):
        return repr(t)
    try:
        d = _dt.datetime.fromtimestamp(math.floor(t), _dt.UTC)
    except (OverflowError, OSError, ValueError):
        return repr(t)
    frac = t - math.floor(t)
    ms = f".{int(frac * 1000):03d}" if frac >= 0.001 else ""
    return d.strftime("%Y-%m-%dT%H:%M:%S") + ms + "Z"


def _span(s: float) -> str:
    """A duration for people: 300 s, 12.5 min, 5.0 h, 30.0 days, 19.6 years."""
    s = abs(s)
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    if s < 2 * 86400:
        return f"{s / 3600:.1f} h"
    if s < 730 * 86400:
        return f"{s / 86400:.1f} days"
    return f"{s / (365.25 * 86400):.1f} years"


def _limit(s: float) -> str:
    return f"{s:g} s" if s < 7200 else _span(s)


class Admission:
    """Per-device token buckets and the event-time clock; `admit` judges one batch.

    State is numpy arrays and floats (exported as data for snapshots); thresholds are read from the
    settings object on every call, so changed settings apply at once after a restart."""

    def __init__(self, registry: Registry, settings: Settings) -> None:
        self.registry = registry
        self.settings = settings
        n = registry.n_slots
        self.tokens = np.full(n, float(settings.rate_burst))
        self.last = np.full(n, np.nan)  # clock of the last refill (NaN: never admitted)
        self.full_t = np.full(n, np.nan)  # clock at which the bucket was last full
        self.extra = np.zeros(n)  # credit beyond the burst (engine downtime, see credit)
        self.clk = np.array([-np.inf, 0.0, -1.0, -1.0, np.nan])  # see _NOW...
        self.wall = -math.inf  # live: the latest wall time seen (never goes back)
        self.rejected = {FUTURE: 0, PAST: 0, RATE: 0, BAD_TIME: 0, BAD_SEQ: 0}
        # The last batch's rows refused for their time (too far ahead or behind), or None
        self.verdict_of_time: np.ndarray | None = None

    # -- public ----------------------------------------------------------------------
    def admit(
        self, arr: np.ndarray, wall: float | None
    ) -> tuple[np.ndarray, list[tuple[int, str]]]:
        """(keep mask over `arr`'s rows, [(row, dead-letter reason)] for the others).

        `arr` is a FIX_DTYPE batch in arrival order; `wall` is live wall time (Unix s) or
        None in replay."""
        keep, dead, _ = self.judge(arr, wall)
        return keep, dead

    def judge(
        self, arr: np.ndarray, wall: float | None
    ) -> tuple[np.ndarray, list[tuple[int, str]], np.ndarray]:
        """As `admit`, plus a mask of the refused rows that changed no state (TRACELESS):
        a step stored without them replays to the same state."""
        n = arr.shape[0]
        self.verdict_of_time = None
        st = self.settings
        live = wall is not None and math.isfinite(wall)
        if live:  # before the empty return: a step whose records were all left out
            self.wall = max(self.wall, float(wall))  # type: ignore[arg-type]
        if n == 0:
            return np.ones(0, dtype=np.bool_), [], np.zeros(0, dtype=np.bool_)
        slot = np.ascontiguousarray(arr["slot"], dtype=np.int64)
        seq = np.ascontiguousarray(arr["seq"], dtype=np.int64)
        t = np.ascontiguousarray(arr["t"], dtype=np.float64)
        verdict = np.zeros(n, dtype=np.uint8)
        ref = np.empty(n)
        since = np.full(n, np.nan)
        _admit(
            slot, seq, t, self.wall if live else math.nan, st.live_clock == "wall",
            self.horizon(live), st.max_past_s,
            st.rate_max_per_s, float(st.rate_burst), self.clk, self.tokens, self.last,
            self.full_t, self.extra, verdict, ref, since,
        )  # fmt: skip
        keep = verdict == ADMIT
        traceless = np.isin(verdict, TRACELESS)
        if keep.all():
            return keep, [], traceless
        timing = (verdict == FUTURE) | (verdict == PAST)
        self.verdict_of_time = timing if timing.any() else None
        dead = []
        for i in np.flatnonzero(~keep).tolist():
            v, s, x, c, f, q = verdict[i], slot[i], t[i], ref[i], since[i], seq[i]
            reason = self._reason(int(v), int(s), float(x), float(c), float(f), live, int(q))
            dead.append((i, reason))
        return keep, dead, traceless

    def credit(self, seconds: float) -> None:
        """The engine was down `seconds` (restart): the broker queued what devices sent
        meanwhile at their own pace, so each device may deliver rate_max_per_s x seconds
        beyond its burst before it counts as flooding."""
        if seconds > 0:
            self.extra += self.settings.rate_max_per_s * seconds

    def horizon(self, live: bool) -> float:
        """How far ahead of the clock a record may be. In replay a quiet spell of the whole
        fleet looks exactly like a jump of the clock, and the arrival clock follows one
        device up to clock_max_jump_s, so replay allows at least that."""
        st = self.settings
        return st.max_future_s if live else max(st.max_future_s, st.clock_max_jump_s)

    # -- internals -------------------------------------------------------------------
    def _reason(
        self, verdict: int, slot: int, t: float, ref: float, full: float, live: bool, seq: int
    ) -> str:
        if verdict == CANDIDATE:
            verdict = FUTURE
        self.rejected[verdict] += 1
        st = self.settings
        if verdict == BAD_SEQ:
            return f"seq {int(seq)} is beyond the {SEQ_LIMIT} the engine can order (2^63-2)"
        if verdict == BAD_TIME:
            return f"t {t!r} is not a time between 2000-01-01 and 2100-01-01"
        if verdict in (FUTURE, PAST):
            if verdict == FUTURE:
                way, limit = "ahead of", self.horizon(live)
                setting = "max_future_s" if limit == st.max_future_s else "clock_max_jump_s"
            else:
                way, limit, setting = "behind", st.max_past_s, "max_past_s"
            clock = "engine clock" if live else "replay clock"
            return (
                f"t {_iso(t)} is {_span(t - ref)} {way} the {clock} {_iso(ref)} "
                f"(limit {_limit(limit)}, {setting})"
            )
        reg = self.registry
        what = "tag" if slot < reg.n_tags else "device"
        since = float(ref - full)
        if not math.isfinite(since) or since < 0:
            since = 0.0
        n = math.floor(st.rate_burst + st.rate_max_per_s * since)
        return (
            f"rate limit: {what} {reg.device_ids[slot]} sent more than {n} records in "
            f"{since:.0f} s (limit: {st.rate_burst} at once, then {st.rate_max_per_s:g} a "
            "second; rate_burst, rate_max_per_s)"
        )

    # -- state as data (snapshots, configuration reloads: engine/core/remap.py) ----------
    def export_state(self) -> dict[str, Any]:
        return {
            "tokens": self.tokens, "last": self.last, "full_t": self.full_t,
            "extra": self.extra, "clk": self.clk, "wall": self.wall,
            "rejected": [[k, v] for k, v in self.rejected.items()],
        }  # fmt: skip

    def import_state(self, d: dict[str, Any], m: Remap) -> None:
        self.tokens = m.rows(d["tokens"], self.tokens)
        self.last = m.rows(d["last"], self.last)
        self.full_t = m.rows(d["full_t"], self.full_t)
        self.extra = m.rows(d["extra"], self.extra)
        clk = np.asarray(d["clk"], dtype=np.float64)
        if clk.shape != self.clk.shape:
            raise ValueError("admission clock state has the wrong shape")
        self.clk = clk.copy()
        self.wall = float(d["wall"])
        self.rejected = {int(k): int(v) for k, v in d["rejected"]}
