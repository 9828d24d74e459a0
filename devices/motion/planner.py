"""Plans each subject's run: a seeded behaviour mix strung into one true path.

Behaviours are fitted around the curfew windows; victims' phones get paths of their own.
Scenario files script a path instead: `ScriptedPath` runs their `Move`s in order."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import LineString, Point

from devices.motion import behaviours as bh
from devices.motion.navigate import Mode, Navigator
from devices.motion.paths import Leg, PathBuilder, TruePath
from devices.world.city import PhoneSpec, SubjectSpec, World, ZoneSpec
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


# -- scripted paths (scenario files) -------------------------------------------------------

STRAIGHT_SPEED: dict[str, float] = {"walk": 1.4, "cycle": 4.5, "drive": 11.0}  # m/s
NEAR_M = 25.0  # a dwell at a named place must start this close to it
WAIT_RADIUS_M = 3.0  # standing about while waiting for the next entry's time


class ScriptError(ValueError):
    """A scripted timeline entry that cannot happen as written: entry `index` (1-based),
    `field` the field to change, the message says why."""

    def __init__(self, index: int, field: str, message: str) -> None:
        super().__init__(message)
        self.index = index
        self.field = field


def offset_text(seconds: float) -> str:
    """Seconds after the run's start as scenario files write them: +0m, +45m, +1h05m30s."""
    s = round(seconds)
    sign = "-" if s < 0 else "+"
    h, rest = divmod(abs(s), 3600)
    m, sec = divmod(rest, 60)
    text = f"{h}h{m:02d}m" if h else f"{m}m"
    return sign + text + (f"{sec:02d}s" if sec else "")


@dataclass(frozen=True)
class Move:
    """One scripted movement. Times are seconds after the run's start; `at` None: when the
    previous entry ends. Places are city-frame metres."""

    index: int  # 1-based entry number in its timeline (for error messages)
    do: str  # dwell | stationary | walk_to | cycle_to | drive_to | moving | enter_zone |
    #          drive_through | lurk
    at: float | None = None
    arrive: float | None = None  # travel: set off so as to arrive then
    until: float | None = None
    seconds: float | None = None  # `for`
    place: tuple[float, float] | None = None
    via: tuple[tuple[float, float], ...] = ()
    zone: ZoneSpec | None = None
    mode: Mode = "walk"
    route: str = "streets"  # streets | straight
    speed: float | None = None  # m/s on straight legs (None: STRAIGHT_SPEED[mode])
    depth_m: float | None = None
    distance_m: float = 30.0  # lurk: metres outside the edge
    bearing: float | None = None  # compass degrees from the zone's deep point
    radius_m: float = 5.0  # shuffling about while staying
    beyond_m: float = 200.0  # drive_through: carries on this far past the far edge
    leave: bool = True  # enter_zone: walk back out afterwards


class ScriptedPath:
    """A device's true path built from scripted `Move`s, one at a time: each waits (standing
    about) until its `at`, or starts when the previous one ended. Street legs avoid the
    subject's own exclusion zones and its victim phone's starting point (as a compliant
    subject's would); zone moves go straight."""

    def __init__(
        self,
        world: World,
        subject: SubjectSpec | None,
        rng: np.random.Generator,
        t0: float,
        t1: float,
        start: tuple[float, float],
    ) -> None:
        # street legs keep clear of own zones and of where the victim's phone starts
        self.nav = Navigator(world, subject or SubjectSpec("", "", 0, start, (), None))
        self.rng = rng
        self.t0, self.t1 = t0, t1
        self.path = PathBuilder(t0, *start)
        self.log: list[tuple[float, str]] = []
        self.breaches: list[str] = []

    @property
    def now(self) -> float:
        return self.path.now

    def rel(self, t: float) -> str:
        return offset_text(t - self.t0)

    def wait(self, t: float) -> None:
        """Stand about where we are until t."""
        if t > self.now:
            self.path.linger(self.rng, t - self.now, radius=WAIT_RADIUS_M, centre=self.path.pos)

    def do(self, m: Move) -> None:
        """Run one move (raises ScriptError if it cannot happen as written)."""
        if m.at is not None:
            at = self.t0 + m.at
            if at >= self.t1:
                raise ScriptError(
                    m.index,
                    "at",
                    f"{self.rel(at)} is not before the run's end ({self.rel(self.t1)})",
                )
            if at < self.now - 1e-6:
                raise ScriptError(
                    m.index,
                    "at",
                    f"{self.rel(at)} is before the previous entry ends ({self.rel(self.now)})",
                )
            self.wait(at)
        elif self.now >= self.t1:
            raise ScriptError(
                m.index,
                "at",
                f"would start at {self.rel(self.now)}, when the entry before it ends, which is "
                f"not before the run ends ({self.rel(self.t1)})",
            )
        self.log.append((self.now, m.do))
        if m.do in ("dwell", "stationary"):
            self._stay(m)
        elif m.do in ("walk_to", "cycle_to", "drive_to", "moving"):
            self._travel(m)
        elif m.do == "enter_zone":
            self._enter_zone(m)
        elif m.do == "drive_through":
            self._drive_through(m)
        elif m.do == "lurk":
            self._lurk(m)
        else:
            raise ScriptError(m.index, "do", f"unknown move {m.do!r}")

    def build(self) -> TruePath:
        return self.path.build(self.t1)

    # -- moves -----------------------------------------------------------------------------

    def _end(self, m: Move) -> float:
        """When a stay ends: `until`, or `for` from now (for zone moves: from arriving)."""
        end = self.t0 + m.until if m.until is not None else self.now + (m.seconds or 0.0)
        if end <= self.now:
            raise ScriptError(
                m.index,
                "until",
                f"{self.rel(end)} is not after {self.rel(self.now)}, when the stay would begin",
            )
        return end

    def _stay(self, m: Move) -> None:
        end = self._end(m)
        centre = self.path.pos
        if m.place is not None:
            d = math.dist(centre, m.place)
            if d > NEAR_M:
                raise ScriptError(
                    m.index,
                    "place",
                    f"the device is {d:.0f} m from it at "
                    f"{self.rel(self.now)}: go there first (walk_to, drive_to)",
                )
            centre = m.place
        self.path.linger(self.rng, end - self.now, radius=m.radius_m, centre=centre)

    def _leg(self, a: tuple[float, float], b: tuple[float, float], m: Move) -> Leg:
        if m.route == "streets":
            leg = self.nav.leg(self.rng, a, b, m.mode)
            if leg is not None:
                return leg
            self.log.append((self.now, f"{m.do}: no street route, straight"))
        return Leg.straight(a, b, m.speed or STRAIGHT_SPEED[m.mode])

    def _travel(self, m: Move) -> None:
        assert m.place is not None
        legs: list[Leg] = []
        here = self.path.pos
        for stop in (*m.via, m.place):
            legs.append(self._leg(here, stop, m))
            here = stop
        if m.arrive is not None:
            trip = sum(leg.duration for leg in legs)
            leave = self.t0 + m.arrive - trip
            if leave < self.now - 1e-6:
                raise ScriptError(
                    m.index,
                    "arrive",
                    f"the trip takes {trip / 60:.0f} min, so "
                    f"setting off at {self.rel(self.now)} it arrives at "
                    f"{self.rel(self.now + trip)}",
                )
            self.wait(leave)
        for leg in legs:
            self.path.follow(leg)

    def _zone(self, m: Move, outside: bool = True) -> ZoneSpec:
        z = m.zone
        assert z is not None
        if outside and z.area_xy.contains(Point(self.path.pos)):
            raise ScriptError(
                m.index,
                "zone",
                f"the subject is already inside {z.id} at "
                f"{self.rel(self.now)}; this move starts outside it",
            )
        return z

    def _theta(self, m: Move, z: ZoneSpec) -> float:
        """Direction from the zone's deep point: the compass bearing, or towards us."""
        if m.bearing is not None:
            return math.radians(90.0 - m.bearing)
        x, y = self.path.pos
        return math.atan2(y - z.deep_xy[1], x - z.deep_xy[0])

    def _speed(self, m: Move) -> float:
        return m.speed or STRAIGHT_SPEED[m.mode]

    def _enter_zone(self, m: Move) -> None:
        from devices.families.kit import along_ray, reach  # famkit -> truth -> this module

        z = self._zone(m)
        depth = m.depth_m if m.depth_m is not None else min(50.0, 0.6 * z.depth_m)
        if depth >= z.depth_m:
            raise ScriptError(
                m.index,
                "depth_m",
                f"{depth:g} m is deeper than zone {z.id} goes "
                f"({z.depth_m:.0f} m at its deepest point)",
            )
        theta = self._theta(m, z)
        far = reach(z) + math.dist(self.path.pos, z.deep_xy)
        door = self.path.pos
        if m.bearing is not None:  # first to the edge at that bearing, 10 m out
            door = along_ray(z.area_xy, z.deep_xy, theta, -10.0, far)
            self.path.follow(self._leg(self.path.pos, door, m))
        inside = along_ray(z.area_xy, z.deep_xy, theta, depth, far)
        self.path.go(inside, self._speed(m))
        end = self._end(m)
        self.path.linger(self.rng, end - self.now, radius=min(m.radius_m, depth / 4), centre=inside)
        if m.leave:
            self.path.go(door, self._speed(m))
        self.breaches.append(z.id)

    def _lurk(self, m: Move) -> None:
        from devices.families.kit import along_ray, reach

        z = self._zone(m, outside=False)
        far = reach(z) + math.dist(self.path.pos, z.deep_xy)
        spot = along_ray(z.area_xy, z.deep_xy, self._theta(m, z), -m.distance_m, far)
        self.path.follow(self._leg(self.path.pos, spot, m))
        end = self._end(m)
        radius = min(m.radius_m, m.distance_m / 2)
        self.path.linger(self.rng, end - self.now, radius=radius, centre=spot)

    def _drive_through(self, m: Move) -> None:
        from devices.families.kit import line_depth, reach

        z = self._zone(m)
        g = z.area_xy
        pos = self.path.pos
        length = math.dist(pos, z.deep_xy) + reach(z)
        base = math.atan2(z.deep_xy[1] - pos[1], z.deep_xy[0] - pos[0])

        def end(angle: float) -> tuple[float, float]:
            return pos[0] + length * math.cos(angle), pos[1] + length * math.sin(angle)

        theta = base
        if m.depth_m is not None:
            if m.depth_m >= z.depth_m:
                raise ScriptError(
                    m.index,
                    "depth_m",
                    f"{m.depth_m:g} m is deeper than zone "
                    f"{z.id} goes ({z.depth_m:.0f} m at its deepest point)",
                )
            lo, hi = 0.0, math.pi / 2  # turn aside from the deep point until that shallow
            for _ in range(40):
                mid = 0.5 * (lo + hi)
                if line_depth(g, pos, end(base + mid)) > m.depth_m:
                    lo = mid
                else:
                    hi = mid
            theta = base + 0.5 * (lo + hi)
        line = LineString([pos, end(theta)])
        crossed = line.intersection(g)
        if crossed.is_empty:
            raise ScriptError(m.index, "depth_m", f"the drive misses zone {z.id}")
        out = max(line.project(Point(c)) for c in shapely.get_coordinates(crossed).tolist())
        s = out + m.beyond_m
        self.path.go((pos[0] + s * math.cos(theta), pos[1] + s * math.sin(theta)), self._speed(m))
        self.breaches.append(z.id)


def scripted_plan(
    subject: SubjectSpec,
    path: ScriptedPath,
    phone: ScriptedPath | None,
) -> Plan:
    """The Plan of a scripted subject (and its scripted victim phone)."""
    return Plan(
        subject,
        path.build(),
        phone.build() if phone is not None else None,
        tuple(dict.fromkeys(path.breaches)),
        tuple(path.log),
    )
