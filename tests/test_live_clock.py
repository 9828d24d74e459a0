"""Live clocks through `tagwatch serve` and a real mosquitto: the host's wall time is the
clock, even for the first record the engine hears (issue 13, item 2)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from engine.store.sqlite import SqliteStore
from engine.wire.alerts import Alert
from tests.helpers import AlertCollector, EngineProcess, fix, publish, wait_online, write_world

pytestmark = [pytest.mark.mqtt, pytest.mark.timeout(120)]

FIX = "tagwatch/v1/tags/T1/fix"
YEAR = 365 * 86400.0


def _closed_breach(alerts: list[Alert]) -> bool:
    return any(a.kind == "zone_breach" and a.state == "closed" for a in alerts)


def test_a_year_ahead_first_record_is_dead_lettered_live(mosquitto, tmp_path: Path) -> None:
    """The very first record the engine hears is dated a year ahead, deep inside Z1: it
    must be refused on the host's wall time (there is no fleet clock yet to confirm it),
    and the tag's real walk in and out of Z1 afterwards is one ordinary episode."""
    zones, subjects = write_world(tmp_path)
    db = tmp_path / "tw.db"
    t0 = float(int(time.time()) - 1800)
    wild = [(FIX, json.dumps(fix(0, t0 + YEAR, 0.0, 0.0)).encode())]
    pts = [(-400, 0), (-250, 0), (-40, 10), (20, -5), (300, 0), (450, 0), (600, 0), (750, 0)]
    track = [
        (FIX, json.dumps(fix(1 + i, t0 + 60 * (1 + i), dx, dy)).encode())
        for i, (dx, dy) in enumerate(pts)
    ]

    async def scenario() -> list[Alert]:
        async with AlertCollector(mosquitto.host, mosquitto.port) as col:
            await wait_online(mosquitto.host, mosquitto.port)
            await publish(mosquitto.host, mosquitto.port, wild)
            await publish(mosquitto.host, mosquitto.port, track)
            return await col.wait_for(_closed_breach)

    with EngineProcess(mosquitto.host, mosquitto.port, zones, subjects, db) as eng:
        alerts = asyncio.run(scenario())
        assert eng.stop() == 0, eng.log_text()
    horizon = time.time() + 300.0
    ahead = [(a.kind, a.state, a.opened_t - t0) for a in alerts if a.opened_t > horizon]
    assert ahead == []
    backwards = [
        (a.kind, a.opened_t, a.closed_t)
        for a in alerts
        if a.closed_t is not None and a.closed_t < a.opened_t
    ]
    assert backwards == []
    breach = [(a.state, a.opened_t, a.closed_t) for a in alerts if a.kind == "zone_breach"]
    assert breach == [("open", t0 + 180, None), ("closed", t0 + 180, t0 + 300)]
    with SqliteStore(db) as st:
        dead = [d.reason for d in st.dead_letters()]
    assert len(dead) == 1 and "ahead of the engine clock" in dead[0], dead
    assert "max_future_s" in dead[0]
