"""Alert quality (issue 15) as a benchmark: the engine, simple and naive baselines on the
core and urban scenario families, tuning seeds and unseen seeds apart, and a 24-hour
urban fleet at an unseen seed. The figures and seeds are bench/quality.py's.

    python -m pytest bench/bench_quality.py --benchmark-only -s -p no:cacheprovider

Prints the tables `python -m bench.quality` prints and lists every issue-15 target the
engine misses on the unseen seeds; with TAGWATCH_QUALITY_STRICT=1 a miss fails the test
(the targets are not all met yet: see the README table).

`test_rate_control` does the same for decisions with rate control: the families built
with tags that obey the engine's rate commands (bench/obedient.py), beside the plain ones."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from bench import obedient as ob
from bench import quality as q
from bench.scoring import Score, overall

STRICT = os.environ.get("TAGWATCH_QUALITY_STRICT") == "1"


@pytest.fixture(scope="module")
def boards() -> dict[str, q.Board]:
    return {
        "tune": q.family_board(q.TUNE_SEEDS, q.CORE + q.URBAN),
        "unseen": q.family_board(q.UNSEEN_SEEDS, q.CORE + q.URBAN),
    }


def targets(board: q.Board, fleet: q.Fleet) -> list[str]:
    """Every issue-15 target the engine misses, one line each."""
    miss: list[str] = []
    e, s, n = (overall(board.scores[d]) for d in q.DECIDERS)
    if e.recall < 1.0:
        miss.append(f"recall {e.recall:.2f} < 1.00 ({e.material - e.found} missed)")
    if e.duplicates:
        miss.append(f"{e.duplicates} duplicates (target 0)")
    if e.false_high:
        miss.append(f"{e.false_high} false alerts at confidence >= 0.9 (target 0)")
    if e.false > 0.03 * n.false:
        miss.append(f"false alerts {e.false} > 3 % of naive's {n.false}")
    if e.false > 0.7 * s.false:
        miss.append(f"false alerts {e.false} > 0.7x simple's {s.false}")
    sixty = Score()
    for fam, sc in board.scores["engine"].items():
        if q.FAMILIES[fam].interval == 60.0:
            sixty = sixty.merge(sc)
    p50 = sixty.delay(50)
    if p50 is not None and p50 > 45.0:
        miss.append(f"median decision delay {p50:.0f} s > 45 s at 60 s fixes")
    fast = board.scores["engine"]["urban_walk15"]
    share = q.high_within(fast)
    if share is None or share < 0.8:
        miss.append(f"at 15 s fixes {share or 0:.0%} of breaches reach 0.9 within 3 min (< 80 %)")
    a = q.auc(e.true_conf, e.false_conf)
    if a is not None and a < 0.95:
        miss.append(f"confidence AUC {a:.3f} < 0.95")
    f = fleet.scores["engine"]
    per100 = 100.0 * f.false / fleet.subject_days
    if per100 > 1.0:
        miss.append(f"fleet {fleet.seed} {fleet.noise}: {per100:.1f} false /100 subject-days > 1")
    if f.false_high:
        miss.append(f"fleet {fleet.seed} {fleet.noise}: {f.false_high} false at >= 0.9")
    if f.recall < 1.0:
        miss.append(f"fleet {fleet.seed} {fleet.noise}: recall {f.recall:.2f}")
    return miss


def test_alert_quality(benchmark: BenchmarkFixture, boards: dict[str, q.Board]) -> None:
    """Times the engine on the unseen urban fleet; prints every table; checks targets."""
    fleets: list[q.Fleet] = []
    benchmark.pedantic(
        lambda: fleets.append(q.fleet_run(q.FLEET_UNSEEN_SEED, "urban")), rounds=1, iterations=1
    )
    fleet = fleets[0]
    for title, key in (("Tuning seeds", "tune"), ("Unseen seeds", "unseen")):
        print("\n" + q.render_board(title, boards[key]))
    print("\n" + q.render_fleets(fleets))
    e = overall(boards["unseen"].scores["engine"])
    finite = [d for d in e.high_delays if math.isfinite(d)]
    benchmark.extra_info["unseen_false"] = e.false
    benchmark.extra_info["unseen_recall"] = round(e.recall, 3)
    benchmark.extra_info["time_to_high_p50_s"] = float(np.median(finite)) if finite else None
    miss = targets(boards["unseen"], fleet)
    if miss:
        print("\nmissed targets (unseen seeds):\n  " + "\n  ".join(miss))
    assert all(boards["unseen"].scores[d] for d in q.DECIDERS)
    if STRICT:
        assert not miss, "\n  ".join(miss)


def test_rate_control(benchmark: BenchmarkFixture) -> None:
    """Times obedient and plain builds + replays on the unseen seeds; prints the table;
    the issue-15 target: >= 80 % of real breaches at >= 0.9 within 3 min of entry."""
    boards: list[ob.ObeyBoard] = []
    benchmark.pedantic(lambda: boards.append(ob.obey_board(q.UNSEEN_SEEDS)), rounds=1, iterations=1)
    board = boards[0]
    print("\n" + ob.render_obey(board))
    e = overall(board.scores["obedient"])
    share = q.high_within(e)
    a = q.auc(e.true_conf, e.false_conf)
    benchmark.extra_info["obedient_high_within_3min"] = share
    benchmark.extra_info["obedient_auc"] = a
    benchmark.extra_info["obedient_false"] = e.false
    miss = []
    if share is None or share < 0.8:
        miss.append(f"with rate control {share or 0:.0%} of breaches reach 0.9 within 3 min")
    if a is not None and a < 0.95:
        miss.append(f"with rate control confidence AUC {a:.3f} < 0.95")
    if miss:
        print("\nmissed targets (unseen seeds, rate control):\n  " + "\n  ".join(miss))
    assert board.commands > 0 and e.material > 0
    if STRICT:
        assert not miss, "\n  ".join(miss)
