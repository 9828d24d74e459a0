"""`valid_from` / `valid_until` of a zone (its licence condition) or a subject (the tagging
period): reading RFC 3339 or Unix times into the half-open interval [from, until) of Unix
seconds, ±inf where a bound is absent, with every problem worded.

RFC 3339 is also read by `engine/wire/rfc3339.py` (a fix's `t`); `zones/` may not import
`engine/`, and a configuration time is a different thing to check (a TOML date-time, a
millisecond slip, until before from), so the few lines of date-time reading live here too.
The range [2000-01-01, 2100-01-01) is the contract's range for times, as for event times.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from decimal import Decimal
from typing import Any

from zones.problems import Report, is_number, short

VALIDITY_KEYS = ("valid_from", "valid_until")
T_MIN = 946684800.0  # 2000-01-01T00:00:00Z
T_MAX = 4102444800.0  # 2100-01-01T00:00:00Z
_RANGE = "[2000-01-01, 2100-01-01)"
_EXAMPLE = '"2026-12-01T00:00:00Z"'
_RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(\.\d+)?([Zz]|[+-]\d\d:\d\d)?", re.ASCII
)


def show(t: float) -> str:
    """A Unix time as RFC 3339 UTC, for messages (±inf as 'always')."""
    if not math.isfinite(t):
        return "always"
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat().replace("+00:00", "Z")


def _from_string(s: str) -> float | str:
    """Unix seconds, or what is wrong with `s`."""
    m = _RFC3339.fullmatch(s.strip())
    if m is None:
        return f"{short(s)} is not an RFC 3339 date-time (e.g. {_EXAMPLE}) or Unix seconds"
    y, mo, d, hh, mi, ss, frac, off = m.groups()
    if off is None:
        return f"{short(s)} needs a UTC offset ('Z' or e.g. '+01:00')"
    try:
        day = dt.date(int(y), int(mo), int(d))
    except ValueError:
        return f"{short(s)} is not a valid date"
    if int(hh) > 23 or int(mi) > 59 or int(ss) > 60:  # 60: a leap second, as POSIX counts it
        return f"{short(s)} is not a valid time of day"
    oh, om = (0, 0) if off in "Zz" else (int(off[1:3]), int(off[4:6]))
    if oh > 23 or om > 59:
        return f"{short(s)} has an invalid UTC offset"
    sign = -1 if off[0] == "-" else 1
    secs = (day - dt.date(1970, 1, 1)).days * 86400 + int(hh) * 3600 + int(mi) * 60 + int(ss)
    secs -= sign * (oh * 3600 + om * 60)
    return float(Decimal(secs) + Decimal(frac or 0))


def _time(v: Any) -> float | str:
    """A configuration time as Unix seconds, or what is wrong with it."""
    if isinstance(v, str):
        t = _from_string(v)
        if isinstance(t, str):
            return t
    elif isinstance(v, dt.datetime):  # a TOML offset date-time, written without quotes
        if v.tzinfo is None:
            return f"{v.isoformat()} needs a UTC offset ('Z' or e.g. '+01:00')"
        t = v.timestamp()
    elif isinstance(v, dt.date):  # a TOML local date (or time): no instant at all
        return f"{v.isoformat()} needs a time of day and a UTC offset (e.g. {_EXAMPLE})"
    elif is_number(v):
        try:
            t = float(v)
        except OverflowError:
            t = math.inf
        if not math.isfinite(t):
            return f"{short(v)} is not a finite number of Unix seconds"
        if T_MIN * 1000.0 <= t < T_MAX * 1000.0:
            return f"{short(v)} looks like milliseconds; use Unix seconds"
    else:
        return (
            f"must be an RFC 3339 date-time with a UTC offset (e.g. {_EXAMPLE}) or Unix "
            f"seconds, got {short(v)}"
        )
    if not T_MIN <= t < T_MAX:
        return f"{short(v)} is outside {_RANGE}"
    return t


def read_validity(raw: dict[str, Any], report: Report) -> tuple[float, float]:
    """(valid_from, valid_until) of a zone's properties or a subject's table, -inf / +inf
    where absent (or null); each problem reported, and the pair when one is wrong."""
    bounds = [-math.inf, math.inf]
    for k, key in enumerate(VALIDITY_KEYS):
        v = raw.get(key)
        if v is None:
            continue
        t = _time(v)
        if isinstance(t, str):
            report(f"{key} {t}")
            bounds[k] = math.nan
        else:
            bounds[k] = t
    lo, hi = bounds
    if not hi > lo and not (math.isnan(lo) or math.isnan(hi)):
        report(
            f"valid_until {show(hi)} must be after valid_from {show(lo)} (the interval "
            "[valid_from, valid_until) would be empty)"
        )
    return lo, hi
