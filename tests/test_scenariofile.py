"""Scenario files: every example loads, runs and keeps the episodes its comments promise;
same file and seed give the same bytes; mistakes are one-line ScenarioErrors naming the
file, the entry and the field (exit 2 from the CLI); backgrounded phones stay quiet;
OwnTracks payloads and /fixes batches follow the contract."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from devices.cli import main
from devices.motion.scripted import offset_text
from devices.scenarios.file import (
    TRUTH_KINDS,
    Scenario,
    ScenarioError,
    check_expectations,
    load_scenario,
    run_scenario,
)
from devices.sim.fleet import SimRun
from devices.sim.output import write_run
from devices.world.geo import haversine_m
from engine.errors import TagwatchError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples" / "scenarios").glob("*.toml"))
NAMES = [p.stem for p in EXAMPLES]
OWNTRACKS_KEYS = ["_type", "lat", "lon", "tst", "acc", "batt", "tid"]

SMALL = """
[run]
seed = 4
start = "2026-03-28T10:00:00Z"
duration = "40m"

[places]
home = { lat = 51.5000, lon = -0.1000 }
victim = { from = "home", east_m = 900 }

[[zones]]
id = "S1-victim"
subject = "S1"
center = "victim"
radius_m = 100

[[subjects]]
id = "S1"
tags = ["T1"]
start = "home"
timeline = [
  { do = "walk_to", place = { from = "S1-victim", east_m = -300 } },
  { at = "+15m", do = "enter_zone", zone = "S1-victim", depth_m = 40, for = "5m" },
]

[[subjects.protected]]
device = "vic/phone"
radius_m = 200
start = "victim"
timeline = [{ do = "stationary", for = "10m" }, { do = "backgrounded", for = "15m" }]
"""


@pytest.fixture(scope="module")
def runs() -> dict[str, tuple[Scenario, SimRun]]:
    out = {}
    for p in EXAMPLES:
        sc = load_scenario(p)
        out[p.stem] = (sc, run_scenario(sc))
    return out


def _write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


# -- the examples --------------------------------------------------------------------------


def test_the_required_examples_are_there() -> None:
    assert {"drive_through", "curfew_dst", "tamper_and_silence"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_example_keeps_the_episodes_its_comments_promise(
    name: str, runs: dict[str, tuple[Scenario, SimRun]]
) -> None:
    sc, run = runs[name]
    assert sc.expect, "every example states what it expects"
    assert check_expectations(sc, run) == []
    # the comment block names exactly the kinds the [[expect]] entries hold
    text = (ROOT / "examples" / "scenarios" / f"{name}.toml").read_text()
    block = text.split("Expected true episodes", 1)[1].split("\n\n", 1)[0]
    kinds = set(re.findall(r"^#\s+(" + "|".join(TRUTH_KINDS) + r")\s", block, re.M))
    assert kinds == {x.kind for x in sc.expect if not x.absent}
    # and the truth holds nothing the comments do not mention
    assert {e.kind for e in run.truth} == kinds


def test_examples_write_contract_files_that_the_engine_loads(
    runs: dict[str, tuple[Scenario, SimRun]], tmp_path: Path
) -> None:
    from engine.wire.decode import decode_replay_line
    from zones.load import load

    for name, (_, run) in runs.items():
        files = write_run(run, tmp_path / name)
        zs = load(files["zones"], files["subjects"])
        assert {s.id for s in zs.subjects} == {s.id for s in run.world.subjects}
        lines = files["replay"].read_bytes().splitlines()
        assert len(lines) == sum(len(m.replay_records()) for m in run.messages)
        for i, line in enumerate(lines, 1):
            records, dead = decode_replay_line(line, f"{name}:{i}")
            assert records and not dead, (i, dead)


def test_same_file_same_seed_same_bytes(tmp_path: Path) -> None:
    path = ROOT / "examples" / "scenarios" / "tamper_and_silence.toml"

    def files(d: str, seed: int | None = None) -> dict[str, bytes]:
        run = run_scenario(load_scenario(path), seed=seed)
        return {k: p.read_bytes() for k, p in write_run(run, tmp_path / d).items()}

    a, b, c = files("a"), files("b"), files("c", seed=99)
    assert a == b
    assert a["replay"] != c["replay"]
    assert a["zones"] == c["zones"]


def test_a_later_start_moves_the_whole_script(runs: dict[str, tuple[Scenario, SimRun]]) -> None:
    sc, run = runs["drive_through"]
    week = 7 * 86400.0
    later = run_scenario(sc, start_t=sc.start_t + week)
    assert [round(m.t - week, 3) for m in later.messages] == [m.t for m in run.messages]
    assert [(e.kind, e.start_t - week, e.end_t - week) for e in later.truth] == [
        (e.kind, e.start_t, e.end_t) for e in run.truth
    ]


def test_the_drive_through_happens_between_fixes(
    runs: dict[str, tuple[Scenario, SimRun]],
) -> None:
    _, run = runs["drive_through"]
    breach = next(e for e in run.truth if e.kind == "zone_breach")
    assert breach.end_t - breach.start_t < 30 and breach.depth_m > 100
    times = [m.t for m in run.messages if m.device == "T1"]
    assert not any(breach.start_t <= t <= breach.end_t for t in times)
    before = max(t for t in times if t < breach.start_t)
    assert min(t for t in times if t > breach.end_t) - before <= 61


def test_the_curfew_follows_the_clock_change(runs: dict[str, tuple[Scenario, SimRun]]) -> None:
    _, run = runs["curfew_dst"]
    ends = sorted(e.end_t for e in run.truth if e.kind == "curfew_breach")
    assert ends[-1] == 1774764000.0  # 2026-03-29 07:00 BST = 06:00Z, not 07:00Z
    assert not [e for e in run.truth if e.subject == "S2"]


def test_tamper_silence_and_a_late_batch(runs: dict[str, tuple[Scenario, SimRun]]) -> None:
    _, run = runs["tamper_and_silence"]
    t0 = run.start_t
    tag = [m for m in run.messages if m.device == "T1"]
    batches = [m for m in tag if m.kind == "fixes"]
    assert len(batches) == 1
    (batch,) = batches
    assert batch.t == t0 + 2 * 3600 + 4 * 60  # the gap's end
    taken = [p["t"] for p in batch.payload]
    assert len(taken) >= 13 and all(t0 + 6600 <= t < batch.t for t in taken)
    assert not [m for m in tag if t0 + 6600 < m.t < batch.t]  # nothing live in the gap
    seqs = sorted(r["seq"] for m in tag for r in m.replay_records())
    assert seqs == list(range(len(seqs)))  # one counter for fixes and events
    events = [
        m.payload["event"] for m in tag if m.kind == "event" and m.payload["event"] != "battery"
    ]
    assert events.count("strap_open") == 3 and events.count("strap_closed") == 3
    assert "body_lost" in events and "body_restored" in events
    assert [e.kind for e in run.truth].count("tamper") == 1  # toggles merge


# -- victim phones -------------------------------------------------------------------------


def test_a_backgrounded_phone_publishes_nothing_then_reports_again(
    runs: dict[str, tuple[Scenario, SimRun]],
) -> None:
    _, run = runs["tamper_and_silence"]
    t0 = run.start_t
    ts = np.array([m.t for m in run.messages if m.device == "alice/phone"]) - t0
    assert not ((ts >= 30 * 60) & (ts < 75 * 60)).any()
    assert ((ts >= 25 * 60) & (ts < 30 * 60)).sum() >= 4
    assert ((ts >= 75 * 60) & (ts < 80 * 60)).sum() >= 4
    # after +1h30m she walks to work: the reports move
    plan = run.plans[0]
    assert plan.phone_path is not None
    ph = [m.payload for m in run.messages if m.device == "alice/phone"]
    first, last = ph[0], ph[-1]
    assert haversine_m(first["lat"], first["lon"], last["lat"], last["lon"]) > 1000


def test_owntracks_payloads_follow_the_contract(runs: dict[str, tuple[Scenario, SimRun]]) -> None:
    for _, run in runs.values():
        for m in (m for m in run.messages if m.is_owntracks):
            p = m.payload
            assert m.topic == f"owntracks/{m.device}"
            assert list(p) == OWNTRACKS_KEYS
            assert p["_type"] == "location"
            assert isinstance(p["tst"], int) and p["tst"] == int(m.t)
            assert isinstance(p["acc"], int) and p["acc"] >= 1
            assert isinstance(p["batt"], int) and 0 <= p["batt"] <= 100
            assert isinstance(p["lat"], float) and isinstance(p["lon"], float)
            assert isinstance(p["tid"], str) and len(p["tid"]) == 2


def test_a_small_script_does_what_it_says(tmp_path: Path) -> None:
    run = run_scenario(load_scenario(_write(tmp_path, SMALL)))
    t0 = run.start_t
    (breach,) = [e for e in run.truth if e.kind == "zone_breach"]
    # 300 m out at +15m, walking in: the edge (200 m on) about 143 s later
    assert abs(breach.start_t - (t0 + 900 + 200 / 1.4)) < 5
    assert breach.material and 35 < breach.depth_m < 45
    phone = [m.t - t0 for m in run.messages if m.device == "vic/phone"]
    assert phone and not [t for t in phone if 600 <= t < 1500]


def test_the_readme_example_runs(tmp_path: Path) -> None:
    text = (ROOT / "devices" / "README.md").read_text()
    example = text.split("## Scenario files", 1)[1].split("```toml", 1)[1].split("```", 1)[0]
    sc = load_scenario(_write(tmp_path, example))
    run = run_scenario(sc)
    assert check_expectations(sc, run) == []
    assert {"zone_breach", "tamper"} <= {e.kind for e in run.truth}
    assert any(m.is_owntracks for m in run.messages)


# -- mistakes ------------------------------------------------------------------------------

BAD = [
    # (what to change in SMALL, words the message must hold)
    (("radius_m = 100", "radius_m = 100\nradius = 5"), ["zone 'S1-victim'", "field 'radius'", "unknown"]),
    (('duration = "40m"', 'duration = "40 minutes"'), ["[run]", "field 'duration'", "not a duration"]),
    (('zone = "S1-victim", depth_m', 'zone = "S1-vic", depth_m'),
     ["subject 'S1'", "timeline entry 2 (enter_zone)", "field 'zone'", "'S1-vic'"]),
    (("radius_m = 100", "radius_m = -100"), ["zone 'S1-victim'", "field 'radius_m'", "more than 0"]),
    (('for = "5m" }', 'for = "5m", deepth_m = 3 }'), ["timeline entry 2 (enter_zone)", "field 'deepth_m'"]),
    (('at = "+15m"', 'at = "2026-03-28T10:15:00"'), ["timeline entry 2", "field 'at'", "UTC offset"]),
    (('at = "+15m"', 'at = "+2h"'), ["timeline entry 2", "field 'at'", "after the run ends"]),
    (('do = "walk_to"', 'do = "walk_too"'), ["timeline entry 1", "field 'do'", "'walk_too'"]),
    (("depth_m = 40", "depth_m = 400"), ["field 'depth_m'", "deeper than zone S1-victim"]),
    (('device = "vic/phone"', 'device = "vicphone"'), ["protected 'vicphone'", "field 'device'"]),
    (('start = "home"', 'start = "hom"'), ["subject 'S1'", "field 'start'", "'hom'"]),
    (('tags = ["T1"]', 'tags = "T1"'), ["subject 'S1'", "field 'tags'"]),
    (("[run]", "[run"), ["not valid TOML", "line"]),
]  # fmt: skip


@pytest.mark.parametrize(("change", "words"), BAD)
def test_mistakes_name_the_file_entry_and_field(
    change: tuple[str, str], words: list[str], tmp_path: Path
) -> None:
    assert change[0] in SMALL
    path = _write(tmp_path, SMALL.replace(change[0], change[1], 1), "bad.toml")
    with pytest.raises(ScenarioError) as err:
        run_scenario(load_scenario(path))
    msg = str(err.value)
    assert isinstance(err.value, TagwatchError)
    assert msg.startswith(f"{path}: ") and "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)


def test_planning_mistakes_name_the_entry_too(tmp_path: Path) -> None:
    text = SMALL.replace('at = "+15m"', 'at = "+2m"')  # he cannot be there yet
    with pytest.raises(ScenarioError, match=r"timeline entry 2 \(enter_zone\), field 'at': "
                       r"\+2m is before the previous entry ends"):  # fmt: skip
        run_scenario(load_scenario(_write(tmp_path, text)))
    flat = SMALL.replace(
        '  { at = "+15m"',
        '  { do = "battery", start_pct = 1, drain_pct_h = 10 },\n'
        '  { at = "+30m", do = "tamper", kind = "strap", for = "5m" },\n  { at = "+15m"',
    )
    with pytest.raises(
        ScenarioError, match=r"timeline entry 3 \(tamper\), field 'at': the battery is flat"
    ):
        run_scenario(load_scenario(_write(tmp_path, flat)))


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(["simulate", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_writes_a_scenario_and_checks_its_expectations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = ROOT / "examples" / "scenarios" / "drive_through.toml"
    rc, out, err = _cli(["--scenario", str(path), "--out-dir", str(tmp_path / "o")], capsys)
    assert rc == 0 and err == ""
    assert "expectations: 3 of 3 kept" in out
    for name in ("zones.geojson", "subjects.toml", "replay.jsonl", "truth.jsonl"):
        assert (tmp_path / "o" / name).stat().st_size > 0
    broken = _write(tmp_path, path.read_text().replace('start = "+40m22s"', 'start = "+50m"'))
    rc, out, err = _cli(["--scenario", str(broken), "--out-dir", str(tmp_path / "p")], capsys)
    assert rc == 1 and "expect 1: zone_breach of S1 in S1-home at +50m" in err


@pytest.mark.parametrize(
    "text", [None, SMALL.replace('duration = "40m"', 'duration = "-5m"'), "[run]\nseed = 'x'\n"]
)
def test_cli_bad_file_exits_2_with_one_line(
    text: str | None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "missing.toml" if text is None else _write(tmp_path, text)
    rc, _, err = _cli(["--scenario", str(path), "--out-dir", str(tmp_path / "o")], capsys)
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith(f"simulate: {path}: ")
    assert not (tmp_path / "o").exists()


def test_cli_scenario_rejects_fleet_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, SMALL)
    rc, _, err = _cli(["--scenario", str(path), "--out-dir", str(tmp_path), "--health"], capsys)
    assert rc == 2 and "--health" in err


def test_cli_live_goes_through_run_live(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import devices.sim.live

    seen: dict[str, Any] = {}

    async def fake_run_live(source: Any, host: str, port: int, **kw: Any) -> Any:
        seen.update(source=source, host=host, port=port, **kw)
        return devices.sim.live.LiveStats(sent=len(source.messages), total=len(source.messages))

    monkeypatch.setattr(devices.sim.live, "run_live", fake_run_live)
    path = _write(tmp_path, SMALL)
    rc, out, _ = _cli(
        ["--scenario", str(path), "--broker", "127.0.0.1:1884", "--warp", "60"], capsys
    )
    assert rc == 0 and "messages acknowledged" in out
    assert isinstance(seen["source"], SimRun) and seen["warp"] == 60.0
    assert (seen["host"], seen["port"]) == ("127.0.0.1", 1884)
    assert seen["source"].start_t == load_scenario(path).start_t


@pytest.mark.mqtt
@pytest.mark.timeout(60)
def test_live_scenario_through_a_broker(mosquitto: Any, tmp_path: Path) -> None:
    import asyncio

    import aiomqtt

    from devices.sim.live import run_live

    short = SMALL.replace('"40m"', '"20m"').replace('at = "+15m", ', "")
    run = run_scenario(load_scenario(_write(tmp_path, short)))
    got: list[tuple[str, Any]] = []

    async def go() -> Any:
        ready = asyncio.Event()

        async def collect() -> None:
            async with aiomqtt.Client(mosquitto.host, mosquitto.port) as c:
                await c.subscribe("tagwatch/v1/tags/#", qos=1)
                await c.subscribe("owntracks/#", qos=1)
                ready.set()
                async for msg in c.messages:
                    assert isinstance(msg.payload, bytes)
                    got.append((str(msg.topic), json.loads(msg.payload)))

        sub = asyncio.create_task(collect())
        await asyncio.wait_for(ready.wait(), 10)
        stats = await run_live(run, mosquitto.host, mosquitto.port, warp=600.0)
        for _ in range(100):
            if len(got) >= len(run.messages):
                break
            await asyncio.sleep(0.05)
        sub.cancel()
        await asyncio.gather(sub, return_exceptions=True)
        return stats

    stats = asyncio.run(go())
    assert stats.sent == len(run.messages)
    assert sorted((t, json.dumps(p)) for t, p in got) == sorted(
        (m.topic, json.dumps(m.payload)) for m in run.messages
    )


def test_offsets_read_as_written() -> None:
    assert [offset_text(s) for s in (0, 45, 600, 3600, 5430)] == [
        "+0m", "+0m45s", "+10m", "+1h00m", "+1h30m30s"
    ]  # fmt: skip
