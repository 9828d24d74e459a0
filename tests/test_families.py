"""Scenario families, baselines and scoring: deterministic, contract-shaped families whose
truth follows the written labelling rule and whose negatives are negative on the true path;
four deliveries of the same fixes; scoring and baselines on hand-made cases; every family
through `tagwatch replay` and over MQTT."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import json
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely
from shapely.geometry import shape

from bench import baselines
from bench.scoring import render_reliability, render_table, score
from devices.families.catalog import (
    FAMILIES,
    FamilyRun,
    build_family,
    delivery_variants,
    write_family,
)
from devices.families.truth import MATERIAL_DEPTH_M, MATERIAL_INTERVALS
from devices.sensing.noise import GaussMarkovNoise, MultipathNoise, SourceMix
from devices.sim.delivery import mqtt_messages
from devices.world.clock import active_mask
from devices.world.geo import LocalFrame
from engine.cli.main import main
from engine.replay import replay
from engine.settings import Settings
from engine.wire.alerts import Alert, alert_id, decode_alert
from engine.wire.decode import decode_replay_line
from tests.helpers import AlertCollector, EngineProcess, fix, offset, publish, square, wait_online
from zones.load import load

NAMES = sorted(FAMILIES)
FIX_KEYS = ["tag", "seq", "t", "lat", "lon", "acc", "batt", "src"]
N = 8  # episodes per family in these tests: two of each variant at most


@pytest.fixture(scope="module")
def runs() -> dict[str, FamilyRun]:
    return {name: build_family(name, 3, N) for name in NAMES}


@pytest.fixture(scope="module")
def written(
    runs: dict[str, FamilyRun], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict[str, Path]]:
    root = tmp_path_factory.mktemp("families")
    return {name: write_family(run, root / name) for name, run in runs.items()}


# -- generation ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_family_is_deterministic_per_seed(
    name: str, runs: dict[str, FamilyRun], tmp_path: Path
) -> None:
    again = build_family(name, 3, N)
    assert again.lines == runs[name].lines and again.truth == runs[name].truth
    assert again.zones == runs[name].zones and again.subjects_toml == runs[name].subjects_toml
    a, b = write_family(again, tmp_path / "a"), write_family(runs[name], tmp_path / "b")
    for key in a:
        assert a[key].read_bytes() == b[key].read_bytes(), key
    assert build_family(name, 4, N).lines != runs[name].lines


@pytest.mark.parametrize("name", NAMES)
def test_family_has_positives_and_negatives(name: str, runs: dict[str, FamilyRun]) -> None:
    expects = Counter(e["expect"] for e in runs[name].episodes)
    assert expects["negative"] >= 1, expects
    assert expects["material"] + expects["ambiguous"] >= 1, expects
    assert {e["variant"] for e in runs[name].episodes} == set(FAMILIES[name].variants)


@pytest.mark.parametrize("name", NAMES)
def test_truth_labels_follow_the_written_rule(name: str, runs: dict[str, FamilyRun]) -> None:
    run = runs[name]
    expect = {e["subject"]: e["expect"] for e in run.episodes}
    for e in run.truth:
        r = e.record()
        assert list(r)[:8] == [
            "kind",
            "subject",
            "tag",
            "zone",
            "start_t",
            "end_t",
            "material",
            "depth_m",
        ]
        assert r["family"] == name and r["end_t"] > r["start_t"]
        dwell = r["end_t"] - r["start_t"] >= MATERIAL_INTERVALS * run.interval
        deep = e.depth_m >= MATERIAL_DEPTH_M
        if e.label == "cell_only":
            assert not e.material
        else:
            assert e.material == (deep and (dwell or e.label == "transit")), r
            assert e.label == ("shallow" if not deep else "dwell" if dwell else e.label), r
    for subject, kind in expect.items():
        mine = [e for e in run.truth if e.subject == subject]
        if kind == "negative":
            assert not mine, (subject, mine)
        elif kind == "material":
            assert any(e.material for e in mine), (subject, mine)
        else:
            assert mine and not any(e.material for e in mine), (subject, mine)
    if name == "clip":  # the ambiguous clips: < 10 m deep, inside less than one fix interval
        clips = [e for e in run.truth if e.label == "shallow"]
        assert clips and all(e.depth_m < 10 and e.end_t - e.start_t < run.interval for e in clips)


def _written_zone(feature: dict[str, Any]) -> tuple[LocalFrame, Any]:
    """A zone straight from the GeoJSON, in a metric frame of its own (independent oracle)."""
    g = feature["geometry"]
    if g["type"] == "Point":
        lon, lat = g["coordinates"]
        return LocalFrame(lat, lon), shapely.Point(0, 0).buffer(
            feature["properties"]["radius_m"], 256
        )
    geom = shape(g)
    f = LocalFrame(geom.centroid.y, geom.centroid.x)
    return f, shapely.transform(geom, lambda c: np.stack(f.to_xy(c[:, 1], c[:, 0]), 1))


@pytest.mark.parametrize("name", NAMES)
def test_negatives_are_negative_on_the_true_path(name: str, runs: dict[str, FamilyRun]) -> None:
    run = runs[name]
    features = {f["properties"]["subject"]: f for f in run.zones["features"]}
    radius = {
        p["device"]: p["radius_m"]
        for s in tomllib.loads(run.subjects_toml)["subjects"]
        for p in s.get("protected", [])
    }
    for ep in run.episodes:
        tr = run.tracks[ep["subject"]]
        ts = np.arange(ep["t0"], ep["t1"], 1.0)
        lat, lon = tr.frame.to_latlon(*tr.path.at(ts))
        if ep["subject"] in features:
            f = features[ep["subject"]]
            zf, geom = _written_zone(f)
            inside = shapely.contains_xy(geom, *zf.to_xy(lat, lon))
            sched = f["properties"].get("schedule")
            active = active_mask(sched, ts) if sched else np.ones(len(ts), bool)
            breach = active & (inside if f["properties"]["kind"] == "exclusion" else ~inside)
        else:  # victim phone: distance to its true path
            px, py = tr.phone_path.at(ts)  # type: ignore[union-attr]
            sx, sy = tr.path.at(ts)
            breach = np.hypot(sx - px, sy - py) < radius[ep["device"]]
        assert breach.any() == (ep["expect"] != "negative"), ep


@pytest.mark.parametrize("name", NAMES)
def test_replay_lines_follow_the_contract(
    name: str, runs: dict[str, FamilyRun], written: dict[str, dict[str, Path]]
) -> None:
    run = runs[name]
    zs = load(written[name]["zones"], written[name]["subjects"])  # the files validate
    devices = {t for s in zs.subjects for t in s.tags} | {
        p.device for s in zs.subjects for p in s.protected
    }
    last: dict[str, tuple[int, float]] = {}
    for i, line in enumerate(written[name]["replay"].read_bytes().splitlines()):
        recs, dead = decode_replay_line(line, f"replay:{i + 1}")
        assert not dead and len(recs) == 1, dead
        obj = json.loads(line)
        assert list(obj) == FIX_KEYS and obj["tag"] in devices
        assert obj["src"] in ("gps", "wifi", "cell") and obj["acc"] > 0
    for r in run.records:  # per device, seq increases with event time
        prev = last.get(r["tag"])
        assert prev is None or (r["seq"] > prev[0] and r["t"] > prev[1]), r
        last[r["tag"]] = (r["seq"], r["t"])
        if "/" in r["tag"]:
            assert r["seq"] == int(r["t"])  # OwnTracks: seq = tst


def test_late_batches_arrive_after_live_reporting_resumes(runs: dict[str, FamilyRun]) -> None:
    run = runs["late_batch"]
    batches = [d for d in run.deliveries if d.channel == "fixes"]
    assert len(batches) == N
    lines = run.lines
    for b in batches:
        first = lines.index(b.records[0])
        newest = max(r["t"] for r in b.records)
        later_live = [ln for ln in lines[:first] if ln["tag"] == b.device and ln["t"] > newest]
        assert later_live, "the batch must arrive after live fixes taken after it"
        assert lines[first : first + len(b.records)] == list(b.records)  # together, in order


def test_reorder_dup_shuffles_within_a_window_and_duplicates(runs: dict[str, FamilyRun]) -> None:
    lines = runs["reorder_dup"].lines
    keys = [(ln["tag"], ln["seq"]) for ln in lines]
    dups = len(keys) - len(set(keys))
    assert 0.04 * len(set(keys)) <= dups <= 0.2 * len(set(keys))
    for tag in {k[0] for k in keys}:
        seqs = list(dict.fromkeys(s for t, s in keys if t == tag))
        assert seqs != sorted(seqs)  # really out of order ...
        assert all(abs(seqs.index(s) - i) <= 5 for i, s in enumerate(sorted(seqs)))  # ... boundedly


def _fix_errors(run: FamilyRun, subject: str) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Metres between each of a subject's tag fixes and its true position then."""
    tr = run.tracks[subject]
    tag = "T" + subject[1:]
    recs = [r for r in run.records if r["tag"] == tag]
    t = np.array([r["t"] for r in recs])
    fx, fy = tr.frame.to_xy([r["lat"] for r in recs], [r["lon"] for r in recs])
    tx, ty = tr.path.at(t)
    return np.hypot(fx - tx, fy - ty), recs


def test_jumps_and_single_deep_fixes_are_what_they_say(runs: dict[str, FamilyRun]) -> None:
    run = runs["jump"]
    truth = {e.subject for e in run.truth}
    for ep in run.episodes:
        err, recs = _fix_errors(run, ep["subject"])
        if ep["variant"] == "wild_jump":  # one fix 300-2000 m off, the rest ordinary
            wild = np.flatnonzero(err > 250.0)
            assert len(wild) == 1 and 300.0 <= err[wild[0]] <= 2000.0, err.max()
            assert ep["subject"] not in truth
        else:  # one confident fix on a true crossing
            assert ep["subject"] in truth and min(r["acc"] for r in recs) <= 8.0


def test_curfew_windows_follow_the_clock_changes(runs: dict[str, FamilyRun]) -> None:
    utc = {"2026-03-28": 19, "2026-03-29": 6, "2026-10-24": 18, "2026-10-25": 7}
    variant = {e["subject"]: e["variant"] for e in runs["curfew_dst"].episodes}
    seen = set()
    for e in runs["curfew_dst"].truth:
        start = dt.datetime.fromtimestamp(e.start_t, dt.UTC)
        end = dt.datetime.fromtimestamp(e.end_t, dt.UTC)
        if variant[e.subject] == "late":  # absent from the moment the window opens
            assert start.hour == utc[start.date().isoformat()] and start.minute == 0
        else:  # leaves at 05:30 local; the breach lasts until the window closes
            assert variant[e.subject] == "early" and end.hour == utc[end.date().isoformat()]
        seen.add((variant[e.subject], start.month))
    assert seen == {("late", 3), ("late", 10), ("early", 3), ("early", 10)}


@pytest.mark.parametrize("cell", [False, True])
def test_noise_is_calibrated_and_correlated(cell: bool) -> None:
    rng = np.random.default_rng(5)
    t = np.arange(4000) * 60.0
    zero = np.zeros(len(t))
    if cell:
        model: Any = SourceMix(cell_p=1.0)
    else:
        model = GaussMarkovNoise(sigma_m=(10.0, 10.0), tau_s=(120.0, 120.0), optimistic_p=0.0)
    x, y, acc, src = model.perturb(rng, t, zero, zero)
    r = np.hypot(x, y)
    assert abs(np.mean(r <= acc) - 0.68) < 0.06  # acc is the 68 % radius
    assert set(src) == ({"cell"} if cell else {"gps"})
    lag1 = np.corrcoef(x[:-1], x[1:])[0, 1]
    if cell:
        assert abs(lag1) < 0.1 and acc.min() >= 300.0 and acc.max() <= 1000.0
    else:
        assert abs(lag1 - np.exp(-0.5)) < 0.08  # AR(1) with tau = 2 fix intervals
    burst = MultipathNoise(GaussMarkovNoise(sigma_m=(3.0, 3.0)), burst_p=0.05)
    bx, by, _, _ = burst.perturb(np.random.default_rng(6), t, zero, zero)
    off = np.hypot(bx, by) > 40.0
    assert 0.05 < off.mean() < 0.25 and np.hypot(bx, by).max() < 200.0


def test_simulate_writes_a_family(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["simulate", "--family", "clip", "--episodes", "4", "--seed", "2"]
    assert main([*args, "--out-dir", str(tmp_path / "a")]) == 0
    assert "clip: 4 episodes" in capsys.readouterr().out
    names = {"zones.geojson", "subjects.toml", "replay.jsonl", "truth.jsonl", "episodes.jsonl"}
    assert {p.name for p in (tmp_path / "a").iterdir()} == names
    assert load(tmp_path / "a" / "zones.geojson", tmp_path / "a" / "subjects.toml").subjects
    assert main([*args, "--family", "nope", "--out-dir", str(tmp_path / "b")]) == 2
    assert "unknown family 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["walk_in", "victim_moving", "late_batch"])
def test_delivery_variants_hold_the_same_records(name: str, runs: dict[str, FamilyRun]) -> None:
    variants = delivery_variants(runs[name], seed=1)
    assert list(variants) == ["on_time", "late", "shuffled", "duplicated"]
    canon = {(r["tag"], r["seq"]): r for r in runs[name].records}
    for kind, lines in variants.items():
        assert {(r["tag"], r["seq"]) for r in lines} == set(canon), kind
        assert all(r == canon[(r["tag"], r["seq"])] for r in lines), kind
    t = [r["t"] for r in variants["on_time"]]
    assert t == sorted(t)
    for kind in ("late", "shuffled"):
        assert [r["t"] for r in variants[kind]] != sorted(t), kind
    assert len(variants["duplicated"]) > len(canon)


# -- scoring on hand-made cases ------------------------------------------------------------


def _alert(
    aid: str,
    kind: str,
    zone: str,
    opened: float,
    raised: float,
    closed: float | None,
    conf: float = 0.95,
    subject: str = "S1",
) -> Alert:
    return Alert(
        id=aid,
        kind=kind,
        state="open" if closed is None else "closed",
        subject=subject,
        tag="T1",
        zone=zone,
        severity="high",
        confidence=conf,
        opened_t=opened,
        raised_t=raised,
        closed_t=closed,
        evidence=[("T1", 1)],
    )


def _ep(
    start: float, end: float, material: bool, zone: str = "Z1", kind: str = "zone_breach"
) -> dict[str, Any]:
    return {
        "kind": kind,
        "subject": "S1",
        "tag": "T1",
        "zone": zone,
        "start_t": start,
        "end_t": end,
        "material": material,
        "depth_m": 40.0 if material else 5.0,
    }


def test_scoring_counts_hand_made_alerts() -> None:
    truth = [
        _ep(1000, 1600, True),
        _ep(5000, 5020, False),
        _ep(9000, 9900, True),
        _ep(20000, 20500, True, zone="Z2"),
    ]
    alerts = [
        _alert("a", "zone_breach", "Z1", 1030, 1030, 1600),  # first material: delay 30
        _alert("a", "zone_breach", "Z1", 1030, 1030, 1620, conf=0.97),  # closed record, same id
        _alert("b", "zone_breach", "Z1", 1200, 1260, 1300),  # second alert on it: duplicate
        _alert("c", "zone_breach", "Z1", 5010, 5010, 5030, conf=0.6),  # ambiguous: no credit
        _alert("d", "zone_breach", "Z1", 7000, 7000, 7100, conf=0.95),  # false, high confidence
        _alert("e", "zone_breach", "Z1", 9500, 9620, None, conf=0.55),  # still open: delay 620
        _alert("f", "zone_breach", "Z1", 12000, 12000, 12060, conf=0.4),  # false, low
        _alert("g", "zone_approach", "Z1", 900, 900, 1000),
        _alert("h", "implausible_fix", "Z1", 900, 900, 900),
    ]
    s = score(alerts, truth, interval=60.0)
    assert (s.material, s.ambiguous, s.found, s.alerts) == (3, 1, 2, 6)
    assert s.recall == pytest.approx(2 / 3) and [m["zone"] for m in s.missed] == ["Z2"]
    assert (s.false, s.false_high, s.duplicates, s.ambiguous_hits) == (2, 1, 1, 1)
    assert sorted(s.delays) == [30.0, 620.0] and s.delay(50) == 325.0
    assert (s.approach, s.implausible, s.stale) == (1, 1, 0)
    # bins: [0,.5) f false; [.5,.7) c real, e real; [.7,.9) none; [.9,1] a, b real, d false
    assert s.bins == [[1, 0], [2, 2], [0, 0], [3, 2]]
    # one alert covering two episodes of one key claims both; tolerance is one interval
    two = score([_alert("x", "zone_breach", "Z1", 990, 1000, 9950)], truth[:3])
    assert (two.found, two.duplicates, two.false) == (2, 0, 0)
    late = score([_alert("y", "zone_breach", "Z1", 1659, 1659, 1700)], truth[:1])
    assert (
        late.found == 1
        and score([_alert("y", "zone_breach", "Z1", 1661, 1661, 1700)], truth[:1]).false == 1
    )
    # closed by a late fix older than the one that opened it: spans both ends
    assert score([_alert("r", "zone_breach", "Z1", 1700, 1700, 1500)], truth[:1]).found == 1
    # a curfew grace is allowed before the delay counts
    cur = score(
        [_alert("z", "curfew_breach", "Z1", 100, 500, None)],
        [_ep(100, 4000, True, kind="curfew_breach")],
        grace={"curfew_breach": 300.0},
    )
    assert cur.delays == [100.0]
    table = render_table({"engine": {"f": s}, "naive": {"f": two}}, ["engine", "naive"])
    assert "| f | 3 | 1 | 0.67 / 1.00 |" in table and "**all**" in table
    assert "| 0.9–1.0 | 3 | 2 | 0.67 |" in render_reliability({"f": s})


# -- baselines on tiny hand-made tracks ----------------------------------------------------

T0 = 1_774_339_200.0
ZONE = {
    "type": "Feature",
    "properties": {"id": "Z1", "subject": "S1", "kind": "exclusion"},
    "geometry": {"type": "Polygon", "coordinates": [square(100.0)]},
}
SUBJECTS = (
    '[[subjects]]\nid = "S1"\ntags = ["T1"]\n'
    '[[subjects.protected]]\ndevice = "v1/phone"\nradius_m = 300\n'
)


def _world(tmp_path: Path, features: list[dict[str, Any]] | None = None) -> Any:
    z = tmp_path / "zones.geojson"
    z.write_text(json.dumps({"type": "FeatureCollection", "features": features or [ZONE]}))
    s = tmp_path / "subjects.toml"
    s.write_text(SUBJECTS)
    return load(z, s)


def _track(
    points: list[tuple[float, float]], acc: float = 5.0, seq0: int = 0, dt: float = 60.0
) -> list[dict[str, Any]]:
    return [
        {"tag": "T1", **fix(seq0 + i, T0 + dt * i, x, y, acc)} for i, (x, y) in enumerate(points)
    ]


def _opened(alerts: list[Alert], kind: str = "zone_breach") -> list[Alert]:
    return [a for a in alerts if a.state == "open" and a.kind == kind]


def test_naive_alerts_on_one_inside_fix_and_simple_needs_two(tmp_path: Path) -> None:
    zs = _world(tmp_path)
    one = _track([(-300, 0), (-50, 0), (-300, 0)])
    (a,) = _opened(baselines.naive(one, zs))
    assert a.id == alert_id("S1", "Z1", "zone_breach", ("T1", 1)) and a.opened_t == T0 + 60
    assert [x.state for x in baselines.naive(one, zs)] == ["open", "closed"]
    assert baselines.simple(one, zs) == []
    two = _track([(-300, 0), (-50, 0), (-40, 10), (-300, 0), (-310, 0)])
    (b,) = _opened(baselines.simple(two, zs))
    assert (b.opened_t, b.raised_t, b.evidence[:2]) == (T0 + 60, T0 + 120, [("T1", 1), ("T1", 2)])
    assert [x.state for x in baselines.simple(two, zs)] == ["open", "closed"]
    # inside the polygon but within acc of the edge: not counted inside by simple
    margin = _track([(-300, 0), (-90, 0), (-92, 0), (-300, 0)], acc=20.0)
    assert baselines.simple(margin, zs) == [] and len(_opened(baselines.naive(margin, zs))) == 1


def test_simple_transit_test_catches_a_drive_through_but_not_a_jump(tmp_path: Path) -> None:
    zs = _world(tmp_path)
    drive = _track([(-1200, 10), (-500, 10), (400, 10), (1100, 10)])  # 15 m/s, none inside
    assert baselines.naive(drive, zs) == []
    (a,) = _opened(baselines.simple(drive, zs))
    assert a.evidence == [("T1", 1), ("T1", 2)] and a.raised_t == T0 + 120
    passing = _track([(-1200, 160), (-500, 160), (400, 160), (1100, 160)])  # 60 m outside
    assert baselines.simple(passing, zs) == []
    jump = _track([(-900, 0), (-905, 0), (0, 0), (-900, 5), (-902, 0)])  # one wild fix inside
    assert baselines.simple(jump, zs) == [] and len(_opened(baselines.naive(jump, zs))) == 1
    # out-of-order and duplicate fixes are ignored by simple, acted on by naive
    shuffled = _track([(-300, 0), (-50, 0), (-300, 0)])
    shuffled = [shuffled[0], shuffled[2], shuffled[1], shuffled[1]]
    assert baselines.simple(shuffled, zs) == [] and len(_opened(baselines.naive(shuffled, zs))) == 1


def test_baselines_on_curfew_and_proximity(tmp_path: Path) -> None:
    curfew = {
        "type": "Feature",
        "properties": {
            "id": "C1",
            "subject": "S1",
            "kind": "inclusion",
            "schedule": [
                {"days": "Mon-Sun", "start": "19:00", "end": "07:00", "tz": "Europe/London"}
            ],
        },
        "geometry": {"type": "Point", "coordinates": [offset(0, 0)[1], offset(0, 0)[0]]},
    }
    curfew["properties"]["radius_m"] = 40  # type: ignore[index]
    zs = _world(tmp_path, [curfew])
    t19 = 1_774_724_400.0  # 2026-03-28 19:00 GMT
    away = [{"tag": "T1", **fix(i, t19 - 120 + 60 * i, 500, 0)} for i in range(12)]
    (n,) = _opened(baselines.naive(away, zs), "curfew_breach")
    assert n.opened_t == t19  # first fix inside the window
    (s,) = _opened(baselines.simple(away, zs), "curfew_breach")
    assert (s.opened_t, s.raised_t) == (t19, t19 + 300)  # after the 5 min grace
    phone = {
        "tag": "v1/phone",
        "seq": int(T0),
        "t": T0,
        "lat": offset(0, 0)[0],
        "lon": offset(0, 0)[1],
        "acc": 10.0,
        "batt": 50,
        "src": "gps",
    }
    near = [phone, *_track([(2000, 0), (200, 0), (150, 0), (2000, 0), (2100, 0)], seq0=10)]
    (p,) = _opened(baselines.naive(near, zs), "proximity")
    assert p.zone == "v1/phone" and p.opened_t == T0 + 60 and p.severity == "critical"
    (q,) = _opened(baselines.simple(near, zs), "proximity")
    assert q.raised_t == T0 + 120


# -- through the engine ---------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_family_through_tagwatch_replay(
    name: str,
    written: dict[str, dict[str, Path]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    p = written[name]
    out = tmp_path / "alerts.jsonl"
    rc = main(
        [
            "replay",
            str(p["replay"]),
            "--zones",
            str(p["zones"]),
            "--subjects",
            str(p["subjects"]),
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    assert " 0 dead letters" in capsys.readouterr().err
    alerts = [decode_alert(line) for line in out.read_bytes().splitlines()]
    assert all(a.subject.startswith("S") for a in alerts)


def _breach_alerts(
    lines: list[dict[str, Any]], tmp_path: Path, run: FamilyRun
) -> set[tuple[Any, ...]]:
    p = write_family(run, tmp_path)
    f = tmp_path / "variant.jsonl"
    f.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = io.BytesIO()
    replay(f, load(p["zones"], p["subjects"]), out, settings=Settings(batch_max=1), progress=False)
    alerts = [decode_alert(x) for x in out.getvalue().splitlines()]
    return {
        (a.id, a.kind, a.subject, a.zone, a.state, a.opened_t, a.closed_t)
        for a in alerts
        if a.kind in ("zone_breach", "curfew_breach", "proximity")
    }


@pytest.mark.parametrize("name", ["walk_in", "late_batch", "victim_moving"])
def test_same_fixes_on_time_late_shuffled_duplicated_give_same_breach_alerts(
    name: str, runs: dict[str, FamilyRun], tmp_path: Path
) -> None:
    variants = delivery_variants(runs[name], seed=2)
    got = {k: _breach_alerts(v, tmp_path / k, runs[name]) for k, v in variants.items()}
    assert got["on_time"], "the family raised no breach alerts at all"
    for k in ("late", "shuffled", "duplicated"):
        assert got[k] == got["on_time"], (k, sorted(got[k] ^ got["on_time"])[:4])


@pytest.mark.mqtt
@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", NAMES)
def test_family_over_mqtt_gives_the_replay_alerts(
    name: str,
    mosquitto,
    runs: dict[str, FamilyRun],
    written: dict[str, dict[str, Path]],
    tmp_path: Path,
) -> None:
    p = written[name]
    out = io.BytesIO()
    replay(p["replay"], load(p["zones"], p["subjects"]), out, progress=False)
    want = {
        (a.kind, a.subject, a.zone)
        for a in map(decode_alert, out.getvalue().splitlines())
        if a.state == "open" and a.kind in ("zone_breach", "curfew_breach", "proximity")
    }

    def opened(alerts: list[Alert]) -> set[tuple[Any, ...]]:
        return {
            (a.kind, a.subject, a.zone)
            for a in alerts
            if a.state == "open" and a.kind in ("zone_breach", "curfew_breach", "proximity")
        }

    async def scenario() -> list[Alert]:
        async with AlertCollector(mosquitto.host, mosquitto.port) as col:
            await wait_online(mosquitto.host, mosquitto.port)
            await publish(mosquitto.host, mosquitto.port, mqtt_messages(runs[name].deliveries))
            with contextlib.suppress(AssertionError):  # compared below, with a diff
                await col.wait_for(lambda al: opened(al) >= want, timeout=60)
            await asyncio.sleep(1.0)
            return col.alerts

    conf = tmp_path / "settings.toml"
    conf.write_text('live_clock = "fleet"\n')  # the families' fixed epoch: historical time
    with EngineProcess(
        mosquitto.host, mosquitto.port, p["zones"], p["subjects"], tmp_path / "tw.db", conf
    ) as eng:
        alerts = asyncio.run(scenario())
        assert eng.stop() == 0, eng.log_text()
    assert opened(alerts) == want
