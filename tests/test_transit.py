"""Route geometry between fixes (engine/core/transit.py) against plain great-circle maths."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.transit import onward_paths
from tests.helpers import offset
from zones.geofence import point_distance_m


def _fix(t: float, dx: float, dy: float) -> np.ndarray:
    lat, lon = offset(dx, dy)
    return np.array([[t, lat, lon, 5.0, 0.0]])


def _d(a: tuple[float, float], b: tuple[float, float]) -> float:
    return float(point_distance_m(*(np.array([v]) for v in (*a, *b)))[0])


xy = st.floats(-2000.0, 2000.0)


@settings(max_examples=300, deadline=None)
@given(xy, xy, xy, xy, st.floats(10.0, 120.0), st.floats(10.0, 120.0))
def test_onward_route_keeps_the_heading_and_uses_the_whole_budget(
    px: float, py: float, bx: float, by: float, dt_in: float, dt_out: float
) -> None:
    p, a, b = _fix(0.0, px, py), _fix(dt_in, 0.0, 0.0), _fix(dt_in + dt_out, bx, by)
    klat, klon, s, budget = onward_paths(p, a, b, 1.0)
    run = np.hypot(px, py)
    expect_budget = run / dt_in * dt_out
    ab = np.hypot(bx, by)
    if run < 1.0 or expect_budget <= ab * 1.001:
        return  # no heading, or B beyond reach (checked below for the clear cases)
    assert np.isfinite(s[0]) and s[0] >= 0.0
    k, pa, bb = (klat[0], klon[0]), (p[0, 1], p[0, 2]), (b[0, 1], b[0, 2])
    aa = (a[0, 1], a[0, 2])
    # on the ray P -> A, s metres beyond A
    assert abs(_d(pa, k) - (_d(pa, aa) + s[0])) <= 0.005 * (run + s[0]) + 0.05
    # A -> K -> B is exactly as long as the speed in allows
    route = s[0] + _d(k, bb)
    assert abs(route - budget[0]) <= 0.005 * budget[0] + 0.05
    assert abs(budget[0] - expect_budget) <= 0.005 * expect_budget + 0.05


def test_no_route_when_the_next_fix_is_out_of_reach_or_there_is_no_heading() -> None:
    p, a = _fix(0.0, 0.0, -600.0), _fix(60.0, 0.0, 0.0)  # 10 m/s north
    far = _fix(120.0, 500.0, 500.0)  # 707 m in 60 s: beyond 600 m
    assert np.isnan(onward_paths(p, a, far, 1.0)[2][0])
    still = _fix(0.0, 0.0, 0.0)
    assert np.isnan(onward_paths(still, a, _fix(120.0, 10.0, 10.0), 1.0)[2][0])


@pytest.mark.kernel
@settings(max_examples=300, deadline=None)
@given(xy, xy, xy, xy, st.floats(10.0, 120.0), st.floats(10.0, 120.0), st.floats(0.5, 15.0))
def test_a_turn_costs_its_time_and_only_ever_shortens_the_straight_leg(
    px: float, py: float, bx: float, by: float, dt_in: float, dt_out: float, turn_s: float
) -> None:
    p, a, b = _fix(0.0, px, py), _fix(dt_in, 0.0, 0.0), _fix(dt_in + dt_out, bx, by)
    free = onward_paths(p, a, b, 1.0)[2][0]
    klat, klon, s, budget = onward_paths(p, a, b, 1.0, turn_s)
    if not np.isfinite(free):
        assert np.isnan(s[0])
        return
    assert 0.0 <= s[0] <= free + 1e-6
    if s[0] <= 1e-3:
        return  # even turning at A at once spends the whole budget
    # K is s metres on along the heading; the route through it costs the turn at K (from
    # the heading P -> A to K -> B), by plain vector maths on the local plane
    hx, hy = -px / np.hypot(px, py), -py / np.hypot(px, py)
    speed = np.hypot(px, py) / dt_in

    def spent(x: float) -> float:
        tx, ty = bx - x * hx, by - x * hy
        kb = float(np.hypot(tx, ty))
        cos_phi = (hx * tx + hy * ty) / kb if kb > 1e-6 else 1.0
        return x + kb + speed * turn_s * (1.0 - cos_phi)

    tol = 0.005 * budget[0] + 0.5
    assert abs(_d((a[0, 1], a[0, 2]), (klat[0], klon[0])) - s[0]) <= 0.005 * s[0] + 0.05
    # the route through K fits the budget, and one going 1 m further on would not
    assert spent(max(s[0] - 0.5, 0.0)) <= budget[0] + tol
    if s[0] + 1.0 < free:
        assert spent(s[0] + 1.0) >= budget[0] - tol
