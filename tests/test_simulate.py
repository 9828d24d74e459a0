"""The seeded fleet simulator: determinism, contract-shaped world and replay files, ground
truth consistent with the fixes, behaviours doing what they say, and a live MQTT run."""

from __future__ import annotations

import asyncio
import json
import math
import tomllib
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely
from shapely.geometry import Point, shape

from devices.scenarios.presets import demo_scenario
from devices.sim.fleet import DEFAULT_EPOCH, SimRun, Simulation, simulate
from devices.sim.output import write_replay, write_run, write_truth
from devices.world.city import World, build_world
from devices.world.clock import active_intervals
from devices.world.geo import LocalFrame, haversine_m

FIX_KEYS = ["tag", "seq", "t", "lat", "lon", "acc", "batt", "src"]
TRUTH_KEYS = ["kind", "subject", "tag", "zone", "start_t", "end_t", "material", "depth_m"]
BEHAVIOUR_TRUTH = {
    "dwell_breach": "zone_breach",
    "curfew_breach": "curfew_breach",
    "approach_victim": "proximity",
}


@pytest.fixture(scope="module")
def world() -> World:
    return build_world(7, 12)


@pytest.fixture(scope="module")
def run(world: World) -> SimRun:
    return simulate(world, duration_s=3 * 3600.0, fix_interval_s=60.0, breach_fraction=0.5)


@pytest.fixture(scope="module")
def files(run: SimRun, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_run(run, tmp_path_factory.mktemp("sim"))


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- determinism ---------------------------------------------------------------------------


def _write_all(seed: int, d: Path) -> dict[str, bytes]:
    w = build_world(seed, 6)
    r = simulate(w, duration_s=2 * 3600.0, breach_fraction=0.5)
    return {k: p.read_bytes() for k, p in write_run(r, d).items()}


def test_same_seed_gives_byte_identical_files_and_another_seed_does_not(tmp_path: Path) -> None:
    a = _write_all(3, tmp_path / "a")
    b = _write_all(3, tmp_path / "b")
    c = _write_all(4, tmp_path / "c")
    assert a == b
    assert a["replay"] and a["truth"]
    for key in ("zones", "replay", "truth"):
        assert a[key] != c[key], key


def test_replay_and_truth_writers_are_stable(run: SimRun, tmp_path: Path) -> None:
    n = write_replay(run, tmp_path / "r.jsonl")
    assert n == len(run.messages)
    assert write_truth(run, tmp_path / "t.jsonl") == len(run.truth)
    assert not list(tmp_path.glob("*.partial"))


# -- world files ---------------------------------------------------------------------------


def _check_world_files(zones_path: Path, subjects_path: Path) -> None:
    fc = json.loads(zones_path.read_text())
    subjects = tomllib.loads(subjects_path.read_text())["subjects"]
    subject_ids = {s["id"] for s in subjects}
    assert fc["type"] == "FeatureCollection"
    ids = [f["properties"]["id"] for f in fc["features"]]
    assert len(ids) == len(set(ids)), "zone ids must be unique"
    per_subject: dict[str, list[str]] = defaultdict(list)
    for f in fc["features"]:
        assert f["type"] == "Feature"
        props, geom = f["properties"], f["geometry"]
        assert props["subject"] in subject_ids
        assert props["kind"] in ("exclusion", "inclusion")
        assert isinstance(props["name"], str)
        per_subject[props["subject"]].append(props["kind"])
        if "warn_m" in props:
            assert props["warn_m"] > 0
        if geom["type"] == "Point":
            assert props["radius_m"] > 0
            lon, lat = geom["coordinates"]
            assert -180 <= lon <= 180 and -90 <= lat <= 90
        else:
            assert geom["type"] in ("Polygon", "MultiPolygon")
            assert "radius_m" not in props
            g = shape(geom)
            assert g.is_valid and not g.is_empty, shapely.is_valid_reason(g)
            polys = [geom["coordinates"]] if geom["type"] == "Polygon" else geom["coordinates"]
            for rings in polys:
                for i, ring in enumerate(rings):
                    assert ring[0] == ring[-1] and len(ring) >= 4
                    # RFC 7946: exteriors counter-clockwise, holes clockwise
                    assert shapely.LinearRing(ring).is_ccw == (i == 0)
        if props["kind"] == "inclusion":
            (window,) = props["schedule"]
            assert window == {"days": "Mon-Sun", "start": "19:00", "end": "07:00",
                              "tz": "Europe/London"}  # fmt: skip
        else:
            assert "schedule" not in props
    for s in subjects:
        kinds = per_subject[s["id"]]
        assert 1 <= kinds.count("exclusion") <= 3 and kinds.count("inclusion") <= 1
        assert len(s["tags"]) == 1 and s["tags"][0] == "T" + s["id"][1:]
        for p in s.get("protected", []):
            assert p["device"] == f"victim{int(s['id'][1:])}/phone"
            assert 200 <= p["radius_m"] <= 500


@pytest.mark.parametrize("seed", [1, 2, 5])
def test_world_files_follow_the_contract(seed: int, tmp_path: Path) -> None:
    w = build_world(seed, 25, center=(53.4808, -2.2426))
    zones_path, subjects_path = w.write(tmp_path)
    _check_world_files(zones_path, subjects_path)
    lat, lon = shape(json.loads(zones_path.read_text())["features"][0]["geometry"]).centroid.xy
    assert abs(lat[0] - 53.48) < 0.1 or abs(lon[0] - 53.48) < 0.1  # near Manchester


def test_world_has_the_variety_the_engine_must_handle() -> None:
    w = build_world(1, 50)
    zones = w.zones
    polys = [z.geometry_ll for z in zones if z.geometry_ll is not None]
    assert any(z.is_circle for z in zones)
    assert any(g.geom_type == "MultiPolygon" for g in polys)
    assert any(p.interiors for g in polys for p in getattr(g, "geoms", [g]))
    assert any(z.warn_m for z in zones)
    assert any(s.phone for s in w.subjects) and any(s.curfew for s in w.subjects)
    n_vertices = [len(p.exterior.coords) - 1 for g in polys for p in getattr(g, "geoms", [g])]
    assert min(n_vertices) >= 8


def test_world_files_load_through_zones_loader_when_present(files: dict[str, Path]) -> None:
    load = pytest.importorskip("zones.load").load
    zs = load(files["zones"], files["subjects"])
    fc = json.loads(files["zones"].read_text())
    assert len(zs.zones) == len(fc["features"])
    assert {s.id for s in zs.subjects} == {f"S{k:04d}" for k in range(1, 13)}


# -- replay file ---------------------------------------------------------------------------


def test_replay_lines_follow_the_contract(run: SimRun, files: dict[str, Path]) -> None:
    lines = _lines(files["replay"])
    assert len(lines) == len(run.messages) > 0
    devices = {s.tag for s in run.world.subjects}
    phones = {s.phone.device for s in run.world.subjects if s.phone}
    last: dict[str, tuple[int, float]] = {}
    order = []
    for rec in lines:
        assert list(rec) == FIX_KEYS
        assert isinstance(rec["seq"], int) and rec["seq"] >= 0
        assert isinstance(rec["t"], float) and run.start_t <= rec["t"] < run.end_t
        assert isinstance(rec["lat"], float) and isinstance(rec["lon"], float)
        assert isinstance(rec["acc"], float) and rec["acc"] > 0
        assert isinstance(rec["batt"], int) and 0 <= rec["batt"] <= 100
        assert rec["src"] == "gps"
        assert rec["tag"] in devices | phones
        if rec["tag"] in phones:
            assert rec["seq"] == int(rec["t"])  # OwnTracks: seq is the integer tst
        prev = last.get(rec["tag"])
        if prev is not None:
            assert rec["seq"] > prev[0] and rec["t"] > prev[1]
        elif rec["tag"] in devices:
            assert rec["seq"] == 0
        last[rec["tag"]] = (rec["seq"], rec["t"])
        order.append((rec["t"], rec["tag"]))
    assert order == sorted(order)
    assert set(last) == devices | phones
    per_tag = len([r for r in lines if r["tag"] == "T0001"])
    assert per_tag == pytest.approx(run.config.duration_s / 60.0, abs=1)


def test_fixes_are_close_to_the_true_path(run: SimRun) -> None:
    frame = run.world.frame
    for plan in run.plans:
        ms = [m for m in run.messages if m.device == plan.subject.tag]
        t = np.array([m.t for m in ms])
        x, y = frame.to_xy([m.payload["lat"] for m in ms], [m.payload["lon"] for m in ms])
        tx, ty = plan.path.at(t)
        err = np.hypot(x - tx, y - ty)
        assert np.median(err) < 8.0 and err.max() < 30.0


def _errors(run: SimRun) -> list[np.ndarray]:
    """Per tag, the (x, y) error of each fix against the true path, in time order."""
    out = []
    for plan in run.plans:
        ms = [m for m in run.messages if m.device == plan.subject.tag and m.kind == "fix"]
        t = np.array([m.t for m in ms])
        x, y = run.world.frame.to_xy([m.payload["lat"] for m in ms], [m.payload["lon"] for m in ms])
        tx, ty = plan.path.at(t)
        out.append(np.stack([x - tx, y - ty], axis=1))
    return out


def test_simulate_noise_option_gives_correlated_error(tmp_path: Path) -> None:
    """`--noise urban`: error 5-30 m that drifts (consecutive fixes a minute apart share
    most of it), where `simple` is independent 3 m noise."""
    from devices.cli import main as sim_main

    assert sim_main(["simulate", "--seed", "5", "--subjects", "6", "--duration", "2h", "--noise",
                     "urban", "--out-dir", str(tmp_path / "u")]) == 0  # fmt: skip
    lines = (tmp_path / "u" / "replay.jsonl").read_text().splitlines()
    assert max(json.loads(x)["acc"] for x in lines if '"T0' in x) > 15.0
    world = build_world(5, 6)
    from devices.sensing.noise import PRESETS

    for name, lo, hi in (("urban", 0.5, 1.0), ("simple", -0.3, 0.3)):
        run = Simulation(world, replace(Simulation(world, run_cfg()).config,
                                        noise=PRESETS[name])).run()  # fmt: skip
        corr = [np.corrcoef(e[:-1, 0], e[1:, 0])[0, 1] for e in _errors(run) if len(e) > 30]
        assert lo <= float(np.median(corr)) <= hi, (name, corr)


def run_cfg():  # type: ignore[no-untyped-def]
    from devices.sim.fleet import SimConfig

    return SimConfig(duration_s=2 * 3600.0, fix_interval_s=60.0)


# -- ground truth --------------------------------------------------------------------------


def test_truth_file_shape_and_order(run: SimRun, files: dict[str, Path]) -> None:
    lines = _lines(files["truth"])
    assert lines, "a half-breaching fleet must produce true episodes"
    for rec in lines:
        assert list(rec) == TRUTH_KEYS
        assert rec["kind"] in ("zone_breach", "curfew_breach", "proximity")
        assert rec["end_t"] >= rec["start_t"]
        assert rec["tag"] == "T" + rec["subject"][1:]
    keys = [(r["start_t"], r["subject"], r["kind"], r["zone"]) for r in lines]
    assert keys == sorted(keys)


def _zone_contains(feature: dict[str, Any], lat: float, lon: float) -> bool:
    g, props = feature["geometry"], feature["properties"]
    if g["type"] == "Point":
        clon, clat = g["coordinates"]
        return bool(haversine_m(lat, lon, clat, clon) < props["radius_m"])
    return bool(shape(g).contains(Point(lon, lat)))


def test_material_episodes_are_visible_in_the_fixes(run: SimRun, files: dict[str, Path]) -> None:
    features = {
        f["properties"]["id"]: f for f in json.loads(files["zones"].read_text())["features"]
    }
    fixes: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in _lines(files["replay"]):
        fixes[rec["tag"]].append(rec)
    checked = 0
    for ep in run.truth:
        if not ep.material or ep.kind == "proximity":
            continue
        during = [f for f in fixes[ep.tag] if ep.start_t <= f["t"] <= ep.end_t]
        assert len(during) >= 1
        inside = [_zone_contains(features[ep.zone], f["lat"], f["lon"]) for f in during]
        if ep.kind == "zone_breach":
            assert any(inside), ep
        else:  # curfew: outside the inclusion zone
            assert not all(inside), ep
        checked += 1
    assert checked >= 3


def test_compliant_subjects_have_no_episodes_and_breachers_do_what_they_planned() -> None:
    for seed in (11, 12):
        r = simulate(build_world(seed, 20), duration_s=4 * 3600.0, breach_fraction=0.5)
        kinds: dict[str, set[str]] = defaultdict(set)
        for ep in r.truth:
            kinds[ep.subject].add(ep.kind)
        assert sum(1 for p in r.plans if p.breaches) == 10
        for plan in r.plans:
            sid = plan.subject.id
            if not plan.breaches:
                assert sid not in kinds, (sid, plan.log)
                continue
            for b in plan.breaches:
                assert BEHAVIOUR_TRUTH[b] in kinds[sid], (sid, b, plan.log)


def test_commuters_route_around_their_own_zones(run: SimRun) -> None:
    for plan in run.plans:
        if plan.breaches:
            continue
        ts = np.arange(run.start_t, run.end_t, 1.0)
        x, y = plan.path.at(ts)
        for z in plan.subject.exclusions:
            assert not shapely.contains_xy(z.area_xy, x, y).any(), z.id
        moved = np.hypot(np.diff(x), np.diff(y)).sum()
        assert moved > 500.0  # they do go places


def test_curfew_episodes_cover_only_the_active_window(run: SimRun) -> None:
    windows = active_intervals(
        [{"days": "Mon-Sun", "start": "19:00", "end": "07:00", "tz": "Europe/London"}],
        run.start_t, run.end_t,
    )  # fmt: skip
    assert windows[0][0] == DEFAULT_EPOCH + 5400  # 19:00 GMT on 2026-03-28
    for ep in run.truth:
        if ep.kind == "curfew_breach":
            assert any(a <= ep.start_t and ep.end_t <= b for a, b in windows)


def test_schedule_agrees_with_the_engines_reading() -> None:
    schedule = pytest.importorskip("zones.schedule")
    raw = {"days": "Mon-Fri", "start": "19:00", "end": "07:00", "tz": "Europe/London"}
    window, problems = schedule.parse_window(raw)
    assert not problems
    for t0 in (1774400000.0, 1792800000.0):  # around both 2026 clock changes
        t1 = t0 + 10 * 86400
        mine = [(max(a, t0), min(b, t1)) for a, b in active_intervals([raw], t0, t1)]
        theirs = [tuple(r) for r in schedule.active_intervals((window,), t0, t1).tolist()]
        assert mine == theirs


def test_local_frame_round_trips_and_matches_haversine() -> None:
    f = LocalFrame(51.5074, -0.1278)
    lat, lon = f.to_latlon(np.array([300.0, -1200.0]), np.array([-400.0, 2500.0]))
    x, y = f.to_xy(lat, lon)
    assert np.allclose(x, [300.0, -1200.0]) and np.allclose(y, [-400.0, 2500.0])
    d = haversine_m(51.5074, -0.1278, lat, lon)
    assert np.allclose(d, [500.0, math.hypot(1200, 2500)], rtol=4e-3)


# -- demo preset and command line ----------------------------------------------------------


def test_demo_preset_breaches_within_the_first_minute() -> None:
    world, sim = demo_scenario(seed=2, n_subjects=24)
    short = Simulation(world, replace(sim.config, duration_s=600.0))
    r = short.run(start_t=1_790_000_000.0)
    assert r.config.fix_interval_s == 5.0
    early = {ep.subject for ep in r.truth if ep.start_t - r.start_t <= 60.0}
    assert len(early) >= 3


def test_cli_writes_files_and_a_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from devices.cli import main

    out = tmp_path / "out"
    assert main(["simulate", "--subjects", "4", "--duration", "40m", "--rate", "2",
                 "--out-dir", str(out), "--world-dir", str(tmp_path / "w")]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "4 subjects" in text and "true episodes" in text
    for name in ("zones.geojson", "subjects.toml", "replay.jsonl"):
        assert (out / name).stat().st_size > 0
    assert (out / "truth.jsonl").exists()
    assert (out / "zones.geojson").read_bytes() == (tmp_path / "w" / "zones.geojson").read_bytes()
    per_tag = [r for r in _lines(out / "replay.jsonl") if r["tag"] == "T0001"]
    assert len(per_tag) == 80  # 40 min at 2 fixes a minute


@pytest.mark.parametrize("bad", [["--duration", "soon"], ["--center", "north"], ["--rate", "0"]])
def test_cli_rejects_bad_options(bad: list[str], tmp_path: Path) -> None:
    from devices.cli import main

    with pytest.raises(SystemExit):
        main(["simulate", "--out-dir", str(tmp_path), *bad])


# -- live ----------------------------------------------------------------------------------


async def _collect(host: str, port: int, into: list[tuple[str, dict[str, Any]]],
                   ready: asyncio.Event) -> None:  # fmt: skip
    import aiomqtt

    async with aiomqtt.Client(host, port) as client:
        await client.subscribe("tagwatch/v1/tags/+/fix", qos=1)
        await client.subscribe("owntracks/#", qos=1)
        ready.set()
        async for msg in client.messages:
            assert isinstance(msg.payload, bytes)
            into.append((str(msg.topic), json.loads(msg.payload)))


@pytest.mark.mqtt
@pytest.mark.timeout(60)
def test_live_run_delivers_every_message(mosquitto: Any) -> None:
    from devices.sim.live import run_live

    world = build_world(5, 4)
    sim = Simulation(world, replace(demo_scenario(5, 4)[1].config, duration_s=120.0))
    start = 1_790_000_000.0
    expected = sim.run(start_t=start, with_truth=False).messages
    got: list[tuple[str, dict[str, Any]]] = []

    async def main() -> Any:
        ready = asyncio.Event()
        sub = asyncio.create_task(_collect(mosquitto.host, mosquitto.port, got, ready))
        await asyncio.wait_for(ready.wait(), 10)
        stats = await run_live(sim, mosquitto.host, mosquitto.port, warp=60.0, start_t=start)
        for _ in range(100):
            if len(got) >= len(expected):
                break
            await asyncio.sleep(0.05)
        sub.cancel()
        await asyncio.gather(sub, return_exceptions=True)
        return stats

    stats = asyncio.run(main())
    assert stats.sent == stats.total == len(expected)
    assert 1.5 < stats.elapsed_s < 10.0  # 120 sim seconds at warp 60
    assert sorted((t, json.dumps(p)) for t, p in got) == sorted(
        (m.topic, json.dumps(m.payload)) for m in expected
    )
    fixes = [p for t, p in got if t.startswith("tagwatch/")]
    phones = [p for t, p in got if t.startswith("owntracks/")]
    assert fixes and phones
    assert all(set(p) == {"seq", "t", "lat", "lon", "acc", "batt", "src"} for p in fixes)
    assert all(p["_type"] == "location" and isinstance(p["tst"], int) for p in phones)


@pytest.mark.mqtt
@pytest.mark.timeout(60)
def test_live_run_survives_a_broker_restart(mosquitto: Any) -> None:
    from devices.sim.live import run_live

    world = build_world(6, 3)
    r = simulate(world, duration_s=240.0, fix_interval_s=5.0, start_t=1_790_000_000.0)

    async def main() -> Any:
        task = asyncio.create_task(run_live(r, mosquitto.host, mosquitto.port, warp=80.0))
        await asyncio.sleep(1.0)
        await asyncio.to_thread(mosquitto.kill)
        await asyncio.sleep(0.5)
        await asyncio.to_thread(mosquitto.restart)
        return await asyncio.wait_for(task, 30)

    stats = asyncio.run(main())
    assert stats.reconnects >= 1
    assert stats.sent == stats.total == len(r.messages)


@pytest.mark.mqtt
@pytest.mark.timeout(30)
def test_live_run_stops_cleanly_when_cancelled(mosquitto: Any) -> None:
    from devices.sim.live import run_live

    r = simulate(build_world(8, 2), duration_s=3600.0, fix_interval_s=5.0)

    async def main() -> None:
        task = asyncio.create_task(run_live(r, mosquitto.host, mosquitto.port, warp=1.0))
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
