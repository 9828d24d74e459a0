"""Per-subject navigation: street routes and places that keep clear of the subject's zones.

Walking, cycling or driving; the avoid area is the subject's own exclusion zones (plus a
margin) and the reach of its victim's phone."""

from __future__ import annotations

import itertools
import math
from typing import Literal

import numpy as np
import shapely
from shapely.geometry import LineString, Point
from shapely.geometry.base import BaseGeometry

from devices.motion.paths import Leg
from devices.world.city import SubjectSpec, World

Mode = Literal["walk", "cycle", "drive"]
# (street, arterial) speeds, m/s
SPEEDS: dict[str, tuple[float, float]] = {
    "walk": (1.4, 1.4),
    "cycle": (4.5, 5.0),
    "drive": (8.0, 12.5),
}
AVOID_MARGIN_M = 25.0  # how close a compliant subject's route may pass a zone edge


class Navigator:
    """Routes for one subject on the world's streets, never through `avoid`."""

    def __init__(self, world: World, subject: SubjectSpec, margin_m: float = AVOID_MARGIN_M):
        self.streets = world.streets
        parts: list[BaseGeometry] = [z.area_xy.buffer(margin_m) for z in subject.exclusions]
        if subject.phone is not None:
            p = subject.phone
            reach = p.radius_m + p.roam_m / 2 + margin_m + 50.0
            parts.append(Point(p.anchor_xy).buffer(reach, 32))
        self.avoid: BaseGeometry = shapely.union_all(parts) if parts else Point(1e9, 1e9)
        shapely.prepare(self.avoid)
        nodes = self.streets.nodes
        self.allowed = ~shapely.contains_xy(self.avoid, nodes[:, 0], nodes[:, 1])
        self.blocked: list[bool] = shapely.intersects(
            self.streets.edge_lines(), self.avoid
        ).tolist()
        lengths = self.streets.length
        art = self.streets.arterial
        self._cost: dict[str, list[float]] = {}
        for mode, (v_street, v_art) in SPEEDS.items():
            self._cost[mode] = (lengths / np.where(art, v_art, v_street)).tolist()

    def clear(self, a: tuple[float, float], b: tuple[float, float]) -> bool:
        """Whether the straight line a-b keeps out of the avoid area."""
        if a == b:
            return not self.avoid.contains(Point(a))
        return not self.avoid.intersects(LineString([a, b]))

    def _attach(self, xy: tuple[float, float]) -> int | None:
        """The nearest usable junction reachable on foot from xy without crossing the
        avoid area (from inside it, e.g. after a breach: the nearest way out)."""
        escaping = self.avoid.contains(Point(xy))
        for n in self.streets.nearest(xy[0], xy[1], self.allowed, k=8).tolist():
            node = (float(self.streets.nodes[n, 0]), float(self.streets.nodes[n, 1]))
            if escaping or self.clear(xy, node):
                return int(n)
        return None

    def leg(
        self,
        rng: np.random.Generator,
        a: tuple[float, float],
        b: tuple[float, float],
        mode: Mode,
    ) -> Leg | None:
        """A street route from a to b (on foot to and from the street), or None."""
        if math.dist(a, b) < 1.0:
            return Leg(np.array([a, b]), np.array([1.0]))
        src, dst = self._attach(a), self._attach(b)
        if src is None or dst is None:
            return None
        v_street, v_art = SPEEDS[mode]
        node_path = self.streets.shortest_path(src, dst, self._cost[mode], self.blocked, v_art)
        if node_path is None:
            return None
        pace = float(rng.uniform(0.85, 1.15))  # this person, this trip
        pts: list[tuple[float, float]] = [a]
        secs: list[float] = []
        nodes = self.streets.nodes
        first = (float(nodes[node_path[0], 0]), float(nodes[node_path[0], 1]))
        pts.append(first)
        secs.append(math.dist(a, first) / 1.4)
        adjacency = self.streets.adjacency
        for u, v in itertools.pairwise(node_path):
            e = next(e for w, e in adjacency[u] if w == v)
            speed = (v_art if self.streets.arterial[e] else v_street) * pace
            speed *= float(rng.uniform(0.9, 1.1))
            p = (float(nodes[v, 0]), float(nodes[v, 1]))
            if mode == "drive" and rng.random() < 0.15:  # lights, junctions, traffic
                pts.append(pts[-1])
                secs.append(float(rng.uniform(10.0, 40.0)))
            secs.append(math.dist(pts[-1], p) / speed)
            pts.append(p)
        secs.append(math.dist(pts[-1], b) / 1.4)
        pts.append(b)
        return Leg(np.asarray(pts, dtype=np.float64), np.asarray(secs, dtype=np.float64))

    def pick_mode(self, rng: np.random.Generator, distance: float) -> Mode:
        if distance < 900.0:
            return "walk" if rng.random() < 0.8 else "cycle"
        if distance < 2500.0:
            return "cycle" if rng.random() < 0.35 else "drive"
        return "drive"

    def random_place(
        self, rng: np.random.Generator, near: tuple[float, float], dmin: float, dmax: float
    ) -> tuple[float, float] | None:
        """An address dmin-dmax metres from `near`, off a street, outside the avoid area."""
        nodes = self.streets.nodes
        d = np.hypot(nodes[:, 0] - near[0], nodes[:, 1] - near[1])
        ok = np.flatnonzero(self.allowed & (d >= dmin) & (d <= dmax))
        if len(ok) == 0:
            return None
        for _ in range(10):
            n = nodes[int(rng.choice(ok))]
            ang = rng.uniform(0, 2 * math.pi)
            r = rng.uniform(10.0, 40.0)
            p = (float(n[0] + r * math.cos(ang)), float(n[1] + r * math.sin(ang)))
            if self.clear(p, p):
                return p
        return None

    def staging_points(
        self, rng: np.random.Generator, target: BaseGeometry, dmin: float, dmax: float, k: int = 12
    ) -> list[tuple[float, float]]:
        """Up to k street junctions (random order) dmin-dmax metres outside `target` and
        outside the avoid area, from which to go in on foot."""
        nodes = self.streets.nodes
        d = shapely.distance(target, shapely.points(nodes))
        ok = np.flatnonzero(self.allowed & (d >= dmin) & (d <= dmax))
        pick = rng.permutation(ok)[:k]
        return [(float(nodes[n, 0]), float(nodes[n, 1])) for n in pick.tolist()]
