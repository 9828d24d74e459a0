"""Did a tag cross a zone between two fixes? The straight segment's depth says it could
have; a route round the zone no longer than the tag could have driven at the speed it was
already going says it need not have."""

from __future__ import annotations

import math

import numpy as np
import shapely

from zones.compile import ZoneTable

R_EARTH = 6371008.8


def _xy(lat: float, lon: float, lat0: float, lon0: float) -> tuple[float, float]:
    k = math.pi / 180.0 * R_EARTH
    return (lon - lon0) * k * math.cos(math.radians(lat0)), (lat - lat0) * k


def detour_m(table: ZoneTable, zone: int, a: tuple[float, float], b: tuple[float, float]) -> float:
    """Length of the shortest route from A to B that keeps outside the zone's convex hull:
    the shorter of the two chains of hull(zone + A + B) between A and B. The hull makes this
    an upper bound on going round the real zone, so it errs towards calling a crossing."""
    lat0 = float(table.origin_lat[zone])
    lon0 = float(table.origin_lon[zone])
    ax, ay = _xy(*a, lat0, lon0)
    bx, by = _xy(*b, lat0, lon0)
    if table.is_circle[zone]:
        r = float(table.radius[zone])
        ang = np.linspace(0.0, 2 * np.pi, 64, endpoint=False)
        pts = np.stack([r * np.cos(ang), r * np.sin(ang)], axis=1)
    else:
        r0, r1 = int(table.zone_ring_start[zone]), int(table.zone_ring_start[zone + 1])
        v0, v1 = int(table.ring_vert_start[r0]), int(table.ring_vert_start[r1])
        pts = np.stack([table.vx[v0:v1], table.vy[v0:v1]], axis=1)
    allpts = np.vstack([pts, [[ax, ay], [bx, by]]])
    hull = shapely.convex_hull(shapely.multipoints(allpts))
    ring = np.asarray(hull.exterior.coords)[:-1] if hull.geom_type == "Polygon" else allpts
    ia = int(np.argmin(np.hypot(ring[:, 0] - ax, ring[:, 1] - ay)))
    ib = int(np.argmin(np.hypot(ring[:, 0] - bx, ring[:, 1] - by)))
    seg = np.hypot(*(np.roll(ring, -1, axis=0) - ring).T)
    n = ring.shape[0]
    lo, hi = sorted((ia, ib))
    one = float(seg[lo:hi].sum())
    other = float(seg.sum()) - one
    if hi == lo or n < 3:
        return math.hypot(bx - ax, by - ay)
    return min(one, other)
