"""`silence.ordered_clocks` (the reporting-interval and record-gap walk of Health.ordered)
against a plain-Python oracle: Silence.after, Silence.fix and the start of
NoLocation.observe as they were, record by record; bit for bit, the arrays it updates in
place included."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.health.silence import ordered_clocks
from engine.wire.records import FIX_DTYPE

pytestmark = pytest.mark.kernel

TIMES = st.one_of(
    st.sampled_from([0.0, 30.0, 60.0, 61.0, 600.0, math.nan]),
    st.floats(-1e3, 1e5, allow_nan=False),
)


def oracle(
    slot: list[int], t: list[float], is_fix: list[bool], interval: np.ndarray,
    last_fix_t: np.ndarray, last_rec_t: np.ndarray, factor: float, floor: float,
    smoothing: float,
) -> tuple[list[float], list[float]]:  # fmt: skip
    after_out, gap_out = [], []
    for s, ti, fix in zip(slot, t, is_fix, strict=True):
        after = max(factor * float(interval[s]), floor)  # Silence.after
        after_out.append(after)
        if fix:  # Silence.fix
            g = ti - last_fix_t[s]
            if 0.0 < g < 2.0 * after:
                interval[s] += smoothing * (g - interval[s])
            if not g < 0.0:
                last_fix_t[s] = ti
        gap = ti - last_rec_t[s]  # NoLocation.observe
        gap_out.append(float(gap))
        if not gap < 0.0:
            last_rec_t[s] = ti
    return after_out, gap_out


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), TIMES, st.booleans()), max_size=40),
    st.lists(st.one_of(st.floats(1.0, 900.0), st.just(math.nan)), min_size=4, max_size=4),
    st.lists(TIMES, min_size=8, max_size=8),
    st.sampled_from([(3.0, 300.0, 0.2), (2.5, 0.0, 0.05), (0.0, 120.0, 1.0)]),
)
def test_ordered_clocks_is_the_record_by_record_walk(
    recs: list[tuple[int, float, bool]], interval: list[float], last: list[float],
    knobs: tuple[float, float, float],
) -> None:  # fmt: skip
    rows = np.zeros(len(recs), dtype=FIX_DTYPE)  # strided columns, as the engine's
    rows["slot"] = [r[0] for r in recs]
    rows["t"] = [r[1] for r in recs]
    slot, t = rows["slot"], rows["t"]
    is_fix = np.array([r[2] for r in recs], dtype=np.bool_)
    iv, lf, lr = np.array(interval), np.array(last[:4]), np.array(last[4:])
    want_iv, want_lf, want_lr = iv.copy(), lf.copy(), lr.copy()
    after, gap = ordered_clocks(slot, t, is_fix, iv, lf, lr, *knobs)
    w_after, w_gap = oracle(slot.tolist(), t.tolist(), is_fix.tolist(), want_iv, want_lf,
                            want_lr, *knobs)  # fmt: skip
    np.testing.assert_array_equal(after, w_after)
    np.testing.assert_array_equal(gap, w_gap)
    for got, want in ((iv, want_iv), (lf, want_lf), (lr, want_lr)):
        np.testing.assert_array_equal(got, want)
        assert got.tobytes() == want.tobytes()  # bits, NaNs and signed zeros included
