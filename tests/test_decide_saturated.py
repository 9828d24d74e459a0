"""An open breach at the top confidence takes a fix inside as evidence only
(observe.saturated): bit for bit what working the confidence out again does, whenever
`saturated` says so; the oracle is the same tracker with `saturated` off."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import engine.core.decide as decide
from engine.core.decide import BreachTracker, Obs
from engine.core.episodes import EpisodeBook, TrackerKey, TrackerKind
from engine.core.observe import SURE, saturated
from engine.settings import Settings

# Clean evidence, now and then with one field of one fix made extreme
CLEAN = st.tuples(st.floats(0.0, 5000.0), st.floats(-500.0, 500.0), st.floats(0.5, 300.0))
EXTREME = st.sampled_from(
    [math.nan, math.inf, -math.inf, 0.0, 1e-300, 1e-170, 1e-101, 1e-100, 1e100, 1e101, 1e300]
)
CORRUPT = st.one_of(st.none(), st.tuples(st.integers(0, 8), st.integers(0, 2), EXTREME))
VARIANTS = st.one_of(
    st.just({}),
    st.sampled_from(
        [
            {"single_fix_confidence_max": 1.0},
            {"two_fix_confidence_max": 1.0},
            {"wary_confidence_max": 1.0},
            {"possible_confidence_max": 1.0, "open_probability": 0.9999999},
            {"possible_confidence_max": math.nan, "open_probability": 0.9999999},
            {"two_fix_confidence_max": 0.9989999999},
            {"confident_span_s": 0.0},
            {"confident_min_depth_m": -1e-300},
            {"confident_fixes": 0},
            {"error_corr_s": 0.0},
            {"error_corr_s": -60.0},
            {"likely_confidence_min": 0.95, "two_fix_confidence_max": 0.9},
        ]
    ),
)


def _build(
    s: Settings, conf: float, pending: list[tuple[float, float, float]], run_from: float | None,
    jumped: bool, wait: float,
) -> tuple[BreachTracker, EpisodeBook]:  # fmt: skip
    book = EpisodeBook(50)
    key = TrackerKey(TrackerKind.ZONE, 1)
    tr = BreachTracker(book, s, key, "zone_breach", "S1", "Z1", "high")
    tr.episode = book.open_episode(
        key, "zone_breach", subject="S1", tag="T1", zone="Z1", severity="high",
        confidence=conf, t=0.0, seq=0,
    )  # fmt: skip
    book.drain()
    tr.pending = [Obs(t, d, sg, "T1", i + 1) for i, (t, d, sg) in enumerate(pending)]
    tr.run_from, tr.jumped, tr.entry.wait = run_from, jumped, wait
    return tr, book


def _outcome(tr: BreachTracker, book: EpisodeBook, o: Obs) -> Any:
    try:
        tr._observe_open(o, False, None)
    except (ArithmeticError, ValueError, IndexError) as e:
        return type(e).__name__
    ep = tr.episode
    assert ep is not None
    return (
        repr(book.drain()), repr(ep.confidence), ep.evidence, ep.raised_t,
        [repr(x) for x in tr.pending], tr.n_inside, tr.leaving_since,
    )  # fmt: skip


@settings(max_examples=1500, deadline=None)
@example(  # a single fix may give more than SURE when its ceiling is higher
    variant={"single_fix_confidence_max": 1.0},
    conf=SURE,
    pending=[],
    corrupt=None,
    run_from=None,
    jumped=False,
    wait=0.0,
    o=(100.0, 300.0, 1.0),
)
@example(  # a sigma whose square is 0: working it out raises
    variant={},
    conf=SURE,
    pending=[(0.0, 10.0, 1.0)],
    corrupt=(0, 2, 1e-170),
    run_from=0.0,
    jumped=False,
    wait=0.0,
    o=(60.0, 30.0, 5.0),
)
@example(  # a time that is not finite: a NaN grade lets P(inside) through
    variant={},
    conf=SURE,
    pending=[(0.0, 10.0, 1.0)],
    corrupt=None,
    run_from=0.0,
    jumped=False,
    wait=0.0,
    o=(math.nan, 15.0, 1.0),
)
@given(
    variant=VARIANTS,
    conf=st.sampled_from([SURE, SURE, 1.0, 0.9995, 0.9989999, 0.95]),
    pending=st.lists(CLEAN, min_size=0, max_size=9),
    corrupt=CORRUPT,
    run_from=st.one_of(st.none(), st.floats(0.0, 5000.0), st.sampled_from([math.nan, math.inf])),
    jumped=st.booleans(),
    wait=st.sampled_from([0.0, 300.0, 600.0, math.nan]),
    o=st.tuples(st.floats(0.0, 6000.0), st.floats(0.01, 400.0), st.floats(0.5, 300.0)),
)
def test_evidence_only_at_the_top_is_what_working_it_out_gives(
    variant: dict[str, Any], conf: float,
    pending: list[tuple[float, float, float]], corrupt: tuple[int, int, float] | None,
    run_from: float | None, jumped: bool, wait: float, o: tuple[float, float, float],
) -> None:  # fmt: skip
    s = dataclasses.replace(Settings(), **variant)
    if corrupt is not None and corrupt[0] < len(pending):
        i, field, value = corrupt
        fix = list(pending[i])
        fix[field] = value
        pending[i] = (fix[0], fix[1], fix[2])
    obs = Obs(o[0], o[1], o[2], "T1", 99)
    args = (s, conf, pending, run_from, jumped, wait)
    fast = _outcome(*_build(*args), obs)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(decide, "saturated", lambda *a: False)
        slow = _outcome(*_build(*args), obs)
    assert fast == slow


def test_the_usual_open_breach_at_the_top_is_saturated() -> None:
    s = Settings()
    run = [Obs(60.0 * i, 40.0, 10.0, "T1", i) for i in range(8)]
    tr, _ = _build(s, SURE, [], 0.0, False, 0.0)
    assert tr._confidence(1.0, 40.0, run) == SURE  # the top cap is SURE
    assert saturated(SURE, run, 0.0, s)
    assert not saturated(0.99, run, 0.0, s)
    assert not saturated(SURE, run, math.nan, s)
    assert not saturated(SURE, [], None, s)
