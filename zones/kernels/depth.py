"""Segment depth: how deep a straight segment runs inside a zone, and where it enters and leaves.

For a segment P(t) = P0 + t * S, t in [0, 1], and a zone: the closure of the t where P(t)
is in the zone's interior is a union of intervals. f_in is where the first begins, f_out
where the last ends, depth the max of -signed_distance over them. Touching the boundary
(a vertex, or running along an edge) is not entering: depth stays 0 there.

Polygons. The segment is cut at every point where it meets a ring edge (the edge's bbox
test first, chunk by chunk), so between consecutive cuts it is wholly inside, outside or
on an edge. Each piece is classified by the signed distance at its midpoint (even-odd, as
everywhere here); a piece lying along an edge (exactly collinear) is boundary. The depth
over the inside pieces is a maximum of g(t) = -sd(P(t)), which is 1-Lipschitz in metres
along the segment: knowing g at both ends of a stretch of length l bounds g on it by
(g_a + g_b + l) / 2. Branch and bound on that: bisect a stretch only while its bound
exceeds the best value found by more than step/2. This proves the same bound as sampling
every step metres (the result is within step/2 of the true depth, never above it) but
usually needs a few dozen evaluations instead of length/step: only near the maximum, or
on a plateau (a segment parallel to an edge), is it as dense as a uniform grid.

Its own module because it is a search built on the distances of `zones.kernels.distance`
(every evaluation is a `polygon_sd`), with its own scratch and stopping rule.
"""

from __future__ import annotations

import math

import numpy as np

from zones.jit import njit
from zones.kernels.arrays import CHUNK, Rings, ZoneArrays
from zones.kernels.distance import (
    all_finite,
    chunk_box,
    chunk_edges,
    gap2,
    point_segment_d2,
    polygon_inside,
    polygon_sd,
    zone_gap2,
    zone_xy,
)
from zones.kernels.frame import seam_piece, seam_pieces

DEPTH_MAX_EVALS = 2048  # signed-distance evaluations per pair in the bisection, at most
# A segment shorter than this is its start point: below the rounding of projected
# coordinates, and its squared length could underflow.
POINT_M = 1e-9


@njit
def _circle_depth(
    x0: float, y0: float, x1: float, y1: float, radius: float
) -> tuple[float, float, float]:
    """(depth, f_in, f_out) of segment p0 -> p1 (l > 0) and the circle of `radius` about
    the origin, in closed form; (0, inf, -inf) when it does not enter."""
    sx = x1 - x0
    sy = y1 - y0
    l2 = sx * sx + sy * sy
    h = x0 * sx + y0 * sy  # |p0 + tS|^2 = r^2  <=>  l2 t^2 + 2 h t + c = 0
    c = x0 * x0 + y0 * y0 - radius * radius
    disc = h * h - l2 * c
    if not disc > 0.0:  # misses, or only touches
        return 0.0, np.inf, -np.inf
    q = -(h + math.copysign(math.sqrt(disc), h))  # no cancellation: roots q/l2 and c/q
    ta = q / l2
    tb = c / q
    t0 = max(min(ta, tb), 0.0)
    t1 = min(max(ta, tb), 1.0)
    if not t0 < t1:
        return 0.0, np.inf, -np.inf
    d = radius - math.sqrt(point_segment_d2(0.0, 0.0, x0, y0, x1, y1))
    return (d if d > 0.0 else 0.0), t0, t1


@njit
def _insertion_sorted(a: np.ndarray, k: int) -> np.ndarray:
    """a[:k] sorted in place (few cuts per segment: cheaper than np.sort's allocation)."""
    for i in range(1, k):
        v = a[i]
        j = i - 1
        while j >= 0 and a[j] > v:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = v
    return a


@njit
def _push(stack: np.ndarray, top: int, ta: float, tb: float, ga: float, gb: float) -> int:
    """Push the stretch [ta, tb] with depths ga, gb at its ends; the new top."""
    stack[top, 0] = ta
    stack[top, 1] = tb
    stack[top, 2] = ga
    stack[top, 3] = gb
    return top + 1


@njit
def _cuts(
    x0: float,
    y0: float,
    x1: float,
    y1: float,
    z: int,
    rings: Rings,
    cuts: np.ndarray,
    along: np.ndarray,
) -> tuple[int, int]:
    """Cut segment p0 -> p1 (l > 0) wherever it meets an edge of polygon zone z: the
    fractions 0, 1 and every meeting go to cuts[:k], the stretches that run along an edge
    to along[:n_along]. Returns (k, n_along); cuts unsorted."""
    sx = x1 - x0
    sy = y1 - y0
    l2 = sx * sx + sy * sy
    xlo, xhi = min(x0, x1), max(x0, x1)
    ylo, yhi = min(y0, y1), max(y0, y1)
    cuts[0] = 0.0
    cuts[1] = 1.0
    k = 2
    n_along = 0
    for r in range(rings.zone_ring_start[z], rings.zone_ring_start[z + 1]):
        v0 = rings.ring_vert_start[r]
        v1 = rings.ring_vert_start[r + 1]
        for c in range(v0 // CHUNK, (v1 - 1) // CHUNK + 1):
            if gap2(xlo, ylo, xhi, yhi, *chunk_box(rings.chunk_bbox, c)) > 0.0:
                continue  # no edge here meets it
            i0, i1, j = chunk_edges(c, v0, v1)
            ax = rings.vx[j]
            ay = rings.vy[j]
            oa = sx * (ay - y0) - sy * (ax - x0)  # side of a relative to p0 -> p1
            for i in range(i0, i1):
                bx = rings.vx[i]
                by = rings.vy[i]
                ob = sx * (by - y0) - sy * (bx - x0)
                if not ((oa > 0.0 and ob > 0.0) or (oa < 0.0 and ob < 0.0)):
                    ex = bx - ax
                    ey = by - ay
                    o0 = ex * (y0 - ay) - ey * (x0 - ax)  # side of p0 relative to a -> b
                    o1 = ex * (y1 - ay) - ey * (x1 - ax)
                    if (oa == 0.0 and ob == 0.0) or (o0 == 0.0 and o1 == 0.0):
                        # Collinear: the overlap (if any) is boundary, cut at both ends.
                        ta = ((ax - x0) * sx + (ay - y0) * sy) / l2
                        tb = ((bx - x0) * sx + (by - y0) * sy) / l2
                        lo = max(min(ta, tb), 0.0)
                        hi = min(max(ta, tb), 1.0)
                        if lo <= hi:
                            cuts[k] = lo
                            cuts[k + 1] = hi
                            k += 2
                            along[n_along, 0] = lo
                            along[n_along, 1] = hi
                            n_along += 1
                    elif not ((o0 > 0.0 and o1 > 0.0) or (o0 < 0.0 and o1 < 0.0)):
                        t = o0 / (o0 - o1)  # o0 != o1 here: not both 0, not same sign
                        cuts[k] = min(max(t, 0.0), 1.0)
                        k += 1
                ax = bx
                ay = by
                oa = ob
    return k, n_along


@njit
def _polygon_depth(
    x0: float,
    y0: float,
    x1: float,
    y1: float,
    tol: float,
    max_evals: int,
    z: int,
    bbox: np.ndarray,
    rings: Rings,
    cuts: np.ndarray,
    along: np.ndarray,
    stack: np.ndarray,
) -> tuple[float, float, float]:
    """(depth, f_in, f_out) of segment p0 -> p1 (l > 0) and polygon zone z; (0, inf, -inf)
    when it does not enter. Scratch, reused across pairs: `cuts` (2 per edge + 2), `along`
    (one row per edge) and `stack` (2 rows per cut + max_evals + 1: two per inside piece
    to start with, then at most one more per evaluation)."""
    sx = x1 - x0
    sy = y1 - y0
    length = math.sqrt(sx * sx + sy * sy)
    # 1. Cut the segment wherever it meets an edge; remember stretches along an edge.
    k, n_along = _cuts(x0, y0, x1, y1, z, rings, cuts, along)
    ts = np.sort(cuts[:k]) if k > 24 else _insertion_sorted(cuts, k)
    # 2. Classify the pieces between cuts by their midpoints; seed the bisection with them.
    g0 = np.nan  # -sd at p0 and p1, evaluated when an inside piece ends there
    g1 = np.nan
    f_in = np.inf
    f_out = -np.inf
    best = 0.0
    top = 0
    for q in range(k - 1):
        ta = ts[q]
        tb = ts[q + 1]
        if not tb > ta:
            continue
        tm = 0.5 * (ta + tb)
        on_edge = False
        for e in range(n_along):
            if along[e, 0] <= tm <= along[e, 1]:
                on_edge = True
        if on_edge:
            continue
        px = x0 + tm * sx
        py = y0 + tm * sy
        if not polygon_inside(px, py, z, bbox, rings):
            continue
        gm = -polygon_sd(px, py, z, bbox, rings)
        if not gm > 0.0:  # on the boundary after all
            continue
        f_in = min(f_in, ta)
        f_out = tb
        best = max(best, gm)
        # Ends at interior cuts are on the boundary (g = 0); p0 and p1 need evaluating.
        ga = 0.0
        gb = 0.0
        if ta == 0.0:
            if math.isnan(g0):
                g0 = -polygon_sd(x0, y0, z, bbox, rings)
            ga = max(g0, 0.0)
        if tb == 1.0:
            if math.isnan(g1):
                g1 = -polygon_sd(x1, y1, z, bbox, rings)
            gb = max(g1, 0.0)
        best = max(best, ga, gb)
        top = _push(stack, top, ta, tm, ga, gm)
        top = _push(stack, top, tm, tb, gm, gb)
    # 3. Branch and bound on the 1-Lipschitz depth (see the module docstring).
    evals = 0
    while top > 0 and evals < max_evals:
        top -= 1
        ta = stack[top, 0]
        tb = stack[top, 1]
        ga = stack[top, 2]
        gb = stack[top, 3]
        if 0.5 * (ga + gb + (tb - ta) * length) <= best + tol:
            continue
        tm = 0.5 * (ta + tb)
        gm = -polygon_sd(x0 + tm * sx, y0 + tm * sy, z, bbox, rings)
        evals += 1
        best = max(best, gm)
        # The half with the higher ends goes on top: explored first, it raises `best` sooner.
        if ga > gb:
            top = _push(stack, top, tm, tb, gm, gb)
            top = _push(stack, top, ta, tm, ga, gm)
        else:
            top = _push(stack, top, ta, tm, ga, gm)
            top = _push(stack, top, tm, tb, gm, gb)
    if f_in > f_out:
        return 0.0, np.inf, -np.inf
    return best, f_in, f_out


@njit
def segment_depth_pairs(
    lat0: np.ndarray,
    lon0: np.ndarray,
    lat1: np.ndarray,
    lon1: np.ndarray,
    zone_idx: np.ndarray,
    step: float,
    max_evals: int,
    zones: ZoneArrays,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(depth, f_in, f_out) of segment i (p0 -> p1, straight in the zone frame) and zone
    zone_idx[i]: depth in metres (>= 0; 0 if it never enters; polygons within step/2 below
    the truth, circles exact), f_in/f_out the fractions along p0 -> p1 of the first entry
    and the last exit (NaN if it never enters). A segment shorter than POINT_M is its start
    point. NaN in, NaN out."""
    n = lat0.shape[0]
    depth = np.empty(n, dtype=np.float64)
    f_in = np.empty(n, dtype=np.float64)
    f_out = np.empty(n, dtype=np.float64)
    bbox = zones.bbox
    rings = zones.rings
    zrs = rings.zone_ring_start
    max_edges = 0
    for z in range(zones.is_circle.shape[0]):
        max_edges = max(
            max_edges, rings.ring_vert_start[zrs[z + 1]] - rings.ring_vert_start[zrs[z]]
        )
    cuts = np.empty(2 * max_edges + 2, dtype=np.float64)
    along = np.empty((max_edges, 2), dtype=np.float64)
    stack = np.empty((4 * max_edges + max_evals + 4, 4), dtype=np.float64)
    tol = 0.5 * step
    for p in range(n):
        if not all_finite(lat0[p], lon0[p], lat1[p], lon1[p]):
            depth[p] = np.nan
            f_in[p] = np.nan
            f_out[p] = np.nan
            continue
        z = zone_idx[p]
        fx0, fy0 = zone_xy(zones, z, lat0[p], lon0[p])
        fx1, fy1 = zone_xy(zones, z, lat1[p], lon1[p])
        dx = fx1 - fx0
        dy = fy1 - fy0
        if dx * dx + dy * dy < POINT_M * POINT_M:  # a point: its own signed distance
            if zone_gap2(bbox, z, fx0, fy0, fx0, fy0) > 0.0:
                d = np.inf  # outside the bbox: outside (the exact distance is not needed)
            elif zones.is_circle[z]:
                d = math.sqrt(fx0 * fx0 + fy0 * fy0) - zones.radius[z]
            else:
                d = polygon_sd(fx0, fy0, z, bbox, rings)
            depth[p] = -d if d < 0.0 else 0.0
            f_in[p] = 0.0 if d < 0.0 else np.nan
            f_out[p] = 1.0 if d < 0.0 else np.nan
            continue
        # Across the frame's seam: two pieces as in `segment_pairs`. Both are parametrised
        # by the same t along p0 -> p1, and only one of them can be near the zone.
        pieces, shift = seam_pieces(fx0, fx1, zones.m_per_deg_lon[z], lon0[p], lon1[p])
        dep = 0.0
        t_in = np.inf
        t_out = -np.inf
        for piece in range(pieces):
            x0, y0, x1, y1 = seam_piece(piece, pieces, shift, fx0, fy0, fx1, fy1)
            if zone_gap2(bbox, z, min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)) > 0.0:
                continue  # misses the zone's bbox: no entry
            if zones.is_circle[z]:
                d, a, b = _circle_depth(x0, y0, x1, y1, zones.radius[z])
            else:
                d, a, b = _polygon_depth(
                    x0, y0, x1, y1, tol, max_evals, z, bbox, rings, cuts, along, stack
                )
            dep = max(dep, d)
            t_in = min(t_in, a)
            t_out = max(t_out, b)
        entered = t_in <= t_out
        depth[p] = dep if entered else 0.0
        f_in[p] = t_in if entered else np.nan
        f_out[p] = t_out if entered else np.nan
    return depth, f_in, f_out
