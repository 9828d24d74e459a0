"""Zone schedules as Unix-time intervals: the simulator's own reading of the contract.

Local wall clock, DST-aware; windows start on `days` and may cross midnight. Kept
independent of zones/schedule.py on purpose: ground truth is an oracle for the engine."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def parse_days(text: str) -> frozenset[int]:
    """'Mon-Fri', 'Sat,Sun', 'Fri-Mon' -> weekday numbers (0 = Monday)."""
    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if "-" in part:
            a, b = (DAYS.index(p.strip()[:3].title()) for p in part.split("-", 1))
            out.update((a + i) % 7 for i in range((b - a) % 7 + 1))
        else:
            out.add(DAYS.index(part[:3].title()))
    return frozenset(out)


def _hm(text: str) -> dt.time:
    h, m = text.split(":")
    return dt.time(int(h), int(m))


def active_intervals(
    schedule: Iterable[Mapping[str, str]], t0: float, t1: float
) -> list[tuple[float, float]]:
    """Merged, sorted [start, end) Unix-time intervals during which the schedule is
    active and which overlap [t0, t1]. An empty schedule is always active."""
    windows = list(schedule)
    if not windows:
        return [(t0, t1)]
    spans: list[tuple[float, float]] = []
    for w in windows:
        tz = ZoneInfo(w["tz"])
        days = parse_days(w["days"])
        start, end = _hm(w["start"]), _hm(w["end"])
        day = dt.datetime.fromtimestamp(t0, tz).date() - dt.timedelta(days=2)
        last = dt.datetime.fromtimestamp(t1, tz).date() + dt.timedelta(days=1)
        while day <= last:
            if day.weekday() in days:
                a = dt.datetime.combine(day, start, tz).timestamp()
                end_day = day + dt.timedelta(days=1) if end <= start else day
                b = dt.datetime.combine(end_day, end, tz).timestamp()
                if b > t0 and a < t1:
                    spans.append((a, b))
            day += dt.timedelta(days=1)
    spans.sort()
    merged: list[tuple[float, float]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def active_mask(
    schedule: Iterable[Mapping[str, str]], ts: NDArray[np.float64]
) -> NDArray[np.bool_]:
    """For each time in `ts`, whether the schedule is active then."""
    if len(ts) == 0:
        return np.zeros(0, dtype=bool)
    mask = np.zeros(len(ts), dtype=bool)
    for a, b in active_intervals(schedule, float(ts.min()), float(ts.max()) + 1.0):
        mask |= (ts >= a) & (ts < b)
    return mask
