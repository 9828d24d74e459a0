"""Plans each subject's run: a seeded behaviour mix strung into one true path (`Plan`).

Behaviours are fitted around the curfew windows; victims' phones get paths of their own.
Scenario files script a path instead (scripted.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import LineString, Point

from devices.motion import behaviours as bh
from devices.motion.navigate import Navigator
from devices.motion.paths import PathBuilder, TruePath
from devices.world.city import PhoneSpec, SubjectSpec, World
from devices.world.clock import active_intervals

BREACH_KINDS = ("dwell_breach", "curfew_breach", "approach_victim")
MIN = 60.0


@dataclass(frozen=True)
class Plan:
    """One subject's true path, its victim phone's true path and what it was told to do."""

    subject: SubjectSpec
    path: TruePath
    phone_path: TruePath | None
    breaches: tuple[str, ...]  # breach behaviours planned (empty: compliant)
    log: tuple[tuple[float, str], ...]  # (start time, behaviour) in order


def phone_path(phone: PhoneSpec, rng: np.random.Generator, t0: float, t1: float) -> TruePath:
    """Stationary at its anchor, or walking slowly back and forth through it with pauses."""
    ax, ay = phone.anchor_xy
    if phone.roam_m <= 0:
        return PathBuilder(t0, ax, ay).build(t1)
    dx, dy = math.cos(phone.roam_angle), math.sin(phone.roam_angle)
    half = phone.roam_m / 2
    ends = [(ax - half * dx, ay - half * dy), (ax + half * dx, ay + half * dy)]
    s = float(rng.uniform(-half, half))
    b = PathBuilder(t0, ax + s * dx, ay + s * dy)
    i = int(rng.integers(2))
    while b.now < t1:
        b.go(ends[i], float(rng.uniform(0.5, 1.0)))
        b.dwell(float(rng.uniform(1, 10)) * MIN)
        i = 1 - i
    return b.build(t1)


def _ray_start(
    subject: SubjectSpec,
    rng: np.random.Generator,
    centre: tuple[float, float],
    inside_r: float,
    target: shapely.Geometry | None,
    d: float,
) -> tuple[float, float] | None:
    """A point d metres outside a zone (or outside radius inside_r of `centre`), along a
    random ray from `centre`, not inside any zone of the subject nor (for a zone) within
    50 m of its victim phone's protected radius."""
    ph = subject.phone
    phone = Point(ph.anchor_xy).buffer(ph.radius_m + ph.roam_m / 2) if ph is not None else None
    for _ in range(24):
        ang = rng.uniform(0, 2 * math.pi)
        ux, uy = math.cos(ang), math.sin(ang)
        for s in np.arange(5.0, 2000.0, 5.0):
            p = (centre[0] + s * ux, centre[1] + s * uy)
            dist = math.dist(p, centre) - inside_r if target is None else target.distance(Point(p))
            if dist >= d and (target is None or not target.contains(Point(p))):
                ok = not any(z.area_xy.contains(Point(p)) for z in subject.zones)
                if target is not None:
                    ok = ok and (phone is None or phone.distance(Point(p)) > 50.0)
                    walk_in = LineString([p, centre]).intersection(target.boundary)
                    ok = ok and shapely.get_num_geometries(walk_in) == 1  # in once
                if ok:
                    return p
                break
    return None


def _quick_start(
    subject: SubjectSpec,
    rng: np.random.Generator,
    phone: TruePath | None,
    t0: float,
    breaches: list[str],
) -> tuple[tuple[float, float] | None, str | None, dict[str, object]]:
    """(start, behaviour, params) for a breach that begins at once from 50-200 m out:
    the victim phone if that breach is planned, else any exclusion zone that allows it."""
    d = float(rng.uniform(50.0, 200.0))
    options: list[str | int] = list(rng.permutation(len(subject.exclusions)).tolist())
    if phone is not None and subject.phone is not None:
        options.insert(0 if "approach_victim" in breaches else len(options), "phone")
    for opt in options:
        if opt == "phone" and phone is not None and subject.phone is not None:
            px, py = phone.at(np.array([t0]))
            centre = (float(px[0]), float(py[0]))
            start = _ray_start(subject, rng, centre, subject.phone.radius_m, None, d)
            if start is not None:
                return start, "approach_victim", {"direct": True}
        elif isinstance(opt, int):
            z = subject.exclusions[opt]
            start = _ray_start(subject, rng, z.deep_xy, 0.0, z.area_xy, d)
            if start is not None:
                return start, "dwell_breach", {"direct": True, "zone": z.id}
    return None, None, {}


def _segments(
    windows: list[tuple[float, float]], t0: float, t1: float
) -> list[tuple[str, float, float]]:
    out: list[tuple[str, float, float]] = []
    t = t0
    for a, b in windows:
        a, b = max(a, t0), min(b, t1)
        if a > t:
            out.append(("free", t, a))
        if b > a:
            out.append(("curfew", a, b))
        t = max(t, b)
    if t < t1:
        out.append(("free", t, t1))
    return out


def plan_subject(
    world: World,
    subject: SubjectSpec,
    rng: np.random.Generator,
    t0: float,
    t1: float,
    breacher: bool,
    quick: bool = False,
) -> Plan:
    """Plan one subject from t0 to t1. A breacher gets one or two breach behaviours;
    `quick` puts it 50-200 m from a zone (or the victim's phone) and goes straight in."""
    nav = Navigator(world, subject)
    windows = active_intervals(subject.curfew.schedule, t0, t1) if subject.curfew else []
    segments = _segments(windows, t0, t1)
    phone = (
        phone_path(subject.phone, np.random.default_rng(rng.integers(2**63)), t0, t1)
        if subject.phone
        else None
    )
    # what to do
    possible = ["dwell_breach"]
    if any(k == "curfew" and b - a >= 25 * MIN for k, a, b in segments):
        possible.append("curfew_breach")
    if subject.phone is not None:
        possible.append("approach_victim")
    breaches: list[str] = []
    if breacher:
        n = 2 if rng.random() < 0.25 and len(possible) > 1 else 1
        breaches = [str(b) for b in rng.choice(possible, size=n, replace=False)]
    # where to start
    start: tuple[float, float] | None = None
    first: str | None = None
    first_params: dict[str, object] = {"direct": True}
    if quick and breacher:
        start, first, first_params = _quick_start(subject, rng, phone, t0, breaches)
        if first is not None and first not in breaches:
            breaches = [first, *breaches[1:]]
    if start is None:
        soon = segments[0][0] == "curfew" or (len(segments) > 1 and segments[0][2] - t0 < 45 * MIN)
        if soon or rng.random() < 0.5:
            start = subject.home_xy
        else:
            start = nav.random_place(rng, subject.home_xy, 300.0, 3000.0) or subject.home_xy
    ctx = bh.Ctx(world, subject, nav, rng, PathBuilder(t0, *start), t1, phone)
    # when to do it
    events: list[tuple[float, str]] = []  # (when, behaviour); sorted below
    curfew_breach: tuple[float, str] | None = None
    for kind in breaches:
        if kind == first:
            events.append((t0, kind))
        elif kind == "curfew_breach":
            cands = [(a, b) for k, a, b in segments if k == "curfew" and b - a >= 25 * MIN]
            a, _ = cands[int(rng.integers(len(cands)))]
            late_ok = any(k == "free" and b == a and b - a0 >= 20 * MIN for k, a0, b in segments)
            curfew_breach = (a, "late" if late_ok and rng.random() < 0.5 else "out")
        else:
            free = [(a, b) for k, a, b in segments if k == "free" and b - a >= 60 * MIN]
            if not free:
                continue
            a, b = free[int(rng.integers(len(free)))]
            events.append((float(rng.uniform(a, b - 50 * MIN)), kind))
    events.sort()
    # do it
    for i, (kind, a, b) in enumerate(segments):
        if kind == "curfew":
            if curfew_breach and curfew_breach[0] == a:
                bh.run(ctx, "curfew_breach", b, window_start=a, variant=curfew_breach[1])
            else:
                bh.run(ctx, "curfew_ok", b)
            continue
        nxt = segments[i + 1] if i + 1 < len(segments) else None
        budget = 45 * MIN if nxt is not None else 35 * MIN  # a breach takes about this long
        for t, name in (e for e in events if a <= e[0] < b):
            if ctx.path.now < t:
                bh.run(ctx, "commute", t)
            if t == t0 and name == first:
                bh.run(ctx, name, b, **first_params)
                continue
            if b - ctx.path.now < budget:
                ctx.log.append((ctx.path.now, f"{name}: no time left, skipped"))
                continue
            bh.run(ctx, name, b)
        late = curfew_breach is not None and nxt is not None and curfew_breach == (nxt[1], "late")
        bh.run(ctx, "commute", b, end_home=nxt is not None and not late)
    return Plan(subject, ctx.path.build(t1), phone, tuple(breaches), tuple(ctx.log))
