"""Stop 34: a tag within `watch_near_m` of an exclusion zone is asked for 15 s fixes (the
pipeline's rate commands); a leap within a run inside waits as a leap at its start does
(observe.Entry); a straight segment that ends inside, from a track going slower than a
vehicle, is a possible breach at most (Routes.transit_step). Through the pipeline's
`process`, one record per batch, as live."""

from __future__ import annotations

from dataclasses import replace

from engine.core.pipeline import Pipeline
from engine.settings import Settings
from engine.wire.alerts import Alert
from engine.wire.records import FixRecord
from tests.helpers import offset
from tests.test_pipeline import EXCL, T0, _world

S = Settings()


def fix(seq: int, t: float, dx: float, acc: float = 5.0) -> FixRecord:
    lat, lon = offset(dx, 0.0)
    return FixRecord("T1", seq, t, lat, lon, acc)


def run(p: Pipeline, recs: list[FixRecord]) -> tuple[list[Alert], list[tuple[float, float]]]:
    """Zone breach records, and (time of the fix answered, rate_s) commands."""
    alerts: list[Alert] = []
    cmds: list[tuple[float, float]] = []
    for r in recs:
        res = p.process([r])
        alerts += [a for a in res.alerts if a.kind == "zone_breach"]
        cmds += [(r.t, rate) for _, rate in res.commands]
    return alerts, cmds


def test_a_tag_lingering_beside_a_zone_is_watched_until_it_leaves() -> None:
    """70 m outside the square (edge at x = -100), still: within a walker's minute of it,
    so asked for 15 s at once; 400 m out, told the usual rate once the hold is over."""
    still = [fix(i, T0 + 60 * i, -170.0 + (3.0 if i % 2 else 0.0)) for i in range(6)]
    away = [fix(6 + i, T0 + 360 + 60 * i, -500.0) for i in range(3)]
    _, cmds = run(_world([EXCL]), still + away)
    assert cmds == [(T0, S.report_fast_s), (T0 + 420, S.report_interval_s)], cmds
    # 200 m out: beyond watch_near_m; and off, nothing near the square asks anything
    far = [fix(i, T0 + 60 * i, -300.0 + (3.0 if i % 2 else 0.0)) for i in range(6)]
    assert run(_world([EXCL]), far)[1] == []
    off = _world([EXCL], settings=replace(S, watch_near_m=0.0))
    assert run(off, still + away)[1] == []


def _leap_in_run() -> list[FixRecord]:
    """Every 15 s, 25 m accuracy: a walk (1.4 m/s) to just inside the square (3 m), then
    60 m deeper in one fix (4 m/s: no walker) and there for 4 minutes: a multipath burst
    that began one fix after the walker reached the edge."""
    recs = [fix(i, T0 + 15 * i, -391.0 + 21.0 * i, acc=25.0) for i in range(15)]
    t = recs[-1].t
    for i in range(16):
        t += 15.0
        recs.append(fix(len(recs), t, -37.0 + (3.0 if i % 2 else -3.0), acc=25.0))
    return recs


def test_a_leap_within_a_run_inside_waits_as_a_leap() -> None:
    alerts, _ = run(_world([EXCL]), _leap_in_run())
    assert alerts, "the run inside is still reported"
    top = max(a.confidence for a in alerts)
    assert top <= S.wary_confidence_max, [a.confidence for a in alerts]
    # with no wait after a leap the same four minutes are confident: the wait is what holds
    quick = _world([EXCL], settings=replace(S, steady_leap_s=0.0))
    assert max(a.confidence for a in run(quick, _leap_in_run())[0]) >= 0.9


def _step_in_from_the_edge() -> list[FixRecord]:
    """Every 15 s, 30 m accuracy: 5 m outside for 10 minutes (never confidently outside,
    so the evidence gathers all of it), then one fix 50 m inside."""
    recs = [fix(i, T0 + 15 * i, -105.0 + (6.0 if i % 2 else -6.0), acc=30.0) for i in range(40)]
    return [*recs, fix(40, T0 + 600, -50.0, acc=30.0)]


def test_a_segment_ending_inside_from_a_still_track_is_possible_at_most() -> None:
    alerts, _ = run(_world([EXCL]), _step_in_from_the_edge())
    assert alerts and alerts[0].detail.get("route") == "segment", alerts
    assert max(a.confidence for a in alerts) <= S.possible_confidence_max
    # a track going a vehicle's pace before it (here: any pace) keeps the transit's cap
    fast = _world([EXCL], settings=replace(S, transit_inside_min_speed_mps=0.0))
    got = run(fast, _step_in_from_the_edge())[0]
    assert got and max(a.confidence for a in got) > S.possible_confidence_max


def _walk_in_unwatched(wobble: float = 0.0, first_x: float = -70.0) -> list[FixRecord]:
    """A walker at 60 s fixes (70 m a minute) towards the square (edge at x = -100); its
    first fix inside, a minute after the last outside (nobody watched it come), 30 m deep
    where it stopped; then every 15 s there for 4 minutes (the tag asked for 15 s).
    `wobble`: metres the fixes before it zigzag off the line (a struggling receiver)."""
    xs = [-390.0, -320.0, -250.0, -180.0, -110.0]
    recs = [fix(i, T0 + 60 * i, x + (wobble if i % 2 else -wobble)) for i, x in enumerate(xs)]
    t = T0 + 60 * len(xs)
    for i in range(17):
        recs.append(fix(len(recs), t + 15 * i, first_x + (2.0 if i % 2 else -2.0)))
    return recs


def _first_confident(alerts: list[Alert]) -> float | None:
    return min((a.raised_t for a in alerts if a.confidence >= 0.9), default=None)


def test_a_walk_in_seen_coming_is_confident_without_waiting_out_a_burst() -> None:
    entry = T0 + 300
    seen = _first_confident(run(_world([EXCL]), _walk_in_unwatched())[0])
    assert seen is not None and seen - entry <= 150.0, seen
    # without the rule the same entry waits steady_unwatched_s (it could be a burst begun
    # in the gap): nothing confident in the four minutes
    off = _world([EXCL], settings=replace(S, steady_seen_coming=False))
    assert _first_confident(run(off, _walk_in_unwatched())[0]) is None
    # a receiver zigzagging 15 m off the line, or a first fix 30 m deeper than the walk
    # predicts (a jump off it), waits as before
    for recs in (_walk_in_unwatched(wobble=15.0), _walk_in_unwatched(first_x=-10.0)):
        assert _first_confident(run(_world([EXCL]), recs)[0]) is None


def _lurk(steps: list[float]) -> list[FixRecord]:
    """Every 15 s (the tag is beside the square, so asked for 15 s), 5 m fixes: 6 minutes
    standing 40 m outside, then `steps` (metres each 15 s) towards the square, then 5
    minutes where they end."""
    recs = [fix(i, T0 + 15 * i, -140.0 + (2.0 if i % 2 else -2.0)) for i in range(24)]
    x = -140.0
    for step in steps:
        x += step
        recs.append(fix(len(recs), T0 + 15 * len(recs), x))
    for i in range(20):
        recs.append(fix(len(recs), T0 + 15 * len(recs), x + (2.0 if i % 2 else -2.0)))
    return recs


def test_a_lurker_watched_walking_in_from_its_spot_is_confident_within_minutes() -> None:
    """A walk in from a steady spot, one 15 s step of 28 m (1.9 m/s: GPS error on a walk,
    no leap) across the edge: the run did not begin beside a steady track."""
    walk = [20.0, 21.0, 28.0, 20.0, 21.0]  # -140 -> -30: 70 m inside
    entry = T0 + 15 * (24 + 2)  # the step that crosses the edge (x = -100)
    seen = _first_confident(run(_world([EXCL]), _lurk(walk))[0])
    assert seen is not None and seen - entry <= 180.0, seen
    # the same step counted as a leap (from 1.5 m/s) waits as a jump from the spot does
    strict = _world([EXCL], settings=replace(S, steady_leap_mps=1.5))
    late = _first_confident(run(strict, _lurk(walk))[0])
    assert late is None or late - entry > 300.0, late
    # a multipath jump from the spot (80 m in one fix) waits too
    jumped = _first_confident(run(_world([EXCL]), _lurk([110.0]))[0])
    assert jumped is None or jumped - entry > 300.0, jumped
