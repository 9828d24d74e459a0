"""SeqDeduper kernel against the obvious oracle: a set of every (slot, seq) ever seen."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.intake.dedupe import SeqDeduper

pytestmark = pytest.mark.kernel


def naive_keep(pairs: list[tuple[int, int]], window: int) -> tuple[list[bool], int]:
    """Oracle: keep a record unless the same (slot, seq) was kept and is still within the
    window below the slot's highest seq; records older than the window are kept."""
    seen: set[tuple[int, int]] = set()
    hwm: dict[int, int] = {}
    keep, beyond = [], 0
    for s, q in pairs:
        h = hwm.get(s, -1)
        if q > h:
            hwm[s] = q
            seen.add((s, q))
            keep.append(True)
        elif h - q >= window:
            keep.append(True)
            beyond += 1
        elif (s, q) in seen:
            keep.append(False)
        else:
            seen.add((s, q))
            keep.append(True)
    return keep, beyond


@settings(max_examples=300, deadline=None)
@given(
    batches=st.lists(
        st.lists(st.tuples(st.integers(0, 3), st.integers(0, 400)), max_size=60),
        min_size=1,
        max_size=5,
    ),
    window=st.sampled_from([64, 128, 200, 1024]),
)
def test_matches_oracle_across_batches(batches: list[list[tuple[int, int]]], window: int) -> None:
    d = SeqDeduper(4, window)
    flat = [p for b in batches for p in b]
    expect, beyond = naive_keep(flat, d.bits.shape[1] * 64)
    got: list[bool] = []
    for b in batches:
        slot = np.array([s for s, _ in b], dtype=np.int64)
        seq = np.array([q for _, q in b], dtype=np.int64)
        got.extend(d.filter(slot, seq).tolist())
    assert got == expect
    assert d.beyond_window == beyond


def test_named_cases() -> None:
    d = SeqDeduper(2, 64)
    keep = d.filter(np.array([0, 0, 1, 0, 0]), np.array([10, 10, 10, 9, 11]))
    assert keep.tolist() == [True, False, True, True, True]
    # a jump far beyond the window forgets the old bits, but the new seq is recorded
    keep = d.filter(np.array([0, 0, 0]), np.array([10_000, 10_000, 11]))
    assert keep.tolist() == [True, False, True]
    assert d.beyond_window == 1


def test_empty_batch() -> None:
    d = SeqDeduper(1)
    assert d.filter(np.zeros(0, np.int64), np.zeros(0, np.int64)).shape == (0,)
