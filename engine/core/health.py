"""Device health: tamper, silence, no location, battery.

A zone check is only half of monitoring: a cut strap, a tag that goes quiet beside the
victim's street, a battery left to die. These decisions share the breach alerts' book
(same ids, lifecycle, store and topics) and, like them, are made on event time, except
silence, which is about *arrival*: "nothing has arrived for too long" is measured on the
engine's clock (live: wall time; replay: the latest event time seen, see `ArrivalClock`).

- Tamper events open a critical `tamper` alert the moment they are admitted, before the
  seq ordering that breach decisions wait for, so a held seq gap never delays one. Each
  kind of tamper (strap, case, body, power) keeps its own latest state by seq, so events
  arriving out of order still settle to what the tag said last. The episode closes at the
  last restore once no new opening follows within `tamper_settle_s`: toggling is one
  episode.
- `tag_silent`: nothing from the tag for max(`silent_factor` x its reporting interval,
  `silent_min_s`). Severity rises when the last known position was inside or near an
  exclusion zone, or a curfew is on. When the tag is heard again the alert closes and
  says what the gap held (`detail.filled`, and breach alerts the late fixes opened).
- `no_location`: records keep coming but none is a usable fix (`no_gps` events, fixes
  worse than `no_location_acc_m`) for `no_location_after_s`.
- `battery_low` / `battery_critical`: level thresholds with hysteresis; `detail` carries
  the level, the drain trend and the predicted empty time, and when the tag last charged.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np

from engine.core.episodes import EpisodeBook
from engine.core.registry import Registry
from engine.settings import Settings
from engine.wire.alerts import Alert, Severity
from engine.wire.records import EVENT_CODE

# Tamper kinds: the event that opens one, and the events that restore it
TAMPER_OPEN = {
    "strap_open": "strap",
    "case_open": "case",
    "body_lost": "body",
    "power_off": "power",
}
TAMPER_RESTORE = {
    "strap_closed": "strap",
    "case_closed": "case",
    "body_restored": "body",
    "power_on": "power",
}
_OPEN_CODE = {EVENT_CODE[k]: v for k, v in TAMPER_OPEN.items()}
_RESTORE_CODE = {EVENT_CODE[k]: v for k, v in TAMPER_RESTORE.items()}
_NO_GPS = EVENT_CODE["no_gps"]
_CHARGING_ON = EVENT_CODE["charging_on"]
_CHARGING_OFF = EVENT_CODE["charging_off"]
_POWER_OFF = EVENT_CODE["power_off"]
_EVENT_NAME = {v: k for k, v in EVENT_CODE.items()}

# Breach kinds a late batch can reveal inside a silence
BREACH_KINDS = frozenset({"zone_breach", "curfew_breach", "proximity"})

# Where a silent tag was last seen: (slot) -> (t, lat, lon, acc, seq) or None
LastFix = Callable[[int], "np.ndarray | None"]
# How much a silence matters where the tag was last seen: (slot, lat, lon, t) ->
# (severity, facts for detail)
Context = Callable[[int, float, float, float], tuple[Severity, dict[str, Any]]]


class ArrivalClock:
    """The engine's sense of "now" for silence: live, wall time; replay, the latest event
    time seen. One device with a clock far ahead (a tag reset to 2038) must not make the
    whole fleet look silent, so a jump of more than `max_jump_s` is taken only when a
    second device confirms it."""

    def __init__(self, max_jump_s: float) -> None:
        self.now = -math.inf
        self.max_jump_s = max_jump_s
        self._pending: tuple[int, float] | None = None
        self._anchor = -1  # the device whose record set the clock first
        self.confirmed = False  # a second device has agreed with it

    def observe(self, slots: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Each record's arrival clock, in arrival order: the running latest event time.
        Late records (store-and-forward, any age) never move it back. A jump of more than
        max_jump_s ahead is taken only once a second device confirms it; and until a second
        device has agreed with the first record that set the clock, two devices far behind
        it correct it (a wild first record)."""
        out = np.empty(t.shape[0])
        jump = self.max_jump_s
        tt = np.where(np.isfinite(t), t, -np.inf)
        if self.confirmed:
            run = np.maximum.accumulate(np.concatenate([[self.now], tt]))
            if not np.any(tt > run[:-1] + jump):
                out[:] = run[1:]
                self.now = float(run[-1])
                return out
        for i in range(t.shape[0]):  # a far jump somewhere: one record at a time
            v, s = float(tt[i]), int(slots[i])
            if not math.isfinite(v):
                pass
            elif not math.isfinite(self.now):
                self.now, self._anchor = v, s
            elif v > self.now + jump or (v < self.now - jump and not self.confirmed):
                p = self._pending
                if p is None or p[0] == s or (p[1] > self.now) != (v > self.now):
                    self._pending = (s, v)
                else:  # two devices agree the clock is far off: the nearer of the two
                    self.now = min(v, p[1]) if v > self.now else max(v, p[1])
                    self._pending = None
                    self.confirmed = True
            else:
                if s != self._anchor and abs(v - self.now) <= jump:
                    self.confirmed = True
                self.now = max(self.now, v)
            out[i] = self.now
        return out

    def set(self, wall: float) -> float:
        self.confirmed = True
        self.now = max(self.now, wall)
        return self.now


@dataclass
class _Tamper:
    state: dict[str, tuple[int, bool, float]] = field(
        default_factory=dict
    )  # kind -> (seq, open, t)
    restored_t: float = math.nan  # all kinds restored at this event time (NaN: some open)
    seq: int = -1  # the restore's seq


@dataclass
class _Battery:
    level: int = -1
    seq: int = -1
    samples: list[tuple[float, int]] = field(default_factory=list)  # since the last charge
    charging: bool = False
    last_charge_t: float = math.nan


@dataclass(frozen=True)
class _Gap:
    last_t: float
    last_seq: int
    due: float
    since: float
    fix: np.ndarray | None


@dataclass
class _Silence:
    ep_key: object
    slot: int
    last_t: float  # event time last heard
    since: float  # arrival clock when last heard
    hi: float = math.inf  # the gap ends (arrival clock) when the tag is heard again
    closed: Alert | None = None
    filled: int = 0
    alerts: list[str] = field(default_factory=list)


class Health:
    """Per-tag health state for tag slots [0, n_tags); sparse dicts for the rare states,
    arrays for what every tag has."""

    def __init__(self, registry: Registry, book: EpisodeBook, settings: Settings) -> None:
        self.reg = registry
        self.book = book
        self.st = settings
        n = registry.n_tags
        self.heard = np.full(n, -math.inf)  # arrival clock when last heard
        self.heard_t = np.full(n, -math.inf)  # event time of the latest record heard
        self.heard_seq = np.full(n, -1, dtype=np.int64)
        self.interval = np.full(n, settings.report_interval_s)
        self.last_fix_t = np.full(n, math.nan)
        self.in_heap = np.zeros(n, dtype=np.bool_)
        self.heap: list[tuple[float, int]] = []
        self.silent: dict[int, _Silence] = {}
        self.recent: dict[int, _Silence] = {}  # closed silences a late batch may still fill
        self.tamper: dict[int, _Tamper] = {}
        self.settling: set[int] = set()
        self.battery: dict[int, _Battery] = {}
        self.bad_since: dict[int, tuple[float, int]] = {}  # no usable fix since (t, seq)
        self.last_rec_t = np.full(n, math.nan)  # event time of the previous ordered record
        self.powered_off: dict[int, int] = {}  # slot -> seq of its power_off
        self.batt_seen = np.full(n, -1, dtype=np.int16)  # last level reported, on arrival
        # silent slots heard in this batch: (the silence, if it began and ended within the
        # batch; arrival clock it ended at; the tag's records from then on)
        self.waking: dict[int, list[tuple[_Gap | None, float, np.ndarray]]] = {}
        self._tamper_codes = np.array([*_OPEN_CODE, *_RESTORE_CODE], dtype=np.uint8)

    # -- helpers ---------------------------------------------------------------------
    def _who(self, slot: int) -> tuple[str, str]:
        return self.reg.subject_ids[int(self.reg.subject_of_slot[slot])], self.reg.device_ids[slot]

    def _open(
        self,
        key: object,
        kind: str,
        slot: int,
        sev: Severity,
        t: float,
        seq: int,
        raised_t: float,
        detail: dict[str, Any] | None = None,
    ) -> None:
        subject, tag = self._who(slot)
        ep = self.book.open_episode(
            key, kind, subject=subject, tag=tag, zone=None, severity=sev, confidence=1.0,
            t=t, seq=seq, raised_t=raised_t,
        )  # fmt: skip
        if detail is not None:
            ep.detail = detail
            self.book.out[-1] = ep.record()

    def credit(self, seconds: float) -> None:
        """The engine was down this long (restart): the broker queued what tags sent, so
        the downtime is not their silence. Open silences stay open; the others' clocks
        (when last heard, when due) move on by the downtime."""
        self.heard = np.where(np.isfinite(self.heard), self.heard + seconds, self.heard)
        self.heap = [(due + seconds, s) for due, s in self.heap]
        heapq.heapify(self.heap)
        for rec in self.recent.values():
            rec.since += seconds

    def silence_after(self, slot: int) -> float:
        return max(self.st.silent_factor * float(self.interval[slot]), self.st.silent_min_s)

    # -- on admission (before seq ordering) ------------------------------------------
    def admit(
        self, rows: np.ndarray, arrival: np.ndarray, last_fix: LastFix, context: Context
    ) -> None:
        """Rows just received (deduplicated, in arrival order) and each one's arrival
        clock. Tamper is decided here. A gap in a tag's arrivals longer than its silence
        limit is a silence (opened when it was due, closed at the record that ended it,
        in `settle` once this batch's fixes are decided, so it can say what they held)."""
        keep = rows["slot"] < self.reg.n_tags
        tags, arrival = rows[keep], arrival[keep]
        if tags.shape[0] == 0:
            return
        tamper = np.isin(tags["event"], self._tamper_codes)
        off = tags["slot"][tags["event"] == _POWER_OFF]
        if self.powered_off or off.shape[0]:  # any record after power_off restores it
            tamper |= np.isin(tags["slot"], [*self.powered_off, *off.tolist()])
        if tamper.any():
            has_batt = tags["batt"] >= 0
            for i in np.flatnonzero(tamper).tolist():
                s = int(tags["slot"][i])
                seen = np.flatnonzero(has_batt[:i] & (tags["slot"][:i] == s))
                if seen.shape[0]:
                    self.batt_seen[s] = tags["batt"][seen[-1]]
                self._tamper_event(tags[i])
        b = np.flatnonzero(tags["batt"] >= 0)
        self.batt_seen[tags["slot"][b]] = tags["batt"][b]  # the last one in arrival order
        order = np.argsort(tags["slot"], kind="stable")
        ss, aa = tags["slot"][order], arrival[order]
        first = np.ones(ss.shape[0], dtype=np.bool_)
        first[1:] = ss[1:] != ss[:-1]
        prev = np.empty_like(aa)
        prev[0] = self.heard[ss[0]]
        prev[1:] = np.where(first[1:], self.heard[ss[1:]], aa[:-1])
        after = np.maximum(self.st.silent_factor * self.interval[ss], self.st.silent_min_s)
        woken = first & self._silent_mask(ss)
        gaps = np.flatnonzero(woken | (np.isfinite(prev) & (aa - prev > after)))
        for k in gaps.tolist():
            s = int(ss[k])
            lo = int(np.searchsorted(ss, s))
            mine = tags[order[lo:k]]  # this tag's earlier records in the batch
            if k == lo:
                last_t, last_seq = float(self.heard_t[s]), int(self.heard_seq[s])
            else:
                last_t, last_seq = float(mine["t"].max()), int(mine["seq"].max())
            gap: _Gap | None = None
            if not woken[k]:
                fixes = mine[(mine["event"] == 0) & np.isfinite(mine["lat"])]
                fix = (
                    last_fix(s)
                    if fixes.shape[0] == 0
                    else np.array([fixes["t"][-1], fixes["lat"][-1], fixes["lon"][-1]])
                )
                gap = _Gap(last_t, last_seq, float(prev[k]) + float(after[k]), float(prev[k]),
                           fix)  # fmt: skip
            hi = int(np.searchsorted(ss, s, side="right"))
            self.waking.setdefault(s, []).append((gap, float(aa[k]), tags[order[k:hi]]))
        if self.recent:
            for s in np.unique(ss[np.isin(ss, list(self.recent))]).tolist():
                if s not in self.waking:
                    self._fill(self.recent[s], tags[tags["slot"] == s])
        last = np.flatnonzero(np.r_[ss[1:] != ss[:-1], True])
        u = ss[last]
        self.heard[u] = aa[last]
        np.maximum.at(self.heard_t, ss, tags["t"][order])
        np.maximum.at(self.heard_seq, ss, tags["seq"][order])
        fresh = u[~self.in_heap[u]]
        for s in fresh.tolist():
            heapq.heappush(self.heap, (float(self.heard[s]) + self.silence_after(s), s))
        self.in_heap[fresh] = True

    def _silent_mask(self, ss: np.ndarray) -> np.ndarray:
        if not self.silent:
            return np.zeros(ss.shape, dtype=np.bool_)
        return np.isin(ss, list(self.silent))

    def _tamper_event(self, row: np.void) -> None:
        s, code = int(row["slot"]), int(row["event"])
        seq, t = int(row["seq"]), float(row["t"])
        if code in _OPEN_CODE:
            kind, opening = _OPEN_CODE[code], True
            if code == _POWER_OFF and self._flat(s, row):
                return  # a flat battery, not tamper: battery_critical says it
        elif code in _RESTORE_CODE:
            kind, opening = _RESTORE_CODE[code], False
        else:  # any other record after power_off: the tag is evidently on again
            kind, opening = "power", False
            if seq <= self.powered_off.get(s, seq):
                return
        tp = self.tamper.setdefault(s, _Tamper())
        prev = tp.state.get(kind)
        if prev is None or seq > prev[0]:
            tp.state[kind] = (seq, opening, t)
        if kind == "power":
            if tp.state["power"][1]:
                self.powered_off[s] = tp.state["power"][0]
            else:
                self.powered_off.pop(s, None)
        key = ("tamper", s)
        ep = self.book.get(key, "tamper")
        tag = self._who(s)[1]
        name = self.event_name(code)
        if opening and ep is None:
            self._open(key, "tamper", s, "critical", t, seq, t, {"events": [name]})
        elif ep is not None:
            self.book.add_evidence(ep, tag, seq, 1.0)
            assert ep.detail is not None
            if opening:
                ep.opened_t = min(ep.opened_t, t)
                if name not in ep.detail["events"]:
                    ep.detail["events"].append(name)
        if any(o for _, o, _ in tp.state.values()):
            tp.restored_t = math.nan
            self.settling.discard(s)
        elif self.book.get(key, "tamper") is not None:
            last = max(tp.state.values(), key=lambda v: v[2])
            tp.restored_t, tp.seq = last[2], last[0]
            self.settling.add(s)

    @staticmethod
    def event_name(code: int) -> str:
        return _EVENT_NAME.get(code, "record")

    def _flat(self, s: int, row: np.void) -> bool:
        b = int(row["batt"])
        if b < 0:
            b = int(self.batt_seen[s])
        return 0 <= b <= self.st.battery_flat_pct

    # -- in seq order -----------------------------------------------------------------
    def ordered(self, rows: np.ndarray, usable: np.ndarray) -> None:
        """Tag rows in processing order (per tag in seq order): battery, charging,
        no_location and the reporting interval. `usable`: the row is a fix good enough to
        say where the tag is."""
        st = self.st
        is_fix = rows["event"] == 0
        for i in range(rows.shape[0]):
            row = rows[i]
            s, t, seq = int(row["slot"]), float(row["t"]), int(row["seq"])
            code = int(row["event"])
            gap = t - self.last_rec_t[s]
            if gap > self.silence_after(s) and s in self.bad_since:
                del self.bad_since[s]  # a silence, not a run of unusable records
            if not gap < 0.0:
                self.last_rec_t[s] = t
            if is_fix[i]:
                g = t - self.last_fix_t[s]
                if 0.0 < g < 2.0 * self.silence_after(s):  # not across a silence
                    self.interval[s] += st.interval_smoothing * (g - self.interval[s])
                if not g < 0.0:
                    self.last_fix_t[s] = t
            b = int(row["batt"])
            if b >= 0 or code in (_CHARGING_ON, _CHARGING_OFF):
                self._battery(s, t, seq, b, code)
            if usable[i]:
                if s in self.bad_since:
                    del self.bad_since[s]
                    self.book.close(("noloc", s), "no_location", t)
            elif is_fix[i] or code == _NO_GPS:
                since = self.bad_since.get(s)
                if since is None:
                    self.bad_since[s] = since = (t, seq)
                if t - since[0] >= st.no_location_after_s and not self.book.get(
                    ("noloc", s), "no_location"
                ):
                    self._open(("noloc", s), "no_location", s, "medium", since[0], since[1], t,
                               {"since_t": since[0]})  # fmt: skip

    def _battery(self, s: int, t: float, seq: int, b: int, code: int) -> None:
        st = self.st
        bat = self.battery.setdefault(s, _Battery())
        if code == _CHARGING_ON:
            bat.charging, bat.last_charge_t = True, t
            bat.samples = []
        elif code == _CHARGING_OFF:
            bat.charging, bat.last_charge_t = False, t
            bat.samples = []
        if b < 0:
            return
        if bat.level >= 0 and b > bat.level + 2 and not bat.charging:
            bat.samples = []  # charged (or swapped) without telling us
            bat.last_charge_t = t
        bat.level, bat.seq = b, seq
        if not bat.charging:
            bat.samples.append((t, b))
            cut = t - st.battery_trend_s
            while len(bat.samples) > 2 and bat.samples[0][0] < cut:
                bat.samples.pop(0)
        for kind, low, high, sev in (
            ("battery_low", st.battery_low_pct, st.battery_low_clear_pct, "medium"),
            ("battery_critical", st.battery_critical_pct, st.battery_critical_clear_pct, "high"),
        ):
            key = ("batt", s)
            ep = self.book.get(key, kind)
            if ep is None and b <= low:
                self._open(key, kind, s, sev, t, seq, t, self._battery_detail(bat))  # type: ignore[arg-type]
            elif ep is not None and b >= high:
                ep.detail = self._battery_detail(bat)
                self.book.close(key, kind, t)

    def _battery_detail(self, bat: _Battery) -> dict[str, Any]:
        d: dict[str, Any] = {"batt": bat.level, "charging": bat.charging}
        if math.isfinite(bat.last_charge_t):
            d["last_charge_t"] = bat.last_charge_t
        pts = bat.samples
        if len(pts) >= 3 and pts[-1][0] - pts[0][0] >= 600.0:
            t = np.array([p[0] for p in pts])
            v = np.array([p[1] for p in pts], dtype=np.float64)
            slope = float(np.polyfit(t - t[0], v, 1)[0])  # % per second
            if slope < 0.0:
                d["drain_pct_h"] = round(-slope * 3600.0, 2)
                d["empty_t"] = round(pts[-1][0] + bat.level / -slope, 1)
        return d

    # -- on the clock ------------------------------------------------------------------
    def check(self, now: float, last_fix: LastFix, context: Context) -> None:
        """Time has passed (a batch, or live a tick): open silences that are due, close
        tamper episodes that have settled."""
        st = self.st
        for s in sorted(self.settling):
            tp = self.tamper[s]
            if math.isnan(tp.restored_t):
                self.settling.discard(s)
            elif max(now, self.heard_t[s]) >= tp.restored_t + st.tamper_settle_s:
                self.book.close(("tamper", s), "tamper", tp.restored_t)
                self.settling.discard(s)
        heap = self.heap
        while heap and heap[0][0] <= now:
            _, s = heapq.heappop(heap)
            due = float(self.heard[s]) + self.silence_after(s)
            if due > now:
                heapq.heappush(heap, (due, s))
                continue
            self.in_heap[s] = False
            if s not in self.silent:
                self._start_silence(s, float(self.heard_t[s]), int(self.heard_seq[s]), due,
                                    float(self.heard[s]), last_fix(s), context)  # fmt: skip
        for s in [k for k, r in self.recent.items() if now - r.since > st.hold_s]:
            del self.recent[s]

    def _start_silence(
        self,
        s: int,
        last_t: float,
        seq: int,
        due: float,
        since: float,
        fix: np.ndarray | None,
        context: Context,
    ) -> None:
        """Open tag_silent, raised when it fell due (`due`: heard last at `since`, plus the
        silence limit), with where the tag was last seen."""
        detail: dict[str, Any] = {"last_t": last_t, "silent_after_s": round(due - since, 1)}
        sev: Severity = "medium"
        if fix is not None and np.isfinite(fix[0]):
            detail.update(last_fix_t=float(fix[0]), last_lat=float(fix[1]), last_lon=float(fix[2]))
            sev, facts = context(s, float(fix[1]), float(fix[2]), due)
            detail.update(facts)
        key = ("silent", s)
        self._open(key, "tag_silent", s, sev, last_t, seq, due, detail)
        self.silent[s] = _Silence(key, s, last_t, since)
        self.recent.pop(s, None)

    def settle(self, new_alerts: list[Alert], context: Context) -> None:
        """After a batch was decided: close the silences its records ended (saying what
        the gap held, including breach alerts the gap's fixes opened), and tell closed
        silences about breach alerts that late fixes from their gap opened since."""
        for s, wakes in sorted(self.waking.items()):
            for gap, at, rows in wakes:
                if gap is not None:  # a whole silence between two records of this batch
                    self._start_silence(s, gap.last_t, gap.last_seq, gap.due, gap.since,
                                        gap.fix, context)  # fmt: skip
                rec = self.silent.pop(s, None)
                ep = self.book.get(("silent", s), "tag_silent")
                if rec is None or ep is None:
                    continue
                rec.hi = at
                self._fill(rec, rows, publish=False)
                self._learn(rec, new_alerts)
                assert ep.detail is not None
                ep.detail.update(gap_s=round(at - rec.since, 1), filled=rec.filled)
                if rec.alerts:
                    ep.detail["alerts"] = list(rec.alerts)
                self.book.close(rec.ep_key, "tag_silent", at)
                rec.closed = self.book.out[-1]
                rec.since = at
                self.recent[s] = rec
        self.waking.clear()
        if self.recent:
            for a in new_alerts:
                s = self.reg.slot(a.tag) if a.tag is not None else -1
                rec = self.recent.get(s)
                if rec is not None and rec.closed is not None and self._learn(rec, [a]):
                    self._republish(rec)

    def _learn(self, rec: _Silence, alerts: list[Alert]) -> bool:
        got = False
        for a in alerts:
            if (
                a.kind in BREACH_KINDS and a.state == "open" and a.id not in rec.alerts
                and rec.last_t < a.opened_t < rec.hi
                and a.tag == self.reg.device_ids[rec.slot]
            ):  # fmt: skip
                rec.alerts.append(a.id)
                got = True
        return got

    def _fill(self, rec: _Silence, rows: np.ndarray, publish: bool = True) -> None:
        """Records whose event time falls in the silent gap: what the tag did meanwhile."""
        n = int(np.count_nonzero((rows["t"] > rec.last_t) & (rows["t"] < rec.hi)))
        if n == 0:
            return
        rec.filled += n
        if publish:
            self._republish(rec)

    def _republish(self, rec: _Silence) -> None:
        if rec.closed is None:
            return
        d = dict(rec.closed.detail or {})
        d["filled"] = rec.filled
        if rec.alerts:
            d["alerts"] = list(rec.alerts)
        if d != rec.closed.detail:
            rec.closed = msgspec.structs.replace(rec.closed, detail=d)
            self.book.out.append(rec.closed)

    def finish(self) -> None:
        """End of input: restored tamper episodes close at their restore."""
        for s in sorted(self.settling):
            tp = self.tamper[s]
            if not math.isnan(tp.restored_t):
                self.book.close(("tamper", s), "tamper", tp.restored_t)
        self.settling.clear()
