"""When scheduled zones (curfews) are active: UTC intervals expanded lazily around the
event times seen, cached per distinct schedule."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from zones.compile import ZoneTable
from zones.model import Window, ZoneSet
from zones.schedule import active_intervals

SPAN_S = 8 * 86400.0  # how far ahead schedule intervals are expanded at a time


class Schedules:
    """UTC active intervals of scheduled zones, expanded lazily around the times seen.

    Cached per distinct schedule (thousands of curfews share "Mon-Sun 19:00-07:00") over
    day-aligned spans, so a national deployment expands each schedule once a week."""

    def __init__(self, zoneset: ZoneSet, table: ZoneTable) -> None:
        self.schedule = {table.zone_index(z.id): z.schedule for z in zoneset.zones if z.schedule}
        self.cache: dict[tuple[Window, ...], tuple[float, float, np.ndarray]] = {}

    def _intervals(self, sched: tuple[Window, ...], lo: float, hi: float) -> np.ndarray:
        cached = self.cache.get(sched)
        if cached is None or lo < cached[0] or hi >= cached[1]:
            start = math.floor(lo / 86400.0) * 86400.0 - 86400.0
            end = start + max(SPAN_S, math.ceil((hi - start) / 86400.0 + 1) * 86400.0)
            cached = (start, end, active_intervals(sched, start, end))
            self.cache[sched] = cached
        return cached[2]

    def active(self, zone: int, t: np.ndarray) -> np.ndarray:
        sched = self.schedule.get(zone)
        if sched is None:
            return np.ones(t.shape, dtype=np.bool_)
        iv = self._intervals(sched, float(t.min()), float(t.max()))
        if iv.shape[0] == 0:
            return np.zeros(t.shape, dtype=np.bool_)
        k = np.searchsorted(iv[:, 0], t, side="right") - 1
        ok = k >= 0
        res = np.zeros(t.shape, dtype=np.bool_)
        res[ok] = t[ok] < iv[k[ok], 1]
        return res

    def active_or_soon(self, zone: int, t: np.ndarray, ahead_s: float) -> np.ndarray:
        """Active at t, or starting within ahead_s after t (a curfew tracker must know
        where the subject was when the window opened)."""
        res = self.active(zone, t)
        sched = self.schedule.get(zone)
        if sched is None:
            return res
        iv = self._intervals(sched, float(t.min()), float(t.max()) + ahead_s)
        if iv.shape[0]:
            k = np.searchsorted(iv[:, 0], t, side="right")
            ok = k < iv.shape[0]
            res[ok] |= iv[k[ok], 0] - t[ok] <= ahead_s
        return res

    def window(self, zone: int, t: float) -> tuple[float, float, bool]:
        """(start, end, active): the active interval containing t, or else the last one
        that ended before t (so a breach can be closed at the window's end)."""
        sched = self.schedule.get(zone)
        if sched is None:
            return -math.inf, math.inf, True
        iv = self._intervals(sched, t, t)
        k = int(np.searchsorted(iv[:, 0], t, side="right")) - 1
        if k < 0:
            return -math.inf, -math.inf, False
        w0, w1 = float(iv[k, 0]), float(iv[k, 1])
        return w0, w1, t < w1

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


def _windows_data(sched: tuple[Window, ...]) -> list[Any]:
    return [[sorted(w.days), w.start_min, w.end_min, w.tz] for w in sched]
