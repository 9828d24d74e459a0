"""The harder world of issue 15: urban-canyon noise (`tagwatch simulate --noise canyon`),
the urban scenario families, and the quality bench that scores them (`python -m
bench.quality`): tuning and unseen seeds apart, engine beside the baselines."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench import baselines, quality
from bench.scoring import Score
from devices.families.catalog import FAMILIES, build_family, write_family
from devices.sensing.noise import CANYON, CANYON_GPS, PRESETS, R68
from engine.cli.main import main
from zones.load import load

URBAN = [n for n, f in FAMILIES.items() if f.suite == "urban"]


def test_canyon_error_is_large_slow_and_under_reported() -> None:
    t = np.arange(3000) * 60.0
    zero = np.zeros(len(t))
    sig, under, lag1 = [], [], []
    for k in range(40):  # 40 tracks: per-track parameters are drawn once per track
        x, y, acc, src = CANYON_GPS.perturb(np.random.default_rng(k), t, zero, zero)
        sig.append(float(np.sqrt(0.5 * np.mean(x * x + y * y))))
        under.append(float(np.median(acc)) < R68 * sig[-1] * 0.9)
        lag1.append(float(np.corrcoef(x[:-1], x[1:])[0, 1]))
        assert set(src) == {"gps"}
    assert min(sig) > 10.0 and max(sig) < 30.0  # sigma 12-25 m per axis, sampled
    assert min(lag1) > np.exp(-60.0 / 120.0) - 0.1  # correlated over minutes: tau >= 120 s
    assert 0.5 < np.mean(under) < 0.9  # most tracks claim better than they deliver


def test_canyon_bursts_shift_runs_of_fixes_30_to_80_m() -> None:
    t = np.arange(20000) * 60.0
    zero = np.zeros(len(t))
    quiet = PRESETS["canyon"].perturb(np.random.default_rng(3), t, zero, zero)
    calm = CANYON_GPS.perturb(np.random.default_rng(3), t, zero, zero)
    assert PRESETS["canyon"] is CANYON
    # the same generator state drives the base error, so the bursts are the difference
    moved = np.hypot(quiet[0] - calm[0], quiet[1] - calm[1])
    shifted = moved > 1.0
    assert 0.01 < shifted.mean() < 0.06
    assert moved[shifted].min() >= 30.0 * 0.8 and moved[shifted].max() <= 80.0 * 1.2
    runs = np.diff(np.flatnonzero(np.diff(np.concatenate([[0], shifted, [0]]))))[::2]
    assert runs.min() >= 2  # a burst is never one fix alone (two can abut: <= 8)


def test_simulate_with_canyon_noise(tmp_path: Path) -> None:
    args = ["simulate", "--subjects", "4", "--duration", "30m", "--seed", "9"]
    assert main([*args, "--noise", "canyon", "--out-dir", str(tmp_path / "c")]) == 0
    assert main([*args, "--out-dir", str(tmp_path / "s")]) == 0
    accs = {
        k: [json.loads(x)["acc"] for x in (tmp_path / k / "replay.jsonl").read_text().splitlines()
            if '"acc"' in x and "/" not in json.loads(x).get("tag", "/")]
        for k in ("c", "s")
    }  # fmt: skip
    assert np.median(accs["c"]) > 1.2 * np.median(accs["s"])  # 12-25 m error, claimed less
    with pytest.raises(SystemExit) as e:  # argparse: a clear usage error, exit 2
        main([*args, "--noise", "downtown", "--out-dir", str(tmp_path / "x")])
    assert e.value.code == 2


def _deepest_fix_of_negatives(name: str, tmp: Path) -> list[float]:
    """Per negative episode, how deep its deepest fix lands in the zone (m, > 0 inside)."""
    run = build_family(name, 4, 9)
    p = write_family(run, tmp)
    world = baselines.World(load(p["zones"], p["subjects"]))
    fixes = baselines.fixes_of(run.lines)
    deepest: dict[str, float] = {}
    for f, sds in zip(fixes, world.signed(fixes), strict=True):
        for _, sd in sds:
            deepest[f.device] = max(deepest.get(f.device, -np.inf), -sd)
    return [deepest[e["tag"]] for e in run.episodes if e["expect"] == "negative"]


@pytest.mark.parametrize("name", ["near_dweller", "edge_burst"])
def test_bursts_throw_fixes_across_the_edge_of_negative_episodes(name: str, tmp_path: Path) -> None:
    deepest = _deepest_fix_of_negatives(name, tmp_path)
    # thrown 10+ m across from the true position; the drifting base error may take some back
    assert len(deepest) >= 6 and sum(d > 0 for d in deepest) >= 0.8 * len(deepest), deepest


def test_urban_families_are_their_own_suite_at_their_intervals() -> None:
    assert set(URBAN) == {
        "near_dweller", "edge_burst", "urban_drive", "urban_drive30", "curfew_home",
        "urban_walk15",
    }  # fmt: skip
    assert FAMILIES["urban_drive30"].interval == 30.0
    assert FAMILIES["urban_walk15"].interval == 15.0
    run = build_family("urban_drive30", 2, 6)
    ts = [r["t"] for r in run.records if r["tag"] == "T0001"]
    assert abs(float(np.median(np.diff(ts))) - 30.0) < 3.0
    curfews = build_family("curfew_home", 2, 4)
    radii = [f["properties"].get("radius_m") for f in curfews.zones["features"]]
    assert all(r is None or 30 <= r <= 55 for r in radii)


def test_quality_bench_names_its_seeds_and_keeps_them_apart() -> None:
    assert set(quality.TUNE_SEEDS).isdisjoint(quality.UNSEEN_SEEDS)
    assert quality.FLEET_TUNE_SEED != quality.FLEET_UNSEEN_SEED == 4242
    assert quality.auc([0.9, 0.8], [0.6, 0.6]) == 1.0
    assert quality.auc([1.0], [1.0]) == 0.5
    s = Score(high_delays=[60.0, 200.0, float("inf"), 100.0])
    assert quality.high_within(s) == 0.5


def test_python_m_bench_quality_prints_both_seed_sets(capsys: pytest.CaptureFixture[str]) -> None:
    rc = quality.main(["--quick", "--no-fleet", "--families", "walk_in,edge_burst"])
    out = capsys.readouterr().out
    assert rc == 0
    assert f"Tuning seeds (seeds {quality.TUNE_SEEDS[0]})" in out
    assert f"Unseen seeds (seeds {quality.UNSEEN_SEEDS[0]})" in out
    assert "Cells: engine / simple / naive." in out and "| edge_burst |" in out
    assert "AUC" in out and "of naive" in out
    assert quality.main(["--families", "nope"]) == 2
