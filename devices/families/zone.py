"""Exclusion-zone scenario families: lurk, walk_in, clip, drive_through, drive_around, jump.

Each episode is one subject with one zone at its own frame's origin; paths are planned in
metres and labelled by `devices.families.truth`'s rule."""

from __future__ import annotations

import math

import numpy as np
import shapely

from devices.families.kit import (
    MIN,
    Ctx,
    Expect,
    Outcome,
    along_ray,
    chord_at_depth,
    exclusion_zone,
    family,
    reach,
)
from devices.motion.paths import PathBuilder, TruePath
from devices.sensing.noise import OPEN_SKY, STREET, URBAN, MultipathNoise
from devices.sensing.sensor import NoiseModel, fix_times
from devices.world.city import ZoneSpec

WALK = (1.1, 1.6)
DRIVE = (8.0, 17.0)

XY = tuple[float, float]


def _u(ctx: Ctx, lo: float, hi: float) -> float:
    return float(ctx.rng.uniform(lo, hi))


def inside_span(path: TruePath, z: ZoneSpec, t0: float, t1: float) -> tuple[float, float] | None:
    """First and last second the true path is inside zone z (planning geometry)."""
    ts = np.arange(t0, t1 + 1.0)
    inside = shapely.contains_xy(z.area_xy, *path.at(ts))
    idx = np.flatnonzero(inside)
    return (float(ts[idx[0]]), float(ts[idx[-1]])) if len(idx) else None


def walk_in_path(
    ctx: Ctx, z: ZoneSpec, dwell_min: tuple[float, float], depth: tuple[float, float] = (30.0, 80.0)
) -> PathBuilder:
    """Walk from 300-600 m out to a point 30+ m deep, linger there, leave by another side."""
    g, c, far = z.area_xy, z.deep_xy, reach(z) + 800.0
    th_in = _u(ctx, 0, 2 * math.pi)
    th_out = th_in + _u(ctx, -1.2, 1.2)
    start = along_ray(g, c, th_in, -_u(ctx, 300, 600), far)
    d = _u(ctx, depth[0], min(depth[1], z.depth_m - 5.0))
    deep = along_ray(g, c, th_in, d, far)
    b = PathBuilder(ctx.t0, *start)
    b.dwell(_u(ctx, 0, 5) * MIN)
    b.go(deep, _u(ctx, *WALK))
    b.linger(ctx.rng, _u(ctx, *dwell_min) * MIN, radius=min(8.0, d - 25.0), centre=deep)
    b.go(along_ray(g, c, th_out, -_u(ctx, 300, 600), far), _u(ctx, *WALK))
    b.dwell(_u(ctx, 2, 5) * MIN)
    return b


def turn_back_path(ctx: Ctx, z: ZoneSpec) -> PathBuilder:
    """Walk up to 30-60 m from the edge, wait a little, turn back: no breach."""
    g, c, far = z.area_xy, z.deep_xy, reach(z) + 800.0
    th = _u(ctx, 0, 2 * math.pi)
    start = along_ray(g, c, th, -_u(ctx, 300, 600), far)
    b = PathBuilder(ctx.t0, *start)
    b.dwell(_u(ctx, 0, 5) * MIN)
    b.go(along_ray(g, c, th, -_u(ctx, 30, 60), far), _u(ctx, *WALK))
    b.dwell(_u(ctx, 1, 5) * MIN)
    b.go(start, _u(ctx, *WALK))
    b.dwell(_u(ctx, 2, 5) * MIN)
    return b


def _finish(
    ctx: Ctx, variant: str, expect: Expect, z: ZoneSpec, b: PathBuilder, noise: NoiseModel
) -> Outcome:
    t1 = b.now
    path = b.build(t1)
    return Outcome(variant, expect, [z], path, ctx.sample(path, ctx.t0, t1, noise), t1)


@family(
    "lurk",
    ("lurk", "lurk", "lurk_enter", "lurk"),
    "20-80 m outside a zone for 20-60 min under correlated noise and multipath; "
    "a quarter then walk in (material)",
)
def lurk(ctx: Ctx, variant: str) -> Outcome:
    z = exclusion_zone(ctx, (70.0, 180.0))
    g, c, far = z.area_xy, z.deep_xy, reach(z) + 800.0
    th = _u(ctx, 0, 2 * math.pi)
    spot = along_ray(g, c, th, -(_u(ctx, 20, 80) + 6.0), far)  # linger radius 5 keeps >= 20 m
    start = along_ray(g, c, th, -_u(ctx, 350, 700), far)
    b = PathBuilder(ctx.t0, *start)
    b.dwell(_u(ctx, 0, 5) * MIN)
    b.go(spot, _u(ctx, *WALK))
    if variant == "lurk_enter":
        b.linger(ctx.rng, _u(ctx, 10, 30) * MIN, radius=5.0, centre=spot)
        deep = along_ray(g, c, th, _u(ctx, 30, min(60.0, z.depth_m - 5.0)), far)
        b.go(deep, _u(ctx, *WALK))
        b.linger(ctx.rng, _u(ctx, 3, 10) * MIN, radius=3.0, centre=deep)
        b.go(spot, _u(ctx, *WALK))
        b.linger(ctx.rng, _u(ctx, 5, 15) * MIN, radius=5.0, centre=spot)
    else:
        b.linger(ctx.rng, _u(ctx, 20, 60) * MIN, radius=5.0, centre=spot)
    b.go(start, _u(ctx, *WALK))
    b.dwell(_u(ctx, 2, 5) * MIN)
    bx0, by0, bx1, by1 = g.bounds
    site = (c[0], c[1], 0.5 * math.hypot(bx1 - bx0, by1 - by0) + 150.0)
    noise = MultipathNoise(URBAN, sites=(site,), burst_p=0.02)
    expect: Expect = "material" if variant == "lurk_enter" else "negative"
    return _finish(ctx, variant, expect, z, b, noise)


@family(
    "walk_in",
    ("walk_in", "walk_in", "turn_back"),
    "walk in 30+ m, dwell 3-20 min, leave (material); or turn back 30-60 m short",
)
def walk_in(ctx: Ctx, variant: str) -> Outcome:
    z = exclusion_zone(ctx, (70.0, 200.0))
    if variant == "turn_back":
        return _finish(ctx, variant, "negative", z, turn_back_path(ctx, z), STREET)
    return _finish(ctx, variant, "material", z, walk_in_path(ctx, z, (3.0, 20.0)), STREET)


@family(
    "clip",
    ("clip", "near_miss", "clip", "shortcut"),
    "barely clip the edge (< 10 m, < 1 fix interval: ambiguous); pass 10-20 m outside; "
    "or cut 25-40 m into a corner (material)",
)
def clip(ctx: Ctx, variant: str) -> Outcome:
    z = exclusion_zone(ctx, (90.0, 200.0), circle_p=0.5)
    g, c = z.area_xy, z.deep_xy
    speed = _u(ctx, *WALK)
    expect: Expect
    if variant == "clip":
        target, expect = _u(ctx, 2.0, 9.0), "ambiguous"
    elif variant == "near_miss":
        target, expect = -_u(ctx, 10.0, 20.0), "negative"
    else:
        target, expect = _u(ctx, 25.0, min(40.0, z.depth_m - 5.0)), "material"
    a, e = chord_at_depth(g, c, _u(ctx, 0, 2 * math.pi), target, _u(ctx, 400, 700))
    if variant == "clip":  # through the clipped edge in well under one fix interval
        inside = shapely.LineString([a, e]).intersection(g).length
        speed = max(speed, inside / (0.8 * ctx.interval), _u(ctx, 1.3, 4.5))
    b = PathBuilder(ctx.t0, *a)
    b.dwell(_u(ctx, 0, 5) * MIN)
    b.go(e, speed)
    b.dwell(_u(ctx, 2, 5) * MIN)
    return _finish(ctx, variant, expect, z, b, STREET)


def _drive(ctx: Ctx, pts: list[XY], speed: float) -> PathBuilder:
    b = PathBuilder(ctx.t0, *pts[0])
    b.dwell(_u(ctx, 0, 8) * MIN)  # parked
    for p in pts[1:]:
        b.go(p, speed)
    b.dwell(_u(ctx, 3, 8) * MIN)
    return b


@family(
    "drive_through",
    ("through", "through", "pass_by"),
    "drive at 8-17 m/s across a 150-400 m zone, fixes every 60 s, often none inside "
    "(material); or pass 80-250 m away",
)
def drive_through(ctx: Ctx, variant: str) -> Outcome:
    z = exclusion_zone(ctx, (75.0, 200.0))
    g, c = z.area_xy, z.deep_xy
    th = _u(ctx, 0, 2 * math.pi)
    span = _u(ctx, 1200, 2500)
    if variant == "pass_by":
        a, e = chord_at_depth(g, c, th, -_u(ctx, 80, 250), span)
        return _finish(ctx, variant, "negative", z, _drive(ctx, [a, e], _u(ctx, *DRIVE)), OPEN_SKY)
    a, e = chord_at_depth(g, c, th, _u(ctx, 0.5, 0.9) * z.depth_m, span)
    foot = ((a[0] + e[0]) / 2, (a[1] + e[1]) / 2)
    pts = [a, foot, e]
    if ctx.rng.random() < 0.4:  # a bend at the junction inside the zone
        turn = th + _u(ctx, -0.6, 0.6)
        pts[2] = (foot[0] + span * math.cos(turn), foot[1] + span * math.sin(turn))
    return _finish(ctx, variant, "material", z, _drive(ctx, pts, _u(ctx, *DRIVE)), OPEN_SKY)


@family(
    "drive_around",
    ("tangent", "ring_road", "cut_corner"),
    "drive past 20-60 m outside the edge, straight or following a ring road round it "
    "(no breach); or cut 30-60 m inside across a corner (material)",
)
def drive_around(ctx: Ctx, variant: str) -> Outcome:
    z = exclusion_zone(ctx, (100.0, 200.0))
    g, c = z.area_xy, z.deep_xy
    speed = _u(ctx, *DRIVE)
    th = _u(ctx, 0, 2 * math.pi)
    span = _u(ctx, 1200, 2500)
    if variant == "tangent":
        a, e = chord_at_depth(g, c, th, -_u(ctx, 20, 60), span)
        return _finish(ctx, variant, "negative", z, _drive(ctx, [a, e], speed), OPEN_SKY)
    if variant == "cut_corner":
        a, e = chord_at_depth(g, c, th, _u(ctx, 30, min(60.0, z.depth_m - 10.0)), span)
        return _finish(ctx, variant, "material", z, _drive(ctx, [a, e], speed), OPEN_SKY)
    pts = ring_road(ctx, g, c, z)
    return _finish(ctx, variant, "negative", z, _drive(ctx, pts, speed), OPEN_SKY)


def ring_road(ctx: Ctx, g: shapely.Geometry, c: XY, z: ZoneSpec) -> list[XY]:
    """A drive along a road 20-60 m outside the zone's edge for a quarter to half the way
    round, coming in from and leaving radially 1 km beyond its reach (three draws)."""
    ring = g.buffer(_u(ctx, 20, 60), 32).exterior
    s0 = _u(ctx, 0, ring.length)
    arc = np.linspace(s0, s0 + _u(ctx, 0.25, 0.55) * ring.length, 40) % ring.length
    road = [ring.interpolate(float(s)).coords[0] for s in arc]
    out = reach(z) + 1000.0

    def radial(p: tuple[float, ...]) -> XY:
        ang = math.atan2(p[1] - c[1], p[0] - c[0])
        return c[0] + out * math.cos(ang), c[1] + out * math.sin(ang)

    return [radial(road[0]), *[(float(p[0]), float(p[1])) for p in road], radial(road[-1])]


@family(
    "jump",
    ("wild_jump", "deep_single"),
    "one wild fix 300-2000 m off lands inside a zone while the subject is far outside "
    "(no breach); or a single confident deep fix on a real crossing (material)",
)
def jump(ctx: Ctx, variant: str) -> Outcome:
    z = exclusion_zone(ctx, (75.0, 150.0))
    g, c, far = z.area_xy, z.deep_xy, reach(z) + 3000.0
    rng = ctx.rng
    if variant == "wild_jump":
        spot = along_ray(g, c, _u(ctx, 0, 2 * math.pi), -_u(ctx, 300, 1500), far)
        b = PathBuilder(ctx.t0, *spot)
        b.linger(rng, _u(ctx, 30, 50) * MIN, radius=20.0, centre=spot)
        t1 = b.now
        path = b.build(t1)
        fixes = ctx.sample(path, ctx.t0, t1, STREET)
        n = -(-len(fixes) // ctx.dense)  # fixes at the family's interval
        i = ctx.at(int(rng.integers(n // 3, 2 * n // 3)))  # one the tag sends at any rate
        tx, ty = path.at(fixes.t[i : i + 1])
        for _ in range(50):
            jx, jy = along_ray(g, c, _u(ctx, 0, 2 * math.pi), _u(ctx, 10, z.depth_m - 5), far)
            if 300.0 <= math.hypot(jx - tx[0], jy - ty[0]) <= 2000.0:
                break
        fixes.x[i], fixes.y[i], fixes.acc[i] = jx, jy, _u(ctx, 8, 25)
        return Outcome(variant, "negative", [z], path, fixes, t1)
    # deep_single: a fast crossing through the deep point, timed so one fix lands there
    th = _u(ctx, 0, 2 * math.pi)
    dx, dy = math.cos(th), math.sin(th)
    t = fix_times(rng, ctx.t0, ctx.t0 + 40 * MIN, ctx.interval)
    k = len(t) // 2
    line = shapely.LineString(
        [(c[0] - far * dx, c[1] - far * dy), (c[0] + far * dx, c[1] + far * dy)]
    )
    v = max(_u(ctx, 4.0, 7.0), line.intersection(g).length / (0.85 * ctx.interval))
    lead = float(t[k]) - ctx.t0 - _u(ctx, 0, 5) * MIN  # seconds on the move before the fix
    b = PathBuilder(ctx.t0, c[0] - v * lead * dx, c[1] - v * lead * dy)
    b.wait_until(float(t[k]) - lead)
    b.go(c, v)  # at the deep point exactly at fix k
    b.go((c[0] + v * 15 * MIN * dx, c[1] + v * 15 * MIN * dy), v)
    t1 = max(b.now, ctx.t0 + 40 * MIN)
    path = b.build(t1)
    fixes = ctx.sample_at(path, t, OPEN_SKY)
    tx, ty = path.at(t[k : k + 1])
    j = ctx.at(k)
    fixes.x[j], fixes.y[j] = tx[0] + rng.normal(0, 2.0), ty[0] + rng.normal(0, 2.0)
    fixes.acc[j], fixes.src[j] = _u(ctx, 4.0, 8.0), "gps"
    return Outcome(variant, "material", [z], path, fixes, t1)
