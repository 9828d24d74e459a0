"""The harder world of issue 15, as scenario families of the "urban" suite: urban-canyon
GPS error (`devices.sensing.noise.CANYON`: 12-25 m per axis, correlated over minutes,
accuracy under-reported, multipath bursts), bursts thrown across a zone's edge, people who
spend hours 10-50 m outside a zone, drive-arounds of polygons and circles at 60 s and 30 s
fixes, small curfews (30-55 m) with people at home at night, and walk-ins at 15 s fixes
(what a tag sends once the engine asks it to report faster).

bench/bench_decisions.py keeps to the "core" suite; bench/quality.py scores these."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
from shapely.geometry import Point
from shapely.ops import nearest_points

from devices.families.kit import (
    MIN,
    Ctx,
    Expect,
    Outcome,
    along_ray,
    blob_shape,
    chord_at_depth,
    exclusion_zone,
    family,
    reach,
)
from devices.families.more import LONDON_TZ
from devices.families.zone import DRIVE, WALK, ring_road, turn_back_path, walk_in_path
from devices.motion.paths import PathBuilder, TruePath
from devices.sensing.noise import CANYON, CANYON_GPS, SourceMix
from devices.sensing.sensor import FixColumns
from devices.world.city import CURFEW_SCHEDULE, ZoneSpec

XY = tuple[float, float]
SUITE = "urban"
BURST_LEN = (2, 4)  # consecutive fixes a burst shifts together
BURST_M = (30.0, 80.0)  # how far
# Weeknights well away from the clock changes (Monday 16 - Wednesday 18 March 2026)
NIGHT0 = dt.date(2026, 3, 16)
INDOOR = SourceMix(gps=CANYON, wifi_p=0.15)  # at home: canyon error, wifi when GPS is lost


def _u(ctx: Ctx, lo: float, hi: float) -> float:
    return float(ctx.rng.uniform(lo, hi))


def edge_bursts(
    ctx: Ctx, fixes: FixColumns, path: TruePath, z: ZoneSpec, n: int, t0: float, t1: float
) -> None:
    """Shift `n` runs of 2-4 consecutive fixes taken in [t0, t1) 30-80 m towards the
    zone's nearest edge, and at least 10 m across it (multipath off the building opposite),
    starting where the true position is within 70 m of the edge (farther out, a 30-80 m
    burst cannot cross it): the receiver hardly notices (acc x 1.0-1.3). On an obedient
    build's dense grid (`ctx.dense` fixes per interval) a run lasts as long in seconds:
    2-4 x ctx.dense fixes."""
    rng = ctx.rng
    edge = z.area_xy.boundary
    tx, ty = path.at(fixes.t)
    reach_m = BURST_M[1] - 10.0
    m = ctx.dense  # an obedient build samples m fixes per interval: bursts keep seconds
    near = [
        i
        for i in np.flatnonzero((fixes.t >= t0) & (fixes.t < t1)).tolist()
        if i + BURST_LEN[1] * m <= len(fixes)
        and edge.distance(Point(float(tx[i]), float(ty[i]))) <= reach_m
    ]
    if not near or n < 1:
        return
    starts = sorted(rng.choice(near, size=min(n, len(near)), replace=False).tolist())
    for i in starts:
        here = Point(float(tx[i]), float(ty[i]))
        to = nearest_points(edge, here)[0]
        d = here.distance(to)
        ang = math.atan2(to.y - here.y, to.x - here.x) + _u(ctx, -0.3, 0.3)
        mag = _u(ctx, max(BURST_M[0], d + 10.0), BURST_M[1])
        for j in range(i, i + int(rng.integers(BURST_LEN[0], BURST_LEN[1] + 1)) * m):
            w = _u(ctx, 0.85, 1.15)
            fixes.x[j] += mag * w * math.cos(ang)
            fixes.y[j] += mag * w * math.sin(ang)
            fixes.acc[j] *= _u(ctx, 1.0, 1.3)


def _dweller(ctx: Ctx, z: ZoneSpec, th: float, d: float, r: float) -> tuple[XY, XY]:
    """(a spot d m outside the edge, lingering r m about it; a start 300-600 m out)."""
    g, c, far = z.area_xy, z.deep_xy, reach(z) + 800.0
    spot = along_ray(g, c, th, -(d + r + 1.0), far)
    return spot, along_ray(g, c, th, -_u(ctx, 300, 600), far)


@family(
    "near_dweller",
    ("next_door", "bus_stop", "shop", "enters"),
    "hours 10-50 m outside a zone in an urban canyon (home next door 2-4 h, a bus stop "
    "20-60 min, a shop across the road 1-2 h), with 1-3 multipath bursts across the edge; "
    "or 40-90 min outside, then 30-60 m in for 5-15 min (material)",
    suite=SUITE,
)
def near_dweller(ctx: Ctx, variant: str) -> Outcome:
    z = exclusion_zone(ctx, (60.0, 180.0))
    g, c, far = z.area_xy, z.deep_xy, reach(z) + 800.0
    th = _u(ctx, 0, 2 * math.pi)
    d, hours, r = {
        "next_door": ((10.0, 25.0), (2.0, 4.0), 4.0),
        "bus_stop": ((15.0, 40.0), (1 / 3, 1.0), 3.0),
        "shop": ((20.0, 50.0), (1.0, 2.0), 6.0),
        "enters": ((15.0, 40.0), (2 / 3, 1.5), 4.0),
    }[variant]
    spot, start = _dweller(ctx, z, th, _u(ctx, *d), r)
    b = PathBuilder(ctx.t0, *start)
    b.dwell(_u(ctx, 0, 5) * MIN)
    b.go(spot, _u(ctx, *WALK))
    t_dwell = b.now
    b.linger(ctx.rng, _u(ctx, *hours) * 3600.0, radius=r, centre=spot)
    t_left = b.now
    expect: Expect = "negative"
    if variant == "enters":
        deep = along_ray(g, c, th, _u(ctx, 30, min(60.0, z.depth_m - 5.0)), far)
        b.go(deep, _u(ctx, *WALK))
        b.linger(ctx.rng, _u(ctx, 5, 15) * MIN, radius=3.0, centre=deep)
        b.go(spot, _u(ctx, *WALK))
        b.linger(ctx.rng, _u(ctx, 20, 40) * MIN, radius=r, centre=spot)
        expect = "material"
    b.go(start, _u(ctx, *WALK))
    b.dwell(_u(ctx, 2, 5) * MIN)
    t1 = b.now
    path = b.build(t1)
    fixes = ctx.sample(path, ctx.t0, t1, CANYON)
    edge_bursts(ctx, fixes, path, z, int(ctx.rng.integers(1, 4)), t_dwell, t_left)
    return Outcome(variant, expect, [z], path, fixes, t1)


@family(
    "edge_burst",
    ("waiting", "passing", "walk_in"),
    "urban canyon: wait 5-20 min 20-60 m outside a zone, or walk past it 20-50 m out, while "
    "1-2 multipath bursts of 2-4 fixes jump 30-80 m across the edge; or walk in (material)",
    suite=SUITE,
)
def edge_burst(ctx: Ctx, variant: str) -> Outcome:
    z = exclusion_zone(ctx, (70.0, 200.0))
    g, c = z.area_xy, z.deep_xy
    expect: Expect = "negative"
    if variant == "waiting":
        th = _u(ctx, 0, 2 * math.pi)
        spot, start = _dweller(ctx, z, th, _u(ctx, 20, 60), 3.0)
        b = PathBuilder(ctx.t0, *start)
        b.dwell(_u(ctx, 0, 5) * MIN)
        b.go(spot, _u(ctx, *WALK))
        w0 = b.now
        b.linger(ctx.rng, _u(ctx, 5, 20) * MIN, radius=3.0, centre=spot)
        w1 = b.now
        away = along_ray(g, c, th + _u(ctx, -0.4, 0.4), -_u(ctx, 300, 600), reach(z) + 800.0)
        b.go(away, _u(ctx, *WALK))
    elif variant == "passing":
        a, e = chord_at_depth(g, c, _u(ctx, 0, 2 * math.pi), -_u(ctx, 20, 50), _u(ctx, 400, 600))
        b = PathBuilder(ctx.t0, *a)
        b.dwell(_u(ctx, 0, 5) * MIN)
        w0 = b.now
        b.go(e, _u(ctx, *WALK))
        w1 = b.now
    else:
        b = walk_in_path(ctx, z, (3.0, 20.0))
        w0, w1, expect = ctx.t0, b.now, "material"
    b.dwell(_u(ctx, 2, 5) * MIN)
    t1 = b.now
    path = b.build(t1)
    fixes = ctx.sample(path, ctx.t0, t1, CANYON_GPS)
    edge_bursts(ctx, fixes, path, z, int(ctx.rng.integers(1, 3)), w0, w1)
    return Outcome(variant, expect, [z], path, fixes, t1)


def _drive(ctx: Ctx, variant: str) -> Outcome:
    """A drive past, round, across the corner of or through a polygon or circle, in a
    street canyon (CANYON noise), at the family's fix interval."""
    z = exclusion_zone(ctx, (100.0, 220.0), circle_p=0.35)
    g, c = z.area_xy, z.deep_xy
    speed = _u(ctx, *DRIVE)
    th = _u(ctx, 0, 2 * math.pi)
    span = _u(ctx, 1200, 2500)
    expect: Expect = "negative"
    if variant == "tangent":
        pts = list(chord_at_depth(g, c, th, -_u(ctx, 20, 60), span))
    elif variant == "cut_corner":
        pts = list(chord_at_depth(g, c, th, _u(ctx, 30, min(60.0, z.depth_m - 10.0)), span))
        expect = "material"
    elif variant == "through":
        pts = list(chord_at_depth(g, c, th, _u(ctx, 0.5, 0.9) * z.depth_m, span))
        expect = "material"
    else:  # ring_road: along a road 20-60 m outside the edge for a quarter to half the way
        pts = ring_road(ctx, g, c, z)
    b = PathBuilder(ctx.t0, *pts[0])
    b.dwell(_u(ctx, 0, 8) * MIN)
    for p in pts[1:]:
        b.go(p, speed)
    b.dwell(_u(ctx, 3, 8) * MIN)
    t1 = b.now
    path = b.build(t1)
    return Outcome(variant, expect, [z], path, ctx.sample(path, ctx.t0, t1, CANYON), t1)


_DRIVE_VARIANTS = ("tangent", "ring_road", "cut_corner", "tangent", "ring_road", "through")
_DRIVE_TEXT = (
    "urban canyon, polygons and circles: drive past 20-60 m outside, or along a ring road "
    "20-60 m round (no breach); or cut 30-60 m across a corner, or through (material)"
)
family("urban_drive", _DRIVE_VARIANTS, _DRIVE_TEXT + "; fixes every 60 s", suite=SUITE)(_drive)
family(
    "urban_drive30", _DRIVE_VARIANTS, _DRIVE_TEXT + "; fixes every 30 s", interval=30.0, suite=SUITE
)(_drive)


def _local(day: dt.date, hh: int, mm: float) -> float:
    base = dt.datetime(day.year, day.month, day.day, tzinfo=LONDON_TZ)
    return (base + dt.timedelta(hours=hh, minutes=mm)).timestamp()


@family(
    "curfew_home",
    ("home", "night_out", "home", "late"),
    "curfew 19:00-07:00 at home, a circle or polygon 30-55 m across the address, indoors in "
    "an urban canyon (wifi fallback, multipath): home all night (no breach); out 30-90 min "
    "after midnight, or home 20-90 min late (material)",
    suite=SUITE,
)
def curfew_home(ctx: Ctx, variant: str) -> Outcome:
    night = NIGHT0 + dt.timedelta(days=(ctx.k // 4) % 3)  # 4 tags a night vouch for its clock
    morning = night + dt.timedelta(days=1)
    r = round(_u(ctx, 30, 55) / 5) * 5
    sched = CURFEW_SCHEDULE
    if ctx.rng.random() < 0.6:
        z = ctx.circle("curfew", 0.0, 0.0, r, kind="inclusion", schedule=sched, role="curfew")
    else:
        shape = blob_shape(ctx.rng, r)
        z = ctx.polygon("curfew", shape, kind="inclusion", schedule=sched, role="curfew")
    home = z.deep_xy
    stay = min(4.0, 0.5 * z.depth_m)
    t0, t1 = _local(night, 17, 0), _local(morning, 8, 30)
    ang, dist = _u(ctx, 0, 2 * math.pi), _u(ctx, 300, 1500)
    away = (home[0] + dist * math.cos(ang), home[1] + dist * math.sin(ang))
    speed = _u(ctx, *WALK)
    walk_s = math.dist(home, away) / speed
    leave = _local(morning, 7, _u(ctx, 5, 30))
    if variant == "late":
        b = PathBuilder(t0, *away)
        b.wait_until(_local(night, 19, _u(ctx, 20, 90)) - walk_s)
        b.go(home, speed)
    else:
        b = PathBuilder(t0, *home)
    if variant == "night_out":
        b.linger(ctx.rng, _local(night, 23, _u(ctx, 30, 150)) - b.now, radius=stay, centre=home)
        b.go(away, speed)
        b.linger(ctx.rng, _u(ctx, 30, 90) * MIN, radius=10.0, centre=away)
        b.go(home, speed)
    b.linger(ctx.rng, leave - b.now, radius=stay, centre=home)
    b.go(away, speed)
    path = b.build(t1)
    fixes = ctx.sample(path, t0, t1, INDOOR)
    ctx.t0 = t0
    expect: Expect = "negative" if variant == "home" else "material"
    return Outcome(variant, expect, [z], path, fixes, t1)


@family(
    "urban_walk15",
    ("walk_in", "turn_back", "walk_in"),
    "urban canyon at 15 s fixes (a tag the engine has asked to report faster): walk in 30+ m "
    "and stay 3-20 min (material), or turn back 30-60 m short",
    interval=15.0,
    suite=SUITE,
)
def urban_walk15(ctx: Ctx, variant: str) -> Outcome:
    z = exclusion_zone(ctx, (70.0, 200.0))
    expect: Expect = "negative" if variant == "turn_back" else "material"
    b = turn_back_path(ctx, z) if variant == "turn_back" else walk_in_path(ctx, z, (3.0, 20.0))
    t1 = b.now
    path = b.build(t1)
    return Outcome(variant, expect, [z], path, ctx.sample(path, ctx.t0, t1, CANYON), t1)
