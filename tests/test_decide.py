"""Breach and curfew trackers: the decision rules on hand-made observations."""

from __future__ import annotations

from engine.core.decide import BreachTracker, CurfewTracker, Obs
from engine.core.episodes import EpisodeBook
from engine.settings import Settings

S = Settings()


def _tracker() -> tuple[BreachTracker, EpisodeBook]:
    book = EpisodeBook(50)
    return BreachTracker(book, S, "z", "zone_breach", "S1", "Z1", "high"), book


def _o(i: int, depth: float, sigma: float = 5.0, dt: float = 60.0) -> Obs:
    return Obs(1000.0 + dt * i, depth, sigma, "T1", i)


def test_a_deep_confident_fix_decides_at_once_but_not_with_full_confidence() -> None:
    tr, book = _tracker()
    # 50 m out a minute before: a burst could have begun the run (from 200 m out none
    # could, and a run seen so needs only confident_walked_fixes: the next test)
    tr.observe(_o(0, -50))
    tr.observe(_o(1, 60))
    (rec,) = book.drain()
    assert rec.state == "open" and rec.opened_t == 1060 and rec.raised_t == 1060
    assert rec.confidence == S.single_fix_confidence_max  # one fix may be an artefact
    for i, d in enumerate([70, 65, 80, 75, 70], start=2):
        tr.observe(_o(i, d))
        recs = book.drain()
        # inside fixes spanning under confident_span_s: a multipath burst can shift several
        # in a row, so confidence stays below 0.9 and nothing is re-published
        assert recs == []
    tr.observe(_o(7, 75))
    tr.observe(_o(8, 75))  # 1060 .. 1480: 420 s of fixes deep inside
    recs = book.drain()
    assert [r.state for r in recs] == ["open"] and recs[0].confidence >= 0.9  # escalated
    assert recs[0].id == rec.id and recs[0].raised_t == 1000 + 60 * 8


def test_a_run_no_burst_could_have_begun_needs_fewer_fixes() -> None:
    """From 200 m out to 60 m in between two fixes (beyond steady_burst_max_m): no burst
    began the run, so confident_walked_fixes fixes inside over confident_min_span_s do."""
    tr, book = _tracker()
    tr.observe(_o(0, -200))
    for i, d in enumerate([60, 70, 65, 80, 75], start=1):
        tr.observe(_o(i, d))
    assert all(r.confidence < 0.9 for r in book.drain())
    tr.observe(_o(6, 70))  # the sixth inside
    (rec,) = book.drain()
    assert S.confident_walked_fixes == 6 and rec.confidence >= 0.9


def test_drift_beside_the_boundary_does_not_alarm() -> None:
    tr, book = _tracker()
    # a lurker 20 m outside whose correlated error puts fixes 5-15 m inside, acc 30 m
    for i, d in enumerate([-10, 5, 12, 8, 15, 3, -6, 10, 14, 9]):
        tr.observe(_o(i, d, sigma=30 / 1.51, dt=30))
    assert book.drain() == []


def test_moderate_evidence_opens_as_possible_at_once_and_escalates_when_confirmed() -> None:
    tr, book = _tracker()
    tr.observe(_o(0, -40, sigma=8.0))
    tr.observe(_o(1, 18, sigma=8.0))
    (rec,) = book.drain()  # one fix 2.2 sigma inside: possible, said at once
    assert rec.opened_t == rec.raised_t == 1060 and rec.evidence == [("T1", 1)]
    assert rec.confidence == S.possible_confidence_max
    tr.observe(_o(2, 22, sigma=8.0))
    (up,) = book.drain()  # a second fix confirms: likely, re-published
    assert up.id == rec.id and up.opened_t == 1060 and up.raised_t == 1120
    assert 0.7 <= up.confidence < 0.9


def test_shallow_drift_at_an_edge_is_possible_at_most() -> None:
    tr, book = _tracker()
    # a walker in a permitted corridor beside the zone: fixes a few metres either side
    for i, d in enumerate([-30, 8, 2.5, -5, -1, 4.4, -3, 6]):
        tr.observe(_o(i, d, sigma=6.6))
    recs = book.drain()
    assert recs and all(r.confidence <= S.possible_confidence_max for r in recs)


def test_a_coarse_fix_far_out_does_not_end_a_breach_by_itself() -> None:
    tr, book = _tracker()
    for i in range(3):
        tr.observe(_o(i, 50))
    # cell fixes (sigma 400 m) 900 m out: 2.25 sigma, which a 2-D error reaches 8 % of
    # the time (a 1-D normal: 1 %); a GPS fix 30 m out with sigma 5 m is out for sure
    for i in range(3, 8):
        tr.observe(_o(i, -900, sigma=400.0))
    assert [r.state for r in book.drain()] == ["open"]
    for i in range(8, 11):
        tr.observe(_o(i, -30))
    (rec,) = book.drain()
    assert rec.state == "closed" and rec.closed_t == 1000 + 60 * 8


def test_reentry_within_the_gap_extends_and_closing_dates_from_leaving() -> None:
    tr, book = _tracker()
    tr.observe(_o(0, 60))
    tr.observe(_o(1, -50))  # out...
    tr.observe(_o(2, 40))  # ...and back within exit_gap_s: same episode
    tr.observe(_o(3, -80))
    tr.observe(_o(4, -90))
    tr.observe(_o(5, -95))
    recs = book.drain()
    assert [r.state for r in recs] == ["open", "closed"]
    assert recs[1].closed_t == 1000 + 60 * 3
    assert ("T1", 2) in recs[1].evidence


def test_transit_is_opened_and_closed_with_the_given_confidence() -> None:
    tr, book = _tracker()
    tr.transit(_o(0, -30), _o(1, -40), 1020.0, 1040.0, S.transit_confidence_max)
    recs = book.drain()
    assert [(r.state, r.opened_t, r.closed_t) for r in recs] == [
        ("open", 1020.0, None),
        ("closed", 1020.0, 1040.0),
    ]
    assert recs[0].confidence == S.transit_confidence_max and recs[0].raised_t == 1060.0


def _curfew() -> tuple[CurfewTracker, EpisodeBook]:
    book = EpisodeBook(50)
    return CurfewTracker(book, S, "c", "S1", "HOME"), book


W0, W1 = 10_000.0, 10_000.0 + 12 * 3600


def test_away_when_the_window_opens_dates_the_breach_from_the_window() -> None:
    tr, book = _curfew()
    tr.observe(Obs(W0 - 600, 80, 5, "T1", 1), False, W0, W1)
    tr.observe(Obs(W0 + 60, 80, 5, "T1", 2), True, W0, W1)
    assert book.drain() == []  # within grace: could be walking in the door
    tr.observe(Obs(W0 + 360, 70, 5, "T1", 3), True, W0, W1)
    (rec,) = book.drain()
    assert rec.kind == "curfew_breach" and rec.opened_t == W0 and rec.raised_t == W0 + 360
    tr.observe(Obs(W0 + 900, -20, 5, "T1", 4), True, W0, W1)  # home
    (rec,) = book.drain()
    assert rec.state == "closed" and rec.closed_t == W0 + 900


def test_far_away_during_curfew_decides_at_once() -> None:
    tr, book = _curfew()
    tr.observe(Obs(W0 + 100, -20, 5, "T1", 1), True, W0, W1)
    tr.observe(Obs(W0 + 160, 900, 5, "T1", 2), True, W0, W1)
    (rec,) = book.drain()
    assert rec.opened_t == W0 + 160 and rec.raised_t == W0 + 160


def test_home_in_time_or_garden_noise_is_not_a_breach() -> None:
    tr, book = _curfew()
    for i in range(30):
        d = 6.0 if i % 3 == 0 else -10.0  # fix noise puts him in the garden now and then
        tr.observe(Obs(W0 + 60 * i, d, 8, "T1", i), True, W0, W1)
    assert book.drain() == []


def test_window_end_closes_an_open_curfew_breach_at_the_end() -> None:
    tr, book = _curfew()
    tr.observe(Obs(W1 - 1000, 500, 5, "T1", 1), True, W0, W1)
    tr.observe(Obs(W1 + 600, 500, 5, "T1", 2), False, W1, W1)
    recs = book.drain()
    assert [(r.state, r.closed_t) for r in recs] == [("open", None), ("closed", W1)]
