"""`history.remember_rows` (FixHistory.remember's walk) against its oracle,
`FixHistory._remember` (numpy and a Python loop, as it was): bit for bit, NaN times, ties,
fixes older than the slot's latest and slots with nothing before included."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.history import FixHistory, remember_rows
from engine.wire.records import FIX_DTYPE

pytestmark = pytest.mark.kernel

TIMES = st.one_of(st.sampled_from([0.0, 10.0, 20.0, -0.0, math.nan]), st.floats(-1e3, 1e3))


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), TIMES, st.floats(-90, 90), st.integers(-2**62, 2**62)),
             max_size=30),
    st.lists(st.one_of(st.just(math.nan), TIMES), min_size=8, max_size=8),
)  # fmt: skip
def test_remember_rows_is_remember(rows_: list[tuple[int, float, float, int]],
                                   before: list[float]) -> None:  # fmt: skip
    rows = np.zeros(len(rows_), dtype=FIX_DTYPE)  # strided columns, as the engine's
    rows["slot"] = [r[0] for r in rows_]
    rows["t"] = [r[1] for r in rows_]
    rows["lat"] = [r[2] for r in rows_]
    rows["lon"] = [-r[2] for r in rows_]
    rows["acc"] = [abs(r[2]) / 7.0 for r in rows_]
    rows["seq"] = [r[3] for r in rows_]
    want = FixHistory(4)
    want.fixes[:, :, 0] = np.array(before).reshape(4, 2)
    want.fixes[:, :, 1:] = np.arange(4 * 2 * 4).reshape(4, 2, 4)
    got = np.array(want.fixes)
    if rows.shape[0]:
        want._remember(rows)
    remember_rows(rows["slot"], rows["t"], rows["lat"], rows["lon"], rows["acc"], rows["seq"],
                  got)  # fmt: skip
    assert got.tobytes() == want.fixes.tobytes()  # bits, NaNs and signed zeros included
