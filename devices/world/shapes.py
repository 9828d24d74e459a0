"""Realistic exclusion-zone shapes in a metric frame, and their deepest point.

Irregular blobs and blocks, holes (a permitted corridor), MultiPolygons split by a road
or made of two sites."""

from __future__ import annotations

import math

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Point, Polygon
from shapely.geometry.base import BaseGeometry


def blob(rng: np.random.Generator, cx: float, cy: float, radius: float, n: int) -> Polygon:
    """A star-shaped irregular polygon with n vertices, about 2*radius across."""
    base = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
    theta = base + rng.uniform(-0.35, 0.35, n) * (2 * math.pi / n)
    r = np.ones(n)
    for k in (2, 3, 5):
        r += rng.uniform(0.0, 0.18) * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
    r = radius * np.clip(r + rng.normal(0.0, 0.04, n), 0.5, 1.4)
    return Polygon(np.stack([cx + r * np.cos(theta), cy + r * np.sin(theta)], 1))


def block(rng: np.random.Generator, cx: float, cy: float, radius: float, n: int) -> Polygon:
    """A rotated, slightly irregular rectangle (a site or estate) with about n vertices."""
    w = radius * rng.uniform(1.2, 2.0)
    h = radius * rng.uniform(0.8, 1.6)
    corners = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2
    per_side = max(2, n // 4)
    pts = []
    for i in range(4):
        a, b = corners[i], corners[(i + 1) % 4]
        for s in np.linspace(0.0, 1.0, per_side, endpoint=False):
            pts.append(a + s * (b - a))
    xy = np.asarray(pts) + rng.normal(0.0, radius * 0.03, (len(pts), 2))
    ang = rng.uniform(0.0, math.pi)
    rot = np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
    xy = xy @ rot.T + [cx, cy]
    return Polygon(xy)


def _strip(cx: float, cy: float, angle: float, length: float, width: float) -> Polygon:
    d = np.array([math.cos(angle), math.sin(angle)])
    nrm = np.array([-d[1], d[0]])
    c = np.array([cx, cy])
    half_l, half_w = length / 2, width / 2
    pts = [c - d * half_l - nrm * half_w, c + d * half_l - nrm * half_w]
    pts += [c + d * half_l + nrm * half_w, c - d * half_l + nrm * half_w]
    return Polygon(pts)


def with_hole(rng: np.random.Generator, poly: Polygon) -> Polygon | None:
    """`poly` with an interior corridor (a permitted path) as a hole, or None if it won't fit."""
    inner = poly.buffer(-12.0)
    if inner.is_empty:
        return None
    c = poly.centroid
    size = math.sqrt(poly.area)
    for _ in range(8):
        hole = _strip(
            c.x + rng.normal(0, size * 0.08),
            c.y + rng.normal(0, size * 0.08),
            rng.uniform(0, math.pi),
            size * rng.uniform(0.3, 0.6),
            rng.uniform(10.0, 20.0),
        )
        if inner.contains(hole):
            return Polygon(poly.exterior.coords, [hole.exterior.coords])
    return None


def split_by_road(rng: np.random.Generator, poly: Polygon) -> MultiPolygon | None:
    """`poly` cut in two by a permitted road straight through it, or None."""
    c = poly.centroid
    size = math.sqrt(poly.area)
    for _ in range(8):
        road = _strip(
            c.x + rng.normal(0, size * 0.1),
            c.y + rng.normal(0, size * 0.1),
            rng.uniform(0, math.pi),
            size * 4,
            rng.uniform(10.0, 16.0),
        )
        parts = poly.difference(road)
        two = isinstance(parts, MultiPolygon) and len(parts.geoms) == 2
        big = two and min(p.area for p in parts.geoms) >= 0.2 * poly.area
        if big and min(len(p.exterior.coords) for p in parts.geoms) > 8:
            return parts  # type: ignore[return-value]
    return None


def two_sites(rng: np.random.Generator, cx: float, cy: float, radius: float) -> MultiPolygon:
    """Two separate sites 40-150 m apart (e.g. a home and a relative's home next to it)."""
    r1, r2 = radius * rng.uniform(0.5, 0.8), radius * rng.uniform(0.4, 0.7)
    ang = rng.uniform(0, 2 * math.pi)
    gap = r1 + r2 + rng.uniform(40.0, 150.0)
    a = blob(rng, cx, cy, r1, int(rng.integers(8, 16)))
    b = blob(rng, cx + gap * math.cos(ang), cy + gap * math.sin(ang), r2, int(rng.integers(8, 16)))
    return MultiPolygon([a, b])


def deep_point(geom: BaseGeometry) -> tuple[float, float, float]:
    """(x, y, depth): a point far inside the geometry and its distance to the boundary."""
    parts = list(geom.geoms) if isinstance(geom, MultiPolygon) else [geom]
    best = max(parts, key=lambda p: p.area)
    circle = shapely.maximum_inscribed_circle(best, tolerance=0.5)
    p = shapely.get_point(circle, 0)
    depth = float(shapely.length(circle))
    return float(shapely.get_x(p)), float(shapely.get_y(p)), depth


def point_depth(geom: BaseGeometry, x: float, y: float) -> float:
    """Signed depth: distance to the boundary, positive inside, negative outside."""
    pt = Point(x, y)
    d = float(geom.boundary.distance(pt))
    return d if geom.contains(pt) else -d
