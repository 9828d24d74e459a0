"""Fences.step spares a fresh tracker it would forget at once (fences._keeps_nothing): for
every observation it says so of, a fresh BreachTracker's `observe` decides nothing and
leaves it idle; a curfew tracker seen away again outside its window (fences._away)
stays as it was."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.decide import BreachTracker, CurfewTracker, Obs
from engine.core.episodes import EpisodeBook, TrackerKey, TrackerKind
from engine.core.fences import _away, _keeps_nothing
from engine.settings import Settings

DEPTHS = st.one_of(
    st.sampled_from([0.0, -0.0, -200.0, -200.0001, -199.9999, -1e9, -2e9, math.nan, -math.inf]),
    st.floats(-1e4, 1e3),
)
SIGMAS = st.one_of(
    st.sampled_from([1e-6, 9e-7, 0.5, 5.0, 1e6, math.nan, math.inf]),
    st.floats(1e-3, 1e4),
)
VARIANTS = st.sampled_from(
    [
        {},
        {"burst_max_fixes": 4},
        {"steady_window_s": 0.0},
        {"steady_window_s": 0.0, "steady_burst_fixes": 0},
        {"steady_window_s": 0.0, "steady_burst_fixes": 0, "burst_max_fixes": 0},
    ]
)


@settings(max_examples=600, deadline=None)
@given(
    kind=st.sampled_from(["zone_breach", "zone_approach", "proximity"]),
    depth=DEPTHS,
    sigma=SIGMAS,
    variant=VARIANTS,
    t=st.floats(0.0, 1e9),
)
def test_a_fresh_tracker_keeps_nothing_of_what_it_is_spared(
    kind: str, depth: float, sigma: float, variant: dict[str, Any], t: float
) -> None:
    s = dataclasses.replace(Settings(), **variant)
    if not _keeps_nothing(kind, depth, sigma, s):
        return
    book = EpisodeBook(50)
    key = TrackerKey(TrackerKind.ZONE, 3)
    tr = BreachTracker(book, s, key, kind, "S1", "Z1", "high")
    tr.observe(Obs(t, depth, sigma, "T1", 7), None)
    assert tr.idle and tr.episode is None and tr.burst is None
    assert book.drain() == [] and not book.open


def test_it_spares_the_usual_far_fix() -> None:
    s = Settings()
    assert _keeps_nothing("zone_breach", -500.0, 10.0, s)
    assert not _keeps_nothing("zone_breach", -150.0, 10.0, s)  # kept in the recent track
    assert _keeps_nothing("zone_approach", -150.0, 10.0, s)
    assert not _keeps_nothing("zone_approach", 1.0, 10.0, s)


@settings(max_examples=300, deadline=None)
@given(
    sd=st.one_of(st.sampled_from([0.0, -0.0, 1e-300, 1e9]), st.floats(0.0, 1e5)),
    sigma=st.one_of(st.sampled_from([1e-300, 1e6]), st.floats(1e-3, 1e4)),
    t=st.floats(0.0, 1e9),
)
def test_a_curfew_tracker_seen_away_outside_its_window_stays_as_it_was(
    sd: float, sigma: float, t: float
) -> None:
    book = EpisodeBook(50)
    tr = CurfewTracker(book, Settings(), TrackerKey(TrackerKind.CURFEW, 2), "S1", "Z1")
    tr.was_out = True
    assert _away(tr)  # the state Fences.step spares
    tr.observe(Obs(t, sd, sigma, "T1", 7), False, 0.0, 1.0, None)
    assert _away(tr) and tr.was_out and not tr.away and tr.episode is None
    assert book.drain() == []
