"""Zone schedules: parsing schedule windows and turning them into DST-aware UTC intervals.

A window names the local days it *starts* on (`days`, 0 = Monday), a local wall-clock start
and end in minutes after midnight, and an IANA time zone. It is active from the start on
day D until the end on day D (when end > start) or on day D + 1 (when end <= start;
start == end is a 24-hour window). Friday 19:00-07:00 therefore runs into Saturday morning.

Local times become instants with zoneinfo, with two choices where the clock jumps:

* Nonexistent local times (the spring-forward gap, e.g. 01:30 in Europe/London on the last
  Sunday of March) map to the first instant after the gap, for starts and ends alike. So a
  window starting at 01:30 on that night begins at 02:00 BST, and the window covers exactly
  the instants whose local time is within [start, end). (Python's own `fold=0` reading
  would put 01:30 at 02:30 BST and silently skip half an hour.)
* Ambiguous local times (the fall-back repeat) start at their first occurrence (`fold=0`)
  and end at their second (`fold=1`), so a window is never shortened by the change.

A 19:00-07:00 window is therefore 11 h long on the spring-forward night and 13 h on the
fall-back night. `is_active` and `active_intervals` use the same span arithmetic, so they
agree on every instant.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
from numpy.typing import NDArray

from zones.model import DAY_NAMES, Window

WINDOW_FIELDS = ("days", "start", "end", "tz")
_FULL_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_HHMM = re.compile(r"(\d{1,2}):(\d{2})")
_ONE_DAY = dt.timedelta(days=1)

# -- parsing ------------------------------------------------------------------------------


def _day(name: str, text: str) -> int:
    key = name.strip().lower()
    for i, (short, full) in enumerate(zip(DAY_NAMES, _FULL_DAY_NAMES, strict=True)):
        if key in (short.lower(), full):
            return i
    raise ValueError(f"unknown day {name.strip()!r} in days {text!r} (use {', '.join(DAY_NAMES)})")


def parse_days(text: str) -> frozenset[int]:
    """'Mon-Fri', 'Sat,Sun', 'Wed', 'Fri-Mon' (wraps past Sunday) -> weekdays, 0 = Monday."""
    if not text.strip():
        raise ValueError("days is empty (use e.g. 'Mon-Fri', 'Sat,Sun' or 'Mon-Sun')")
    days: set[int] = set()
    for part in text.split(","):
        if "-" in part:
            first, _, last = part.partition("-")
            a, b = _day(first, text), _day(last, text)
            days.update((a + i) % 7 for i in range((b - a) % 7 + 1))
        else:
            days.add(_day(part, text))
    return frozenset(days)


def parse_hhmm(text: str, *, is_end: bool = False) -> int:
    """'HH:MM' -> minutes after midnight. An end may be '24:00', read as the next midnight
    (00:00, which is <= any start and so runs past midnight, as intended)."""
    m = _HHMM.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"{text!r} is not a time of day 'HH:MM'")
    h, mi = int(m.group(1)), int(m.group(2))
    if is_end and (h, mi) == (24, 0):
        return 0
    if h > 23 or mi > 59:
        raise ValueError(f"{text!r} is not a time of day (00:00-23:59)")
    return h * 60 + mi


def check_tz(key: str) -> str:
    """`key` if it names an IANA time zone zoneinfo can load, else ValueError."""
    try:
        ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"unknown time zone {key!r} (use an IANA name such as 'Europe/London')"
        ) from None
    return key


def parse_window(raw: Any) -> tuple[Window | None, list[str]]:
    """One `{"days", "start", "end", "tz"}` object -> (Window, []) or (None, problems)."""
    if not isinstance(raw, dict):
        return None, [
            f"is {type(raw).__name__}, expected an object with {', '.join(WINDOW_FIELDS)}"
        ]
    problems: list[str] = []
    missing = [k for k in WINDOW_FIELDS if k not in raw]
    if missing:
        problems.append(
            f"missing {', '.join(repr(k) for k in missing)} (a window needs "
            f"{', '.join(WINDOW_FIELDS)}, e.g. tz 'Europe/London')"
        )
    for k in WINDOW_FIELDS:
        if k in raw and not isinstance(raw[k], str):
            problems.append(f"{k!r} must be a string, got {raw[k]!r}")
    if problems:
        return None, problems
    parsers: dict[str, Callable[[str], Any]] = {
        "days": parse_days,
        "start": parse_hhmm,
        "end": lambda s: parse_hhmm(s, is_end=True),
        "tz": check_tz,
    }
    values: dict[str, Any] = {}
    for k, parse in parsers.items():
        try:
            values[k] = parse(raw[k])
        except ValueError as e:
            problems.append(f"{k}: {e}")
    if problems:
        return None, problems
    return Window(values["days"], values["start"], values["end"], values["tz"]), []


# -- evaluation ---------------------------------------------------------------------------


def _first_instant_at_or_after(before: float, after: float, tz: ZoneInfo) -> float:
    """The transition instant in (before, after]: the first whose UTC offset differs from
    the offset at `before`. Offsets change on whole seconds, so bisect on seconds."""
    lo, hi = math.floor(before), math.ceil(after)
    off = dt.datetime.fromtimestamp(lo, tz).utcoffset()
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if dt.datetime.fromtimestamp(mid, tz).utcoffset() == off:
            lo = mid
        else:
            hi = mid
    return float(hi)


def _instant(day: dt.date, minute: int, tz: ZoneInfo, *, is_end: bool) -> float:
    """Unix time of local `day` + `minute` in `tz`, by the module's gap and fold rules."""
    naive = dt.datetime(day.year, day.month, day.day, minute // 60, minute % 60)
    first = naive.replace(tzinfo=tz, fold=0).timestamp()
    second = naive.replace(tzinfo=tz, fold=1).timestamp()
    if first <= second:  # normal (equal) or ambiguous (first occurrence is earlier)
        return second if is_end else first
    # In a gap fold=0 reads the time with the old offset (after the gap), fold=1 with the
    # new one (before it); the first existing instant lies between.
    return _first_instant_at_or_after(second, first, tz)


@lru_cache(maxsize=1 << 16)
def _span(w: Window, day: dt.date) -> tuple[float, float]:
    """UTC [start, end) of the window instance that starts on local `day`. Cached: many
    zones share a curfew, and the engine asks for the same days again and again."""
    tz = ZoneInfo(w.tz)
    end_day = day + _ONE_DAY if w.end_min <= w.start_min else day
    return (
        _instant(day, w.start_min, tz, is_end=False),
        _instant(end_day, w.end_min, tz, is_end=True),
    )


def _local_date(t: float, tz: ZoneInfo) -> dt.date:
    return dt.datetime.fromtimestamp(t, tz).date()


def _check_time(t: float, name: str) -> None:
    if not math.isfinite(t):
        raise ValueError(f"{name} must be a finite Unix time, got {t!r}")


def is_active(schedule: tuple[Window, ...], t: float) -> bool:
    """Whether a zone with this schedule is active at Unix time `t` (empty: always)."""
    _check_time(t, "t")
    if not schedule:
        return True
    for w in schedule:
        tz = ZoneInfo(w.tz)
        today = _local_date(t, tz)
        # A window lasts at most 25 h, so only instances starting the day before or on the
        # day can cover t; the outer two days are for zones whose clocks jump over midnight.
        for k in range(-2, 2):
            day = today + k * _ONE_DAY
            if day.weekday() in w.days:
                a, b = _span(w, day)
                if a <= t < b:
                    return True
    return False


def _merge(spans: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


@lru_cache(maxsize=1024)
def _intervals(schedule: tuple[Window, ...], t0: float, t1: float) -> NDArray[np.float64]:
    spans: list[tuple[float, float]] = []
    for w in schedule:
        tz = ZoneInfo(w.tz)
        day, last = _local_date(t0, tz) - 2 * _ONE_DAY, _local_date(t1, tz) + _ONE_DAY
        while day <= last:
            if day.weekday() in w.days:
                a, b = _span(w, day)
                a, b = max(a, t0), min(b, t1)
                if a < b:
                    spans.append((a, b))
            day += _ONE_DAY
    out = np.array(_merge(spans), dtype=np.float64).reshape(-1, 2)
    out.flags.writeable = False  # cached: shared between callers
    return out


def active_intervals(schedule: tuple[Window, ...], t0: float, t1: float) -> NDArray[np.float64]:
    """The UTC [start, end) intervals, shape (k, 2), in which a zone with this schedule is
    active, merged, sorted and clipped to [t0, t1). Empty schedule: [[t0, t1]]."""
    _check_time(t0, "t0")
    _check_time(t1, "t1")
    if t1 <= t0:
        return np.empty((0, 2), dtype=np.float64)
    if not schedule:
        return np.array([[t0, t1]], dtype=np.float64)
    return _intervals(tuple(schedule), float(t0), float(t1)).copy()
