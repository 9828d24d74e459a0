"""Did a tag cross a zone between two fixes? The straight segment's depth says it could
have; a route round the zone no longer than the tag could have driven at the speed it was
already going says it need not have."""

from __future__ import annotations

import math

import numpy as np
import shapely

from zones.compile import ZoneTable
from zones.jit import njit

R_EARTH = 6371008.8


def _xy(lat: float, lon: float, lat0: float, lon0: float) -> tuple[float, float]:
    k = math.pi / 180.0 * R_EARTH
    return (lon - lon0) * k * math.cos(math.radians(lat0)), (lat - lat0) * k


def detour_m(table: ZoneTable, zone: int, a: tuple[float, float], b: tuple[float, float]) -> float:
    """Length of the shortest route from A to B that keeps outside the zone's convex hull:
    the shorter of the two chains of hull(zone + A + B) between A and B. The hull makes this
    an upper bound on going round the real zone, so it errs towards calling a crossing."""
    za = table.arrays
    lat0 = float(za.origin_lat[zone])
    lon0 = float(za.origin_lon[zone])
    ax, ay = _xy(*a, lat0, lon0)
    bx, by = _xy(*b, lat0, lon0)
    if za.is_circle[zone]:
        r = float(za.radius[zone])
        ang = np.linspace(0.0, 2 * np.pi, 64, endpoint=False)
        pts = np.stack([r * np.cos(ang), r * np.sin(ang)], axis=1)
    else:
        rings = za.rings
        r0, r1 = int(rings.zone_ring_start[zone]), int(rings.zone_ring_start[zone + 1])
        v0, v1 = int(rings.ring_vert_start[r0]), int(rings.ring_vert_start[r1])
        pts = np.stack([rings.vx[v0:v1], rings.vy[v0:v1]], axis=1)
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


def onward_paths(
    p: np.ndarray, a: np.ndarray, b: np.ndarray, slack: float, turn_s: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The route from A to B that keeps going the way the tag was going for as long as it
    can: straight on from A on the heading it came in on (P -> A), then one turn to B,
    the whole route as long as the speed it came in at allows in the time to B (x slack).
    Where no fix says what happened in between, this is the route that would take a tag
    driving at a zone furthest into it. Rows of fixes (t, lat, lon, ...).

    A vehicle slows for a corner: a turn through angle phi costs turn_s * (1 - cos phi)
    seconds at the speed in (a right angle costs turn_s, a gentle bend almost nothing),
    so a route that needs a sharp turn to reach B cannot have gone as far on.

    Returns (turn lat, turn lon, metres A -> turn, route metres); NaN where there is no
    such route (a heading unknown, or B further than the tag could have got)."""
    lat0, lon0 = a[:, 1], a[:, 2]
    k = math.pi / 180.0 * R_EARTH
    cos0 = np.cos(np.radians(lat0))
    px, py = (p[:, 2] - lon0) * k * cos0, (p[:, 1] - lat0) * k
    bx, by = (b[:, 2] - lon0) * k * cos0, (b[:, 1] - lat0) * k
    run = np.hypot(px, py)
    ab = np.hypot(bx, by)
    speed = run / (a[:, 0] - p[:, 0])
    budget = speed * (b[:, 0] - a[:, 0]) * slack
    with np.errstate(invalid="ignore", divide="ignore"):
        ux, uy = -px / run, -py / run
        q = bx * ux + by * uy  # how far B is along the heading
        # s + |A + s u - B| = budget  =>  s = (budget^2 - |AB|^2) / (2 (budget - q))
        s = (budget**2 - ab**2) / (2.0 * (budget - q))
        ok = np.isfinite(s) & (budget > ab) & (run > 0.0)
        if turn_s > 0.0:
            s = _turn_bisect(bx, by, ux, uy, q, np.where(ok, s, 0.0), speed * turn_s, budget)
    s = np.where(ok, s, np.nan)
    return lat0 + s * uy / k, lon0 + s * ux / (k * cos0), s, np.where(ok, budget, np.nan)


@njit
def _turn_bisect(
    bx: np.ndarray,
    by: np.ndarray,
    ux: np.ndarray,
    uy: np.ndarray,
    q: np.ndarray,
    s_free: np.ndarray,
    cost: np.ndarray,
    budget: np.ndarray,
) -> np.ndarray:
    """Per row: the longest straight leg s in [0, s_free] whose route A -> K -> B plus the
    turn at K (cost x (1 - cos phi)) fits the budget. The spent length only grows with s
    (going further on makes the turn back sharper), so bisection finds it."""
    out = np.empty(bx.shape[0])
    for i in range(bx.shape[0]):
        lo, hi = 0.0, s_free[i]
        if not hi > 0.0:
            out[i] = 0.0
            continue
        for _ in range(48):
            mid = 0.5 * (lo + hi)
            tx, ty = bx[i] - mid * ux[i], by[i] - mid * uy[i]
            kb = math.sqrt(tx * tx + ty * ty)
            cos_phi = (q[i] - mid) / kb if kb > 0.0 else 1.0
            if mid + kb + cost[i] * (1.0 - cos_phi) > budget[i]:
                hi = mid
            else:
                lo = mid
        out[i] = lo
    return out
