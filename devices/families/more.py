"""Scenario families about delivery, time, victims, sources and holes: late_batch,
reorder_dup, curfew_dst, victim_moving, cell, hole."""

from __future__ import annotations

import datetime as dt
import math
from zoneinfo import ZoneInfo

import numpy as np
from shapely.geometry import LineString, Point, Polygon
from shapely.geometry.base import BaseGeometry

from devices.families.kit import (
    MIN,
    Ctx,
    Expect,
    Outcome,
    along_ray,
    blob_shape,
    depth_at,
    exclusion_zone,
    family,
    reach,
)
from devices.families.zone import WALK, inside_span, turn_back_path, walk_in_path
from devices.motion.paths import PathBuilder
from devices.sensing.noise import PHONE, STREET, GaussMarkovNoise, SourceMix, cell_fix
from devices.world.city import CURFEW_SCHEDULE, PhoneSpec

LONDON_TZ = ZoneInfo("Europe/London")
# Saturday nights the clocks change in the UK in 2026 (spring forward, fall back)
DST_NIGHTS = (dt.date(2026, 3, 28), dt.date(2026, 10, 24))
XY = tuple[float, float]


def _u(ctx: Ctx, lo: float, hi: float) -> float:
    return float(ctx.rng.uniform(lo, hi))


def _away(ctx: Ctx, origin: XY, lo: float, hi: float) -> XY:
    ang, d = _u(ctx, 0, 2 * math.pi), _u(ctx, lo, hi)
    return origin[0] + d * math.cos(ang), origin[1] + d * math.sin(ang)


@family(
    "late_batch",
    ("gap_breach", "gap_outside", "gap_then_inside", "gap_outside"),
    "a walk-in during a coverage gap whose fixes arrive later as one /fixes batch after "
    "live reporting resumes (material); or a gap while outside",
)
def late_batch(ctx: Ctx, variant: str) -> Outcome:
    z = exclusion_zone(ctx, (70.0, 180.0))
    if variant == "gap_outside":
        b = turn_back_path(ctx, z)
        mid = 0.5 * (ctx.t0 + b.now)
        b.dwell(10 * MIN)  # live reporting goes on well after the gap
        t1 = b.now
        path = b.build(t1)
        span = (mid - _u(ctx, 5, 10) * MIN, mid + _u(ctx, 5, 10) * MIN)
        expect: Expect = "negative"
    else:
        b = walk_in_path(ctx, z, (3.0, 12.0) if variant == "gap_breach" else (15.0, 25.0))
        b.dwell(10 * MIN)
        t1 = b.now
        path = b.build(t1)
        s = inside_span(path, z, ctx.t0, t1)
        assert s is not None
        if variant == "gap_breach":  # the whole visit inside the gap
            span = (s[0] - _u(ctx, 1, 4) * MIN, s[1] + _u(ctx, 1, 4) * MIN)
        else:  # reporting resumes while still inside
            span = (s[0] - _u(ctx, 1, 3) * MIN, s[0] + _u(ctx, 4, 8) * MIN)
        expect = "material"
    fixes = ctx.sample(path, ctx.t0, t1, STREET)
    return Outcome(
        variant,
        expect,
        [z],
        path,
        fixes,
        t1,
        late_span=span,
        late_after=int(ctx.rng.integers(1, 6)),
    )


@family(
    "reorder_dup",
    ("walk_in", "turn_back", "walk_in"),
    "walk-ins and turn-backs whose fixes arrive shuffled within ~3 places and ~10 % twice",
)
def reorder_dup(ctx: Ctx, variant: str) -> Outcome:
    z = exclusion_zone(ctx, (70.0, 200.0))
    neg = variant == "turn_back"
    b = turn_back_path(ctx, z) if neg else walk_in_path(ctx, z, (3.0, 20.0))
    t1 = b.now
    path = b.build(t1)
    fixes = ctx.sample(path, ctx.t0, t1, STREET)
    return Outcome(
        variant,
        "negative" if neg else "material",
        [z],
        path,
        fixes,
        t1,
        shuffle_s=3.0 * ctx.interval,
        dup_p=0.1,
    )


def _local(day: dt.date, hh: int, mm: float) -> float:
    base = dt.datetime(day.year, day.month, day.day, tzinfo=LONDON_TZ)
    wall = base + dt.timedelta(hours=hh, minutes=mm)  # wall-clock arithmetic
    return dt.datetime.combine(wall.date(), wall.time(), LONDON_TZ).timestamp()


@family(
    "curfew_dst",
    ("home", "late", "compliant", "early"),
    "curfew 19:00-07:00 Europe/London across the 2026 clock changes: home all night, "
    "arrives 20-90 min late, compliant, leaves at 05:30",
)
def curfew_dst(ctx: Ctx, variant: str) -> Outcome:
    night = DST_NIGHTS[(ctx.k // 4) % 2]  # each variant on both nights
    morning = night + dt.timedelta(days=1)
    r = round(_u(ctx, 30, 60) / 5) * 5
    if ctx.rng.random() < 0.5:
        z = ctx.circle(
            "curfew", 0.0, 0.0, r, kind="inclusion", schedule=CURFEW_SCHEDULE, role="curfew"
        )
    else:
        z = ctx.polygon(
            "curfew",
            blob_shape(ctx.rng, r),
            kind="inclusion",
            schedule=CURFEW_SCHEDULE,
            role="curfew",
        )
    home = z.deep_xy
    stay = min(4.0, 0.5 * z.depth_m)
    t0, t1 = _local(night, 17, 0), _local(morning, 8, 30)
    away = _away(ctx, home, 800, 2000)
    speed = _u(ctx, *WALK)
    walk_s = math.dist(home, away) / speed
    arrive = {
        "home": None,
        "late": _u(ctx, 20, 90),
        "compliant": -_u(ctx, 5, 30),
        "early": -_u(ctx, 10, 60),
    }[variant]
    leave = (
        _local(morning, 5, 30 + _u(ctx, 0, 5))
        if variant == "early"
        else _local(morning, 7, _u(ctx, 5, 30))
    )
    if arrive is None:
        b = PathBuilder(t0, *home)
        b.linger(ctx.rng, t1 - t0, radius=stay, centre=home)
    else:
        b = PathBuilder(t0, *away)
        b.wait_until(_local(night, 19, arrive) - walk_s)
        b.go(home, speed)
        b.linger(ctx.rng, leave - b.now, radius=stay, centre=home)
        b.go(away, speed)
    path = b.build(t1)
    noise = SourceMix(GaussMarkovNoise(sigma_m=(4.0, 20.0), tau_s=(60.0, 300.0)), wifi_p=0.15)
    fixes = ctx.sample(path, t0, t1, noise)
    ctx.t0 = t0
    expect: Expect = "material" if variant in ("late", "early") else "negative"
    return Outcome(variant, expect, [z], path, fixes, t1)


@family(
    "victim_moving",
    ("approach", "keep_away", "victim_passes", "stale"),
    "an OwnTracks victim phone that moves: the subject comes within the radius, stays "
    "1.5x the radius away, is passed by the victim, or approaches a phone gone silent",
)
def victim_moving(ctx: Ctx, variant: str) -> Outcome:
    rng = ctx.rng
    radius = float(rng.choice(np.arange(200.0, 501.0, 50.0)))
    warn = float(rng.choice([200.0, 300.0])) if rng.random() < 0.5 else None
    phone = PhoneSpec(f"victim{ctx.k + 1}/phone", radius, warn, (0.0, 0.0), 0.0, 0.0)
    t0, t_end = ctx.t0, ctx.t0 + 90 * MIN
    A: XY = (0.0, 0.0)
    v = PathBuilder(t0, *A)
    s = PathBuilder(t0, *_away(ctx, A, 2000, 2600))
    phone_until = t_end
    if variant == "approach":  # the victim walks to a cafe; the subject comes to her there
        B = _away(ctx, A, 400, 800)
        v.dwell(_u(ctx, 5, 15) * MIN)
        v.go(B, _u(ctx, *WALK))
        target, meet = _away(ctx, B, 0.2 * radius, 0.6 * radius), v.now + _u(ctx, 3, 15) * MIN
        v.dwell(_u(ctx, 40, 50) * MIN)
        v.go(_away(ctx, B, 400, 800), _u(ctx, *WALK))
    elif variant == "stale":  # the phone dies at home; the victim stays
        phone_until = t0 + _u(ctx, 10, 20) * MIN
        target, meet = (
            _away(ctx, A, 0.2 * radius, 0.6 * radius),
            phone_until + _u(ctx, 10, 30) * MIN,
        )
    elif variant == "victim_passes":  # the subject sits still; the victim walks past
        S = _away(ctx, A, 0.0, 50.0)
        s = PathBuilder(t0, *S)
        s.linger(rng, 80 * MIN, radius=5.0, centre=S)
        th, off = _u(ctx, 0, 2 * math.pi), _u(ctx, 0.2, 0.5) * radius
        foot = (S[0] - off * math.sin(th), S[1] + off * math.cos(th))
        a = (foot[0] - 1500 * math.cos(th), foot[1] - 1500 * math.sin(th))
        e = (foot[0] + 1500 * math.cos(th), foot[1] + 1500 * math.sin(th))
        speed = _u(ctx, *WALK)
        v = PathBuilder(t0, *a)
        v.wait_until(t0 + 40 * MIN - 1500 / speed)
        v.go(e, speed)
        target = None
    else:  # keep_away: the victim strolls to and fro; the subject stays 1.5 radii off
        B = _away(ctx, A, 100, 300)
        while v.now < t_end:
            v.go(B, _u(ctx, 0.5, 1.0))
            v.dwell(_u(ctx, 1, 10) * MIN)
            v.go(A, _u(ctx, 0.5, 1.0))
            v.dwell(_u(ctx, 1, 10) * MIN)
        seg = LineString([A, B])
        ang = _u(ctx, 0, 2 * math.pi)
        d = 1.5 * radius + _u(ctx, 15, 80)
        mid = ((A[0] + B[0]) / 2, (A[1] + B[1]) / 2)
        for k in range(200):
            target = (mid[0] + (d + k) * math.cos(ang), mid[1] + (d + k) * math.sin(ang))
            if seg.distance(Point(target)) >= d - 5:  # linger radius 5
                break
        far = _u(ctx, 2000, 2600)  # come in along the same bearing, never nearer
        s = PathBuilder(t0, mid[0] + far * math.cos(ang), mid[1] + far * math.sin(ang))
        meet = t0 + _u(ctx, 20, 30) * MIN
    if target is not None:
        home = s.pos
        speed = _u(ctx, *WALK)
        s.wait_until(meet - math.dist(home, target) / speed)
        s.go(target, speed)
        s.linger(rng, _u(ctx, 5, 15) * MIN if variant != "keep_away" else 30 * MIN, 5.0, target)
        s.go(home, speed)
    t1 = max(t_end, s.now, v.now)
    path, phone_path = s.build(t1), v.build(t1)
    fixes = ctx.sample(path, t0, t1, STREET)
    phone_fixes = ctx.sample(phone_path, t0, phone_until, PHONE, whole_seconds=True, tag=False)
    expect: Expect = "negative" if variant == "keep_away" else "material"
    return Outcome(
        variant,
        expect,
        [],
        path,
        fixes,
        t1,
        phone=phone,
        phone_path=phone_path,
        phone_fixes=phone_fixes,
    )


@family(
    "cell",
    ("tower_near", "cell_only_inside", "gps_then_cell"),
    "600 m cell fixes centred near/in a zone while truly 150-450 m outside (no breach); "
    "inside with only cell fixes (ambiguous); GPS walk-in then cell indoors (material)",
)
def cell(ctx: Ctx, variant: str) -> Outcome:
    rng = ctx.rng
    z = exclusion_zone(ctx, (80.0, 200.0))
    g, c, far = z.area_xy, z.deep_xy, reach(z) + 1200.0
    cell_only: list[tuple[float, float]] = []
    if variant == "tower_near":
        th = _u(ctx, 0, 2 * math.pi)
        spot = along_ray(g, c, th, -_u(ctx, 150, 450), far)
        b = PathBuilder(ctx.t0, *along_ray(g, c, th, -_u(ctx, 800, 1000), far))
        b.go(spot, _u(ctx, *WALK))
        b.linger(rng, _u(ctx, 30, 50) * MIN, radius=10.0, centre=spot)
        b.go(along_ray(g, c, th + 0.3, -_u(ctx, 800, 1000), far), _u(ctx, *WALK))
        t1 = b.now
        path = b.build(t1)
        fixes = ctx.sample(path, ctx.t0, t1, STREET)
        tower = along_ray(g, c, th + _u(ctx, -0.5, 0.5), _u(ctx, -80.0, 0.8 * z.depth_m), far)
        tx, ty = path.at(fixes.t)
        for i in np.flatnonzero(rng.random(len(fixes)) < 0.6).tolist():
            err = math.hypot(tx[i] - tower[0], ty[i] - tower[1])
            fixes.x[i], fixes.y[i] = tower[0] + rng.normal(0, 30), tower[1] + rng.normal(0, 30)
            fixes.acc[i] = max(_u(ctx, 500, 800), 1.1 * err)
            fixes.src[i] = "cell"
        return Outcome(variant, "negative", [z], path, fixes, t1)
    b = walk_in_path(ctx, z, (15.0, 30.0))
    t1 = b.now
    path = b.build(t1)
    fixes = ctx.sample(path, ctx.t0, t1, STREET)
    s = inside_span(path, z, ctx.t0, t1)
    assert s is not None
    expect: Expect
    if variant == "cell_only_inside":
        span, expect = (s[0] - 10 * MIN, s[1] + 10 * MIN), "ambiguous"
        cell_only.append(span)
    else:
        span, expect = (s[0] + 4 * MIN, s[1] - 1 * MIN), "material"
    tx, ty = path.at(fixes.t)
    for i in np.flatnonzero((fixes.t >= span[0]) & (fixes.t < span[1])).tolist():
        fixes.x[i], fixes.y[i], fixes.acc[i] = cell_fix(rng, tx[i], ty[i], (500.0, 800.0))
        fixes.src[i] = "cell"
    return Outcome(variant, expect, [z], path, fixes, t1, cell_only=cell_only)


def _to_depth(g: BaseGeometry, dx: float, dy: float, q0: float, target: float) -> XY:
    """The first point on the ray q * (dx, dy), q >= q0, that lies `target` metres deep in
    g (before the ray leaves it again); ValueError when nothing there is that deep."""
    for q in np.arange(q0, q0 + 300.0, 0.5).tolist():
        d = depth_at(g, q * dx, q * dy)
        if d >= target:
            return q * dx, q * dy
        if d < -1.0 and q > q0 + 5.0:
            break
    raise ValueError(f"nothing {target:.0f} m deep along the ray")


@family(
    "hole",
    ("corridor_walk", "enclave_stay", "corridor_stray", "enclave_exit"),
    "a zone cut by a permitted corridor (walk it: no breach; stray 25-40 m into the zone: "
    "material) or with a permitted enclave hole (stay: no breach; step out: material)",
)
def hole(ctx: Ctx, variant: str) -> Outcome:
    rng = ctx.rng
    walk = _u(ctx, *WALK)
    corridor = variant.startswith("corridor")
    th, width, hr, span = _u(ctx, 0, math.pi), _u(ctx, 15, 30), _u(ctx, 45, 70), 600.0
    dx, dy = math.cos(th), math.sin(th)
    for _ in range(50):
        base = blob_shape(rng, _u(ctx, 150, 220))
        if corridor:  # a permitted road straight through: the zone is two parts
            road = LineString([(-span * dx, -span * dy), (span * dx, span * dy)])
            g = base.difference(road.buffer(width / 2, cap_style="flat"))
            parts = list(getattr(g, "geoms", [g]))
            if len(parts) == 2 and min(p.area for p in parts) > 0.25 * base.area:
                break
        else:  # a permitted enclave (e.g. their own address) as an interior hole
            ring = Point(0, 0).buffer(hr, 32)
            if base.buffer(-80).contains(ring):
                g = Polygon(base.exterior.coords, [ring.exterior.coords])
                break
    else:
        raise ValueError("hole: no zone fitted")
    z = ctx.polygon("home", g)
    depth = _u(ctx, 25, 40)
    if corridor:
        b = PathBuilder(ctx.t0, -span * dx, -span * dy)
        b.dwell(_u(ctx, 0, 5) * MIN)
        if variant == "corridor_stray":
            side = 1.0 if rng.random() < 0.5 else -1.0
            b.go((0.0, 0.0), walk)
            b.go(_to_depth(g, -dy * side, dx * side, width / 2, depth), walk)
            b.linger(rng, _u(ctx, 3, 8) * MIN, radius=4.0)
            b.go((0.0, 0.0), walk)
        b.go((span * dx, span * dy), walk)
        b.dwell(_u(ctx, 2, 5) * MIN)
    else:
        b = PathBuilder(ctx.t0, 0.0, 0.0)
        b.linger(rng, _u(ctx, 5, 15) * MIN, radius=0.4 * hr, centre=(0.0, 0.0))
        if variant == "enclave_exit":
            out = _u(ctx, 0, 2 * math.pi)
            b.go(_to_depth(g, math.cos(out), math.sin(out), hr, depth), walk)
            b.linger(rng, _u(ctx, 3, 8) * MIN, radius=4.0)
            b.go((0.0, 0.0), walk)
        b.linger(rng, _u(ctx, 20, 45) * MIN, radius=0.4 * hr, centre=(0.0, 0.0))
    t1 = b.now
    path = b.build(t1)
    fixes = ctx.sample(path, ctx.t0, t1, STREET)
    expect: Expect = "material" if variant in ("corridor_stray", "enclave_exit") else "negative"
    return Outcome(variant, expect, [z], path, fixes, t1)
