"""Route geometry between fixes (engine/transit.py) against plain great-circle maths."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.transit import onward_paths
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
