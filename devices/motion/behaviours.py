"""Scripted movement behaviours, by name: each extends a subject's true path until a time.

A behaviour is `fn(ctx, until, **params)`; it appends to `ctx.path` starting from
wherever the subject is now. Register new ones with `@behaviour("name")`."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from shapely.geometry import LineString, Point
from shapely.geometry.base import BaseGeometry

from devices.motion.navigate import Navigator
from devices.motion.paths import Leg, PathBuilder, TruePath
from devices.world.city import SubjectSpec, World

WALK = 1.4
CYCLE = 4.5
MIN = 60.0


@dataclass
class Ctx:
    """What a behaviour may use: the world, the subject, its router, its random stream,
    the path so far, the victim phone's true path and the sim's end."""

    world: World
    subject: SubjectSpec
    nav: Navigator
    rng: np.random.Generator
    path: PathBuilder
    t_end: float
    phone_path: TruePath | None = None
    log: list[tuple[float, str]] = field(default_factory=list)

    @property
    def home(self) -> tuple[float, float]:
        return self.subject.home_xy

    def at_home(self) -> bool:
        return math.dist(self.path.pos, self.home) < 10.0


Behaviour = Callable[..., None]
BEHAVIOURS: dict[str, Behaviour] = {}


def behaviour(name: str) -> Callable[[Behaviour], Behaviour]:
    """Register `fn` under `name` in BEHAVIOURS."""

    def deco(fn: Behaviour) -> Behaviour:
        BEHAVIOURS[name] = fn
        return fn

    return deco


def run(ctx: Ctx, name: str, until: float, **params: Any) -> None:
    """Run behaviour `name` from now until `until` (logged for the run summary)."""
    ctx.log.append((ctx.path.now, name))
    BEHAVIOURS[name](ctx, until, **params)


def _stay_home(ctx: Ctx, until: float) -> None:
    ctx.path.linger(ctx.rng, until - ctx.path.now, radius=3.0, centre=ctx.home)


def _go_home(ctx: Ctx) -> None:
    if ctx.at_home():
        return
    mode = ctx.nav.pick_mode(ctx.rng, math.dist(ctx.path.pos, ctx.home))
    leg = ctx.nav.leg(ctx.rng, ctx.path.pos, ctx.home, mode)
    if leg is None:  # no street route (should not happen): walk straight
        ctx.path.go(ctx.home, WALK)
    else:
        ctx.path.follow(leg)


@behaviour("commute")
def commute(ctx: Ctx, until: float, end_home: bool = False) -> None:
    """Trips along streets between home and random places, never into own zones; with
    `end_home`, back home at least 5 minutes before `until`."""
    rng, nav, path = ctx.rng, ctx.nav, ctx.path
    margin = 5 * MIN
    failures = 0
    home_leg = None  # the way home from here, planned with the trip that came here
    if end_home and not ctx.at_home():
        home_leg = nav.leg(
            rng, path.pos, ctx.home, nav.pick_mode(rng, math.dist(path.pos, ctx.home))
        )
    while until - path.now > 10 * MIN and failures < 20:
        if rng.random() < 0.2 and not ctx.at_home():
            dest: tuple[float, float] | None = ctx.home
        else:
            dest = nav.random_place(
                rng, path.pos, 250.0, float(rng.choice([900.0, 2000.0, 4000.0]))
            )
        if dest is None:
            failures += 1
            continue
        mode = nav.pick_mode(rng, math.dist(path.pos, dest))
        there = nav.leg(rng, path.pos, dest, mode)
        back = nav.leg(rng, dest, ctx.home, mode) if end_home else None
        if there is None or (end_home and back is None):
            failures += 1
            continue
        stay = float(rng.uniform(5, 45)) * MIN
        spare = until - path.now - there.duration - (back.duration + margin if back else 0.0)
        if spare < 3 * MIN:
            break
        path.follow(there)
        path.linger(rng, min(stay, spare))
        home_leg = back
    if end_home:
        if home_leg is not None and not ctx.at_home():
            path.follow(home_leg)
        else:
            _go_home(ctx)
        _stay_home(ctx, until)
    elif ctx.at_home():
        _stay_home(ctx, until)
    else:
        path.linger(rng, until - path.now)


@behaviour("curfew_ok")
def curfew_ok(ctx: Ctx, until: float) -> None:
    """Home (and staying in) for the whole curfew window."""
    _go_home(ctx)
    _stay_home(ctx, until)


@behaviour("curfew_breach")
def curfew_breach(ctx: Ctx, until: float, window_start: float, variant: str = "out") -> None:
    """`late`: still out when the curfew starts, home 20-60 min late. `out`: home at the
    start, then out for 20-60 min during the curfew, then home again."""
    rng, path = ctx.rng, ctx.path
    avail = min(until, ctx.t_end) - window_start
    away = float(rng.uniform(20 * MIN, min(60 * MIN, max(20 * MIN, avail - 10 * MIN))))
    if variant == "late" and not ctx.at_home():
        mode = ctx.nav.pick_mode(rng, math.dist(path.pos, ctx.home))
        leg = ctx.nav.leg(rng, path.pos, ctx.home, mode)
        travel = leg.duration if leg else math.dist(path.pos, ctx.home) / WALK
        path.linger(rng, window_start + away - travel - path.now)
        _go_home(ctx)
    else:
        _go_home(ctx)
        leave = max(path.now, window_start) + float(rng.uniform(0, 20 * MIN))
        leave = min(leave, window_start + max(0.0, avail - away - 5 * MIN))
        _stay_home(ctx, leave)
        back_by = path.now + away
        dest = ctx.nav.random_place(rng, ctx.home, 250.0, 800.0)
        there = ctx.nav.leg(rng, path.pos, dest, "walk") if dest is not None else None
        if there is not None and there.duration < away / 2 - 2 * MIN:
            path.follow(there)
            path.linger(rng, back_by - there.duration - path.now)
        else:  # nowhere reachable: stand in the street for a while
            path.go((ctx.home[0] + 80.0, ctx.home[1]), WALK)
            path.linger(rng, back_by - 60.0 - path.now)
        _go_home(ctx)
    _stay_home(ctx, until)


def _approach(
    ctx: Ctx, zone: BaseGeometry, goal: tuple[float, float], others: BaseGeometry | None
) -> tuple[float, float] | None:
    """Travel by street to a junction outside `zone` from which a straight walk to `goal`
    crosses the zone's edge once and (if possible) touches none of `others`; return it.
    None (and no movement) if no such junction can be reached."""
    rng, nav = ctx.rng, ctx.nav
    fallback: tuple[tuple[float, float], Leg] | None = None
    for lo, hi in ((60.0, 250.0), (60.0, 500.0), (60.0, 1200.0)):
        for stage in nav.staging_points(rng, zone, lo, hi):
            walk_in = LineString([stage, goal])
            if shapely.get_num_geometries(walk_in.intersection(zone.boundary)) != 1:
                continue
            mode = nav.pick_mode(rng, math.dist(ctx.path.pos, stage))
            leg = nav.leg(rng, ctx.path.pos, stage, mode)
            if leg is None:
                continue
            if others is None or not others.intersects(walk_in):
                ctx.path.follow(leg)
                return stage
            fallback = fallback or (stage, leg)
        if fallback is not None:
            ctx.path.follow(fallback[1])
            return fallback[0]
    return None


def _others(ctx: Ctx, but: str | None) -> BaseGeometry | None:
    """The subject's other zones (and victim phone area), to keep a walk-in clear of."""
    parts = [z.area_xy for z in ctx.subject.exclusions if z.id != but]
    phone = ctx.subject.phone
    if phone is not None and but is not None:
        parts.append(Point(phone.anchor_xy).buffer(phone.radius_m + phone.roam_m / 2, 32))
    return shapely.union_all(parts) if parts else None


@behaviour("dwell_breach")
def dwell_breach(ctx: Ctx, until: float, zone: str | None = None, direct: bool = False) -> None:
    """Travel to an own exclusion zone, walk in deep (to its deepest point), stay 3-15 min,
    walk out. `direct`: go straight in from here at cycling pace (a quick demo breach)."""
    rng = ctx.rng
    zones = ctx.subject.exclusions
    z = next((z for z in zones if z.id == zone), None) or zones[int(rng.integers(len(zones)))]
    if direct:
        outside: tuple[float, float] | None = ctx.path.pos
        speed = CYCLE
    else:
        outside = _approach(ctx, z.area_xy, z.deep_xy, _others(ctx, z.id))
        speed = WALK * float(rng.uniform(0.9, 1.1))
    if outside is None:
        ctx.log.append((ctx.path.now, "dwell_breach: no way in, skipped"))
        return
    ctx.path.go(z.deep_xy, speed)
    ctx.path.linger(rng, float(rng.uniform(3, 15)) * MIN, radius=min(8.0, z.depth_m / 4))
    ctx.path.go(z.deep_xy, WALK)  # out the way we came in: one crossing each way
    ctx.path.go(outside, WALK)


@behaviour("approach_victim")
def approach_victim(ctx: Ctx, until: float, direct: bool = False) -> None:
    """Go to within the protected radius of the victim's phone, stay some minutes, leave."""
    phone, phone_path, rng, path = ctx.subject.phone, ctx.phone_path, ctx.rng, ctx.path
    if phone is None or phone_path is None:
        return
    if direct:
        outside: tuple[float, float] | None = path.pos
        speed = CYCLE
    else:
        zone = Point(phone.anchor_xy).buffer(phone.radius_m + phone.roam_m / 2, 32)
        outside = _approach(ctx, zone, phone.anchor_xy, _others(ctx, None))
        speed = WALK
    if outside is None:
        ctx.log.append((path.now, "approach_victim: no way in, skipped"))
        return
    near = float(rng.uniform(0.1, 0.4)) * phone.radius_m
    target = outside
    for _ in range(3):  # aim where the phone will be when we get there
        eta = path.now + math.dist(outside, target) / speed
        px, py = phone_path.at(np.array([eta]))
        dx, dy = outside[0] - px[0], outside[1] - py[0]
        d = math.hypot(dx, dy) or 1.0
        target = (float(px[0] + near * dx / d), float(py[0] + near * dy / d))
    path.go(target, speed)
    path.linger(rng, float(rng.uniform(3, 10)) * MIN, radius=5.0)
    path.go(target, WALK)
    path.go(outside, WALK)
