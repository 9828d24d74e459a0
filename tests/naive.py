"""Slow, obvious oracles for the geofence kernels: shapely on the same projected coordinates."""

from __future__ import annotations

import math

import numpy as np
import shapely
from shapely.geometry import LineString, Point
from shapely.geometry.base import BaseGeometry

from zones.compile import ZoneTable
from zones.kernels.frame import EARTH_R, project
from zones.model import Zone

Frame = tuple[float, float, float]  # (lat0, lon0, metres per degree of longitude)


def frame_of(table: ZoneTable, z: int) -> Frame:
    """The zone's frame as the table chose it (origin = bbox centre, checked elsewhere)."""
    a = table.arrays
    return float(a.origin_lat[z]), float(a.origin_lon[z]), float(a.m_per_deg_lon[z])


def to_xy(lat: float, lon: float, frame: Frame) -> tuple[float, float]:
    lat0, lon0, k = frame
    x, y = project(np.array([lat]), np.array([lon]), lat0, lon0, k)
    return float(x[0]), float(y[0])


def region_xy(zone: Zone, frame: Frame) -> BaseGeometry:
    """A polygon zone in its frame's metres; its parts unioned (an antimeridian split
    zone is one region there, without a seam)."""
    assert zone.geometry is not None
    lat0, lon0, k = frame

    def tx(c: np.ndarray) -> np.ndarray:
        x, y = project(np.ascontiguousarray(c[:, 1]), np.ascontiguousarray(c[:, 0]), lat0, lon0, k)
        return np.column_stack([x, y])

    return shapely.union_all(shapely.get_parts(shapely.transform(zone.geometry, tx)))


def signed_distance(zone: Zone, frame: Frame, lat: float, lon: float) -> float:
    """Negative inside (distance to the boundary), positive outside, NaN for NaN."""
    if not (math.isfinite(lat) and math.isfinite(lon)):
        return math.nan
    x, y = to_xy(lat, lon, frame)
    if zone.is_circle:
        assert zone.radius_m is not None
        return math.hypot(x, y) - zone.radius_m  # the frame origin is the centre
    region = region_xy(zone, frame)
    p = Point(x, y)
    d = float(region.boundary.distance(p))
    return -d if region.contains(p) else d


def _segment_xy(zone: Zone, frame: Frame, a: tuple[float, float], b: tuple[float, float]) -> float:
    line = Point(a) if a == b else LineString([a, b])
    if zone.is_circle:
        assert zone.radius_m is not None
        return max(float(Point(0.0, 0.0).distance(line)) - zone.radius_m, 0.0)
    return float(region_xy(zone, frame).distance(line))


def segment_distance(
    zone: Zone, frame: Frame, lat0: float, lon0: float, lat1: float, lon1: float
) -> float:
    """Distance from the straight segment (in the zone frame) to the zone; 0 if they meet.
    A segment whose short way crosses the frame's seam (the meridian opposite the zone) is
    two pieces, each continued straight past the seam on its own side."""
    if not all(math.isfinite(v) for v in (lat0, lon0, lat1, lon1)):
        return math.nan
    a, b = to_xy(lat0, lon0, frame), to_xy(lat1, lon1, frame)
    k = frame[2]
    if abs(b[0] - a[0]) <= k * 180.0:
        return _segment_xy(zone, frame, a, b)
    dx = k * ((lon1 - lon0 + 180.0) % 360.0 - 180.0)
    return min(
        _segment_xy(zone, frame, a, (a[0] + dx, b[1])),
        _segment_xy(zone, frame, (b[0] - dx, a[1]), b),
    )


def py_signed_distance(rings: list[list[tuple[float, float]]], x: float, y: float) -> float:
    """Pure-Python twin: even-odd over all rings (unclosed), distance to the nearest edge."""
    inside = False
    best = math.inf
    for ring in rings:
        for (ax, ay), (bx, by) in zip(ring[-1:] + ring[:-1], ring, strict=True):
            if (ay > y) != (by > y) and x < ax + (y - ay) * (bx - ax) / (by - ay):
                inside = not inside
            ex, ey = bx - ax, by - ay
            l2 = ex * ex + ey * ey
            t = 0.0 if l2 == 0.0 else min(1.0, max(0.0, ((x - ax) * ex + (y - ay) * ey) / l2))
            best = min(best, math.hypot(x - (ax + t * ex), y - (ay + t * ey)))
    return -best if inside and best > 0.0 else best


def haversine(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    if not all(math.isfinite(v) for v in (lat1, lon1, lat2, lon2)):
        return math.nan
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2.0 * EARTH_R * math.asin(min(1.0, math.sqrt(a)))


def table_rings(table: ZoneTable, z: int) -> list[list[tuple[float, float]]]:
    """The rings of zone z as lists of (x, y), read back from the table's arrays."""
    a = table.arrays.rings
    rings = []
    for r in range(a.zone_ring_start[z], a.zone_ring_start[z + 1]):
        lo, hi = a.ring_vert_start[r], a.ring_vert_start[r + 1]
        rings.append(list(zip(a.vx[lo:hi].tolist(), a.vy[lo:hi].tolist(), strict=True)))
    return rings


# -- segment depth -----------------------------------------------------------------------------

Piece = tuple[float, float, float]  # (t_start, t_end, depth) along A -> B


def _depth_pieces_xy(
    zone: Zone, frame: Frame, a: tuple[float, float], b: tuple[float, float], spacing: float
) -> list[Piece]:
    """Inside pieces of the straight segment a -> b (a != b) in the zone frame."""
    (ax, ay), (bx, by) = a, b
    sx, sy = bx - ax, by - ay
    l2 = sx * sx + sy * sy
    if zone.is_circle:
        assert zone.radius_m is not None
        r = zone.radius_m
        qb, qc = 2.0 * (ax * sx + ay * sy), ax * ax + ay * ay - r * r
        disc = qb * qb - 4.0 * l2 * qc
        if disc <= 0.0:
            return []
        t0 = max((-qb - math.sqrt(disc)) / (2.0 * l2), 0.0)
        t1 = min((-qb + math.sqrt(disc)) / (2.0 * l2), 1.0)
        if t0 >= t1:
            return []
        depth = r - float(Point(0.0, 0.0).distance(LineString([a, b])))
        return [(t0, t1, max(depth, 0.0))]
    region = region_xy(zone, frame)
    boundary = region.boundary
    # Pieces along the boundary are touching, not entering: take them out.
    inside = LineString([a, b]).intersection(region).difference(boundary)
    out = []
    for part in shapely.get_parts(inside):
        if part.geom_type != "LineString" or part.length == 0.0:
            continue
        xy = np.asarray(part.coords)
        t = ((xy[:, 0] - ax) * sx + (xy[:, 1] - ay) * sy) / l2
        t0, t1 = float(t.min()), float(t.max())
        n = max(2, math.ceil((t1 - t0) * math.sqrt(l2) / spacing) + 1)
        ts = np.linspace(t0, t1, n)
        xs, ys = ax + ts * sx, ay + ts * sy
        d = shapely.distance(boundary, shapely.points(xs, ys))
        d = d[shapely.contains_xy(region, xs, ys)]
        out.append((t0, t1, float(d.max()) if d.shape[0] else 0.0))
    return out


def segment_depth_pieces(
    zone: Zone,
    frame: Frame,
    lat0: float,
    lon0: float,
    lat1: float,
    lon1: float,
    spacing: float = 0.5,
) -> list[Piece]:
    """The pieces of the straight segment A -> B (zone frame) inside the zone, sorted:
    (t_start, t_end, depth) with t the fraction along A -> B. Polygons: shapely's
    intersection, minus the boundary (running along an edge is not entering); depth the
    max boundary distance over samples `spacing` metres apart (so at most spacing/2 low).
    Circles: the line-circle roots, depth r - (centre to segment). A zero-length (under a
    nanometre) segment is its point A: [(0, 1, -sd)] inside, [] otherwise. A segment across
    the seam is two pieces as in `segment_distance`, both parametrised by the same t."""
    if not all(math.isfinite(v) for v in (lat0, lon0, lat1, lon1)):
        raise ValueError("no pieces for a NaN segment")
    a, b = to_xy(lat0, lon0, frame), to_xy(lat1, lon1, frame)
    if math.dist(a, b) < 1e-9:  # a point (shapely's overlay drops sub-nanometre lines)
        d = signed_distance(zone, frame, lat0, lon0)
        return [(0.0, 1.0, -d)] if d < 0.0 else []
    k = frame[2]
    if abs(b[0] - a[0]) <= k * 180.0:
        return _depth_pieces_xy(zone, frame, a, b, spacing)
    dx = k * ((lon1 - lon0 + 180.0) % 360.0 - 180.0)
    return sorted(
        _depth_pieces_xy(zone, frame, a, (a[0] + dx, b[1]), spacing)
        + _depth_pieces_xy(zone, frame, (b[0] - dx, a[1]), b, spacing)
    )


def segment_depth(
    zone: Zone,
    frame: Frame,
    lat0: float,
    lon0: float,
    lat1: float,
    lon1: float,
    spacing: float = 0.5,
) -> tuple[float, float, float]:
    """(depth, f_in, f_out) from `segment_depth_pieces`: the deepest piece, the first
    piece's start and the last piece's end; (0, NaN, NaN) with no piece; NaN for NaN."""
    if not all(math.isfinite(v) for v in (lat0, lon0, lat1, lon1)):
        return math.nan, math.nan, math.nan
    pieces = segment_depth_pieces(zone, frame, lat0, lon0, lat1, lon1, spacing)
    if not pieces:
        return 0.0, math.nan, math.nan
    return max(p[2] for p in pieces), pieces[0][0], max(p[1] for p in pieces)
