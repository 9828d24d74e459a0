"""Breach decisions against ground truth: the engine beside a naive and a simple baseline
on every scenario family, with the issue-4 targets checked for the engine.

    python -m pytest bench/bench_decisions.py --benchmark-only -s -p no:cacheprovider

Prints the per-family comparison table (engine / naive / simple), the engine's reliability
table and its other alert kinds. The target test fails listing every missed target."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from bench import baselines
from bench.scoring import Score, overall, render_info, render_reliability, render_table, score
from devices.families.catalog import FAMILIES, FamilyRun, build_family, write_family
from engine.replay import replay
from engine.settings import Settings
from engine.wire.alerts import Alert, decode_alert
from zones.load import load
from zones.model import ZoneSet

SEED = 20260324
# The core suite: the urban families (issue 15) are bench/quality.py's
CORE = [name for name, fam in FAMILIES.items() if fam.suite == "core"]
EPISODES = {name: 48 for name in CORE} | {"curfew_dst": 16, "victim_moving": 32}
# Live arrival order matters (late batches, shuffles): replay one record per pipeline batch,
# as the live loop sees a fleet this size (about one message a second).
SETTINGS = Settings(batch_max=1)
CURFEW_GRACE_S = 300.0  # allowed before a curfew absence is due as an alert
GRACE = {"curfew_breach": CURFEW_GRACE_S}
DECIDERS = ("engine", "naive", "simple")


@dataclass
class Case:
    run: FamilyRun
    paths: dict[str, Path]
    zoneset: ZoneSet
    alerts: dict[str, list[Alert]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def run_engine(case: Case) -> list[Alert]:
    out = io.BytesIO()
    replay(case.paths["replay"], case.zoneset, out, settings=SETTINGS, progress=False)
    return [decode_alert(line) for line in out.getvalue().splitlines()]


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    root = tmp_path_factory.mktemp("families")
    out: dict[str, Case] = {}
    for name, n in EPISODES.items():
        run = build_family(name, SEED, n)
        paths = write_family(run, root / name)
        case = Case(run, paths, load(paths["zones"], paths["subjects"]))
        lines = run.lines
        for decider, fn in (
            ("engine", lambda c=case: run_engine(c)),
            ("naive", lambda c=case, ls=lines: baselines.naive(ls, c.zoneset)),
            ("simple", lambda c=case, ls=lines: baselines.simple(ls, c.zoneset)),
        ):
            t = time.perf_counter()
            case.alerts[decider] = fn()
            case.seconds[decider] = time.perf_counter() - t
        out[name] = case
    return out


@pytest.fixture(scope="module")
def scores(cases: dict[str, Case]) -> dict[str, dict[str, Score]]:
    return {
        d: {
            name: score(c.alerts[d], c.run.truth, c.run.interval, GRACE)
            for name, c in cases.items()
        }
        for d in DECIDERS
    }


def test_engine_replay_throughput(benchmark: BenchmarkFixture, cases: dict[str, Case]) -> None:
    """Engine replay of every family file, one record per batch (live arrival order)."""
    fixes = sum(len(c.run.lines) for c in cases.values())

    def all_families() -> int:
        return sum(len(run_engine(c)) for c in cases.values())

    benchmark.pedantic(all_families, rounds=2, iterations=1, warmup_rounds=0)
    rate = fixes / benchmark.stats.stats.median
    benchmark.extra_info["fixes"] = fixes
    benchmark.extra_info["fixes_per_s"] = round(rate)
    base = {d: sum(c.seconds[d] for c in cases.values()) for d in ("naive", "simple")}
    print(
        f"\nreplay lines: {fixes}; engine {rate:,.0f} lines/s (batch_max=1); "
        + ", ".join(f"{d} {fixes / s:,.0f} lines/s" for d, s in base.items() if s > 0)
    )


def _targets(scores: dict[str, dict[str, Score]]) -> list[str]:
    """Every issue-4 target the engine misses, one line each."""
    miss: list[str] = []
    eng, nai, sim = scores["engine"], scores["naive"], scores["simple"]
    rows = {**{f: f for f in eng}, "all": "all"}
    for fam in rows:
        e = overall(eng) if fam == "all" else eng[fam]
        n = overall(nai) if fam == "all" else nai[fam]
        s = overall(sim) if fam == "all" else sim[fam]
        if e.recall < 1.0:
            ids = ", ".join(f"{m['subject']} {m['kind']}" for m in e.missed[:4])
            miss.append(
                f"{fam}: recall {e.recall:.2f} < 1.00 on material "
                f"({e.material - e.found} missed: {ids})"
            )
        # False-alert ratios are judged over all families: per family the baselines' counts
        # are often 0 or 2 (naive 0 on drive_around), where a ratio says nothing.
        if fam == "all" and e.false > 0.03 * n.false:
            miss.append(f"{fam}: false alerts {e.false} > 3 % of naive's {n.false}")
        if fam == "all" and e.false and e.false >= s.false:
            miss.append(f"{fam}: false alerts {e.false} not fewer than simple's {s.false}")
        if e.duplicates:
            miss.append(f"{fam}: {e.duplicates} duplicate alerts (target 0)")
        if e.false_high:
            miss.append(f"{fam}: {e.false_high} false alerts at confidence >= 0.9 (target 0)")
        p50 = e.delay(50)
        if p50 is not None and p50 > 60.0:
            miss.append(f"{fam}: median decision delay {p50:.0f} s > 60 s")
    return miss


def test_engine_meets_decision_targets(
    benchmark: BenchmarkFixture, cases: dict[str, Case], scores: dict[str, dict[str, Score]]
) -> None:
    """Scores every decider (timed) and checks the issue's targets for the engine."""
    benchmark.pedantic(
        lambda: [
            score(c.alerts["engine"], c.run.truth, c.run.interval, GRACE) for c in cases.values()
        ],
        rounds=1,
        iterations=1,
    )
    print("\n" + render_table(scores, DECIDERS))
    print("\n" + render_reliability(scores["engine"]))
    print("\n" + render_info(scores["engine"]))
    miss = _targets(scores)
    if miss:
        print("\nmissed targets:\n  " + "\n  ".join(miss))
    assert not miss, f"{len(miss)} decision target(s) missed:\n  " + "\n  ".join(miss)
