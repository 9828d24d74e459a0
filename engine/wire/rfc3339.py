"""RFC 3339 date-times (a fix's or event's `t` as a string) to Unix seconds, and the
contract's time range [2000-01-01, 2100-01-01) that every event time must fall in."""

from __future__ import annotations

import datetime as _dt
import re
from decimal import Decimal

from engine.wire.bounds import T_MAX, T_MIN
from engine.wire.reasons import Rejected, show

_RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?([Zz]|[+-]\d\d:\d\d)?",
    re.ASCII,
)
_EPOCH_ORDINAL = _dt.date(1970, 1, 1).toordinal()


def time_range(x: float | int, where: str, shown: str) -> float:
    """`x` as a float, or Rejected when it is outside the contract's time range."""
    if not T_MIN <= x < T_MAX:
        raise Rejected(f"{where}: {shown} is outside [2000-01-01, 2100-01-01)")
    return float(x)


def parse_rfc3339(s: str, where: str) -> float:
    """RFC 3339 date-time → Unix seconds, the float nearest the exact (fractional) value."""
    m = _RFC3339.fullmatch(s)
    if m is None:
        raise Rejected(
            f"{where}: {show(s)} is not an RFC 3339 date-time (e.g. 2026-03-29T01:30:00Z)"
        )
    y, mo, d, hh, mi, ss, frac, off = m.groups()
    if off is None:
        raise Rejected(f"{where}: {show(s)} needs a UTC offset ('Z' or e.g. '+01:00')")
    try:
        days = _dt.date(int(y), int(mo), int(d)).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        raise Rejected(f"{where}: {show(s)} is not a valid date") from None
    h, mn, sec = int(hh), int(mi), int(ss)
    if h > 23 or mn > 59 or sec > 60:  # 60: a leap second, counted as POSIX time does
        raise Rejected(f"{where}: {show(s)} is not a valid time of day")
    offset = 0
    if off not in "Zz":
        oh, om = int(off[1:3]), int(off[4:6])
        if oh > 23 or om > 59:
            raise Rejected(f"{where}: {show(s)} has an invalid UTC offset")
        offset = (oh * 3600 + om * 60) * (1 if off[0] == "+" else -1)
    secs = days * 86400 + h * 3600 + mn * 60 + sec - offset
    time_range(secs, where, show(s))
    t = float(Decimal(f"{secs}.{frac}")) if frac else float(secs)
    return time_range(t, where, show(s))
