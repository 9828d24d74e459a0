"""The live engine behind the broker `tagwatch broker-config` writes: TLS, passwords, ACLs.
A tag's fixes in, an alert out to a monitor, every hop authenticated."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiomqtt
import msgspec
import pytest

from engine.broker.process import free_port
from engine.mqtt.auth import MqttAuth
from engine.wire.alerts import decode_alert
from tests.helpers import EngineProcess, fix, write_world
from tests.test_brokerconfig import SUBJECTS, _generate, running

pytestmark = [pytest.mark.mqtt, pytest.mark.timeout(120)]


def test_engine_serves_over_tls_with_its_own_login(tmp_path: Path) -> None:
    zones, subjects = write_world(tmp_path, subjects_toml=SUBJECTS)
    port = free_port()
    out = tmp_path / "broker"
    assert _generate(subjects, out, port) == 0
    with running(out, port) as site:
        ca = str(out / "ca.crt")
        pw = tmp_path / "engine.pw"
        pw.write_text(site.password("engine") + "\n")
        engine = EngineProcess(
            "127.0.0.1", port, zones, subjects, tmp_path / "e.db",
            extra_args=["--username", "engine", "--password-file", str(pw), "--cafile", ca],
        )  # fmt: skip
        with engine:
            got = asyncio.run(_breach_seen_by_monitor(site.password, port, ca))
        log = engine.log_text()
    assert "connected to 127.0.0.1" in log, log
    # the priority lane logs in as engine-urgent with the engine's password (one secret)
    assert "priority lane: connected to 127.0.0.1" in log, log
    assert any(a.kind == "zone_breach" and a.tag == "T1" for a in got), got


async def _breach_seen_by_monitor(password, port: int, ca: str) -> list:  # type: ignore[no-untyped-def]
    def login(user: str) -> dict:  # type: ignore[type-arg]
        return MqttAuth(user, password(user), ca).kwargs()

    alerts = []
    async with aiomqtt.Client("127.0.0.1", port, **login("monitor")) as mon:
        await mon.subscribe("tagwatch/v1/alerts/+", qos=1)
        # The engine is up once its retained status says so (monitors may read it).
        await mon.subscribe("tagwatch/v1/engine/status", qos=1)
        async with asyncio.timeout(60):
            async for m in mon.messages:
                if str(m.topic).endswith("status") and b"online" in bytes(m.payload):  # type: ignore[arg-type]
                    break
        async with aiomqtt.Client("127.0.0.1", port, **login("T1")) as tag:
            t0 = time.time() - 120
            for i in range(6):
                body = msgspec.json.encode(fix(i, t0 + 20 * i, 0.0, 0.0))
                await tag.publish("tagwatch/v1/tags/T1/fix", body, qos=1)
        async with asyncio.timeout(30):
            async for m in mon.messages:
                if str(m.topic).startswith("tagwatch/v1/alerts/"):
                    alerts.append(decode_alert(bytes(m.payload)))  # type: ignore[arg-type]
                    if any(a.kind == "zone_breach" for a in alerts):
                        break
    return alerts
