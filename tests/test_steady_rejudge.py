"""Stop 35: a new run into the zone while a breach is open (the tag stepped out and back,
not out long enough to close it) does not inherit the wait of the run that opened it
(decide.BreachTracker.observe, setting `steady_rejudge`). A burst thrown from a steady
spot opens a breach that must outlast a burst before it is confident; when the tag is
then seen confidently outside and walks in, watched, the walk is judged as a walk. And
a run seen walking in needs `confident_walked_fixes` inside, not `confident_fixes`.
Through the pipeline's `process`, one record per batch, as live."""

from __future__ import annotations

from dataclasses import replace

from engine.core.pipeline import Pipeline
from engine.settings import Settings
from engine.wire.alerts import Alert
from engine.wire.records import FixRecord
from tests.test_pipeline import EXCL, T0, _world
from tests.test_watch_near import _first_confident, fix, run

S = Settings()
SPOT = -140.0  # 40 m outside the square's west edge (x = -100), 10 m fixes


def _burst_then_walk(walk: list[float]) -> tuple[list[FixRecord], float]:
    """Every 15 s: 6 minutes at the spot; a multipath burst throws 3 fixes 40 m inside
    (an 80 m leap); 2 fixes back at the spot (confidently outside: the breach stays open,
    its exit gap not yet over); then `walk` (x of each 15 s fix) and 5 minutes at its
    last x. Returns the records and the time of the walk's first fix inside."""
    xs = [SPOT + (2.0 if i % 2 else -2.0) for i in range(24)]
    xs += [-60.0, -58.0, -61.0, SPOT, SPOT + 2.0, *walk]
    xs += [walk[-1] + (2.0 if i % 2 else -2.0) for i in range(20)]
    recs = [fix(i, T0 + 15.0 * i, x, acc=10.0) for i, x in enumerate(xs)]
    k = next(k for k, x in enumerate(walk) if x > -100.0)
    return recs, recs[29 + k].t


WALK = [-125.0, -110.0, -90.0, -70.0, -50.0, -40.0]  # 1.0-1.3 m/s, no step a leap


def _alerts(p: Pipeline, recs: list[FixRecord]) -> list[Alert]:
    return run(p, recs)[0]


def test_a_walk_in_after_a_burst_kept_the_breach_open_is_judged_as_a_walk() -> None:
    recs, entry = _burst_then_walk(WALK)
    alerts = _alerts(_world([EXCL]), recs)
    ids = {a.id for a in alerts}
    assert len(ids) == 1, "the burst opened the breach and the walk in continues it"
    opened = min(a.raised_t for a in alerts)
    assert (
        opened < entry
        and max(a.confidence for a in alerts if a.raised_t < entry) <= S.wary_confidence_max
    ), "the burst itself waits"
    seen = _first_confident(alerts)
    assert seen is not None and seen - entry <= 180.0, (seen, entry)
    # without re-judging, the walk inherits the burst's wait (steady_confident_s)
    off = _world([EXCL], settings=replace(S, steady_rejudge=False))
    late = _first_confident(_alerts(off, recs))
    assert late is None or late - entry > 300.0, (late, entry)


def test_a_second_jump_from_the_spot_still_waits() -> None:
    """Back at the spot after the burst, a second burst (an 80 m leap, no walk): it is no
    walk in, so the breach still waits out a burst."""
    recs, entry = _burst_then_walk([-60.0])
    seen = _first_confident(_alerts(_world([EXCL]), recs))
    assert seen is None or seen - entry > 300.0, (seen, entry)


def _walk_in() -> list[FixRecord]:
    """Every 15 s, 5 m fixes: a walk (1.3 m/s) from 200 m out to 50 m inside the square,
    then 3 minutes there."""
    xs = [-300.0 + 20.0 * i for i in range(13)]  # -300 ... -60
    xs += [-50.0 + (2.0 if i % 2 else -2.0) for i in range(12)]
    return [fix(i, T0 + 15.0 * i, x) for i, x in enumerate(xs)]


def test_a_run_seen_walking_in_is_confident_after_fewer_fixes() -> None:
    """Its entry was watched and no leap: it needs confident_walked_fixes fixes inside (6,
    over at least confident_min_span_s), not the confident_fixes (8) that outlast a
    burst's; a run that jumped in still needs those and more (the tests above)."""
    recs = _walk_in()
    entry = recs[11].t  # x = -80: the first fix inside (x = -100 is the edge)
    seen = _first_confident(_alerts(_world([EXCL]), recs))
    assert seen is not None and seen - entry == 15.0 * (S.confident_walked_fixes - 1), seen
    eight = _world([EXCL], settings=replace(S, confident_walked_fixes=S.confident_fixes))
    late = _first_confident(_alerts(eight, recs))
    assert late is not None and late - entry == 15.0 * (S.confident_fixes - 1), late
