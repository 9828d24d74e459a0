"""When zones bind: curfew schedules as UTC intervals expanded lazily around the event
times seen (cached per distinct schedule), folded with each zone's validity (its licence
condition within its subject's tagging period), and which open episodes a validity has
outlived."""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from engine.core.episodes import TrackerKey, TrackerKind
from engine.core.registry import Registry
from zones.compile import ZoneTable
from zones.model import Window, ZoneSet
from zones.rows import zone_rows
from zones.schedule import active_intervals

SPAN_S = 8 * 86400.0  # how far ahead schedule intervals are expanded at a time

# Episode keys whose index is a zone, and whose index is a proximity pair; the rest
# (health) are indexed by tag slot
_ZONE_KINDS = frozenset({TrackerKind.ZONE, TrackerKind.APPROACH, TrackerKind.CURFEW})
_PAIR_KINDS = frozenset(
    {TrackerKind.PROXIMITY, TrackerKind.PROXIMITY_APPROACH, TrackerKind.VICTIM_STALE}
)
# `detail.closed_reason` of an episode closed because what it was about stopped binding
ZONE_ENDED = "zone_valid_until"  # the zone's licence condition ended
PERIOD_ENDED = "subject_valid_until"  # the subject's tagging period ended
WINDOW_ENDED = "zone_schedule_ended"  # a scheduled exclusion zone's window ended


class Schedules:
    """UTC active intervals of scheduled or time-limited zones, expanded lazily around the
    times seen, and the validity ends of the zones and subjects episodes are about.

    Cached per distinct schedule (thousands of curfews share "Mon-Sun 19:00-07:00") over
    day-aligned spans, so a national deployment expands each schedule once a week; a
    zone's validity clips its schedule's intervals (a zone with validity and no schedule
    is active in exactly [valid_from, valid_until))."""

    def __init__(self, zoneset: ZoneSet, table: ZoneTable, registry: Registry) -> None:
        # Row z of the zone set is row z of its table (compile_zones keeps the order)
        self.schedule = dict(zone_rows(zoneset.zones).schedule)
        self.cache: dict[tuple[Window, ...], tuple[float, float, np.ndarray]] = {}
        # `window`'s intervals by (schedule, validity), as lists, with the cached array
        # they were made from (None: validity alone)
        self._windows: dict[tuple[Any, Any], tuple[Any, list[float], list[float]]] = {}
        self.table = table
        self.registry = registry
        bounded = np.flatnonzero(np.isfinite(table.valid_from) | np.isfinite(table.valid_until))
        self.bounds = {
            int(z): (float(table.valid_from[z]), float(table.valid_until[z])) for z in bounded
        }
        # Exclusion zones with a schedule bind only inside its windows (a curfew's schedule
        # is its tracker's business: it is about being away, not inside)
        kind = np.asarray(table.kind)
        self.excl_sched = frozenset(z for z in self.schedule if int(kind[z]) == 0)
        # Per zone: its schedule's number in `_scheds` and its (schedule, validity)'s in
        # `_keys` (-1: none), for the batch paths (neither map changes after this)
        n = int(table.valid_from.shape[0])
        self._scheds = list(dict.fromkeys(self.schedule.values()))
        num = {sched: i for i, sched in enumerate(self._scheds)}
        self._sid = np.full(n, -1, dtype=np.int64)
        for z, sched in self.schedule.items():
            self._sid[z] = num[sched]
        keys: dict[tuple[Any, Any], int] = {}
        self._gid = np.full(n, -1, dtype=np.int64)
        for z in sorted(set(self.schedule) | set(self.bounds)):
            self._gid[z] = keys.setdefault((self.schedule.get(z), self.bounds.get(z)), len(keys))
        self._keys = list(keys)
        ends = np.concatenate([table.valid_until, registry.subject_until])
        # Before this instant no validity has ended: nothing to look for (a scheduled
        # exclusion zone's window may end any day)
        self.first_end = -math.inf if self.excl_sched else float(np.min(ends, initial=math.inf))

    def _intervals(self, sched: tuple[Window, ...], lo: float, hi: float) -> np.ndarray:
        cached = self.cache.get(sched)
        if cached is None or lo < cached[0] or hi >= cached[1]:
            start = math.floor(lo / 86400.0) * 86400.0 - 86400.0
            end = start + max(SPAN_S, math.ceil((hi - start) / 86400.0 + 1) * 86400.0)
            cached = (start, end, active_intervals(sched, start, end))
            self.cache[sched] = cached
        return cached[2]

    def _active_iv(self, zone: int, lo: float, hi: float) -> np.ndarray | None:
        """The zone's active intervals around [lo, hi], sorted; None: always active."""
        sched = self.schedule.get(zone)
        lim = self.bounds.get(zone)
        if sched is None:
            return None if lim is None else np.array([lim], dtype=np.float64)
        return _clip(self._intervals(sched, lo, hi), lim)

    def active(self, zone: int, t: np.ndarray) -> np.ndarray:
        iv = self._active_iv(zone, float(t.min()), float(t.max()))
        if iv is None:
            return np.ones(t.shape, dtype=np.bool_)
        return _in_windows(iv, t)

    def active_or_soon(self, zone: int, t: np.ndarray, ahead_s: float) -> np.ndarray:
        """Active at t, or starting within ahead_s after t (a curfew tracker must know
        where the subject was when the window opened)."""
        res = self.active(zone, t)
        iv = self._active_iv(zone, float(t.min()), float(t.max()) + ahead_s)
        if iv is not None and iv.shape[0]:
            k = np.searchsorted(iv[:, 0], t, side="right")
            ok = k < iv.shape[0]
            res[ok] |= iv[k[ok], 0] - t[ok] <= ahead_s
        return res

    def active_or_soon_pairs(self, zidx: np.ndarray, t: np.ndarray, ahead_s: float) -> np.ndarray:
        """`active_or_soon` of each (zone, time) pair: the same answers, and the same cache
        expansions in the same order, as calling it zone by zone in ascending zone order
        with each zone's times, but computed per distinct (schedule, validity): an answer
        depends only on the intervals about its time, which every span covering it holds
        alike (spans clip at least a day away from any time asked about)."""
        if zidx.shape[0] == 0:
            return np.ones(0, dtype=np.bool_)
        if self._covered(zidx, t, ahead_s):
            return self._soon_by_key(zidx, t, ahead_s)
        res = np.ones(zidx.shape[0], dtype=np.bool_)
        order = np.argsort(zidx, kind="stable")
        zs, tz = zidx[order], t[order]
        first = np.flatnonzero(np.r_[True, zs[1:] != zs[:-1]])
        lo_z = np.minimum.reduceat(tz, first).tolist()
        hi_z = np.maximum.reduceat(tz, first).tolist()
        groups: dict[tuple[Any, Any], list[int]] = {}  # (schedule, validity) -> zone runs
        cache = self.cache
        for r, z in enumerate(zs[first].tolist()):
            sched, lim = self.schedule.get(z), self.bounds.get(z)
            if sched is not None:  # the expansions active_or_soon makes, in its order
                lo, hi = lo_z[r], hi_z[r]
                span = cache.get(sched)
                if span is None or lo < span[0] or max(hi, hi + ahead_s) >= span[1]:
                    self._intervals(sched, lo, hi)
                    self._intervals(sched, lo, hi + ahead_s)
            if sched is not None or lim is not None:
                groups.setdefault((sched, lim), []).append(r)
        ends = np.r_[first[1:], zs.shape[0]]
        for (sched, lim), runs in groups.items():
            at = np.concatenate([order[first[r] : ends[r]] for r in runs])
            tt = t[at]
            lo, hi = min(lo_z[r] for r in runs), max(hi_z[r] for r in runs) + ahead_s
            iv = self._covering(sched, lim, lo, hi)
            res[at] = _in_windows(iv, tt, ahead_s)
        return res

    def _covered(self, zidx: np.ndarray, t: np.ndarray, ahead_s: float) -> bool:
        """Whether every time is finite and, for each pair of a scheduled zone, its time
        and its time ahead_s later (max(t, t + ahead_s), as the loop takes it) lie within
        its schedule's cached span: then the zone by zone loop expands nothing (a zone's
        least time is not below a span's start, its greatest plus ahead_s not at its end
        or beyond), and the (schedule, validity) groups are asked exactly as it asks."""
        if not np.isfinite(t).all():
            return False
        sid = self._sid[zidx]
        m = sid >= 0
        if not m.any():
            return True
        spans = [self.cache.get(sched) for sched in self._scheds]
        s0 = np.array([math.nan if c is None else c[0] for c in spans], dtype=np.float64)
        s1 = np.array([math.nan if c is None else c[1] for c in spans], dtype=np.float64)
        ss, tt = sid[m], t[m]
        lo, hi = s0[ss], s1[ss]
        te = tt + ahead_s
        te = np.where(te > tt, te, tt)
        return bool(((lo <= tt) & (te < hi)).all())  # a NaN span (none cached): False

    def _soon_by_key(self, zidx: np.ndarray, t: np.ndarray, ahead_s: float) -> np.ndarray:
        """active_or_soon_pairs' answers per (schedule, validity) when `_covered`: each
        group over the same span [least time, greatest + ahead_s] the loop asks about."""
        res = np.ones(zidx.shape[0], dtype=np.bool_)
        for g, at in _by_key(self._gid[zidx]):
            tt = t[at]
            sched, lim = self._keys[g]
            iv = self._covering(sched, lim, float(tt.min()), float(tt.max()) + ahead_s)
            res[at] = _in_windows(iv, tt, ahead_s)
        return res

    def _covering(self, sched: Any, lim: Any, lo: float, hi: float) -> np.ndarray:
        """The intervals of (schedule, validity) over a span holding [lo, hi]: the cached
        one when it does, else one expanded for this and not kept (the cache untouched)."""
        if sched is None:
            return np.array([lim], dtype=np.float64)
        cached = self.cache.get(sched)
        if cached is not None and cached[0] <= lo and hi < cached[1]:
            return _clip(cached[2], lim)
        start = math.floor(lo / 86400.0) * 86400.0 - 86400.0
        end = start + max(SPAN_S, math.ceil((hi - start) / 86400.0 + 1) * 86400.0)
        return _clip(active_intervals(sched, start, end), lim)

    def active_pairs(self, zidx: np.ndarray, t: np.ndarray) -> np.ndarray:
        """`active` of each (zone, time) pair, leaving the cache as it is (it is state:
        for what only looks ahead, engine/core/fences.py)."""
        res = np.ones(zidx.shape[0], dtype=np.bool_)
        for g, at in _by_key(self._gid[zidx]):  # `at`: the group's pairs, ascending
            tt = t[at]
            iv = self._covering(*self._keys[g], float(tt.min()), float(tt.max()))
            res[at] = _in_windows(iv, tt)
        return res

    def window(self, zone: int, t: float) -> tuple[float, float, bool]:
        """(start, end, active): the active interval containing t, or else the last one
        that ended before t (so a breach can be closed at the window's end)."""
        sched, lim = self.schedule.get(zone), self.bounds.get(zone)
        if sched is None and lim is None:
            return -math.inf, math.inf, True
        # _active_iv(zone, t, t), as lists: remade only when the span the intervals come
        # from is (the same expansion of the cache happens here as there)
        raw = None if sched is None else self._intervals(sched, t, t)
        got = self._windows.get((sched, lim))
        if got is None or got[0] is not raw:
            iv = self._active_iv(zone, t, t) if raw is None else _clip(raw, lim)
            got = (raw, iv[:, 0].tolist(), iv[:, 1].tolist())  # type: ignore[index]
            self._windows[(sched, lim)] = got
        k = bisect.bisect_right(got[1], t) - 1
        if k < 0:
            return -math.inf, -math.inf, False
        w0, w1 = got[1][k], got[2][k]
        return w0, w1, t < w1

    # -- validity ------------------------------------------------------------------------
    def valid(self, zone: int, t: float) -> bool:
        """Whether the zone binds at t (its validity; a schedule is not consulted)."""
        lim = self.bounds.get(zone)
        return lim is None or lim[0] <= t < lim[1]

    def valid_mask(self, zidx: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Per (zone, time) pair: whether the zone binds then."""
        table = self.table
        return (table.valid_from[zidx] <= t) & (t < table.valid_until[zidx])

    @property
    def limited(self) -> bool:
        """Some exclusion zone does not bind at all times (validity or a schedule)."""
        return self.table.has_validity or bool(self.excl_sched)

    def binds(self, zone: int, t: float) -> bool:
        """Whether the zone is in force at t: its validity and, for an exclusion zone with
        a schedule, its schedule (a curfew's schedule is left to the curfew tracker)."""
        if zone in self.excl_sched:
            return bool(self.active(zone, np.array([t], dtype=np.float64))[0])
        return self.valid(zone, t)

    def binds_mask(self, zidx: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Per (zone, time) pair: `binds`."""
        ok = self.valid_mask(zidx, t)
        if self.excl_sched:
            for z in self.excl_sched.intersection(np.unique(zidx).tolist()):
                m = zidx == z
                ok[m] &= self.active(z, t[m])
        return ok

    def until_of(self, key: TrackerKey, now: float = math.inf) -> tuple[float, str]:
        """(when what the episode `key` is about stops binding, why: ZONE_ENDED,
        PERIOD_ENDED or, for a scheduled exclusion zone not in force at `now`, WINDOW_ENDED
        with the end of its last window); +inf when it never does."""
        table, reg = self.table, self.registry
        if key.kind in _ZONE_KINDS and key.idx in self.excl_sched and math.isfinite(now):
            _, w1, active = self.window(key.idx, now)
            if not active and math.isfinite(w1):
                return w1, WINDOW_ENDED
        if key.kind in _ZONE_KINDS:
            until = float(table.valid_until[key.idx])
            s = int(table.subject[key.idx])
            return until, PERIOD_ENDED if until == reg.subject_until[s] else ZONE_ENDED
        if key.kind in _PAIR_KINDS:
            s = reg.pairs[key.idx].subject
        else:
            s = int(reg.subject_of_slot[key.idx])
        return float(reg.subject_until[s]), PERIOD_ENDED

    def ended(
        self, keys: Iterable[tuple[TrackerKey, str]], now: float
    ) -> list[tuple[TrackerKey, str, float, str]]:
        """Of the open episodes `keys` ((key, kind), in order), those about a zone or
        subject whose validity ended by `now`: (key, kind, valid_until, reason)."""
        if now < self.first_end:
            return []
        out = []
        for key, kind in keys:
            until, reason = self.until_of(key, now)
            if until <= now:
                out.append((key, kind, until, reason))
        return out

    # -- state as data (snapshots, configuration reloads: engine/core/remap.py) ----------
    # The cache is state, not only speed: intervals are clipped to the span they were
    # expanded over, so a restored engine must see the same spans to decide the same.
    def export_state(self) -> list[Any]:
        return [
            {"windows": _windows_data(sched), "start": start, "end": end, "iv": iv}
            for sched, (start, end, iv) in self.cache.items()
        ]

    def import_state(self, d: list[Any]) -> None:
        """Cached spans of the schedules this configuration still has."""
        mine = {repr(_windows_data(s)): s for s in self.schedule.values()}
        self.cache = {}
        for e in d:
            sched = mine.get(repr(e["windows"]))
            if sched is not None:
                iv = np.asarray(e["iv"], dtype=np.float64).reshape(-1, 2).copy()
                self.cache[sched] = (float(e["start"]), float(e["end"]), iv)


def _by_key(gid: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(key, its pairs' indices ascending) for each key >= 0 in `gid`, ascending."""
    at = np.flatnonzero(gid >= 0)
    if at.shape[0] == 0:
        return []
    g = gid[at]
    g0 = int(g[0])
    if bool((g == g0).all()):
        return [(g0, at)]
    order = np.argsort(g, kind="stable")
    g, at = g[order], at[order]
    first = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    ends = np.r_[first[1:], g.shape[0]]
    return [(int(g[a]), at[a:b]) for a, b in zip(first.tolist(), ends.tolist(), strict=True)]


def _clip(iv: np.ndarray, lim: tuple[float, float] | None) -> np.ndarray:
    """Intervals `iv` within a zone's validity `lim` (None: unbounded)."""
    if lim is None:
        return iv
    a, b = np.maximum(iv[:, 0], lim[0]), np.minimum(iv[:, 1], lim[1])
    keep = a < b
    return np.stack([a[keep], b[keep]], axis=1)


def _windows_data(sched: tuple[Window, ...]) -> list[Any]:
    return [[sorted(w.days), w.start_min, w.end_min, w.tz] for w in sched]


def _in_windows(iv: np.ndarray, t: np.ndarray, ahead_s: float | None = None) -> np.ndarray:
    """Of times `t`, those inside one of the sorted intervals `iv`, or (`ahead_s` given)
    within ahead_s before one starts."""
    got = np.zeros(t.shape, dtype=np.bool_)
    if iv.shape[0]:
        k = np.searchsorted(iv[:, 0], t, side="right")
        ok = k > 0
        got[ok] = t[ok] < iv[k[ok] - 1, 1]
        if ahead_s is not None:
            ok = k < iv.shape[0]
            got[ok] |= iv[k[ok], 0] - t[ok] <= ahead_s
    return got
