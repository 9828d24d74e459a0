"""Did a tag cross a zone between two fixes? The straight segment's depth says it could
have; a plausible turn around the zone (keep the incoming heading, then head for the next
fix, at the speed it was already going) says it need not have."""

from __future__ import annotations

import math

import numpy as np

from zones.compile import ZoneTable
from zones.geofence import segment_distance

R_EARTH = 6371008.8


def _xy(lat: float, lon: float, lat0: float, lon0: float) -> tuple[float, float]:
    k = math.pi / 180.0 * R_EARTH
    return (lon - lon0) * k * math.cos(math.radians(lat0)), (lat - lat0) * k


def _latlon(x: float, y: float, lat0: float, lon0: float) -> tuple[float, float]:
    k = math.pi / 180.0 * R_EARTH
    return lat0 + y / k, lon0 + x / (k * math.cos(math.radians(lat0)))


def heading_change_deg(
    p: tuple[float, float], a: tuple[float, float], b: tuple[float, float]
) -> float:
    """Absolute change of heading (degrees) from P->A to A->B; points are (lat, lon)."""
    lat0, lon0 = a
    px, py = _xy(*p, lat0, lon0)
    bx, by = _xy(*b, lat0, lon0)
    h1 = math.atan2(-py, -px)  # direction P->A (A is the origin)
    h2 = math.atan2(by, bx)
    d = abs((h2 - h1 + math.pi) % (2 * math.pi) - math.pi)
    return math.degrees(d)


def corner_route_avoids(
    table: ZoneTable,
    zone: int,
    p: tuple[float, float],
    a: tuple[float, float],
    b: tuple[float, float],
    budget_m: float,
) -> bool:
    """True when a two-leg route A->C->B that leaves A on the P->A heading and is no longer
    than budget_m stays clear of the zone (a drive around a corner, not through it)."""
    lat0, lon0 = a
    px, py = _xy(*p, lat0, lon0)
    bx, by = _xy(*b, lat0, lon0)
    norm = math.hypot(px, py)
    dist_ab = math.hypot(bx, by)
    if norm == 0.0 or budget_m <= dist_ab:
        return False
    ux, uy = -px / norm, -py / norm
    # |AC| + |CB| = L with C = s*u:  s = (L^2 - D^2) / (2 (L - u.d))
    s = (budget_m**2 - dist_ab**2) / (2.0 * (budget_m - (ux * bx + uy * by)))
    if not 0.0 < s < budget_m:
        return False
    c = _latlon(s * ux, s * uy, lat0, lon0)
    lat0s = np.array([a[0], c[0]])
    lon0s = np.array([a[1], c[1]])
    lat1s = np.array([c[0], b[0]])
    lon1s = np.array([c[1], b[1]])
    d = segment_distance(table, lat0s, lon0s, lat1s, lon1s, np.array([zone, zone]))
    return bool(np.all(d > 0.0))
