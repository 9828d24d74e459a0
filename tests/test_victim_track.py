"""VictimTrack.add appends a later fix to an ordered track without a search: for any
fixes (NaN, infinite and repeated times, more than HISTORY, tracks imported in any order)
the track is what `add` as it was (bisect_left, insert) makes of them."""

from __future__ import annotations

import bisect
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.victims import HISTORY, VictimTrack

TIMES = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 1.0, 2.0, 3.0]),
    st.floats(-10.0, 200.0, allow_nan=False),
    st.integers(0, 200).map(float),
)


def _add_as_it_was(ts: list[float], fixes: list[tuple[float, float, float]], t: float,
                   fix: tuple[float, float, float]) -> None:  # fmt: skip
    i = bisect.bisect_left(ts, t)
    if i < len(ts) and ts[i] == t:
        return
    ts.insert(i, t)
    fixes.insert(i, fix)
    if len(ts) > HISTORY:
        del ts[0], fixes[0]


def _same(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(
        x == y or (x != x and y != y) for x, y in zip(a, b, strict=True)
    )


@settings(max_examples=400, deadline=None)
@given(
    start=st.lists(TIMES, max_size=6),
    times=st.lists(TIMES, max_size=3 * HISTORY),
    ascending=st.booleans(),
)
def test_add_is_add_as_it_was(start: list[float], times: list[float], ascending: bool) -> None:
    if ascending:  # mostly later fixes, as they come (the path spared the search)
        times = [t + 3.0 * i if math.isfinite(t) else t for i, t in enumerate(times)]
    ref_t = list(start)
    ref_f = [(t, 1.0, 2.0) for t in start]
    tr = VictimTrack(list(start), list(ref_f))  # as import_state makes it: any order
    for n, t in enumerate(times):
        fix = (float(n), -float(n), 5.0)
        tr.add(t, *fix)
        _add_as_it_was(ref_t, ref_f, t, fix)
        assert _same(tr.t, ref_t)
        assert [f[1:] for f in tr.fixes] == [f[1:] for f in ref_f]
        assert _same([f[0] for f in tr.fixes], [f[0] for f in ref_f])


def test_a_nan_time_in_the_middle_is_not_the_end() -> None:
    # [1, NaN, 2] is not ordered: a later 3 goes where bisect_left puts it, not at the end
    tr = VictimTrack([1.0, math.nan, 2.0], [(0.0, 0.0, 0.0)] * 3)
    assert not tr.ordered
    tr.add(3.0, 1.0, 1.0, 1.0)
    ref = [1.0, math.nan, 2.0]
    _add_as_it_was(ref, [(0.0, 0.0, 0.0)] * 3, 3.0, (1.0, 1.0, 1.0))
    assert _same(tr.t, ref)
    fresh = VictimTrack()
    fresh.add(math.nan, 0.0, 0.0, 0.0)
    assert not fresh.ordered
