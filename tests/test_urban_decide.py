"""Decisions that hold steady beside a busy street (issue 15): curfew absences judged by how
far out they are, confidence that rises only on a run longer than a multipath burst (and
fast at 15 s fixes), and the opt-in burst hold; the curfew family end to end through
`tagwatch simulate` and `tagwatch replay`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.scoring import score
from devices.families.catalog import build_family
from engine.cli.main import main
from engine.core.decide import BreachTracker, CurfewTracker, Obs
from engine.core.episodes import EpisodeBook
from engine.core.observe import WALK_MPS, _walks
from engine.settings import Settings
from engine.wire.alerts import decode_alert
from tests.helpers import fix, square, write_world

S = Settings()
W0, W1 = 10_000.0, 10_000.0 + 12 * 3600
TWO = '[[subjects]]\nid = "S1"\ntags = ["T1"]\n\n[[subjects]]\nid = "S2"\ntags = ["T2"]\n'


def _curfew(s: Settings = S) -> tuple[CurfewTracker, EpisodeBook]:
    book = EpisodeBook(50)
    return CurfewTracker(book, s, "c", "S1", "HOME"), book


def _away(tr: CurfewTracker, depths: list[float], sigma: float = 8.0, t0: float = W0 + 3600):
    for i, d in enumerate(depths):
        tr.observe(Obs(t0 + 60.0 * i, d, sigma, "T1", i), True, W0, W1)


def test_curfew_drift_just_outside_a_small_home_is_no_breach() -> None:
    tr, book = _curfew()
    _away(tr, [-10.0] * 5 + [15, 25, 35, 30, 20, 25, 30, 18, 22, 28, 33, 25] + [-8.0] * 3)
    assert book.drain() == []  # 12 min 15-35 m out: indoor GPS drift, each fix "sure"
    tr, book = _curfew()
    _away(tr, [-10.0] * 3 + [45.0] * 12, sigma=25.0)  # 45 m out, fixes claiming 38 m
    assert book.drain() == []  # within 2.5 sigma of the fixes: drift, for now
    _away(tr, [45.0] * 10, sigma=25.0, t0=W0 + 3600 + 15 * 60)
    (rec,) = book.drain()  # 15 min of it (curfew_shallow_s): possible
    assert rec.confidence <= S.possible_confidence_max


def test_curfew_absence_opens_by_how_far_out_it_is() -> None:
    tr, book = _curfew()
    _away(tr, [-10.0] * 3 + [120.0] * 7)  # clearly away, not yet "far": after the grace
    (rec,) = book.drain()
    assert rec.state == "open" and rec.confidence >= 0.9
    tr, book = _curfew()
    _away(tr, [-10.0] * 3 + [45.0] * 7)  # out in front of the house: likely, not confident
    (rec,) = book.drain()
    assert 0.7 <= rec.confidence <= S.curfew_unsure_confidence_max
    _away(tr, [45.0] * 30, t0=W0 + 3600 + 600)
    assert all(r.confidence < 0.9 for r in book.drain())  # more of the same: no escalation
    tr, book = _curfew()
    _away(tr, [-10.0] * 3 + [25.0] * 40)  # 40 min just outside: possible at the 30th min
    (rec,) = book.drain()
    assert rec.confidence <= S.possible_confidence_max
    assert rec.raised_t - rec.opened_t >= S.curfew_shallow_s


def _zone(s: Settings = S) -> tuple[BreachTracker, EpisodeBook]:
    book = EpisodeBook(50)
    return BreachTracker(book, s, "z", "zone_breach", "S1", "Z1", "high"), book


def _feed(tr: BreachTracker, depths: list[float], dt: float, sigma: float = 8.0) -> None:
    for i, d in enumerate(depths):
        tr.observe(Obs(1000.0 + dt * i, d, sigma, "T1", i))


def _conf(book: EpisodeBook) -> list[tuple[float, float]]:
    return [(r.raised_t, r.confidence) for r in book.drain()]


def test_at_15_s_fixes_a_real_entry_is_confident_within_two_minutes() -> None:
    tr, book = _zone()
    _feed(tr, [-200, -150, -100, -50] + [40.0] * 12, dt=15.0)
    recs = _conf(book)
    entry = 1000.0 + 15.0 * 4
    assert recs[0][1] < 0.9 and max(c for _, c in recs) >= 0.9
    assert min(t for t, c in recs if c >= 0.9) - entry <= 120.0


def test_two_bursts_with_drift_between_them_never_look_confident() -> None:
    tr, book = _zone()
    still = [-30.0] * 6
    burst = [45.0, 50.0, 40.0, 48.0]
    _feed(tr, still + burst + [-25.0, 8.0] + burst + [12.0, -30.0] + still, dt=60.0)
    recs = _conf(book)
    assert recs and max(c for _, c in recs) < 0.9  # inside fixes span 7 min, never one run


def test_a_long_shallow_run_stays_below_confident() -> None:
    tr, book = _zone()
    _feed(tr, [-40.0] * 3 + [14.0] * 14, dt=60.0, sigma=4.0)  # 14 min, 14 m in: drift?
    assert max(c for _, c in _conf(book)) < 0.9


def test_burst_hold_is_opt_in_and_waits_out_a_burst() -> None:
    still, burst = [-30.0] * 6, [45.0, 50.0, 40.0]
    tr, book = _zone()  # default: off, a 3-fix burst from a still track opens a breach
    _feed(tr, still + burst + still, dt=60.0)
    assert [r.state for r in book.drain()][:1] == ["open"]
    held = Settings(burst_max_fixes=4)
    tr, book = _zone(held)
    _feed(tr, still + burst + still, dt=60.0)
    assert book.drain() == []  # back where it stood: a burst, not evidence
    tr, book = _zone(held)
    _feed(tr, still + [45.0] * 8, dt=60.0)
    (rec, *_) = book.drain()  # a run longer than a burst: opened from its first fix
    assert rec.opened_t == 1000.0 + 60.0 * 6 and rec.raised_t == 1000.0 + 60.0 * 10
    tr, book = _zone(held)
    _feed(tr, [-200, -140, -80, -20, 40, 45, 50], dt=60.0)  # walking in: no hold
    assert book.drain()[0].raised_t == 1000.0 + 60.0 * 4


def test_settings_file_turns_the_burst_hold_on(tmp_path: Path) -> None:
    conf = tmp_path / "settings.toml"
    conf.write_text("burst_max_fixes = 4\ncurfew_min_away_m = 35.0\n")
    s = Settings.from_toml(conf)
    assert s.burst_max_fixes == 4 and s.curfew_min_away_m == 35.0


@pytest.mark.parametrize("settings", [None, "burst_max_fixes = 4\n"])
def test_curfew_home_family_through_the_cli(
    tmp_path: Path, settings: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Home all night in an urban canyon beside a 30-55 m curfew: no alert at >= 0.9 while
    every night out and late arrival is found (simulate, then replay, as a user would)."""
    d = tmp_path / "fam"
    assert main(["simulate", "--family", "curfew_home", "--seed", "1501", "--episodes",
                 "8", "--out-dir", str(d)]) == 0  # fmt: skip
    args = ["replay", str(d / "replay.jsonl"), "--zones", str(d / "zones.geojson"),
            "--subjects", str(d / "subjects.toml"), "--out", str(d / "alerts.jsonl")]  # fmt: skip
    if settings:
        (tmp_path / "s.toml").write_text(settings)
        args += ["--settings", str(tmp_path / "s.toml")]
    assert main(args) == 0
    capsys.readouterr()
    alerts = [decode_alert(x) for x in (d / "alerts.jsonl").read_bytes().splitlines()]
    run = build_family("curfew_home", 1501, 8)
    sc = score(alerts, run.truth, run.interval, {"curfew_breach": 300.0})
    assert sc.recall == 1.0 and sc.material >= 4
    assert sc.false_high == 0, [(v.subject, v.confidence) for v in sc.false_alerts]


# -- a steady track beside a zone (Settings.steady_*) ----------------------------------------
# A street-canyon dweller 30 m out: fixes scatter about their level (sigma 15 m reported)
CANYON_STILL = [-30.0, -12.0, -41.0, -25.0, -48.0, -19.0, -33.0, -28.0]


@pytest.mark.parametrize("burst", [[45.0, 52.0], [45.0, 52.0, 47.0, 50.0]])
def test_a_burst_from_a_steady_canyon_track_raises_no_breach(burst: list[float]) -> None:
    """Multipath shifts 2-4 consecutive fixes together (issue 15's world): at 60 s fixes
    even the longest, 3 minutes from its first fix to its last, is held and dismissed."""
    tr, book = _zone()
    _feed(tr, CANYON_STILL + burst + CANYON_STILL, dt=60.0, sigma=15.0)
    assert book.drain() == []  # a jump from a steady level, back within 3 min: a burst
    tr, book = _zone(Settings(steady_burst_fixes=0))
    _feed(tr, CANYON_STILL + burst + CANYON_STILL, dt=60.0, sigma=15.0)
    assert [r.state for r in book.drain()][:1] == ["open"]  # without the hold it opens


def test_an_entry_outlasting_a_burst_from_a_steady_track_is_never_dismissed() -> None:
    """Five fixes inside at 60 s (4 minutes from the first to the last) are more than any
    burst: the breach opens on the fifth, from the first."""
    tr, book = _zone()
    run = [48.0, 51.0, 49.0, 56.0, 50.0]
    _feed(tr, [*CANYON_STILL, *run, *CANYON_STILL], dt=60.0, sigma=15.0)
    recs = book.drain()
    assert recs and recs[0].state == "open"
    assert recs[0].opened_t == 1000.0 + 60.0 * len(CANYON_STILL)  # from its first fix
    assert recs[0].raised_t - recs[0].opened_t == 60.0 * (len(run) - 1)
    assert S.steady_burst_s < 60.0 * (len(run) - 1)


def test_a_held_run_that_walks_out_was_no_burst() -> None:
    """Four fixes inside at 60 s, as long as the longest burst: jumping straight back to
    the level, it was one; leaving by a fix partway out (walking, as a burst never does),
    it was a step in, reported from its first fix."""
    still = [d - 20.0 for d in CANYON_STILL]  # about 50 m out
    run = [36.0, 25.0, 23.0, 33.0]
    tr, book = _zone()
    _feed(tr, [*still, *run, -45.0, *still], dt=60.0, sigma=15.0)
    assert book.drain() == []
    tr, book = _zone()
    _feed(tr, [*still, *run, -5.0, *still], dt=60.0, sigma=15.0)
    recs = book.drain()
    assert recs and recs[0].state == "open"
    assert recs[0].opened_t == 1000.0 + 60.0 * len(still)
    assert recs[0].raised_t == recs[0].opened_t + 60.0 * len(run)


def test_a_walk_in_from_a_steady_track_is_not_held_as_a_burst() -> None:
    """A burst jumps from where the track stood; a track whose last fix outside had already
    left its level (28 m towards the zone: 2 spreads of 12 m) is walking in: decided on its
    first fix inside, not held for steady_burst_s."""
    tr, book = _zone()
    _feed(tr, [*CANYON_STILL, 0.0, 45.0, 48.0, 46.0, 50.0, 47.0], dt=60.0, sigma=12.0)
    recs = book.drain()
    first_in = 1000.0 + 60.0 * (len(CANYON_STILL) + 1)
    assert recs and recs[0].opened_t == first_in and recs[0].raised_t == first_in
    tr, book = _zone()  # the same run jumping straight from the level is held
    _feed(tr, [*CANYON_STILL, -30.0, 45.0, 48.0, 46.0, 50.0, 47.0], dt=60.0, sigma=12.0)
    recs = book.drain()
    assert recs and recs[0].raised_t - recs[0].opened_t >= S.steady_burst_s


def test_a_walker_slowing_on_the_way_in_is_no_steady_level() -> None:
    """A tag asked to report every 15 s as it walks in (canyon sigma, 14 m): its last five
    minutes outside spread 30 m about their median, as a struggling receiver's steady
    level would, yet they go 180 m towards the zone at a walker's pace. A level is judged
    about a line through the depths (observe._walks), so the entry is a walk-in, not a
    jump from a level held as a burst (the bench's clip family, seed 2601, did that)."""
    walk = [(-151, -197.4), (-91, -102.9), (-76, -88.4), (-61, -68.0), (-46, -55.4),
            (-31, -52.9), (-16, -20.0)]  # fmt: skip
    inside = [(-1, 5.1), (14, 14.7), (29, 26.9), (44, 38.6), (59, 43.5), (74, 38.2),
              (90, 31.0), (105, 12.5), (120, 4.7)]  # fmt: skip
    out = [(135 + 15 * i, -8.9 - 15.0 * i) for i in range(12)]
    tr, book = _zone()
    for i, (t, d) in enumerate(walk + inside + out):
        tr.observe(Obs(1000.0 + t, d, 14.0, "T1", i))
    recs = book.drain()
    assert recs and recs[0].state == "open", recs
    assert recs[0].opened_t == 1000.0 - 1 and recs[0].raised_t <= 1000.0 + 44


@settings(max_examples=200, deadline=None)
@given(
    st.floats(0.0, 3.0),  # depth rate, m/s
    st.sampled_from([15.0, 30.0, 60.0]),
    st.integers(6, 40),
    st.lists(st.floats(-1.0, 1.0), min_size=40, max_size=40),
    st.floats(3.0, 25.0),  # sigma
)
def test_walks_is_a_slope_beyond_the_spread_about_it(
    rate: float, dt: float, n: int, noise: list[float], sigma: float
) -> None:
    """observe._walks against what it means: depths on a line at `rate` plus noise of at
    most one sigma. More than half the pairs of fixes are a quarter of the span apart or
    more, so the robust slope is off by at most err = 8 sigma / span, and the depths lie
    within sigma + err x span of the line it draws (their spread about it at most 1.4826 x
    twice that). A line at least err above WALK_MPS that moves more than
    steady_drift_spreads such spreads walks, whatever the noise; one below WALK_MPS by
    more than err never does."""
    base = [
        Obs(dt * i, -300.0 + rate * dt * i + sigma * noise[i], sigma, "T1", i) for i in range(n)
    ]
    span = dt * (n - 1)
    err = 8.0 * sigma / span
    spread = 1.4826 * 2.0 * (sigma + err * span)
    if rate - err >= WALK_MPS and (rate - err) * span > S.steady_drift_spreads * spread:
        assert _walks(base, sigma, S)
    if rate + err < WALK_MPS:
        assert not _walks(base, sigma, S)


def test_drift_about_a_steady_level_is_no_breach_a_step_beyond_it_is() -> None:
    level = [-15.0, -5.0, -22.0, -10.0, -18.0, -8.0, -20.0, -12.0] * 2  # 16 min next door
    drift = [6.0, 9.0, 4.0, 8.0, 5.0]  # 5 min a few metres in: what the error does there
    tr, book = _zone()
    _feed(tr, level + drift + level, dt=60.0, sigma=10.0)
    assert book.drain() == []
    tr, book = _zone(Settings(steady_window_s=0.0))
    _feed(tr, level + drift + level, dt=60.0, sigma=10.0)
    assert book.drain()  # judged fix by fix it looks like a shallow entry
    tr, book = _zone()
    _feed(tr, [*level, 40.0, 45.0, 42.0, 47.0, 44.0, 41.0], dt=60.0, sigma=10.0)
    (rec, *_) = book.drain()  # 55 m beyond the level, for 6 min: a breach
    assert rec.opened_t == 1000.0 + 60.0 * len(level)


def test_likely_confidence_rises_with_the_run_and_ranks_it() -> None:
    tops = []
    for n in (2, 4, 5):  # under confident_walked_fixes: a walk in seen coming (stop 35)
        tr, book = _zone()
        _feed(tr, [-200.0, -120.0, -60.0] + [35.0] * n + [-200.0] * 12, dt=60.0, sigma=14.0)
        tops.append(max(c for _, c in _conf(book)))
    assert S.likely_confidence_min <= tops[0] < tops[1] < tops[2] <= S.two_fix_confidence_max


def test_at_15_s_a_run_from_beside_a_steady_track_is_confident_only_after_minutes() -> None:
    """Extra fixes of a slowly wandering error, or of a burst beside a still receiver, are
    not independent evidence: from a steady level, confidence >= 0.9 waits for
    steady_confident_s however often the tag reports; a walk-in from far does not."""
    still = [-30.0 + 4.0 * ((i * 7) % 5 - 2) for i in range(24)]  # 6 min at 15 s, 30 m out
    tr, book = _zone()
    _feed(tr, [*still, *[45.0] * 16, *still], dt=15.0, sigma=12.0)  # 4 min 45 m in, back
    recs = book.drain()
    assert recs and max(r.confidence for r in recs) < 0.9
    tr, book = _zone()
    walk = [-8.0, 14.0, 36.0]  # steps in at 1.5 m/s, then stays 45 m in for 9 min
    _feed(tr, [*still, *walk, *[45.0] * 36], dt=15.0, sigma=12.0)
    high = [r.raised_t for r in book.drain() if r.confidence >= 0.9]
    entry = 1000.0 + 15.0 * (len(still) + 1)
    assert high and S.steady_confident_s <= high[0] - entry <= S.steady_confident_s + 30.0


# -- how the run came in (Settings.steady_watch_s, _leap_*, _unwatched_s, _progress_*) --------


def _high(book: EpisodeBook) -> float | None:
    """Raised time of the first record at confidence >= 0.9, if any."""
    return next((r.raised_t for r in book.drain() if r.confidence >= 0.9), None)


def test_a_leap_in_from_a_standing_track_waits_out_a_burst_a_walk_in_does_not() -> None:
    """At 15 s fixes a 75 m jump between two fixes from someone standing is what multipath
    does (a walker is seen walking): confident only after steady_leap_s. The same run
    reached at walking pace, or by a track already going that fast, is confident sooner."""
    still = [-30.0, -26.0, -33.0, -29.0]  # 1 min standing 30 m out (no steady level yet)
    entry = 1000.0 + 15.0 * len(still)
    tr, book = _zone()
    _feed(tr, [*still, *[45.0] * 48], dt=15.0, sigma=12.0)  # 12 min "in"
    high = _high(book)
    assert high is not None and S.steady_leap_s <= high - entry <= S.steady_leap_s + 30.0
    tr, book = _zone()  # walks up at 1.5 m/s and on in: seen walking the whole way
    _feed(tr, [-96.0, -74.0, -52.0, -30.0, -8.0, 14.0, 36.0, *[45.0] * 45], dt=15.0, sigma=12.0)
    high = _high(book)
    assert high is not None and high - (entry + 15.0) <= 180.0
    tr, book = _zone()  # a car at 5.5 m/s, then 6 m/s across the edge: no leap
    _feed(tr, [-240.0, -157.0, -75.0, 15.0, *[40.0] * 12], dt=15.0, sigma=12.0)
    high = _high(book)
    assert high is not None and high - (1000.0 + 45.0) <= 180.0
    tr, book = _zone(Settings(steady_leap_s=0.0))  # off: only the course jump holds it
    _feed(tr, [*still, *[45.0] * 48], dt=15.0, sigma=12.0)
    high = _high(book)
    assert high is not None and high - entry <= S.steady_confident_s + 30.0


def test_confident_takes_a_run_deep_for_its_own_accuracy() -> None:
    """12 minutes 30 m in, walked into from afar at 60 s fixes: confident when the fixes
    claim 10 m (sigma), never when they claim 20 m (30 m is 1.5 of their sigmas: canyon
    error wanders that far for minutes)."""
    walk = [-300.0, -230.0, -160.0, -90.0, -20.0]
    tops = []
    for sigma in (10.0, 20.0):
        tr, book = _zone()
        _feed(tr, [*walk, *[30.0] * 12], dt=60.0, sigma=sigma)
        tops.append(max(c for _, c in _conf(book)))
    assert tops[0] >= 0.9 > tops[1] >= S.likely_confidence_min


def test_a_run_from_beside_a_steady_track_ranks_below_a_walk_in_from_afar() -> None:
    """Likely alerts rank (the confidence AUC): the same 6 minutes 45 m in, reached from a
    steady canyon track 30 m out (a burst or the error's slow wander may do that) stays at
    wary_confidence_max, below the same run walked into from afar."""
    tops = []
    for before in (CANYON_STILL, [-400.0, -310.0, -220.0, -130.0, -40.0]):
        tr, book = _zone()
        _feed(tr, [*before, *[45.0] * 6, *[-200.0] * 12], dt=60.0, sigma=15.0)
        tops.append(max(c for _, c in _conf(book)))
    assert S.likely_confidence_min <= tops[0] <= S.wary_confidence_max < tops[1] < 0.9
    tr, book = _zone(Settings(wary_confidence_max=S.two_fix_confidence_max))
    _feed(tr, [*CANYON_STILL, *[45.0] * 6, *[-200.0] * 12], dt=60.0, sigma=15.0)
    assert max(c for _, c in _conf(book)) > S.wary_confidence_max  # the ceiling did it


def test_an_entry_nobody_watched_waits_unless_the_track_walks_on_in() -> None:
    """Reporting every 60 s, then every 15 s once the breach opened: a run that began in the
    60 s gap may be a burst that began there, so it is confident only after
    steady_unwatched_s, unless the 15 s fixes show it walking on in (steady_progress_*)."""
    t = [1000.0, 1060.0, 1120.0, 1180.0, 1240.0]  # 60 s fixes: arrives 35 m out, then in
    approach = [-300.0, -180.0, -60.0, -35.0, 30.0]
    stay = [30.0, 34.0, 28.0, 33.0, 31.0, 29.0] * 4  # 6 min at 15 s, 30 m in
    walk_on = [48.0, 66.0, 80.0, 82.0, 79.0, 81.0] * 4  # walks on to 80 m in
    for after, soon in ((stay, False), (walk_on, True)):
        tr, book = _zone()
        for i, d in enumerate(approach + after):
            ti = t[i] if i < len(t) else t[-1] + 15.0 * (i - len(t) + 1)
            tr.observe(Obs(ti, d, 12.0, "T1", i))
        high = _high(book)
        assert high is not None
        assert (high - t[-1] <= 180.0) is soon, (after[:3], high - t[-1])
        if not soon:
            assert high - t[-1] >= S.steady_unwatched_s
    tr, book = _zone()  # from far out no burst reaches the zone: nothing to wait for
    for i, d in enumerate([-400.0, -280.0, -160.0, 40.0, *stay]):
        tr.observe(Obs(1000.0 + 60.0 * min(i, 3) + 15.0 * max(i - 3, 0), d, 12.0, "T1", i))
    high = _high(book)
    assert high is not None and high - 1180.0 <= 180.0


def _walk(
    tag: str, seq0: int, t0: float, pts: list[tuple[float, float]], dt: float
) -> list[dict[str, Any]]:
    return [{"tag": tag, **fix(seq0 + i, t0 + dt * i, x, y, 20.0)} for i, (x, y) in enumerate(pts)]


def test_a_burst_beside_a_zone_and_a_walk_in_through_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through `tagwatch replay`, at 15 s fixes: S1 stands 35 m outside Z1 for 10 min while
    multipath puts 32 fixes (8 min) 40 m inside, a jump between two fixes; S2 walks into
    Z2 at 1.4 m/s and stays. S1 may get a likely alert, never a confident one; S2's
    breach is confident within 3 minutes of its entry."""
    z1 = {"type": "Feature", "properties": {"id": "Z1", "subject": "S1", "kind": "exclusion"},
          "geometry": {"type": "Polygon", "coordinates": [square(100.0)]}}  # fmt: skip
    z2 = {"type": "Feature", "properties": {"id": "Z2", "subject": "S2", "kind": "exclusion"},
          "geometry": {"type": "Polygon", "coordinates": [square(100.0, 2000.0)]}}  # fmt: skip
    zones, subjects = write_world(tmp_path, [z1, z2], TWO)
    jit = [(4.0 * ((i * 7) % 5 - 2), 3.0 * ((i * 3) % 5 - 2)) for i in range(200)]
    t0 = 1_790_000_000.0
    s1 = [(-135.0 + jit[i][0], jit[i][1]) for i in range(40)]
    s1 += [(-60.0 + jit[i][0], jit[i][1]) for i in range(32)]
    s1 += [(-135.0 + jit[i][0], jit[i][1]) for i in range(40)]
    s2 = [(2000.0 - 400.0 + 21.0 * i, jit[i][1]) for i in range(17)]  # to 43 m in
    s2 += [(2000.0 - 43.0 + jit[i][0], jit[i][1]) for i in range(30)]
    lines = sorted(_walk("T1", 1, t0, s1, 15.0) + _walk("T2", 1, t0 + 7.0, s2, 15.0),
                   key=lambda x: x["t"])  # fmt: skip
    path = tmp_path / "replay.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = tmp_path / "alerts.jsonl"
    assert main(["replay", str(path), "--zones", str(zones), "--subjects", str(subjects),
                 "--out", str(out)]) == 0  # fmt: skip
    capsys.readouterr()
    alerts = [decode_alert(x) for x in out.read_bytes().splitlines()]
    b1 = [a for a in alerts if a.kind == "zone_breach" and a.subject == "S1"]
    assert max((a.confidence for a in b1), default=0.0) < 0.9
    b2 = [a for a in alerts if a.kind == "zone_breach" and a.subject == "S2"]
    entry = t0 + 7.0 + 15.0 * (400.0 - 100.0) / 21.0
    high = min(a.raised_t for a in b2 if a.confidence >= 0.9)
    assert 0.0 < high - entry <= 180.0
