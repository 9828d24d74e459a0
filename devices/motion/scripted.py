"""Scripted paths (scenario files): a device's true path built from a timeline's `Move`s
in order (`ScriptedPath`), the `Plan` they make, and `ScriptError` for what cannot happen."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import LineString, Point

from devices.families.kit import along_ray, line_depth, reach
from devices.motion.navigate import Mode, Navigator
from devices.motion.paths import Leg, PathBuilder, TruePath
from devices.motion.planner import Plan
from devices.world.city import SubjectSpec, World, ZoneSpec

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


def too_deep(depth: float, z: ZoneSpec) -> str | None:
    """Why a move cannot go `depth` metres into zone `z` (None: it can)."""
    if depth >= z.depth_m:
        return (
            f"{depth:g} m is deeper than zone {z.id} goes ({z.depth_m:.0f} m at its deepest point)"
        )
    return None


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

    def _reachable(self, m: Move, depth: float, z: ZoneSpec) -> None:
        why = too_deep(depth, z)
        if why is not None:
            raise ScriptError(m.index, "depth_m", why)

    def _enter_zone(self, m: Move) -> None:
        z = self._zone(m)
        depth = m.depth_m if m.depth_m is not None else min(50.0, 0.6 * z.depth_m)
        self._reachable(m, depth, z)
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
        z = self._zone(m, outside=False)
        far = reach(z) + math.dist(self.path.pos, z.deep_xy)
        spot = along_ray(z.area_xy, z.deep_xy, self._theta(m, z), -m.distance_m, far)
        self.path.follow(self._leg(self.path.pos, spot, m))
        end = self._end(m)
        radius = min(m.radius_m, m.distance_m / 2)
        self.path.linger(self.rng, end - self.now, radius=radius, centre=spot)

    def _drive_through(self, m: Move) -> None:
        z = self._zone(m)
        g = z.area_xy
        pos = self.path.pos
        length = math.dist(pos, z.deep_xy) + reach(z)
        base = math.atan2(z.deep_xy[1] - pos[1], z.deep_xy[0] - pos[0])

        def end(angle: float) -> tuple[float, float]:
            return pos[0] + length * math.cos(angle), pos[1] + length * math.sin(angle)

        theta = base
        if m.depth_m is not None:
            self._reachable(m, m.depth_m, z)
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
