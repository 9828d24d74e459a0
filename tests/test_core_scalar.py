"""Scalar and per-batch shortcuts in the core against what they replace: the same bits.
`history.dist_m` runs the haversine kernel's arithmetic in Python for one pair;
`FixHistory.remember` and `Schedules.active_or_soon_pairs` do per batch what was done per
row or per zone."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st
from shapely.geometry import Polygon

from engine.core.history import HISTORY, FixHistory, dist_m
from engine.core.registry import Registry
from engine.core.schedules import Schedules
from engine.wire.records import FIX_DTYPE
from tests.helpers import square
from zones.compile import compile_zones
from zones.geofence import point_distance_m
from zones.model import Subject, Window, Zone, ZoneSet

T0 = 1_774_710_000.0  # 2026-03-28 15:00 UTC

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


def _schedules() -> Schedules:
    night = Window(frozenset(range(7)), 19 * 60, 7 * 60, "Europe/London")
    weekend = Window(frozenset({5, 6}), 10 * 60, 14 * 60, "America/New_York")
    zones = []
    for i in range(8):
        sched = [(night,), (weekend,), (night, weekend), ()][i % 4]
        lim = (T0 + 3 * 86400.0, T0 + 5 * 86400.0) if i in (1, 2, 3) else (-math.inf, math.inf)
        zones.append(Zone(f"Z{i}", "S1", "inclusion", i, geometry=Polygon(square(50.0 + i)),
                          schedule=sched, valid_from=lim[0], valid_until=lim[1]))  # fmt: skip
    zs = ZoneSet(tuple(zones), (Subject("S1", ("T1",)),))
    table = compile_zones(zs)
    return Schedules(zs, table, Registry(zs, table.subject_ids))


# Times on a quarter-hour grid about T0's midnight (and a second either side): windows
# start and end on it, and a span ends on a midnight
DAY0 = math.floor(T0 / 86400.0) * 86400.0
GRID = st.builds(
    lambda q, e: DAY0 - T0 + 900.0 * q + e,
    st.integers(-3 * 96, 12 * 96),
    st.sampled_from([0, -1, 1]),
)
# A first batch expands a span [start, start + 8 days); a second asks about a time 30 minutes
# before its end: only the look ahead of active_or_soon expands it again
SPAN_END = DAY0 - 86400.0 + 8 * 86400.0 - T0


@settings(max_examples=300, deadline=None)
@example([[(0, 0.0)], [(0, SPAN_END - 1800.0), (4, SPAN_END - 1800.0)]])
@example([[(0, DAY0 + 2 * 86400.0 + 17 * 3600.0 - T0)]])  # an hour before 19:00 BST
@given(
    st.lists(
        st.lists(
            st.tuples(st.integers(0, 7), st.one_of(st.floats(-3 * 86400.0, 12 * 86400.0), GRID)),
            min_size=1, max_size=25,
        ),
        min_size=1, max_size=5,
    )
)  # fmt: skip
def test_active_or_soon_pairs_is_the_zone_by_zone_loop(
    batches: list[list[tuple[int, float]]],
) -> None:
    """Same answers and the same cache (spans, order) after each batch: the cache is
    state, and a schedule's window is read from it."""
    one, many = _schedules(), _schedules()
    for batch in batches:
        zidx = np.array([z for z, _ in batch], dtype=np.int64)
        t = np.array([T0 + dt for _, dt in batch])
        want = np.ones(zidx.shape[0], dtype=np.bool_)
        for z in np.unique(zidx):
            m = zidx == z
            want[m] = one.active_or_soon(int(z), t[m], 3600.0)
        np.testing.assert_array_equal(many.active_or_soon_pairs(zidx, t, 3600.0), want)
        assert list(many.cache) == list(one.cache)
        for k, (a, b, iv) in one.cache.items():
            assert many.cache[k][:2] == (a, b)
            np.testing.assert_array_equal(many.cache[k][2], iv)


def _previous_oracle(fixes: np.ndarray, slot: np.ndarray, cur: np.ndarray) -> np.ndarray:
    """FixHistory.previous as it was: row by row."""
    out = np.full((cur.shape[0], HISTORY, 5), np.nan)
    order = np.argsort(slot, kind="stable")
    slots = slot[order].tolist()
    run = 0
    for k, i in enumerate(order.tolist()):
        run = run + 1 if k and slots[k - 1] == slots[k] else 0
        m = min(run, HISTORY)
        for d in range(m):
            out[i, d] = cur[order[k - 1 - d]]
        out[i, m:] = fixes[slots[k], : HISTORY - m]
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 4), max_size=30), st.integers(0, 2**32 - 1))
def test_previous_is_the_row_by_row_walk(slots: list[int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    h = FixHistory(5)
    h.fixes[:] = rng.normal(size=h.fixes.shape)
    h.fixes[rng.random(5) < 0.4] = np.nan  # slots with nothing kept yet
    slot = np.array(slots, dtype=np.int32)
    cur = rng.normal(size=(slot.shape[0], 5))
    want = _previous_oracle(h.fixes, slot, cur)
    np.testing.assert_array_equal(h.previous(slot, cur), want)


def _window_oracle(sch: Schedules, zone: int, t: float) -> tuple[float, float, bool]:
    """Schedules.window as it was: a searchsorted on _active_iv's array."""
    iv = sch._active_iv(zone, t, t)
    if iv is None:
        return -math.inf, math.inf, True
    k = int(np.searchsorted(iv[:, 0], t, side="right")) - 1
    if k < 0:
        return -math.inf, -math.inf, False
    w0, w1 = float(iv[k, 0]), float(iv[k, 1])
    return w0, w1, t < w1


@settings(max_examples=200, deadline=None)
@example([(0, 0.0), (0, SPAN_END + 10.0), (1, SPAN_END), (2, -86400.0 * 2)])
@given(st.lists(st.tuples(st.integers(0, 7), st.one_of(st.floats(-3e5, 1.1e6), GRID)), max_size=40))
def test_window_is_the_array_lookup(calls: list[tuple[int, float]]) -> None:
    """Same windows and the same cache, across expansions of the cache (which remake the
    lists `window` keeps) and a cache restored from a snapshot."""
    one, many = _schedules(), _schedules()
    for n, (z, dt) in enumerate(calls):
        assert many.window(z, T0 + dt) == _window_oracle(one, z, T0 + dt)
        assert [(a, b) for a, b, _ in many.cache.values()] == [
            (a, b) for a, b, _ in one.cache.values()
        ]
        if n == len(calls) // 2:
            many.import_state(one.export_state())
