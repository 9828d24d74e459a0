"""Numba geofence kernels over zone arrays: signed distance, segment distance/depth, haversine.

Projection. Every zone has its own local metric frame: an equirectangular projection about
the zone's origin (its bbox centre; a circle's centre),

    x = R * cos(lat0) * rad(wrap(lon - lon0)),   y = R * rad(lat - lat0),   R = 6371008.8 m,

with `wrap` folding longitude differences to [-180, 180). Zone vertices are stored in their
zone's metres; a fix is projected into the zone's frame here, per (fix, zone) pair. One frame
per zone keeps the distortion small anywhere in the world (scale error in x grows as
tan(lat0) * dlat: about 0.02 % per km north-south at 50°N, 0.07 % at 78°N), which one global
frame for a national deployment could not. The zone region *is* the projected polygon (edges
straight in its frame); far from the zone the distance is only a coarse, large number.
`m_per_deg_lon` = R * cos(lat0) * pi / 180 is computed once at compile time and stored, so
compile, kernels and the test oracle all run the same arithmetic in `project` bit for bit.

Everything here is a pure @njit function over numpy arrays and scalars: no Python objects, no
globals beyond numeric constants, no I/O. Public, validating wrappers live in
`zones.geofence`. Conventions: signed distance is negative inside (minus the distance to the
nearest boundary), positive outside, 0 on the boundary; holes are outside; a NaN (or
otherwise non-finite) coordinate gives NaN, never "inside".
"""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np

from zones.jit import njit

EARTH_R = 6371008.8  # mean Earth radius (IUGG), metres
M_PER_DEG_LAT = EARTH_R * math.pi / 180.0

FloatOrArray = TypeVar("FloatOrArray", float, np.ndarray)
# Edges per chunk: ring vertices are grouped by global index (chunk c = vertices
# c*CHUNK .. c*CHUNK+CHUNK-1, each the end of the edge from its ring predecessor), and each
# chunk has a bbox. A chunk may span two rings; its bbox then covers both (still a bound).
CHUNK = 16


@njit
def wrap180(d: FloatOrArray) -> FloatOrArray:
    """Fold a longitude difference (degrees; scalar or array) into [-180, 180). Exact (d
    itself) when d is already in range, and cheaper than `%` (a libm fmod call)."""
    return d - 360.0 * np.floor((d + 180.0) / 360.0)  # type: ignore[no-any-return]


@njit
def project(
    lat: FloatOrArray,
    lon: FloatOrArray,
    lat0: FloatOrArray | float,
    lon0: FloatOrArray | float,
    m_per_deg_lon: FloatOrArray | float,
) -> tuple[FloatOrArray, FloatOrArray]:
    """(x, y) metres of (lat, lon) in the frame about (lat0, lon0). Scalars or arrays: the
    one projection used by compile (arrays), the kernels (scalars) and the oracle."""
    return m_per_deg_lon * wrap180(lon - lon0), M_PER_DEG_LAT * (lat - lat0)


# -- geometry primitives (zone frame, metres) ----------------------------------------------


@njit
def _point_segment_d2(px: float, py: float, ax: float, ay: float, bx: float, by: float) -> float:
    """Squared distance from p to segment ab (cross-product form: exact enough at 0)."""
    ex = bx - ax
    ey = by - ay
    wx = px - ax
    wy = py - ay
    dot = wx * ex + wy * ey
    if dot <= 0.0:
        return wx * wx + wy * wy
    l2 = ex * ex + ey * ey
    if dot >= l2:
        ux = px - bx
        uy = py - by
        return ux * ux + uy * uy
    c = wx * ey - wy * ex
    return c * c / l2


@njit
def _min_d2(
    best: float, px: float, py: float, ax: float, ay: float, ex: float, ey: float, l2: float
) -> float:
    """min(best, |p - a|^2, squared perpendicular distance from p to edge a->a+e when its
    foot falls inside the edge). Over a closed ring this is the exact minimum squared
    distance to the ring (each edge's far end is the next edge's start). Written with
    selects, not branches: which case applies is unpredictable, and mispredicted branches
    cost more than the arithmetic. The one division happens only on an improvement."""
    wx = px - ax
    wy = py - ay
    dv = wx * wx + wy * wy
    best = dv if dv < best else best
    dot = wx * ex + wy * ey
    c = wx * ey - wy * ex
    q = c * c if dot > 0.0 else np.inf
    q = q if dot < l2 else np.inf
    if q < best * l2:
        best = q / l2
    return best


@njit
def _gap2(
    xlo: float, ylo: float, xhi: float, yhi: float, bx0: float, by0: float, bx1: float, by1: float
) -> float:
    """Squared distance between boxes [xlo,xhi]x[ylo,yhi] and [bx0,bx1]x[by0,by1] (0 if
    they overlap)."""
    gx = max(bx0 - xhi, xlo - bx1, 0.0)
    gy = max(by0 - yhi, ylo - by1, 0.0)
    return gx * gx + gy * gy


@njit
def _may_cross(px: float, py: float, by0: float, bx1: float, by1: float) -> bool:
    """Can an edge in a chunk with bbox y-range [by0, by1] and max x bx1 cross the ray
    from p towards +x? (It must straddle py, somewhere right of px.)"""
    return by0 <= py and by1 > py and px <= bx1


@njit
def _crosses(px: float, py: float, ax: float, ay: float, bx: float, by: float) -> bool:
    """Does edge ab cross the ray from p towards +x? (Half-open in y: even-odd counting.)"""
    return (ay > py) != (by > py) and px < ax + (py - ay) * (bx - ax) / (by - ay)


# -- batch kernels -------------------------------------------------------------------------
# Every per-pair loop lives inside the batch kernel itself, calling only scalar helpers:
# a numba call that passes arrays costs NRT reference counting, ~70 ns a call here, more
# than the whole geometry of a small zone.
#
# Polygon edges are visited in chunks of CHUNK: `best` is first seeded with the distance to
# each chunk's first vertex (a true upper bound, already close), then a chunk is skipped
# when its bbox is no nearer than `best` and (for the inside test) no edge of it can cross
# the ray from p. Points outside the zone bbox are known to be outside: no inside test.


@njit
def _signed_pairs(
    lat: np.ndarray,
    lon: np.ndarray,
    zone_idx: np.ndarray,
    cutoff: float,
    origin_lat: np.ndarray,
    origin_lon: np.ndarray,
    m_per_deg_lon: np.ndarray,
    is_circle: np.ndarray,
    radius: np.ndarray,
    bbox: np.ndarray,
    zone_ring_start: np.ndarray,
    ring_vert_start: np.ndarray,
    vx: np.ndarray,
    vy: np.ndarray,
    chunk_bbox: np.ndarray,
) -> np.ndarray:
    """out[i] = signed distance of fix i to zone zone_idx[i]; where the fix is more than
    `cutoff` from the zone bbox, that bbox distance instead (a lower bound > cutoff)."""
    n = lat.shape[0]
    out = np.empty(n, dtype=np.float64)
    for p in range(n):
        if not (math.isfinite(lat[p]) and math.isfinite(lon[p])):
            out[p] = np.nan
            continue
        z = zone_idx[p]
        px, py = project(lat[p], lon[p], origin_lat[z], origin_lon[z], m_per_deg_lon[z])
        gap = math.sqrt(_gap2(px, py, px, py, bbox[z, 0], bbox[z, 1], bbox[z, 2], bbox[z, 3]))
        if gap > cutoff:
            out[p] = gap
            continue
        if is_circle[z]:
            d = math.sqrt(px * px + py * py) - radius[z]
            out[p] = 0.0 if d == 0.0 else d
            continue
        out[p] = _polygon_sd_at(
            px, py, z, gap, zone_ring_start, ring_vert_start, vx, vy, chunk_bbox
        )
    return out


@njit
def _segment_pairs(
    lat0: np.ndarray,
    lon0: np.ndarray,
    lat1: np.ndarray,
    lon1: np.ndarray,
    zone_idx: np.ndarray,
    cutoff: float,
    origin_lat: np.ndarray,
    origin_lon: np.ndarray,
    m_per_deg_lon: np.ndarray,
    is_circle: np.ndarray,
    radius: np.ndarray,
    bbox: np.ndarray,
    zone_ring_start: np.ndarray,
    ring_vert_start: np.ndarray,
    vx: np.ndarray,
    vy: np.ndarray,
    chunk_bbox: np.ndarray,
) -> np.ndarray:
    """out[i] = distance from segment i (p0 -> p1, straight in the zone frame) to zone
    zone_idx[i]: 0 if they meet; the segment-bbox to zone-bbox distance beyond `cutoff`."""
    n = lat0.shape[0]
    out = np.empty(n, dtype=np.float64)
    for p in range(n):
        if not (
            math.isfinite(lat0[p])
            and math.isfinite(lon0[p])
            and math.isfinite(lat1[p])
            and math.isfinite(lon1[p])
        ):
            out[p] = np.nan
            continue
        z = zone_idx[p]
        k = m_per_deg_lon[z]
        fx0, fy0 = project(lat0[p], lon0[p], origin_lat[z], origin_lon[z], k)
        fx1, fy1 = project(lat1[p], lon1[p], origin_lat[z], origin_lon[z], k)
        # If the short way from p0 to p1 crosses the frame's seam (the meridian opposite
        # the zone), measure two pieces, each continued straight past the seam on its side.
        pieces = 1
        shift = 0.0
        if abs(fx1 - fx0) > k * 180.0:
            pieces = 2
            shift = k * wrap180(lon1[p] - lon0[p])
        res = np.inf
        for piece in range(pieces):
            x0, y0, x1, y1 = fx0, fy0, fx1, fy1
            if pieces == 2 and piece == 0:
                x1 = fx0 + shift
            elif pieces == 2:
                x0 = fx1 - shift
            xlo, xhi = min(x0, x1), max(x0, x1)
            ylo, yhi = min(y0, y1), max(y0, y1)
            gap = math.sqrt(
                _gap2(xlo, ylo, xhi, yhi, bbox[z, 0], bbox[z, 1], bbox[z, 2], bbox[z, 3])
            )
            if gap > cutoff:
                res = min(res, gap)
                continue
            if is_circle[z]:
                d = math.sqrt(_point_segment_d2(0.0, 0.0, x0, y0, x1, y1)) - radius[z]
                res = min(res, d if d > 0.0 else 0.0)
                continue
            r0 = zone_ring_start[z]
            r1 = zone_ring_start[z + 1]
            sx = x1 - x0
            sy = y1 - y0
            sl2 = sx * sx + sy * sy
            best = np.inf
            for r in range(r0, r1):
                v0 = ring_vert_start[r]
                v1 = ring_vert_start[r + 1]
                for c in range(v0 // CHUNK, (v1 - 1) // CHUNK + 1):
                    j = max(v0, c * CHUNK)
                    best = _min_d2(best, x0, y0, vx[j], vy[j], 0.0, 0.0, 0.0)
                    best = _min_d2(best, x1, y1, vx[j], vy[j], 0.0, 0.0, 0.0)
            in0 = False
            in1 = False
            for r in range(r0, r1):
                if best == 0.0:
                    break
                v0 = ring_vert_start[r]
                v1 = ring_vert_start[r + 1]
                for c in range(v0 // CHUNK, (v1 - 1) // CHUNK + 1):
                    if best == 0.0:
                        break
                    cx0 = chunk_bbox[c, 0]
                    cy0 = chunk_bbox[c, 1]
                    cx1 = chunk_bbox[c, 2]
                    cy1 = chunk_bbox[c, 3]
                    near = _gap2(xlo, ylo, xhi, yhi, cx0, cy0, cx1, cy1) < best
                    cross0 = _may_cross(x0, y0, cy0, cx1, cy1)
                    cross1 = _may_cross(x1, y1, cy0, cx1, cy1)
                    if not (near or cross0 or cross1):
                        continue
                    i0 = max(v0, c * CHUNK)
                    j = i0 - 1 if i0 > v0 else v1 - 1
                    ax = vx[j]
                    ay = vy[j]
                    oa = sx * (ay - y0) - sy * (ax - x0)  # side of a relative to p0 -> p1
                    for i in range(i0, min(v1, c * CHUNK + CHUNK)):
                        bx = vx[i]
                        by = vy[i]
                        if cross0 and _crosses(x0, y0, ax, ay, bx, by):
                            in0 = not in0
                        if cross1 and _crosses(x1, y1, ax, ay, bx, by):
                            in1 = not in1
                        ob = sx * (by - y0) - sy * (bx - x0)
                        if near:
                            ex = bx - ax
                            ey = by - ay
                            if (oa > 0.0 and ob < 0.0) or (oa < 0.0 and ob > 0.0):
                                o0 = ex * (y0 - ay) - ey * (x0 - ax)
                                o1 = ex * (y1 - ay) - ey * (x1 - ax)
                                if (o0 > 0.0 and o1 < 0.0) or (o0 < 0.0 and o1 > 0.0):
                                    best = 0.0  # proper crossing: a drive-through
                                    break
                            # Otherwise (touching, collinear or apart) the distance is at
                            # an end: p0 or p1 to the edge, or a vertex to the segment.
                            l2 = ex * ex + ey * ey
                            best = _min_d2(best, x0, y0, ax, ay, ex, ey, l2)
                            best = _min_d2(best, x1, y1, ax, ay, ex, ey, l2)
                            best = _min_d2(best, ax, ay, x0, y0, sx, sy, sl2)
                        ax = bx
                        ay = by
                        oa = ob
            # An end inside makes the distance 0 (the crossing loops ran over every chunk
            # that can toggle in0/in1, unless best reached 0 first, which settles it too).
            res = min(res, 0.0 if (in0 or in1) else math.sqrt(best))
        out[p] = res
    return out


@njit
def _expand_subjects(
    subject_slot: np.ndarray, subject_zone_start: np.ndarray, subject_zone_idx: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR of (fix, zone) pairs: fix i owns rows offsets[i]..offsets[i+1], one per zone of
    its subject; row_fix[row] is the fix, row_zone[row] the zone."""
    n = subject_slot.shape[0]
    offsets = np.empty(n + 1, dtype=np.int64)
    offsets[0] = 0
    for i in range(n):
        s = subject_slot[i]
        offsets[i + 1] = offsets[i] + subject_zone_start[s + 1] - subject_zone_start[s]
    m = offsets[n]
    row_fix = np.empty(m, dtype=np.int64)
    row_zone = np.empty(m, dtype=np.int32)
    for i in range(n):
        s = subject_slot[i]
        o = offsets[i]
        for q in range(subject_zone_start[s], subject_zone_start[s + 1]):
            row_fix[o] = i
            row_zone[o] = subject_zone_idx[q]
            o += 1
    return offsets, row_fix, row_zone


@njit
def _signed_by_subject(
    lat: np.ndarray,
    lon: np.ndarray,
    subject_slot: np.ndarray,
    cutoff: float,
    subject_zone_start: np.ndarray,
    subject_zone_idx: np.ndarray,
    origin_lat: np.ndarray,
    origin_lon: np.ndarray,
    m_per_deg_lon: np.ndarray,
    is_circle: np.ndarray,
    radius: np.ndarray,
    bbox: np.ndarray,
    zone_ring_start: np.ndarray,
    ring_vert_start: np.ndarray,
    vx: np.ndarray,
    vy: np.ndarray,
    chunk_bbox: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Signed distance of every fix to every zone of its subject: (offsets, zone_idx, dist)
    CSR rows, computed as the pairs form over the expanded rows (so equal to it)."""
    offsets, row_fix, row_zone = _expand_subjects(
        subject_slot, subject_zone_start, subject_zone_idx
    )
    dist = _signed_pairs(
        lat[row_fix], lon[row_fix], row_zone, cutoff, origin_lat, origin_lon, m_per_deg_lon,
        is_circle, radius, bbox, zone_ring_start, ring_vert_start, vx, vy, chunk_bbox,
    )  # fmt: skip
    return offsets, row_zone, dist


@njit
def _segment_by_subject(
    lat0: np.ndarray,
    lon0: np.ndarray,
    lat1: np.ndarray,
    lon1: np.ndarray,
    subject_slot: np.ndarray,
    cutoff: float,
    subject_zone_start: np.ndarray,
    subject_zone_idx: np.ndarray,
    origin_lat: np.ndarray,
    origin_lon: np.ndarray,
    m_per_deg_lon: np.ndarray,
    is_circle: np.ndarray,
    radius: np.ndarray,
    bbox: np.ndarray,
    zone_ring_start: np.ndarray,
    ring_vert_start: np.ndarray,
    vx: np.ndarray,
    vy: np.ndarray,
    chunk_bbox: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distance of every segment to every zone of its subject, CSR as `_signed_by_subject`."""
    offsets, row_fix, row_zone = _expand_subjects(
        subject_slot, subject_zone_start, subject_zone_idx
    )
    dist = _segment_pairs(
        lat0[row_fix], lon0[row_fix], lat1[row_fix], lon1[row_fix], row_zone, cutoff,
        origin_lat, origin_lon, m_per_deg_lon, is_circle, radius, bbox, zone_ring_start,
        ring_vert_start, vx, vy, chunk_bbox,
    )  # fmt: skip
    return offsets, row_zone, dist


# -- segment depth: how deep a straight segment runs inside a zone, and where -----------------
# For a segment P(t) = P0 + t * S, t in [0, 1], and a zone: the closure of the t where P(t)
# is in the zone's interior is a union of intervals. f_in is where the first begins, f_out
# where the last ends, depth the max of -signed_distance over them. Touching the boundary
# (a vertex, or running along an edge) is not entering: depth stays 0 there.
#
# Polygons. The segment is cut at every point where it meets a ring edge (the edge's bbox
# test first, chunk by chunk), so between consecutive cuts it is wholly inside, outside or
# on an edge. Each piece is classified by the signed distance at its midpoint (even-odd, as
# everywhere here); a piece lying along an edge (exactly collinear) is boundary. The depth
# over the inside pieces is a maximum of g(t) = -sd(P(t)), which is 1-Lipschitz in metres
# along the segment: knowing g at both ends of a stretch of length l bounds g on it by
# (g_a + g_b + l) / 2. Branch and bound on that: bisect a stretch only while its bound
# exceeds the best value found by more than step/2. This proves the same bound as sampling
# every step metres (the result is within step/2 of the true depth, never above it) but
# usually needs a few dozen evaluations instead of length/step: only near the maximum, or
# on a plateau (a segment parallel to an edge), is it as dense as a uniform grid.

DEPTH_MAX_EVALS = 2048  # signed-distance evaluations per pair in the bisection, at most
# A segment shorter than this is its start point: below the rounding of projected
# coordinates, and its squared length could underflow.
POINT_M = 1e-9


@njit
def _polygon_sd(
    px: float,
    py: float,
    z: int,
    bbox: np.ndarray,
    zone_ring_start: np.ndarray,
    ring_vert_start: np.ndarray,
    vx: np.ndarray,
    vy: np.ndarray,
    chunk_bbox: np.ndarray,
) -> float:
    """Signed distance of p (zone frame) to polygon zone z: the polygon branch of
    `_signed_pairs` (cutoff inf) for one point, the same operations in the same order, so
    bit for bit the value `signed_distance` returns."""
    gap = math.sqrt(_gap2(px, py, px, py, bbox[z, 0], bbox[z, 1], bbox[z, 2], bbox[z, 3]))
    return _polygon_sd_at(px, py, z, gap, zone_ring_start, ring_vert_start, vx, vy, chunk_bbox)


@njit
def _polygon_sd_at(
    px: float,
    py: float,
    z: int,
    gap: float,
    zone_ring_start: np.ndarray,
    ring_vert_start: np.ndarray,
    vx: np.ndarray,
    vy: np.ndarray,
    chunk_bbox: np.ndarray,
) -> float:
    """`_polygon_sd` given p's distance to the zone bbox (0 inside it): the one polygon
    branch `_signed_pairs` and `_polygon_sd` share."""
    r0 = zone_ring_start[z]
    r1 = zone_ring_start[z + 1]
    test_inside = gap == 0.0
    best = np.inf
    for r in range(r0, r1):
        v0 = ring_vert_start[r]
        v1 = ring_vert_start[r + 1]
        for c in range(v0 // CHUNK, (v1 - 1) // CHUNK + 1):
            j = max(v0, c * CHUNK)
            best = _min_d2(best, px, py, vx[j], vy[j], 0.0, 0.0, 0.0)
    inside = False
    for r in range(r0, r1):
        v0 = ring_vert_start[r]
        v1 = ring_vert_start[r + 1]
        for c in range(v0 // CHUNK, (v1 - 1) // CHUNK + 1):
            cx0 = chunk_bbox[c, 0]
            cy0 = chunk_bbox[c, 1]
            cx1 = chunk_bbox[c, 2]
            cy1 = chunk_bbox[c, 3]
            near = _gap2(px, py, px, py, cx0, cy0, cx1, cy1) < best
            cross = test_inside and _may_cross(px, py, cy0, cx1, cy1)
            if not (near or cross):
                continue
            i0 = max(v0, c * CHUNK)
            j = i0 - 1 if i0 > v0 else v1 - 1
            ax = vx[j]
            ay = vy[j]
            for i in range(i0, min(v1, c * CHUNK + CHUNK)):
                bx = vx[i]
                by = vy[i]
                if cross and _crosses(px, py, ax, ay, bx, by):
                    inside = not inside
                if near:
                    ex = bx - ax
                    ey = by - ay
                    best = _min_d2(best, px, py, ax, ay, ex, ey, ex * ex + ey * ey)
                ax = bx
                ay = by
    d = math.sqrt(best)
    return 0.0 if d == 0.0 else (-d if inside else d)


@njit
def _polygon_inside(
    px: float,
    py: float,
    z: int,
    bbox: np.ndarray,
    zone_ring_start: np.ndarray,
    ring_vert_start: np.ndarray,
    vx: np.ndarray,
    vy: np.ndarray,
    chunk_bbox: np.ndarray,
) -> bool:
    """Is p inside polygon zone z? The even-odd count of `_polygon_sd` alone (same chunks,
    same edges, so the same answer), without the distance: cheap for points outside."""
    if _gap2(px, py, px, py, bbox[z, 0], bbox[z, 1], bbox[z, 2], bbox[z, 3]) > 0.0:
        return False
    inside = False
    for r in range(zone_ring_start[z], zone_ring_start[z + 1]):
        v0 = ring_vert_start[r]
        v1 = ring_vert_start[r + 1]
        for c in range(v0 // CHUNK, (v1 - 1) // CHUNK + 1):
            if not _may_cross(px, py, chunk_bbox[c, 1], chunk_bbox[c, 2], chunk_bbox[c, 3]):
                continue
            i0 = max(v0, c * CHUNK)
            j = i0 - 1 if i0 > v0 else v1 - 1
            ax = vx[j]
            ay = vy[j]
            for i in range(i0, min(v1, c * CHUNK + CHUNK)):
                bx = vx[i]
                by = vy[i]
                if _crosses(px, py, ax, ay, bx, by):
                    inside = not inside
                ax = bx
                ay = by
    return inside


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
    d = radius - math.sqrt(_point_segment_d2(0.0, 0.0, x0, y0, x1, y1))
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
def _polygon_depth(
    x0: float,
    y0: float,
    x1: float,
    y1: float,
    tol: float,
    max_evals: int,
    z: int,
    bbox: np.ndarray,
    zone_ring_start: np.ndarray,
    ring_vert_start: np.ndarray,
    vx: np.ndarray,
    vy: np.ndarray,
    chunk_bbox: np.ndarray,
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
    l2 = sx * sx + sy * sy
    length = math.sqrt(l2)
    xlo, xhi = min(x0, x1), max(x0, x1)
    ylo, yhi = min(y0, y1), max(y0, y1)
    r0 = zone_ring_start[z]
    r1 = zone_ring_start[z + 1]
    geo = (z, bbox, zone_ring_start, ring_vert_start, vx, vy, chunk_bbox)
    # 1. Cut the segment wherever it meets an edge; remember stretches along an edge.
    cuts[0] = 0.0
    cuts[1] = 1.0
    k = 2
    n_along = 0
    for r in range(r0, r1):
        v0 = ring_vert_start[r]
        v1 = ring_vert_start[r + 1]
        for c in range(v0 // CHUNK, (v1 - 1) // CHUNK + 1):
            cx0 = chunk_bbox[c, 0]
            cy0 = chunk_bbox[c, 1]
            cx1 = chunk_bbox[c, 2]
            cy1 = chunk_bbox[c, 3]
            if _gap2(xlo, ylo, xhi, yhi, cx0, cy0, cx1, cy1) > 0.0:  # no edge here meets it
                continue
            i0 = max(v0, c * CHUNK)
            j = i0 - 1 if i0 > v0 else v1 - 1
            ax = vx[j]
            ay = vy[j]
            oa = sx * (ay - y0) - sy * (ax - x0)  # side of a relative to p0 -> p1
            for i in range(i0, min(v1, c * CHUNK + CHUNK)):
                bx = vx[i]
                by = vy[i]
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
        if not _polygon_inside(px, py, *geo):
            continue
        gm = -_polygon_sd(px, py, *geo)
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
                g0 = -_polygon_sd(x0, y0, *geo)
            ga = max(g0, 0.0)
        if tb == 1.0:
            if math.isnan(g1):
                g1 = -_polygon_sd(x1, y1, *geo)
            gb = max(g1, 0.0)
        best = max(best, ga, gb)
        top = _push(stack, top, ta, tm, ga, gm)
        top = _push(stack, top, tm, tb, gm, gb)
    # 3. Branch and bound on the 1-Lipschitz depth (see the section comment).
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
        gm = -_polygon_sd(x0 + tm * sx, y0 + tm * sy, *geo)
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
def _segment_depth_pairs(
    lat0: np.ndarray,
    lon0: np.ndarray,
    lat1: np.ndarray,
    lon1: np.ndarray,
    zone_idx: np.ndarray,
    step: float,
    max_evals: int,
    origin_lat: np.ndarray,
    origin_lon: np.ndarray,
    m_per_deg_lon: np.ndarray,
    is_circle: np.ndarray,
    radius: np.ndarray,
    bbox: np.ndarray,
    zone_ring_start: np.ndarray,
    ring_vert_start: np.ndarray,
    vx: np.ndarray,
    vy: np.ndarray,
    chunk_bbox: np.ndarray,
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
    max_edges = 0
    for z in range(is_circle.shape[0]):
        e = ring_vert_start[zone_ring_start[z + 1]] - ring_vert_start[zone_ring_start[z]]
        max_edges = max(max_edges, e)
    cuts = np.empty(2 * max_edges + 2, dtype=np.float64)
    along = np.empty((max_edges, 2), dtype=np.float64)
    stack = np.empty((4 * max_edges + max_evals + 4, 4), dtype=np.float64)
    tol = 0.5 * step
    for p in range(n):
        if not (
            math.isfinite(lat0[p])
            and math.isfinite(lon0[p])
            and math.isfinite(lat1[p])
            and math.isfinite(lon1[p])
        ):
            depth[p] = np.nan
            f_in[p] = np.nan
            f_out[p] = np.nan
            continue
        z = zone_idx[p]
        geo = (z, bbox, zone_ring_start, ring_vert_start, vx, vy, chunk_bbox)
        k = m_per_deg_lon[z]
        fx0, fy0 = project(lat0[p], lon0[p], origin_lat[z], origin_lon[z], k)
        fx1, fy1 = project(lat1[p], lon1[p], origin_lat[z], origin_lon[z], k)
        dx = fx1 - fx0
        dy = fy1 - fy0
        if dx * dx + dy * dy < POINT_M * POINT_M:  # a point: its own signed distance
            if _gap2(fx0, fy0, fx0, fy0, bbox[z, 0], bbox[z, 1], bbox[z, 2], bbox[z, 3]) > 0.0:
                d = np.inf  # outside the bbox: outside (the exact distance is not needed)
            elif is_circle[z]:
                d = math.sqrt(fx0 * fx0 + fy0 * fy0) - radius[z]
            else:
                d = _polygon_sd(fx0, fy0, *geo)
            depth[p] = -d if d < 0.0 else 0.0
            f_in[p] = 0.0 if d < 0.0 else np.nan
            f_out[p] = 1.0 if d < 0.0 else np.nan
            continue
        # Across the frame's seam: two pieces as in `_segment_pairs`. Both are parametrised
        # by the same t along p0 -> p1, and only one of them can be near the zone.
        pieces = 1
        shift = 0.0
        if abs(fx1 - fx0) > k * 180.0:
            pieces = 2
            shift = k * wrap180(lon1[p] - lon0[p])
        dep = 0.0
        t_in = np.inf
        t_out = -np.inf
        for piece in range(pieces):
            x0, y0, x1, y1 = fx0, fy0, fx1, fy1
            if pieces == 2 and piece == 0:
                x1 = fx0 + shift
            elif pieces == 2:
                x0 = fx1 - shift
            xlo, xhi = min(x0, x1), max(x0, x1)
            ylo, yhi = min(y0, y1), max(y0, y1)
            if _gap2(xlo, ylo, xhi, yhi, bbox[z, 0], bbox[z, 1], bbox[z, 2], bbox[z, 3]) > 0.0:
                continue  # misses the zone's bbox: no entry
            if is_circle[z]:
                d, a, b = _circle_depth(x0, y0, x1, y1, radius[z])
            else:
                d, a, b = _polygon_depth(x0, y0, x1, y1, tol, max_evals, *geo, cuts, along, stack)
            dep = max(dep, d)
            t_in = min(t_in, a)
            t_out = max(t_out, b)
        entered = t_in <= t_out
        depth[p] = dep if entered else 0.0
        f_in[p] = t_in if entered else np.nan
        f_out[p] = t_out if entered else np.nan
    return depth, f_in, f_out


@njit
def _haversine(
    lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray
) -> np.ndarray:
    """Great-circle distance in metres between (lat1[i], lon1[i]) and (lat2[i], lon2[i])."""
    n = lat1.shape[0]
    out = np.empty(n, dtype=np.float64)
    k = math.pi / 180.0
    for i in range(n):
        p1 = lat1[i] * k
        p2 = lat2[i] * k
        sp = math.sin((p2 - p1) * 0.5)
        sl = math.sin((lon2[i] - lon1[i]) * k * 0.5)
        a = sp * sp + math.cos(p1) * math.cos(p2) * sl * sl
        s = math.sqrt(a)
        if s > 1.0:  # rounding; written so that NaN stays NaN
            s = 1.0
        out[i] = 2.0 * EARTH_R * math.asin(s)
    return out
