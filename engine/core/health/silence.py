"""Silence and no location. `tag_silent`: nothing has arrived from a tag for
max(`silent_factor` x its reporting interval, `silent_min_s`) on the arrival clock; it
closes when the tag is heard again, saying what the gap held. `no_location`: records keep
coming but none is a usable fix for `no_location_after_s`."""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np

from engine.core.episodes import EpisodeBook, TrackerKey, TrackerKind
from engine.core.registry import Registry
from engine.settings import Settings
from engine.wire.alerts import Alert, Severity, decode_alert, encode_alert
from zones.jit import njit

if TYPE_CHECKING:
    from engine.core.remap import Ids, Remap

# Breach kinds a late batch can reveal inside a silence
BREACH_KINDS = frozenset({"zone_breach", "curfew_breach", "proximity"})

# Where a silent tag was last seen: (slot) -> (t, lat, lon, acc, seq) or None
LastFix = Callable[[int], "np.ndarray | None"]
# How much a silence matters where the tag was last seen: (slot, lat, lon, t) ->
# (severity, facts for detail)
Context = Callable[[int, float, float, float], tuple[Severity, dict[str, Any]]]


@dataclass(frozen=True)
class _Gap:
    last_t: float
    last_seq: int
    due: float
    since: float
    fix: np.ndarray | None


@dataclass
class _Silence:
    ep_key: TrackerKey
    slot: int
    last_t: float  # event time last heard
    since: float  # arrival clock when last heard
    hi: float = math.inf  # the gap ends (arrival clock) when the tag is heard again
    closed: Alert | None = None
    filled: int = 0
    alerts: list[str] = field(default_factory=list)


class Silence:
    """Per tag slot: when it was last heard (arrival clock, event time, seq), its learnt
    reporting interval, and a heap of when each tag falls due; the open silences, and
    the recently closed ones a late batch may still fill."""

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
        # silent slots heard in this batch: (the silence, if it began and ended within the
        # batch; arrival clock it ended at; the tag's records from then on)
        self.waking: dict[int, list[tuple[_Gap | None, float, np.ndarray]]] = {}

    def after(self, slot: int) -> float:
        """How long the tag may be quiet before it is silent."""
        return max(self.st.silent_factor * float(self.interval[slot]), self.st.silent_min_s)

    def due(self, slot: int) -> float:
        """When the tag falls silent (arrival clock) unless heard again: its silence limit
        after it was last heard, or after its tagging period began if that is later."""
        return max(float(self.heard[slot]), self.reg.period_start(slot)) + self.after(slot)

    def credit(self, seconds: float) -> None:
        """The engine was down this long (restart): the broker queued what tags sent, so
        the downtime is not their silence. Open silences stay open; the others' clocks
        (when last heard, when due) move on by the downtime."""
        self.heard = np.where(np.isfinite(self.heard), self.heard + seconds, self.heard)
        self.heap = [(due + seconds, s) for due, s in self.heap]
        heapq.heapify(self.heap)
        for rec in self.recent.values():
            rec.since += seconds

    def fix(self, s: int, t: float, after: float) -> None:
        """A fix of slot s in seq order: learn its reporting interval (not across a
        silence; `after` is its silence limit before this fix)."""
        g = t - self.last_fix_t[s]
        if 0.0 < g < 2.0 * after:
            self.interval[s] += self.st.interval_smoothing * (g - self.interval[s])
        if not g < 0.0:
            self.last_fix_t[s] = t

    def admit(self, tags: np.ndarray, arrival: np.ndarray, last_fix: LastFix) -> None:
        """Tag rows just received (deduplicated, in arrival order) and each one's arrival
        clock. A gap in a tag's arrivals longer than its silence limit is a silence (opened
        when it was due, closed at the record that ended it, in `settle` once this batch's
        fixes are decided, so it can say what they held)."""
        order = np.argsort(tags["slot"], kind="stable")
        ss, aa = tags["slot"][order], arrival[order]
        first = np.ones(ss.shape[0], dtype=np.bool_)
        first[1:] = ss[1:] != ss[:-1]
        prev = np.empty_like(aa)
        prev[0] = self.heard[ss[0]]
        prev[1:] = np.where(first[1:], self.heard[ss[1:]], aa[:-1])
        after = np.maximum(self.st.silent_factor * self.interval[ss], self.st.silent_min_s)
        woken = first & self._silent_mask(ss)
        # A silence counts only in the tagging period: a tag not yet fitted or already
        # removed is not silent (docs/health.md)
        subj = self.reg.subject_of_slot[ss]
        start = np.maximum(prev, self.reg.subject_from[subj])
        quiet = (
            np.isfinite(prev)
            & (aa - start > after)
            & (start + after < self.reg.subject_until[subj])
        )
        gaps = np.flatnonzero(woken | quiet)
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
                gap = _Gap(last_t, last_seq, float(start[k]) + float(after[k]), float(prev[k]),
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
            heapq.heappush(self.heap, (self.due(s), s))
        self.in_heap[fresh] = True

    def _silent_mask(self, ss: np.ndarray) -> np.ndarray:
        if not self.silent:
            return np.zeros(ss.shape, dtype=np.bool_)
        return np.isin(ss, list(self.silent))

    def check(self, now: float, last_fix: LastFix, context: Context) -> None:
        """Time has passed: open the silences that are due."""
        heap = self.heap
        while heap and heap[0][0] <= now:
            _, s = heapq.heappop(heap)
            due = self.due(s)
            if due > now:
                heapq.heappush(heap, (due, s))
                continue
            self.in_heap[s] = False
            if s not in self.silent and self.reg.monitored(s, due):
                self._start(s, float(self.heard_t[s]), int(self.heard_seq[s]), due,
                            float(self.heard[s]), last_fix(s), context)  # fmt: skip
        for s in [k for k, r in self.recent.items() if now - r.since > self.st.hold_s]:
            del self.recent[s]

    def _start(
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
        limit = due - max(since, self.reg.period_start(s))
        detail: dict[str, Any] = {"last_t": last_t, "silent_after_s": round(limit, 1)}
        sev: Severity = "medium"
        if fix is not None and np.isfinite(fix[0]):
            detail.update(last_fix_t=float(fix[0]), last_lat=float(fix[1]), last_lon=float(fix[2]))
            sev, facts = context(s, float(fix[1]), float(fix[2]), due)
            detail.update(facts)
        key = TrackerKey(TrackerKind.SILENT, s)
        subject, tag = self.reg.who(s)
        self.book.open_episode(
            key, "tag_silent", subject=subject, tag=tag, zone=None, severity=sev,
            confidence=1.0, t=last_t, seq=seq, raised_t=due, detail=detail,
        )  # fmt: skip
        self.silent[s] = _Silence(key, s, last_t, since)
        self.recent.pop(s, None)

    def settle(self, new_alerts: list[Alert], context: Context) -> None:
        """After a batch was decided: close the silences its records ended (saying what
        the gap held, including breach alerts the gap's fixes opened), and tell closed
        silences about breach alerts that late fixes from their gap opened since."""
        for s, wakes in sorted(self.waking.items()):
            for gap, at, rows in wakes:
                if gap is not None:  # a whole silence between two records of this batch
                    self._start(s, gap.last_t, gap.last_seq, gap.due, gap.since, gap.fix,
                                context)  # fmt: skip
                rec = self.silent.pop(s, None)
                ep = self.book.get(TrackerKey(TrackerKind.SILENT, s), "tag_silent")
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

    # -- state as data (snapshots, configuration reloads: engine/core/remap.py) ----------
    def export_state(self, ids: Ids) -> dict[str, Any]:
        """Per tag arrays by slot; the due-heap, open and recently closed silences by id."""
        dev = self.reg.device_ids
        if self.waking:
            raise ValueError("silence state exported in the middle of a batch")
        return {
            "heard": self.heard, "heard_t": self.heard_t, "heard_seq": self.heard_seq,
            "interval": self.interval, "last_fix_t": self.last_fix_t, "in_heap": self.in_heap,
            "heap": [[due, dev[s]] for due, s in self.heap],
            "silent": [_silence_data(x, ids) for x in self.silent.values()],
            "recent": [_silence_data(x, ids) for x in self.recent.values()],
        }  # fmt: skip

    def import_state(self, d: dict[str, Any], m: Remap) -> None:
        for name in ("heard", "heard_t", "heard_seq", "interval", "last_fix_t", "in_heap"):
            setattr(self, name, m.rows(d[name], getattr(self, name)))
        heap = [(float(due), m.tag(dev)) for due, dev in d["heap"]]
        self.heap = [x for x in heap if x[1] >= 0]
        if not m.identity:
            heapq.heapify(self.heap)
        self.silent, self.recent = {}, {}
        for name in ("silent", "recent"):
            for x in d[name]:
                rec = _silence_from(x, m)
                if rec is not None:
                    getattr(self, name)[rec.slot] = rec
        self.waking = {}


def _silence_data(x: _Silence, ids: Ids) -> dict[str, Any]:
    return {
        "key": ids.key_ref(x.ep_key), "last_t": x.last_t, "since": x.since, "hi": x.hi,
        "closed": None if x.closed is None else encode_alert(x.closed).decode(),
        "filled": x.filled, "alerts": list(x.alerts),
    }  # fmt: skip


def _silence_from(d: dict[str, Any], m: Remap) -> _Silence | None:
    key = m.key(d["key"])
    if key is None:
        return None
    closed = None if d["closed"] is None else decode_alert(str(d["closed"]))
    return _Silence(key, key.idx, float(d["last_t"]), float(d["since"]), float(d["hi"]), closed,
                    int(d["filled"]), [str(a) for a in d["alerts"]])  # fmt: skip


@njit
def ordered_clocks(
    slot: np.ndarray, t: np.ndarray, is_fix: np.ndarray, interval: np.ndarray,
    last_fix_t: np.ndarray, last_rec_t: np.ndarray, factor: float, floor: float,
    smoothing: float,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Tag records in processing order, as Silence.after, Silence.fix and the start of
    NoLocation.observe take them one by one: per record its silence limit (`after`) and
    its gap since the slot's previous record (`gap`); `interval`, `last_fix_t` and
    `last_rec_t` are updated in place. Same arithmetic, operation for operation."""
    n = slot.shape[0]
    after = np.empty(n, dtype=np.float64)
    gap = np.empty(n, dtype=np.float64)
    for i in range(n):
        s = slot[i]
        x = factor * interval[s]
        a = floor if floor > x else x  # max(x, floor), NaN as Python's max keeps it
        after[i] = a
        if is_fix[i]:
            g = t[i] - last_fix_t[s]
            if 0.0 < g < 2.0 * a:
                interval[s] += smoothing * (g - interval[s])
            if not g < 0.0:
                last_fix_t[s] = t[i]
        gp = t[i] - last_rec_t[s]
        gap[i] = gp
        if not gp < 0.0:
            last_rec_t[s] = t[i]
    return after, gap


class NoLocation:
    """Per tag slot, in seq order: since when (t, seq) no record has been a usable fix."""

    def __init__(self, registry: Registry, book: EpisodeBook, settings: Settings) -> None:
        self.reg = registry
        self.book = book
        self.st = settings
        self.bad_since: dict[int, tuple[float, int]] = {}  # no usable fix since (t, seq)
        self.last_rec_t = np.full(registry.n_tags, math.nan)  # event time of the previous record

    def observe(self, s: int, t: float, seq: int, after: float, usable: bool, bad: bool) -> None:
        """A record of slot s: a `usable` fix, or a `bad` one (a fix too coarse, a no_gps
        event), or neither (another event). A gap longer than `after` (the silence limit) is
        a silence, not a run of unusable records."""
        gap = t - self.last_rec_t[s]
        if not gap < 0.0:
            self.last_rec_t[s] = t
        self.decide(s, t, seq, after, gap, usable, bad)

    def decide(
        self, s: int, t: float, seq: int, after: float, gap: float, usable: bool, bad: bool
    ) -> None:
        """`observe` once `gap` (since the slot's previous record) is known and noted. Does
        nothing unless s has had no usable fix since some record, or this one is bad."""
        if gap > after and s in self.bad_since:
            del self.bad_since[s]
        if usable:
            if s in self.bad_since:
                del self.bad_since[s]
                self.book.close(TrackerKey(TrackerKind.NO_LOCATION, s), "no_location", t)
        elif bad:
            key = TrackerKey(TrackerKind.NO_LOCATION, s)
            since = self.bad_since.get(s)
            if since is None:
                self.bad_since[s] = since = (t, seq)
            begun = max(since[0], self.reg.period_start(s))  # counted in the tagging period
            if (
                t - begun >= self.st.no_location_after_s
                and self.reg.monitored(s, t)
                and not self.book.get(key, "no_location")
            ):
                subject, tag = self.reg.who(s)
                self.book.open_episode(
                    key, "no_location", subject=subject, tag=tag, zone=None, severity="medium",
                    confidence=1.0, t=begun, seq=since[1], raised_t=t,
                    detail={"since_t": since[0]},
                )  # fmt: skip

    # -- state as data (snapshots, configuration reloads: engine/core/remap.py) ----------
    def export_state(self) -> dict[str, Any]:
        ids = self.reg.device_ids
        return {
            "bad_since": {ids[s]: list(v) for s, v in self.bad_since.items()},
            "last_rec_t": self.last_rec_t,
        }

    def import_state(self, d: dict[str, Any], m: Remap) -> None:
        self.bad_since = {}
        for dev, (t, q) in d["bad_since"].items():
            if m.tag(dev) >= 0:
                self.bad_since[m.tag(dev)] = (float(t), int(q))
        self.last_rec_t = m.rows(d["last_rec_t"], self.last_rec_t)
