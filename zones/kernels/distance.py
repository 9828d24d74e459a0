"""Point- and segment-to-zone distances: signed distance, segment distance, the ring walk.

Conventions: signed distance is negative inside (minus the distance to the nearest
boundary), positive outside, 0 on the boundary; holes are outside; a NaN (or otherwise
non-finite) coordinate gives NaN, never "inside". Circles are closed forms about the
frame's origin; polygons are walked ring by ring, chunk by chunk (the layout is in
`zones.kernels.arrays`).

Everything here is a pure @njit function over numpy arrays and scalars: no Python objects,
no globals beyond numeric constants, no I/O. Public, validating wrappers live in
`zones.geofence`. Its own module because these are the geometry the depth search
(`zones.kernels.depth`) is built on: depth imports from here, never the other way.

Batch kernels take the whole `ZoneArrays` and hold every per-pair loop themselves; the
helpers they call once per (fix, zone) pair are passed only what they read (`Rings`, the
bbox array). Numba counts a reference to every array a compiled helper binds, an atomic
add and subtract each on every call, also when the helper is inlined: handing the
polygon helper the whole bundle made signed distance ~13 % slower. Inside a helper, read
`rings.vx[i]` in place rather than binding `vx = rings.vx` for the same reason, and
seed and walk a ring inline rather than through a helper that takes arrays.

Polygon edges are visited in chunks of CHUNK: `best` is first seeded with the distance to
each chunk's first vertex (a true upper bound, already close), then a chunk is skipped when
its bbox is no nearer than `best` and (for the inside test) no edge of it can cross the ray
from p. Points outside the zone bbox are known to be outside: no inside test.
"""

from __future__ import annotations

import math

import numpy as np

from zones.jit import njit, njit_inline
from zones.kernels.arrays import CHUNK, Rings, ZoneArrays
from zones.kernels.frame import project, seam_piece, seam_pieces

# -- geometry primitives (zone frame, metres) ----------------------------------------------


@njit
def all_finite(a: float, b: float, c: float, d: float) -> bool:
    """Are all four coordinates (a segment's ends) finite?"""
    return math.isfinite(a) and math.isfinite(b) and math.isfinite(c) and math.isfinite(d)


@njit_inline
def zone_xy(zones: ZoneArrays, z: int, lat: float, lon: float) -> tuple[float, float]:
    """(x, y) metres of (lat, lon) in zone z's frame. Inlined, and without a loop, so the
    references it takes to the bundle cancel out where it is used."""
    return project(lat, lon, zones.origin_lat[z], zones.origin_lon[z], zones.m_per_deg_lon[z])


@njit
def point_segment_d2(px: float, py: float, ax: float, ay: float, bx: float, by: float) -> float:
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
def gap2(
    xlo: float, ylo: float, xhi: float, yhi: float, bx0: float, by0: float, bx1: float, by1: float
) -> float:
    """Squared distance between boxes [xlo,xhi]x[ylo,yhi] and [bx0,bx1]x[by0,by1] (0 if
    they overlap)."""
    gx = max(bx0 - xhi, xlo - bx1, 0.0)
    gy = max(by0 - yhi, ylo - by1, 0.0)
    return gx * gx + gy * gy


@njit
def zone_gap2(bbox: np.ndarray, z: int, xlo: float, ylo: float, xhi: float, yhi: float) -> float:
    """`gap2` between the box [xlo,xhi]x[ylo,yhi] and zone z's bbox."""
    return gap2(xlo, ylo, xhi, yhi, bbox[z, 0], bbox[z, 1], bbox[z, 2], bbox[z, 3])


@njit
def _may_cross(px: float, py: float, by0: float, bx1: float, by1: float) -> bool:
    """Can an edge in a chunk with bbox y-range [by0, by1] and max x bx1 cross the ray
    from p towards +x? (It must straddle py, somewhere right of px.)"""
    return by0 <= py and by1 > py and px <= bx1


@njit
def _crosses(px: float, py: float, ax: float, ay: float, bx: float, by: float) -> bool:
    """Does edge ab cross the ray from p towards +x? (Half-open in y: even-odd counting.)"""
    return (ay > py) != (by > py) and px < ax + (py - ay) * (bx - ax) / (by - ay)


@njit
def chunk_box(chunk_bbox: np.ndarray, c: int) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1): the bbox of chunk c."""
    return chunk_bbox[c, 0], chunk_bbox[c, 1], chunk_bbox[c, 2], chunk_bbox[c, 3]


@njit
def chunk_edges(c: int, v0: int, v1: int) -> tuple[int, int, int]:
    """(i0, i1, j) of chunk c within the ring of vertices v0 .. v1 - 1: the chunk's edges
    end at vertices i0 .. i1 - 1, and the first starts at j (i0's ring predecessor)."""
    i0 = max(v0, c * CHUNK)
    return i0, min(v1, c * CHUNK + CHUNK), (i0 - 1 if i0 > v0 else v1 - 1)


# -- polygons: the ring walk ------------------------------------------------------------------


@njit
def _polygon_sd_at(px: float, py: float, z: int, gap: float, rings: Rings) -> float:
    """`polygon_sd` given p's distance to the zone bbox (0 inside it): the one polygon
    branch `signed_pairs` and `polygon_sd` share."""
    r0 = rings.zone_ring_start[z]
    r1 = rings.zone_ring_start[z + 1]
    test_inside = gap == 0.0
    best = np.inf
    for r in range(r0, r1):
        v0 = rings.ring_vert_start[r]
        v1 = rings.ring_vert_start[r + 1]
        for c in range(v0 // CHUNK, (v1 - 1) // CHUNK + 1):
            j = max(v0, c * CHUNK)
            best = _min_d2(best, px, py, rings.vx[j], rings.vy[j], 0.0, 0.0, 0.0)
    inside = False
    for r in range(r0, r1):
        v0 = rings.ring_vert_start[r]
        v1 = rings.ring_vert_start[r + 1]
        for c in range(v0 // CHUNK, (v1 - 1) // CHUNK + 1):
            cx0, cy0, cx1, cy1 = chunk_box(rings.chunk_bbox, c)
            near = gap2(px, py, px, py, cx0, cy0, cx1, cy1) < best
            cross = test_inside and _may_cross(px, py, cy0, cx1, cy1)
            if not (near or cross):
                continue
            i0, i1, j = chunk_edges(c, v0, v1)
            ax = rings.vx[j]
            ay = rings.vy[j]
            for i in range(i0, i1):
                bx = rings.vx[i]
                by = rings.vy[i]
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
def polygon_sd(px: float, py: float, z: int, bbox: np.ndarray, rings: Rings) -> float:
    """Signed distance of p (zone frame) to polygon zone z: the polygon branch of
    `signed_pairs` (cutoff inf) for one point, the same operations in the same order, so
    bit for bit the value `signed_distance` returns."""
    gap = math.sqrt(zone_gap2(bbox, z, px, py, px, py))
    return _polygon_sd_at(px, py, z, gap, rings)


@njit
def polygon_inside(px: float, py: float, z: int, bbox: np.ndarray, rings: Rings) -> bool:
    """Is p inside polygon zone z? The even-odd count of `polygon_sd` alone (same chunks,
    same edges, so the same answer), without the distance: cheap for points outside."""
    if zone_gap2(bbox, z, px, py, px, py) > 0.0:
        return False
    inside = False
    for r in range(rings.zone_ring_start[z], rings.zone_ring_start[z + 1]):
        v0 = rings.ring_vert_start[r]
        v1 = rings.ring_vert_start[r + 1]
        for c in range(v0 // CHUNK, (v1 - 1) // CHUNK + 1):
            _, cy0, cx1, cy1 = chunk_box(rings.chunk_bbox, c)
            if not _may_cross(px, py, cy0, cx1, cy1):
                continue
            i0, i1, j = chunk_edges(c, v0, v1)
            ax = rings.vx[j]
            ay = rings.vy[j]
            for i in range(i0, i1):
                bx = rings.vx[i]
                by = rings.vy[i]
                if _crosses(px, py, ax, ay, bx, by):
                    inside = not inside
                ax = bx
                ay = by
    return inside


@njit_inline
def _segment_polygon_d(x0: float, y0: float, x1: float, y1: float, z: int, rings: Rings) -> float:
    """Distance from segment p0 -> p1 (zone frame) to polygon zone z: 0 if they meet.
    Inlined into `segment_pairs` (a call per pair measured ~5 % slower)."""
    r0 = rings.zone_ring_start[z]
    r1 = rings.zone_ring_start[z + 1]
    xlo, xhi = min(x0, x1), max(x0, x1)
    ylo, yhi = min(y0, y1), max(y0, y1)
    sx = x1 - x0
    sy = y1 - y0
    sl2 = sx * sx + sy * sy
    best = np.inf
    for r in range(r0, r1):
        v0 = rings.ring_vert_start[r]
        v1 = rings.ring_vert_start[r + 1]
        for c in range(v0 // CHUNK, (v1 - 1) // CHUNK + 1):
            j = max(v0, c * CHUNK)
            best = _min_d2(best, x0, y0, rings.vx[j], rings.vy[j], 0.0, 0.0, 0.0)
            best = _min_d2(best, x1, y1, rings.vx[j], rings.vy[j], 0.0, 0.0, 0.0)
    in0 = False
    in1 = False
    for r in range(r0, r1):
        if best == 0.0:
            break
        v0 = rings.ring_vert_start[r]
        v1 = rings.ring_vert_start[r + 1]
        for c in range(v0 // CHUNK, (v1 - 1) // CHUNK + 1):
            if best == 0.0:
                break
            cx0, cy0, cx1, cy1 = chunk_box(rings.chunk_bbox, c)
            near = gap2(xlo, ylo, xhi, yhi, cx0, cy0, cx1, cy1) < best
            cross0 = _may_cross(x0, y0, cy0, cx1, cy1)
            cross1 = _may_cross(x1, y1, cy0, cx1, cy1)
            if not (near or cross0 or cross1):
                continue
            i0, i1, j = chunk_edges(c, v0, v1)
            ax = rings.vx[j]
            ay = rings.vy[j]
            oa = sx * (ay - y0) - sy * (ax - x0)  # side of a relative to p0 -> p1
            for i in range(i0, i1):
                bx = rings.vx[i]
                by = rings.vy[i]
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
                    # Otherwise (touching, collinear or apart) the distance is at an end:
                    # p0 or p1 to the edge, or a vertex to the segment.
                    l2 = ex * ex + ey * ey
                    best = _min_d2(best, x0, y0, ax, ay, ex, ey, l2)
                    best = _min_d2(best, x1, y1, ax, ay, ex, ey, l2)
                    best = _min_d2(best, ax, ay, x0, y0, sx, sy, sl2)
                ax = bx
                ay = by
                oa = ob
    # An end inside makes the distance 0 (the crossing loops ran over every chunk that can
    # toggle in0/in1, unless best reached 0 first, which settles it too).
    return 0.0 if (in0 or in1) else math.sqrt(best)


# -- batch kernels -----------------------------------------------------------------------


@njit
def signed_pairs(
    lat: np.ndarray, lon: np.ndarray, zone_idx: np.ndarray, cutoff: float, zones: ZoneArrays
) -> np.ndarray:
    """out[i] = signed distance of fix i to zone zone_idx[i]; where the fix is more than
    `cutoff` from the zone bbox, that bbox distance instead (a lower bound > cutoff)."""
    bbox = zones.bbox
    rings = zones.rings
    n = lat.shape[0]
    out = np.empty(n, dtype=np.float64)
    for p in range(n):
        if not (math.isfinite(lat[p]) and math.isfinite(lon[p])):
            out[p] = np.nan
            continue
        z = zone_idx[p]
        px, py = zone_xy(zones, z, lat[p], lon[p])
        gap = math.sqrt(zone_gap2(bbox, z, px, py, px, py))
        if gap > cutoff:
            out[p] = gap
            continue
        if zones.is_circle[z]:
            d = math.sqrt(px * px + py * py) - zones.radius[z]
            out[p] = 0.0 if d == 0.0 else d
            continue
        out[p] = _polygon_sd_at(px, py, z, gap, rings)
    return out


@njit
def segment_pairs(
    lat0: np.ndarray,
    lon0: np.ndarray,
    lat1: np.ndarray,
    lon1: np.ndarray,
    zone_idx: np.ndarray,
    cutoff: float,
    zones: ZoneArrays,
) -> np.ndarray:
    """out[i] = distance from segment i (p0 -> p1, straight in the zone frame) to zone
    zone_idx[i]: 0 if they meet; the segment-bbox to zone-bbox distance beyond `cutoff`."""
    bbox = zones.bbox
    rings = zones.rings
    n = lat0.shape[0]
    out = np.empty(n, dtype=np.float64)
    for p in range(n):
        if not all_finite(lat0[p], lon0[p], lat1[p], lon1[p]):
            out[p] = np.nan
            continue
        z = zone_idx[p]
        fx0, fy0 = zone_xy(zones, z, lat0[p], lon0[p])
        fx1, fy1 = zone_xy(zones, z, lat1[p], lon1[p])
        # If the short way from p0 to p1 crosses the frame's seam (the meridian opposite
        # the zone), measure two pieces, each continued straight past the seam on its side.
        pieces, shift = seam_pieces(fx0, fx1, zones.m_per_deg_lon[z], lon0[p], lon1[p])
        res = np.inf
        for piece in range(pieces):
            x0, y0, x1, y1 = seam_piece(piece, pieces, shift, fx0, fy0, fx1, fy1)
            gap = math.sqrt(zone_gap2(bbox, z, min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))
            if gap > cutoff:
                res = min(res, gap)
            elif zones.is_circle[z]:
                d = math.sqrt(point_segment_d2(0.0, 0.0, x0, y0, x1, y1)) - zones.radius[z]
                res = min(res, d if d > 0.0 else 0.0)
            else:
                res = min(res, _segment_polygon_d(x0, y0, x1, y1, z, rings))
        out[p] = res
    return out


@njit
def _expand_subjects(
    subject_slot: np.ndarray, start: np.ndarray, zone_of: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR of (fix, zone) pairs: fix i owns rows offsets[i]..offsets[i+1], one per zone of
    its subject; row_fix[row] is the fix, row_zone[row] the zone. (start, zone_of: the
    subject CSR, `ZoneArrays.subject_zone_start` and `.subject_zone_idx`.)"""
    n = subject_slot.shape[0]
    offsets = np.empty(n + 1, dtype=np.int64)
    offsets[0] = 0
    for i in range(n):
        s = subject_slot[i]
        offsets[i + 1] = offsets[i] + start[s + 1] - start[s]
    m = offsets[n]
    row_fix = np.empty(m, dtype=np.int64)
    row_zone = np.empty(m, dtype=np.int32)
    for i in range(n):
        s = subject_slot[i]
        o = offsets[i]
        for q in range(start[s], start[s + 1]):
            row_fix[o] = i
            row_zone[o] = zone_of[q]
            o += 1
    return offsets, row_fix, row_zone


@njit
def signed_by_subject(
    lat: np.ndarray, lon: np.ndarray, subject_slot: np.ndarray, cutoff: float, zones: ZoneArrays
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Signed distance of every fix to every zone of its subject: (offsets, zone_idx, dist)
    CSR rows, computed as the pairs form over the expanded rows (so equal to it)."""
    offsets, row_fix, row_zone = _expand_subjects(
        subject_slot, zones.subject_zone_start, zones.subject_zone_idx
    )
    dist = signed_pairs(lat[row_fix], lon[row_fix], row_zone, cutoff, zones)
    return offsets, row_zone, dist


@njit
def segment_by_subject(
    lat0: np.ndarray,
    lon0: np.ndarray,
    lat1: np.ndarray,
    lon1: np.ndarray,
    subject_slot: np.ndarray,
    cutoff: float,
    zones: ZoneArrays,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distance of every segment to every zone of its subject, CSR as `signed_by_subject`."""
    offsets, row_fix, row_zone = _expand_subjects(
        subject_slot, zones.subject_zone_start, zones.subject_zone_idx
    )
    f = row_fix
    dist = segment_pairs(lat0[f], lon0[f], lat1[f], lon1[f], row_zone, cutoff, zones)
    return offsets, row_zone, dist
