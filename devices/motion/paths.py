"""True paths: piecewise-linear (t, x, y) waypoints in the city frame, built leg by leg."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Leg:
    """A planned movement: points (k, 2) and the seconds spent on each of the k-1 steps
    (a step between equal points is a pause)."""

    points: FloatArray
    seconds: FloatArray

    @property
    def duration(self) -> float:
        return float(self.seconds.sum())

    @property
    def end(self) -> tuple[float, float]:
        return float(self.points[-1, 0]), float(self.points[-1, 1])

    @staticmethod
    def straight(a: tuple[float, float], b: tuple[float, float], speed: float) -> Leg:
        pts = np.array([a, b], dtype=np.float64)
        return Leg(pts, np.array([math.dist(a, b) / speed]))


@dataclass(frozen=True)
class TruePath:
    """Where a device really is: linear between waypoints, held at the ends."""

    t: FloatArray
    x: FloatArray
    y: FloatArray

    def at(self, ts: FloatArray) -> tuple[FloatArray, FloatArray]:
        return np.interp(ts, self.t, self.x), np.interp(ts, self.t, self.y)

    @property
    def start(self) -> float:
        return float(self.t[0])

    @property
    def end(self) -> float:
        return float(self.t[-1])


class PathBuilder:
    """Appends legs, pauses and straight moves to a path that starts at (t, x, y)."""

    def __init__(self, t: float, x: float, y: float) -> None:
        self._t = [float(t)]
        self._x = [float(x)]
        self._y = [float(y)]

    @property
    def now(self) -> float:
        return self._t[-1]

    @property
    def pos(self) -> tuple[float, float]:
        return self._x[-1], self._y[-1]

    def _append(self, t: float, x: float, y: float) -> None:
        if t <= self._t[-1] + 1e-6:
            # too short to be a separate waypoint: jump (sub-millisecond, harmless)
            self._x[-1], self._y[-1] = float(x), float(y)
            return
        self._t.append(float(t))
        self._x.append(float(x))
        self._y.append(float(y))

    def follow(self, leg: Leg) -> None:
        """Move along a leg starting now (its first point should be where we are)."""
        t = self.now
        for (x, y), s in zip(leg.points[1:], leg.seconds, strict=True):
            t += float(s)
            self._append(t, x, y)

    def go(self, xy: tuple[float, float], speed: float) -> None:
        """Move straight to xy at `speed` m/s."""
        self.follow(Leg.straight(self.pos, xy, speed))

    def dwell(self, seconds: float) -> None:
        if seconds > 0:
            self._append(self.now + seconds, *self.pos)

    def wait_until(self, t: float) -> None:
        self.dwell(t - self.now)

    def linger(
        self,
        rng: np.random.Generator,
        seconds: float,
        radius: float = 8.0,
        centre: tuple[float, float] | None = None,
    ) -> None:
        """Stay about here (shuffling within `radius` of `centre`) for `seconds`."""
        cx, cy = self.pos if centre is None else centre
        end = self.now + seconds
        while self.now < end - 1.0:
            step = min(end - self.now, float(rng.uniform(30.0, 120.0)))
            ang = rng.uniform(0, 2 * math.pi)
            r = radius * math.sqrt(rng.random())
            self._append(self.now + step, cx + r * math.cos(ang), cy + r * math.sin(ang))
        self.wait_until(end)

    def build(self, t_end: float) -> TruePath:
        """The path, held at its last position until at least t_end."""
        self.wait_until(t_end)
        return TruePath(np.asarray(self._t), np.asarray(self._x), np.asarray(self._y))
