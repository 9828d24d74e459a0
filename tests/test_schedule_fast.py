"""Schedules' batch fast paths against the zone by zone loop they stand for: the same
answers and the same cache (spans, order), with batches whose times a warmed cache's span
covers (no expansion: `_covered`), just misses at either end (the loop expands), or not."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from engine.core.schedules import Schedules
from tests.test_core_scalar import DAY0, T0, _schedules

# The span a first batch at T0 expands: [DAY0 - 1 day, DAY0 + 7 days), as offsets from T0
S0 = DAY0 - 86400.0 - T0
S1 = DAY0 + 7 * 86400.0 - T0
AHEAD = 3600.0
NEAR = st.one_of(
    st.floats(S0 - 2.0, S1 - AHEAD + 2.0),  # mostly covered; either end just missed
    st.sampled_from([S0, S0 - 1e-6, S1 - AHEAD, S1 - AHEAD - 1e-6, S1 - 1.0]),
)
BATCHES = st.lists(
    st.lists(st.tuples(st.integers(0, 7), NEAR), min_size=1, max_size=25),
    min_size=1, max_size=5,
)  # fmt: skip


def _loop(sch: Schedules, zidx: np.ndarray, t: np.ndarray) -> np.ndarray:
    want = np.ones(zidx.shape[0], dtype=np.bool_)
    for z in np.unique(zidx):
        m = zidx == z
        want[m] = sch.active_or_soon(int(z), t[m], AHEAD)
    return want


def _same_cache(a: Schedules, b: Schedules) -> None:
    assert list(a.cache) == list(b.cache)
    for k, (s0, s1, iv) in a.cache.items():
        assert b.cache[k][:2] == (s0, s1)
        np.testing.assert_array_equal(b.cache[k][2], iv)


def _check(batches: list[list[tuple[int, float]]]) -> int:
    """Runs the batches through both after a warming batch at T0; how many took `_covered`."""
    one, many = _schedules(), _schedules()
    warm = (np.arange(8, dtype=np.int64), np.full(8, T0))
    _loop(one, *warm)
    many.active_or_soon_pairs(*warm, AHEAD)
    fast = 0
    for batch in batches:
        zidx = np.array([z for z, _ in batch], dtype=np.int64)
        t = np.array([T0 + dt for _, dt in batch])
        fast += many._covered(zidx, t, AHEAD)
        want = _loop(one, zidx, t)
        np.testing.assert_array_equal(many.active_or_soon_pairs(zidx, t, AHEAD), want)
        _same_cache(one, many)
    return fast


@settings(max_examples=400, deadline=None)
@example([[(0, S1 - AHEAD), (4, 0.0)]])  # t + ahead at the span's end: the loop expands
@example([[(1, S0 - 1e-6)], [(0, S0)]])  # just before the span's start, then at it
@given(BATCHES)
def test_fast_path_is_the_zone_by_zone_loop(batches: list[list[tuple[int, float]]]) -> None:
    _check(batches)


def test_fast_path_is_taken_when_covered() -> None:
    assert _check([[(z, 3600.0 * z) for z in range(8)], [(0, S1 - AHEAD - 1e-6)]]) == 2
    assert _check([[(0, S1 - AHEAD)], [(1, S0 - 1e-6)]]) == 0
    sch = _schedules()
    sch.active_or_soon_pairs(np.array([0]), np.array([T0]), AHEAD)
    for z in (0, 4):  # a time not finite: the loop's way, whatever the zone
        assert not sch._covered(np.array([0, z]), np.array([T0, math.nan]), AHEAD)


def test_a_wrong_fast_path_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The property above fails if `_covered` lets through a batch that expands."""
    monkeypatch.setattr(Schedules, "_covered", lambda self, zidx, t, ahead_s: True)
    with pytest.raises(AssertionError):
        _check([[(0, S1 - 1.0)]])


@settings(max_examples=300, deadline=None)
@given(BATCHES)
def test_active_pairs_is_active_zone_by_zone(batches: list[list[tuple[int, float]]]) -> None:
    """active_pairs: `active` of each pair, over the same span, and the cache untouched."""
    sch = _schedules()
    sch.active_or_soon_pairs(np.arange(8, dtype=np.int64), np.full(8, T0), AHEAD)
    for batch in batches:
        zidx = np.array([z for z, _ in batch], dtype=np.int64)
        t = np.array([T0 + dt for _, dt in batch])
        other = copy.deepcopy(sch)  # `active` may expand the cache: on a copy
        want = np.ones(zidx.shape[0], dtype=np.bool_)
        for z in np.unique(zidx):
            m = zidx == z
            want[m] = other.active(int(z), t[m])
        before = copy.deepcopy(sch)
        np.testing.assert_array_equal(sch.active_pairs(zidx, t), want)
        _same_cache(before, sch)
