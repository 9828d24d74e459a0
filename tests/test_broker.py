"""mosquitto processes for the tests and the demo: start, restart, kill, persistence."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

import engine.broker.process as broker_mod
from engine.broker.process import MosquittoProcess, find_mosquitto, free_port
from engine.errors import BrokerError

V311 = aiomqtt.ProtocolVersion.V311
DONE = "test/done"  # published last: everything a subscriber should get arrives before it


def run(coro: Coroutine[Any, Any, Any], timeout: float = 20.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def client(b: Any, ident: str, **kw: Any) -> aiomqtt.Client:
    return aiomqtt.Client(b.host, b.port, identifier=ident, protocol=V311, **kw)


async def collect_until_done(c: aiomqtt.Client) -> list[tuple[str, bytes, int, bool]]:
    """Messages received up to (not including) one on DONE: (topic, payload, qos, retain)."""
    got = []
    async for m in c.messages:
        if m.topic.matches(DONE):
            return got
        assert isinstance(m.payload, bytes)
        got.append((str(m.topic), m.payload, m.qos, m.retain))
    raise AssertionError("message stream ended")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


# -- finding and starting -----------------------------------------------------------------


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_find_mosquitto_gives_an_executable_or_none() -> None:
    path = find_mosquitto()
    assert path is None or os.access(path, os.X_OK)


def test_missing_mosquitto_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(broker_mod, "find_mosquitto", lambda: None)
    with pytest.raises(BrokerError, match=r"not installed: .*sudo apt-get install mosquitto"):
        MosquittoProcess()


# -- mosquitto ----------------------------------------------------------------------------


@pytest.mark.mqtt
@pytest.mark.timeout(30)
def test_mosquitto_qos1_round_trip(mosquitto: MosquittoProcess) -> None:
    async def scenario() -> list[tuple[str, bytes, int, bool]]:
        async with client(mosquitto, "sub") as sub, client(mosquitto, "pub") as pub:
            await sub.subscribe("tagwatch/v1/tags/+/fix", qos=1)
            await sub.subscribe(DONE, qos=1)
            await pub.publish("tagwatch/v1/tags/T1/fix", b'{"seq":1}', qos=1)
            await pub.publish(DONE, b"", qos=1)
            return await collect_until_done(sub)

    assert run(scenario()) == [("tagwatch/v1/tags/T1/fix", b'{"seq":1}', 1, False)]
    assert mosquitto.url == f"127.0.0.1:{mosquitto.port}"
    assert f"listener {mosquitto.port} 127.0.0.1" in mosquitto.config_path.read_text()
    assert mosquitto.log_path.exists()


@pytest.mark.mqtt
@pytest.mark.timeout(30)
def test_mosquitto_restart_keeps_port_and_kill_then_restart_works(
    mosquitto: MosquittoProcess,
) -> None:
    port, pid = mosquitto.port, mosquitto.pid
    mosquitto.restart()
    assert mosquitto.port == port and mosquitto.pid != pid and port_open(port)
    pid = mosquitto.pid
    assert pid is not None
    mosquitto.kill()
    assert not mosquitto.running and not pid_alive(pid) and not port_open(port)
    mosquitto.restart()
    assert mosquitto.running and mosquitto.port == port

    async def scenario() -> None:
        async with client(mosquitto, "after-restart") as c:
            await c.subscribe(DONE, qos=1)
            await c.publish(DONE, b"", qos=1)
            assert await collect_until_done(c) == []

    run(scenario())


@pytest.mark.mqtt
@pytest.mark.timeout(30)
def test_mosquitto_stop_leaves_no_process(mosquitto_path: str, tmp_path: Path) -> None:
    proc = MosquittoProcess(
        workdir=tmp_path, executable=mosquitto_path, max_inflight_messages=5, max_queued_messages=50
    )
    with proc:
        pid = proc.pid
        assert pid is not None and pid_alive(pid)
        conf = proc.config_path.read_text()
        assert "max_inflight_messages 5" in conf and "max_queued_messages 50" in conf
    assert not pid_alive(pid) and not proc.running and not port_open(proc.port)
    proc.stop()  # idempotent


@pytest.mark.mqtt
@pytest.mark.timeout(30)
def test_mosquitto_bad_config_fails_with_its_log(mosquitto_path: str, tmp_path: Path) -> None:
    proc = MosquittoProcess(workdir=tmp_path, extra_config=["no_such_option 1"])
    with pytest.raises(BrokerError, match="no_such_option"):
        proc.start()
    assert not proc.running


@pytest.mark.mqtt
@pytest.mark.timeout(30)
def test_mosquitto_persistence_survives_restart(mosquitto_persistent: MosquittoProcess) -> None:
    m = mosquitto_persistent

    async def before() -> None:
        async with client(m, "durable", clean_session=False) as c:
            await c.subscribe("q/#", qos=1)
        async with client(m, "pub") as pub:
            await pub.publish("r/status", b"online", qos=1, retain=True)
            await pub.publish("q/1", b"queued while away", qos=1)

    async def after() -> tuple[list[Any], list[Any]]:
        async with client(m, "durable", clean_session=False) as c:
            await c.subscribe(DONE, qos=1)
            await c.publish(DONE, b"", qos=1)
            queued = await collect_until_done(c)
        async with client(m, "late") as c:
            await c.subscribe("r/#", qos=1)
            await c.subscribe(DONE, qos=1)
            await c.publish(DONE, b"", qos=1)
            retained = await collect_until_done(c)
        return queued, retained

    run(before())
    m.restart()
    queued, retained = run(after())
    assert queued == [("q/1", b"queued while away", 1, False)]
    assert retained == [("r/status", b"online", 1, True)]


@pytest.mark.mqtt
@pytest.mark.timeout(30)
def test_mosquitto_that_fails_to_start_leaves_no_workdir(mosquitto_path: str) -> None:
    proc = MosquittoProcess(executable=mosquitto_path, extra_config=["no_such_option 1"])
    with pytest.raises(BrokerError, match="no_such_option"), proc:
        pass
    assert not proc.running and not proc.workdir.exists()
