"""Scalar and per-batch shortcuts in the core against what they replace: the same bits.
`history.dist_m` runs the haversine kernel's arithmetic in Python for one pair."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.history import FixHistory, dist_m
from engine.wire.records import FIX_DTYPE
from zones.geofence import point_distance_m

LAT = st.floats(-100.0, 100.0, allow_nan=False)
LON = st.floats(-400.0, 400.0, allow_nan=False)
ODD = st.sampled_from([math.nan, math.inf, -math.inf, 0.0, 90.0, -90.0, 180.0, -180.0])


def _kernel(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    x = np.array([[lat1, lon1, lat2, lon2]])
    return float(point_distance_m(x[:, 0], x[:, 1], x[:, 2], x[:, 3])[0])


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


@settings(max_examples=3000, deadline=None)
@given(LAT, LON, st.floats(-1e-3, 1e-3), st.floats(-1e-3, 1e-3), st.booleans())
def test_dist_m_is_the_kernel_bit_for_bit_nearby(
    lat: float, lon: float, dlat: float, dlon: float, far: bool
) -> None:
    k = 1e4 if far else 1.0
    lat2, lon2 = lat + dlat * k, lon + dlon * k
    assert _same(dist_m(lat, lon, lat2, lon2), _kernel(lat, lon, lat2, lon2))


@settings(max_examples=1000, deadline=None)
@given(st.one_of(LAT, ODD), st.one_of(LON, ODD), st.one_of(LAT, ODD), st.one_of(LON, ODD))
def test_dist_m_is_the_kernel_bit_for_bit_anywhere(
    lat1: float, lon1: float, lat2: float, lon2: float
) -> None:
    assert _same(dist_m(lat1, lon1, lat2, lon2), _kernel(lat1, lon1, lat2, lon2))


def _remember_oracle(hist: np.ndarray, tags: np.ndarray) -> None:
    """FixHistory.remember as it was: row by row."""
    for row in tags[np.argsort(tags["slot"], kind="stable")]:
        s = int(row["slot"])
        if not row["t"] >= hist[s, 0, 0] and not np.isnan(hist[s, 0, 0]):
            continue
        hist[s, 1:] = hist[s, :-1]
        hist[s, 0] = (row["t"], row["lat"], row["lon"], row["acc"], row["seq"])


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 4), st.sampled_from([0.0, 10.0, 20.0, 30.0, 40.0, math.nan])),
        max_size=30,
    ),
    st.lists(st.sampled_from([math.nan, 0.0, 15.0, 35.0]), min_size=5, max_size=5),
)
def test_remember_keeps_what_the_row_by_row_walk_kept(
    rows: list[tuple[int, float]], before: list[float]
) -> None:
    h = FixHistory(5)
    h.fixes[:, 0, 0] = before
    h.fixes[:, 0, 1:] = np.arange(5)[:, None]
    tags = np.zeros(len(rows), dtype=FIX_DTYPE)
    for i, (s, t) in enumerate(rows):
        tags[i] = (s, 100 + i, t, 50.0 + i, -1.0 - i, 3.5 + i, -1, 0, 0)
    want = h.fixes.copy()
    _remember_oracle(want, tags)
    h.remember(tags)
    np.testing.assert_array_equal(h.fixes, want)
