"""A strap cut goes ahead of a backlog (engine/mqtt/lanes.py, docs/durability.md item 9).

Through `tagwatch serve` and a real mosquitto: while the engine is down the broker queues
20,000 fixes of 100 tags, with a walk into a zone (tag T2) in the middle of them, then a
strap_open of tag T1 after all of them. Restarted, the engine must raise T1's tamper alert
before it reaches T2's walk-in; with `urgent_lane = false` (the control) it cannot, since
the broker delivers one session's messages in order."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from bench.backlog import publish_fast
from engine.wire.alerts import Alert
from tests.helpers import (
    AlertCollector,
    EngineProcess,
    fix,
    ledger_records,
    square,
    wait_online,
    write_world,
)

pytestmark = [pytest.mark.mqtt, pytest.mark.timeout(240)]

BACKGROUND = 100  # tags far from any zone
PER_TAG = 200  # fixes each, 15 s apart


def _world(d: Path) -> tuple[Path, Path]:
    features = [
        {
            "type": "Feature",
            "properties": {"id": f"Z{i}", "subject": f"S{i}", "kind": "exclusion"},
            "geometry": {"type": "Polygon", "coordinates": [square(100.0)]},
        }
        for i in (1, 2)
    ]
    background = ", ".join(f'"B{i}"' for i in range(BACKGROUND))
    subjects = (
        '[[subjects]]\nid = "S1"\ntags = ["T1"]\n\n[[subjects]]\nid = "S2"\ntags = ["T2"]\n\n'
        f'[[subjects]]\nid = "S3"\ntags = [{background}]\n'
    )
    return write_world(d, features, subjects)


def _backlog(t0: float) -> list[tuple[str, bytes]]:
    """Background fixes 5 km from the zones, T2's walk-in after half of them, T1's strap
    cut after all of them."""
    msgs: list[tuple[str, bytes]] = []

    def background(rounds: range) -> None:
        for r in rounds:
            for b in range(BACKGROUND):
                body = fix(r, t0 + 15 * r, 5000.0 + 10 * b, 5000.0)
                msgs.append((f"tagwatch/v1/tags/B{b}/fix", json.dumps(body).encode()))

    background(range(PER_TAG // 2))
    t_mid = t0 + 15 * (PER_TAG // 2)
    for i, dx in enumerate((-400.0, -200.0, -30.0, 0.0, 20.0)):
        msgs.append(("tagwatch/v1/tags/T2/fix", json.dumps(fix(i, t_mid + 15 * i, dx, 0)).encode()))
    background(range(PER_TAG // 2, PER_TAG))
    t_end = t0 + 15 * PER_TAG
    event = {"seq": 1, "t": t_end, "event": "strap_open"}
    msgs.append(("tagwatch/v1/tags/T1/event", json.dumps(event).encode()))
    return msgs


def _first(alerts: list[Alert], kind: str, tag: str) -> int:
    return next(i for i, a in enumerate(alerts) if a.kind == kind and a.tag == tag)


def _backlogged(
    mosquitto: Any, tmp_path: Path, settings: str
) -> tuple[EngineProcess, list[tuple[str, bytes]]]:
    """An engine that ran once (so the broker holds its sessions, both lanes), stopped,
    and the backlog the broker queued for it meanwhile."""
    zones, subjects = _world(tmp_path)
    conf = tmp_path / "settings.toml"
    conf.write_text(settings)
    host, port = mosquitto.host, mosquitto.port
    eng = EngineProcess(host, port, zones, subjects, tmp_path / "e.db", conf)
    with eng:
        asyncio.run(wait_online(host, port))
        assert eng.stop() == 0, eng.log_text()
    msgs = _backlog(float(int(time.time()) - 15 * PER_TAG - 60))
    publish_fast(host, port, msgs)
    return eng, msgs


def _restart_until_both_alerts(mosquitto: Any, eng: EngineProcess) -> list[Alert]:
    """Start the engine on its backlog; the alerts up to T1's tamper and T2's breach."""

    async def scenario() -> list[Alert]:
        async with AlertCollector(mosquitto.host, mosquitto.port) as col:
            eng.start()
            return await col.wait_for(
                lambda got: (
                    any(a.kind == "zone_breach" for a in got)
                    and any(a.kind == "tamper" for a in got)
                ),
                timeout=180,
            )

    return asyncio.run(scenario())


@pytest.mark.parametrize("lane", [True, False], ids=["urgent-lane", "control-one-lane"])
def test_a_strap_cut_is_alerted_before_the_backlog_queued_ahead_of_it(
    mosquitto, tmp_path: Path, lane: bool
) -> None:
    eng, _ = _backlogged(
        mosquitto, tmp_path, f"urgent_lane = {str(lane).lower()}\nlag_status_s = 0.001\n"
    )
    try:
        alerts = _restart_until_both_alerts(mosquitto, eng)
    finally:
        assert eng.stop() == 0, eng.log_text()
    tamper, breach = _first(alerts, "tamper", "T1"), _first(alerts, "zone_breach", "T2")
    log = eng.log_text()
    if lane:
        assert tamper < breach, [(a.kind, a.tag) for a in alerts]
        assert "priority lane: connected" in log, log
    else:  # the control: one session delivers in order, so the strap cut waits its turn
        assert breach < tamper, [(a.kind, a.tag) for a in alerts]
        assert "priority lane" not in log, log
    assert "engine lags" in log, log  # queued fixes wait longer than 1 ms


def test_a_full_queue_pauses_reading_and_loses_nothing(mosquitto, tmp_path: Path) -> None:
    """queue_max 100 against a queued backlog of 20,000: the engine stops reading its
    socket while its queue is full (the broker holds the rest) and every fix is decided."""
    eng, msgs = _backlogged(mosquitto, tmp_path, "queue_max = 100\nlive_batch_max = 50\n")
    db = tmp_path / "e.db"
    want = sum(m[0].endswith("/fix") for m in msgs)

    def fixes() -> int:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
            return sum(k == "fix" for _, _, k, _ in ledger_records(c))

    try:
        _restart_until_both_alerts(mosquitto, eng)
        deadline = time.monotonic() + 120
        while fixes() < want and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        assert eng.stop() == 0, eng.log_text()
    log = eng.log_text()
    assert "reading paused" in log, log
    assert fixes() == want  # every fix, once


# -- a watched tag's walk-in goes ahead too ----------------------------------------------


def _watch_world(d: Path) -> tuple[Path, Path]:
    """Z1 (S1's, tag T1) has a 300 m approach ring; Z2 (S2's, tag T2) none."""
    zones, subjects = _world(d)
    data = json.loads(zones.read_text())
    data["features"][0]["properties"]["warn_m"] = 300.0
    zones.write_text(json.dumps(data))
    return zones, subjects


async def _until_asked_fast(host: str, port: int, msgs: list[tuple[str, bytes]]) -> None:
    """Publish T1's approach and wait for the engine's command to report fast: the
    engine watches T1 on its priority lane before it sends that (engine/mqtt/serve.py)."""
    async with aiomqtt.Client(host, port) as c:
        await c.subscribe("tagwatch/v1/tags/T1/cmd", qos=1)
        for topic, body in msgs:
            await c.publish(topic, body, qos=1)
        async with asyncio.timeout(60):
            async for m in c.messages:
                if b'"rate_s": 15' in bytes(m.payload) or b'"rate_s":15' in bytes(m.payload):
                    return


@pytest.mark.parametrize("watch", [2000, 0], ids=["watched", "control-events-only"])
def test_a_watched_tags_walk_in_is_decided_before_the_backlog_queued_ahead_of_it(
    mosquitto, tmp_path: Path, watch: int
) -> None:
    """T1 stands in Z1's approach ring (the engine asks it for fast reports), the engine
    stops, and the broker queues 20,000 background fixes with T2's walk-in into Z2 in the
    middle, then T1's walk-in after all of them. Restarted, the engine raises T1's breach
    before T2's: its priority session kept T1's fix topics. The control (urgent_watch_max
    0) takes T1's walk-in in its turn, after T2's."""
    zones, subjects = _watch_world(tmp_path)
    conf = tmp_path / "settings.toml"
    conf.write_text(f"urgent_watch_max = {watch}\n")
    host, port = mosquitto.host, mosquitto.port
    t0 = float(int(time.time()) - 15 * PER_TAG - 600)
    approach = [
        ("tagwatch/v1/tags/T1/fix", json.dumps(fix(i, t0 - 300 + 15 * i, dx, 0.0)).encode())
        for i, dx in enumerate((-360.0, -340.0, -330.0, -320.0))
    ]
    eng = EngineProcess(host, port, zones, subjects, tmp_path / "e.db", conf)
    with eng:
        asyncio.run(wait_online(host, port))
        asyncio.run(_until_asked_fast(host, port, approach))
        assert eng.stop() == 0, eng.log_text()
    msgs = [m for m in _backlog(t0) if not m[0].startswith("tagwatch/v1/tags/T1/")]
    t_end = t0 + 15 * PER_TAG
    msgs += [
        ("tagwatch/v1/tags/T1/fix", json.dumps(fix(4 + i, t_end + 15 * i, dx, 0.0)).encode())
        for i, dx in enumerate((-200.0, -30.0, 0.0, 20.0))
    ]
    publish_fast(host, port, msgs)

    async def scenario() -> list[Alert]:
        async with AlertCollector(host, port) as col:
            eng.start()
            return await col.wait_for(
                lambda got: (
                    {("T1", "zone_breach"), ("T2", "zone_breach")} <= {(a.tag, a.kind) for a in got}
                ),
                timeout=180,
            )

    try:
        alerts = asyncio.run(scenario())
    finally:
        assert eng.stop() == 0, eng.log_text()
    mine, theirs = _first(alerts, "zone_breach", "T1"), _first(alerts, "zone_breach", "T2")
    order = [(a.kind, a.tag) for a in alerts]
    if watch:
        assert mine < theirs, order
    else:
        assert theirs < mine, order
