"""Where a protected device (victim phone) was at a given moment, and how sure that is:
fixes are joined on event time (as of the tag fix), not arrival, and silence grows the
uncertainty."""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

from engine.core.episodes import sigma_of

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
        """Position as of event time t: the latest fix taken at or before t, with sigma
        grown by drift_mps x its age (the earliest fix after t when there is none before).

        An as-of join, not interpolation: what the engine concludes about a tag fix must
        not depend on whether the phone's next fix happened to arrive before it or after.
        None when there is no fix at all."""
        if not self.t:
            return None
        i = bisect.bisect_right(self.t, t)
        j = i - 1 if i > 0 else 0
        lat, lon, acc = self.fixes[j]
        age = abs(t - self.t[j])
        sig = math.hypot(sigma_of(max(acc, acc_floor)), drift_mps * age)
        return VictimPosition(lat, lon, sig, age)
