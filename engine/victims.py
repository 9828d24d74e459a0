"""Where a protected device (victim phone) was at a given moment, and how sure that is:
fixes are joined on event time, not arrival, and silence grows the uncertainty."""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

from engine.episodes import sigma_of

HISTORY = 64  # fixes kept per device: enough to bracket late tag fixes


@dataclass(frozen=True, slots=True)
class VictimPosition:
    lat: float
    lon: float
    sigma: float  # metres, per axis, including drift since the nearest fix
    age: float  # seconds from t to the nearest fix used


@dataclass
class VictimTrack:
    """Recent fixes of one protected device, sorted by event time."""

    t: list[float] = field(default_factory=list)
    fixes: list[tuple[float, float, float]] = field(default_factory=list)  # lat, lon, acc

    def add(self, t: float, lat: float, lon: float, acc: float) -> None:
        i = bisect.bisect_left(self.t, t)
        if i < len(self.t) and self.t[i] == t:
            return
        self.t.insert(i, t)
        self.fixes.insert(i, (lat, lon, acc))
        if len(self.t) > HISTORY:
            del self.t[0], self.fixes[0]

    def at(self, t: float, drift_mps: float, acc_floor: float) -> VictimPosition | None:
        """Position at event time t: interpolated between bracketing fixes, else the nearest
        fix with sigma grown by drift_mps x age. None when there is no fix at all."""
        if not self.t:
            return None
        i = bisect.bisect_right(self.t, t)
        if 0 < i < len(self.t):
            t0, t1 = self.t[i - 1], self.t[i]
            (la0, lo0, a0), (la1, lo1, a1) = self.fixes[i - 1], self.fixes[i]
            f = (t - t0) / (t1 - t0) if t1 > t0 else 0.0
            age = min(t - t0, t1 - t)
            sig = max(sigma_of(max(a0, acc_floor)), sigma_of(max(a1, acc_floor)))
            # the phone may have wandered off the straight line between its two fixes
            sig = math.hypot(sig, drift_mps * age / 2.0)
            return VictimPosition(la0 + f * (la1 - la0), lo0 + f * (lo1 - lo0), sig, age)
        j = i - 1 if i > 0 else 0
        lat, lon, acc = self.fixes[j]
        age = abs(t - self.t[j])
        sig = math.hypot(sigma_of(max(acc, acc_floor)), drift_mps * age)
        return VictimPosition(lat, lon, sig, age)
