"""The battery model drawn and scripted health share: a level that drains, charges and
holds while off (`run_battery` -> `BatteryCurve`), what a tag reports of it, and when."""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from devices.health.tamper import TamperPlan

Span = tuple[float, float]


def overlaps(a: Span, spans: list[Span], margin: float) -> bool:
    """Whether span `a` comes within `margin` s of any of `spans` (a flat battery, a
    charge)."""
    return any(a[0] < b1 + margin and b0 < a[1] + margin for b0, b1 in spans)


@dataclass
class BatteryCurve:
    """A battery level over a run (piecewise linear through the knots), when it was flat
    and when it was charging (the last span may end at inf: still flat / charging)."""

    knots_t: list[float]
    knots_l: list[float]
    flats: list[Span]
    charging: list[Span]

    def flats_in_run(self, t1: float) -> list[Span]:
        return [(a, min(b, t1)) for a, b in self.flats]

    def low_power_off(self, tp: TamperPlan) -> bool:
        """A power-off tamper at 10 % or less, which a reader may take for a flat battery."""
        return bool(tp.offs) and bool(np.interp(tp.offs[0][0], self.knots_t, self.knots_l) <= 10)


def run_battery(
    start: float,
    drain: float,
    charge: float,
    sessions: list[Span],
    offs: list[Span],
    rescues: list[Span] | None,
    t0: float,
    t1: float,
) -> BatteryCurve:
    """The battery level as a piecewise-linear function of time: drains while on, rises
    while charging (capped at 100), holds while off; at 0 the tag is off until charged.
    `rescues` (delay, duration) are the recharges of a subject who forgets to charge."""
    heap: list[tuple[float, int, str]] = []
    for a, b in sessions:
        heap += [(a, 1, "on_charge"), (b, 0, "off_charge")]
    for a, b in offs:
        heap += [(a, 2, "off"), (b, 3, "on")]
    heapq.heapify(heap)
    t, level = t0, start
    bat = BatteryCurve([t0], [start], [], [])
    charging_since: float | None = None
    off = 0
    flat_since: float | None = None
    n_flat = 0
    while True:
        tb, _, what = heap[0] if heap and heap[0][0] < t1 else (t1, 9, "end")
        if flat_since is None and off == 0:
            if charging_since is not None:
                full = t + (100.0 - level) / charge * 3600.0
                if level < 100.0 and full < tb:
                    bat.knots_t.append(full)
                    bat.knots_l.append(100.0)
                level = min(100.0, level + charge * (tb - t) / 3600.0)
            else:
                empty = t + level / drain * 3600.0
                if empty <= tb:
                    t, level, flat_since = empty, 0.0, empty
                    bat.knots_t.append(t)
                    bat.knots_l.append(0.0)
                    if rescues is not None:
                        delay, dur = rescues[n_flat % len(rescues)]
                        heapq.heappush(heap, (t + delay, 1, "on_charge"))
                        heapq.heappush(heap, (t + delay + dur, 0, "off_charge"))
                    n_flat += 1
                    continue
                level -= drain * (tb - t) / 3600.0
        t = tb
        bat.knots_t.append(t)
        bat.knots_l.append(level)
        if what == "end":
            break
        heapq.heappop(heap)
        if what == "on_charge":
            charging_since = t
            if flat_since is not None:
                bat.flats.append((flat_since, t))
                flat_since = None
        elif what == "off_charge" and charging_since is not None:
            bat.charging.append((charging_since, t))
            charging_since = None
        elif what == "off":
            off += 1
        elif what == "on":
            off -= 1
    if charging_since is not None:
        bat.charging.append((charging_since, math.inf))
    if flat_since is not None:
        bat.flats.append((flat_since, math.inf))
    return bat


def reported(level: NDArray[np.float64]) -> NDArray[np.int64]:
    """The integer percent a tag reports for a level: rounded up, 0 only when flat."""
    return np.clip(np.ceil(level - 1e-9), 0, 100).astype(np.int64)


def battery_events(bat: BatteryCurve) -> list[tuple[float, int]]:
    """(t, batt) each time the reported level reaches a multiple of 5."""
    out: list[tuple[float, int]] = []
    pts = list(zip(bat.knots_t, bat.knots_l, strict=True))
    for (ta, la), (tb, lb) in itertools.pairwise(pts):
        if la > lb:  # draining: reported v from the moment the level is v
            for v in range(5 * math.ceil(lb / 5), math.ceil(la), 5):
                if lb <= v < la:
                    out.append((ta + (la - v) / (la - lb) * (tb - ta), v))
        elif lb > la:  # charging: reported v from just above v - 1
            for v in range(5 * math.ceil((la + 1) / 5), 101, 5):
                if la <= v - 1 < lb:
                    out.append((ta + (v - 1 - la) / (lb - la) * (tb - ta), v))
    return out
