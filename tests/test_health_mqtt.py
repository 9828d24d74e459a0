"""Device health through `tagwatch serve` and a real mosquitto: tamper, silence next to a
zone filled later by a store-and-forward batch, battery, no location, and the
reporting-rate commands on tagwatch/v1/tags/{tag}/cmd."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from tests.helpers import AlertCollector, EngineProcess, fix, publish, wait_online, write_world

pytestmark = [pytest.mark.mqtt, pytest.mark.timeout(120)]

T0 = time.time() - 3600.0  # event times an hour ago: the engine's silence clock is wall time
BASE = "tagwatch/v1/tags/T1"


def _event(seq: int, t: float, name: str, **extra: Any) -> bytes:
    return json.dumps({"seq": seq, "t": t, "event": name, **extra}).encode()


def _fix(seq: int, t: float, dx: float) -> bytes:
    return json.dumps(fix(seq, t, dx, 0.0)).encode()


def _run(mosquitto, tmp_path: Path, settings: str, scenario) -> Any:  # type: ignore[no-untyped-def]
    zones, subjects = write_world(tmp_path)
    conf = tmp_path / "settings.toml"
    conf.write_text(settings)
    db = tmp_path / "tw.db"
    with EngineProcess(mosquitto.host, mosquitto.port, zones, subjects, db, conf) as eng:
        try:
            return asyncio.run(scenario())
        finally:
            assert eng.stop() == 0, eng.log_text()


def _states(alerts: list, kind: str) -> list[str]:  # type: ignore[type-arg]
    return [a.state for a in alerts if a.kind == kind]


def test_tamper_is_published_at_once_and_closed_by_the_restore(mosquitto, tmp_path: Path) -> None:
    h, p = mosquitto.host, mosquitto.port

    async def scenario() -> tuple[list, float]:  # type: ignore[type-arg]
        async with AlertCollector(h, p) as col:
            await wait_online(h, p)
            await publish(h, p, [(f"{BASE}/fix", _fix(0, T0, 2000.0))])
            sent = time.monotonic()
            await publish(h, p, [(f"{BASE}/event", _event(5, T0 + 60, "strap_open"))])  # gap
            await col.wait_for(lambda a: _states(a, "tamper") == ["open"])
            took = time.monotonic() - sent
            await publish(h, p, [(f"{BASE}/event", _event(6, T0 + 90, "strap_closed"))])
            # settles after tamper_settle_s of the engine's clock with nothing reopening
            alerts = await col.wait_for(lambda a: _states(a, "tamper") == ["open", "closed"])
            return alerts, took

    alerts, took = _run(mosquitto, tmp_path, "tamper_settle_s = 1.0\n", scenario)
    tam = [a for a in alerts if a.kind == "tamper"]
    assert tam[0].severity == "critical" and tam[0].evidence == [("T1", 5)]
    assert tam[1].closed_t == T0 + 90 and tam[0].id == tam[1].id
    assert took < 10.0  # behaviour, not a benchmark: it did not wait for the seq gap


def test_silence_beside_a_zone_then_a_late_batch_fills_it(mosquitto, tmp_path: Path) -> None:
    h, p = mosquitto.host, mosquitto.port
    settings = "silent_min_s = 2.0\nsilent_factor = 0.0\nhold_wall_s = 1.0\n"

    async def scenario() -> list:  # type: ignore[type-arg]
        async with AlertCollector(h, p) as col:
            await wait_online(h, p)
            # 150 m east of the zone edge, then nothing
            await publish(h, p, [(f"{BASE}/fix", _fix(i, T0 + 60 * i, 250.0)) for i in range(3)])
            await col.wait_for(lambda a: _states(a, "tag_silent") == ["open"], timeout=30)
            # coverage returns: the buffered fixes (walking through the zone) as one upload
            batch = [fix(3 + i, T0 + 180 + 60 * i, 250.0 - 50.0 * i, 0.0) for i in range(10)]
            await publish(h, p, [(f"{BASE}/fixes", json.dumps(batch).encode())])
            return await col.wait_for(
                lambda a: (
                    _states(a, "tag_silent")[:2] == ["open", "closed"]
                    and any(x.kind == "zone_breach" for x in a)
                ),
                timeout=30,
            )

    alerts = _run(mosquitto, tmp_path, settings, scenario)
    sil = [a for a in alerts if a.kind == "tag_silent"]
    assert sil[0].severity == "high"  # last seen 150 m from the zone
    assert sil[0].detail is not None and sil[0].detail["zone"] == "Z1"
    closed = next(a for a in sil if a.state == "closed")
    breach = next(a for a in alerts if a.kind == "zone_breach")
    assert closed.detail is not None and closed.detail["filled"] == 10
    assert breach.id in closed.detail.get("alerts", [])


def test_battery_and_no_location_over_mqtt(mosquitto, tmp_path: Path) -> None:
    h, p = mosquitto.host, mosquitto.port

    async def scenario() -> list:  # type: ignore[type-arg]
        async with AlertCollector(h, p) as col:
            await wait_online(h, p)
            msgs = [(f"{BASE}/fix", _fix(0, T0, 2000.0))]
            # indoors: a heartbeat a minute, no fix
            msgs += [(f"{BASE}/event", _event(i, T0 + 60 * i, "no_gps")) for i in range(1, 41)]
            msgs += [(f"{BASE}/event", _event(41, T0 + 2460, "battery", batt=9))]
            await publish(h, p, msgs)
            return await col.wait_for(
                lambda a: (
                    _states(a, "no_location") == ["open"]
                    and _states(a, "battery_critical") == ["open"]
                    and _states(a, "battery_low") == ["open"]
                )
            )

    alerts = _run(mosquitto, tmp_path, "", scenario)
    nl = next(a for a in alerts if a.kind == "no_location")
    assert nl.opened_t == T0 + 60 and nl.raised_t == T0 + 1860


def test_rate_commands_on_the_cmd_topic(mosquitto, tmp_path: Path) -> None:
    h, p = mosquitto.host, mosquitto.port

    async def scenario() -> list[tuple[str, dict]]:  # type: ignore[type-arg]
        got: list[tuple[str, dict]] = []  # type: ignore[type-arg]
        async with aiomqtt.Client(h, p) as sub, AlertCollector(h, p) as col:
            await sub.subscribe("tagwatch/v1/tags/+/cmd", qos=1)
            await wait_online(h, p)
            inside = [(f"{BASE}/fix", _fix(i, T0 + 60 * i, dx)) for i, dx in enumerate([800, 0, 0])]
            out = [(f"{BASE}/fix", _fix(3 + i, T0 + 180 + 60 * i, 900 + 100 * i)) for i in range(6)]
            await publish(h, p, inside)
            await col.wait_for(lambda a: _states(a, "zone_breach") == ["open"])
            await publish(h, p, out)

            async def read() -> None:
                async for m in sub.messages:
                    assert isinstance(m.payload, bytes)
                    got.append((str(m.topic), json.loads(m.payload)))
                    if len(got) == 2:
                        return

            await asyncio.wait_for(read(), 30)
        return got

    got = _run(mosquitto, tmp_path, "", scenario)
    assert got == [(f"{BASE}/cmd", {"rate_s": 15.0}), (f"{BASE}/cmd", {"rate_s": 60.0})]


SCENARIO = """
[run]
seed = 5
start = "2026-09-21T10:00:00Z"
duration = "30m"
fix_interval = "1m"
noise = "simple"

[places]
home = { lat = 51.5200, lon = -0.1000 }
near = { from = "home", east_m = -600 }

[[zones]]
id = "Z1"
subject = "S1"
kind = "exclusion"
center = "home"
radius_m = 150
warn_m = 100

[[subjects]]
id = "S1"
tags = ["T1"]
start = "near"
timeline = [
  { do = "dwell", for = "3m" },
  { do = "enter_zone", zone = "Z1", depth_m = 80, for = "10m" },
  { do = "walk_to", place = "near" },
]
"""


def test_the_simulator_reports_faster_while_the_engine_asks(mosquitto, tmp_path: Path) -> None:
    """tagwatch serve + the live simulator through mosquitto: the breach makes the engine
    ask T1 for a fix every 15 s, the simulated tag obeys, then relaxes to 60 s."""
    from devices.scenarios.file import load_scenario, run_scenario
    from devices.sim.live import run_live
    from devices.sim.output import write_run

    src = tmp_path / "s.toml"
    src.write_text(SCENARIO)
    run = run_scenario(load_scenario(src), start_t=time.time())
    paths = write_run(run, tmp_path / "world")
    h, p = mosquitto.host, mosquitto.port
    fixes: list[float] = []
    cmds: list[tuple[float, float]] = []

    async def scenario() -> None:
        async with aiomqtt.Client(h, p) as sub:
            await sub.subscribe(f"{BASE}/fix", qos=1)
            await sub.subscribe(f"{BASE}/cmd", qos=1)
            await wait_online(h, p)

            async def listen() -> None:
                async for m in sub.messages:
                    assert isinstance(m.payload, bytes)
                    body = json.loads(m.payload)
                    if str(m.topic).endswith("/cmd"):
                        cmds.append((fixes[-1] if fixes else 0.0, body["rate_s"]))
                    else:
                        fixes.append(body["t"])

            task = asyncio.create_task(listen())
            stats = await run_live(run, h, p, warp=80.0)
            await asyncio.sleep(1.0)
            task.cancel()
            assert stats.commands >= 2 and stats.extra > 0

    db = tmp_path / "tw.db"
    conf = tmp_path / "settings.toml"
    conf.write_text('live_clock = "fleet"\n')  # warp 80: sim time runs ahead of wall time
    with EngineProcess(h, p, paths["zones"], paths["subjects"], db, conf) as eng:
        try:
            asyncio.run(scenario())
        finally:
            assert eng.stop() == 0, eng.log_text()
    assert [r for _, r in cmds] == [15.0, 60.0]
    (fast_from, _), (fast_to, _) = cmds
    gaps = [b - a for a, b in itertools.pairwise(fixes)]
    during = [g for a, g in zip(fixes, gaps, strict=False) if fast_from + 20 < a < fast_to - 20]
    outside = [g for a, g in zip(fixes, gaps, strict=False) if a < fast_from or a > fast_to + 60]
    assert during and max(during) < 25.0  # about every 15 s while it matters
    assert outside and min(outside) > 45.0  # the planned minute otherwise
