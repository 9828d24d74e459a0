"""Brokers: mosquitto processes (start, restart, kill, persistence) and the embedded broker."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

import engine.broker.process as broker_mod
from engine.broker.embedded import MiniBroker, serve, topic_matches, valid_filter, valid_topic
from engine.broker.process import (
    BrokerHandle,
    EmbeddedBroker,
    MosquittoProcess,
    ensure_mosquitto,
    find_mosquitto,
    free_port,
    start_broker,
)
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


# -- raw MQTT 3.1.1 over a blocking socket: for what a well-behaved client never sends ------


def _enc(s: str | bytes) -> bytes:
    raw = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(raw)) + raw


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, d = divmod(n, 128)
        out.append(d | (0x80 if n else 0))
        if not n:
            return bytes(out)


def packet(first: int, body: bytes = b"") -> bytes:
    return bytes([first]) + _varint(len(body)) + body


def connect_packet(
    ident: str,
    keepalive: int = 60,
    will: tuple[str, bytes] | None = None,
    level: int = 4,
    clean: bool = True,
) -> bytes:
    flags = (0x02 if clean else 0) | (0x04 if will else 0)
    body = _enc("MQTT") + bytes([level, flags]) + struct.pack("!H", keepalive)
    if level == 5:
        body += b"\x00"  # empty CONNECT properties
    body += _enc(ident)
    if will:
        body += _enc(will[0]) + _enc(will[1])
    return packet(0x10, body)


def read_packet(sock: socket.socket) -> tuple[int, bytes]:
    """(first byte, body); raises EOFError if the broker closed the connection."""

    def exactly(n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    first = exactly(1)[0]
    length, shift = 0, 0
    while True:
        b = exactly(1)[0]
        length |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    return first, exactly(length)


def closed_by_peer(sock: socket.socket) -> bool:
    try:
        while True:
            read_packet(sock)
    except (EOFError, ConnectionResetError):
        return True
    except TimeoutError:
        return False


def raw_connect(port: int, ident: str, **kw: Any) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(connect_packet(ident, **kw))
    assert read_packet(sock) == (0x20, b"\x00\x00")
    return sock


def raw_subscribe(sock: socket.socket, topic_filter: str, qos: int = 1, pid: int = 1) -> None:
    sock.sendall(packet(0x82, struct.pack("!H", pid) + _enc(topic_filter) + bytes([qos])))
    first, body = read_packet(sock)
    assert first == 0x90 and body[:2] == struct.pack("!H", pid)


def wait_until(pred: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def stats(handle: BrokerHandle) -> Any:
    assert isinstance(handle.server, EmbeddedBroker)
    return handle.server.broker.stats


# -- finding and starting -----------------------------------------------------------------


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_find_mosquitto_gives_an_executable_or_none() -> None:
    path = find_mosquitto()
    assert path is None or os.access(path, os.X_OK)


def test_unknown_broker_kind_is_a_broker_error() -> None:
    with pytest.raises(BrokerError, match="unknown broker kind"):
        start_broker(prefer="rabbit")


def test_auto_falls_back_to_embedded_without_mosquitto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(broker_mod, "find_mosquitto", lambda: None)
    with pytest.raises(BrokerError, match="not installed"):
        start_broker(prefer="mosquitto")
    with start_broker() as handle:
        assert handle.kind == "embedded" and port_open(handle.port)
    assert not port_open(handle.port)


def test_ensure_mosquitto_without_install_only_reports(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(broker_mod, "find_mosquitto", lambda: None)
    assert ensure_mosquitto(install=False) is None
    assert "mosquitto not found" in capsys.readouterr().err


def test_ensure_mosquitto_installs_with_apt_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    installed: list[bool] = []
    commands: list[list[str]] = []

    def fake_run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[bytes]:
        commands.append(cmd)
        assert kw["timeout"] > 0 and kw["env"]["DEBIAN_FRONTEND"] == "noninteractive"
        if cmd[1] == "install":
            installed.append(True)
        return subprocess.CompletedProcess(cmd, 0)

    def fake_find() -> str | None:
        return "/usr/sbin/mosquitto" if installed else None

    monkeypatch.setattr(broker_mod, "find_mosquitto", fake_find)
    monkeypatch.setattr(broker_mod, "APT_LOG", tmp_path / "apt.log")
    monkeypatch.setattr(broker_mod, "_apt_updated", False)
    monkeypatch.setattr(broker_mod.os, "geteuid", lambda: 0)
    monkeypatch.setattr(broker_mod.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(broker_mod.subprocess, "run", fake_run)
    assert ensure_mosquitto() == "/usr/sbin/mosquitto"
    assert [c[1] for c in commands] == ["update", "install"]
    assert "installing Debian's mosquitto package" in capsys.readouterr().err
    installed.clear()
    ensure_mosquitto()
    assert [c[1] for c in commands] == ["update", "install", "install"]  # update only once


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
def test_start_broker_prefers_mosquitto(mosquitto_path: str) -> None:
    handle = start_broker()
    assert isinstance(handle.server, MosquittoProcess)
    pid, workdir = handle.server.pid, handle.server.workdir
    assert handle.kind == "mosquitto" and port_open(handle.port) and pid is not None
    handle.stop()
    handle.stop()
    assert not pid_alive(pid) and not workdir.exists()


# -- embedded broker: topic rules ---------------------------------------------------------


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("a/b", "a/b", True),
        ("a/+", "a/b", True),
        ("a/+", "a/b/c", False),
        ("a/+/c", "a//c", True),
        ("+/+", "/x", True),
        ("a/#", "a", True),
        ("a/#", "a/b/c", True),
        ("#", "a/b", True),
        ("a/b", "a/b/c", False),
        ("#", "$SYS/x", False),
        ("+/x", "$SYS/x", False),
        ("$SYS/#", "$SYS/x", True),
    ],
)
def test_topic_matching(topic_filter: str, topic: str, expected: bool) -> None:
    assert topic_matches(topic_filter, topic) is expected


def test_filter_and_topic_validity() -> None:
    assert all(valid_filter(f) for f in ["a", "a/+", "+", "#", "a/#", "+/+/#", "/"])
    assert not any(valid_filter(f) for f in ["", "a#", "a/#/b", "a+", "a/b+/c", "x\x00"])
    assert valid_topic("a/b") and not valid_topic("a/+") and not valid_topic("")


# -- embedded broker: behaviour through real clients --------------------------------------


@pytest.mark.timeout(30)
def test_embedded_wildcards_and_dollar_topics(embedded_broker: BrokerHandle) -> None:
    b = embedded_broker
    assert b.kind == "embedded"

    async def scenario() -> list[Any]:
        async with client(b, "sub") as sub, client(b, "pub") as pub:
            for f in ("tags/+/fix", "alerts/#", DONE):
                await sub.subscribe(f, qos=1)
            for t in ("tags/T1/fix", "tags/T1/event", "tags/T1/fix/x", "alerts", "alerts/S1",
                      "$SYS/load", "other"):  # fmt: skip
                await pub.publish(t, t.encode(), qos=1)
            await pub.publish(DONE, b"", qos=1)
            return [t for t, *_ in await collect_until_done(sub)]

    assert run(scenario()) == ["tags/T1/fix", "alerts", "alerts/S1"]


@pytest.mark.timeout(30)
def test_embedded_qos_is_the_lower_of_publish_and_subscription(
    embedded_broker: BrokerHandle,
) -> None:
    b = embedded_broker

    async def scenario() -> tuple[Any, Any, Any]:
        async with client(b, "s1") as s1, client(b, "s0") as s0, client(b, "pub") as pub:
            granted = await s1.subscribe("q/#", qos=2)  # QoS 2 is granted as 1
            await s1.subscribe(DONE, qos=1)
            await s0.subscribe("q/#", qos=0)
            await s0.subscribe(DONE, qos=0)
            await pub.publish("q/0", b"a", qos=0)
            await pub.publish("q/1", b"b", qos=1)
            await pub.publish("q/2", b"c", qos=2)  # PUBREC/PUBREL/PUBCOMP completes
            await pub.publish(DONE, b"", qos=1)
            return granted, await collect_until_done(s1), await collect_until_done(s0)

    granted, at1, at0 = run(scenario())
    assert [int(getattr(g, "value", g)) for g in granted] == [1]
    assert [(t, q) for t, _, q, _ in at1] == [("q/0", 0), ("q/1", 1), ("q/2", 1)]
    assert [(t, q) for t, _, q, _ in at0] == [("q/0", 0), ("q/1", 0), ("q/2", 0)]


@pytest.mark.timeout(30)
def test_embedded_retained_messages_delivered_on_subscribe_and_cleared(
    embedded_broker: BrokerHandle,
) -> None:
    b = embedded_broker

    async def subscribe_late(ident: str) -> list[Any]:
        async with client(b, ident) as c:
            await c.subscribe("status/#", qos=1)
            await c.subscribe(DONE, qos=1)
            await c.publish(DONE, b"", qos=1)
            return await collect_until_done(c)

    async def scenario() -> tuple[list[Any], list[Any], list[Any]]:
        async with client(b, "pub") as pub:
            await pub.publish("status/a", b"online", qos=1, retain=True)
            await pub.publish("status/b", b"zero", qos=0, retain=True)
            await pub.publish("status/c", b"not kept", qos=1)
            first = await subscribe_late("late1")
            async with client(b, "live") as live:
                await live.subscribe("status/a", qos=1)
                await live.subscribe(DONE, qos=1)
                await pub.publish("status/a", b"", qos=1, retain=True)  # clears, still delivered
                await pub.publish(DONE, b"", qos=1)
                seen_live = await collect_until_done(live)
            return first, seen_live, await subscribe_late("late2")

    first, seen_live, second = run(scenario())
    assert first == [("status/a", b"online", 1, True), ("status/b", b"zero", 0, True)]
    assert seen_live == [("status/a", b"online", 1, True), ("status/a", b"", 1, False)]
    assert second == [("status/b", b"zero", 0, True)]


@pytest.mark.timeout(30)
def test_embedded_unsubscribe_stops_delivery(embedded_broker: BrokerHandle) -> None:
    b = embedded_broker

    async def scenario() -> list[Any]:
        async with client(b, "sub") as sub, client(b, "pub") as pub:
            await sub.subscribe("u/#", qos=1)
            await sub.subscribe(DONE, qos=1)
            await pub.publish("u/1", b"before", qos=1)
            await sub.unsubscribe("u/#")
            await pub.publish("u/2", b"after", qos=1)
            await pub.publish(DONE, b"", qos=1)
            return await collect_until_done(sub)

    assert run(scenario()) == [("u/1", b"before", 1, False)]


@pytest.mark.timeout(30)
def test_embedded_refuses_mqtt5_cleanly(embedded_broker: BrokerHandle) -> None:
    b = embedded_broker

    async def scenario() -> None:
        with pytest.raises(aiomqtt.MqttError):
            async with aiomqtt.Client(b.host, b.port, protocol=aiomqtt.ProtocolVersion.V5):
                pass
        async with client(b, "v311") as c:  # still serving
            await c.subscribe(DONE, qos=1)

    run(scenario())
    with socket.create_connection((b.host, b.port), timeout=5) as sock:
        sock.sendall(connect_packet("v5", level=5))
        assert read_packet(sock) == (0x20, b"\x00\x01")  # unacceptable protocol version
        assert closed_by_peer(sock)
    assert stats(b).refused == 2


@pytest.mark.timeout(30)
def test_embedded_survives_malformed_and_oversized_packets(embedded_broker: BrokerHandle) -> None:
    b = embedded_broker
    bad_streams = [
        b"\x10\xff\xff\xff\xff\x01",  # remaining length longer than 4 bytes
        b"\x30\x02\x00\x05",  # PUBLISH before CONNECT
        connect_packet("x")[:-1] + b"\xff",  # CONNECT whose client id is not UTF-8
        b"\x30" + _varint(2 << 20),  # 2 MiB packet, refused before its body is read
    ]
    for data in bad_streams:
        with socket.create_connection((b.host, b.port), timeout=5) as sock:
            sock.sendall(data)
            assert closed_by_peer(sock), data
    after_connect = [
        packet(0x30, _enc("t") + b"x")[:3] + b"\x00\x09t",  # topic longer than the packet
        packet(0x30, _enc("a/+") + b"x"),  # wildcard in a topic name
        packet(0x36, _enc("t") + b"\x00\x01"),  # QoS 3
        packet(0x80, b"\x00\x01" + _enc("a") + b"\x01"),  # SUBSCRIBE with wrong flags
        packet(0x30, _enc("big") + b"x" * (1 << 20)),  # just over the 1 MiB default
    ]
    for i, data in enumerate(after_connect):
        sock = raw_connect(b.port, f"bad{i}")
        with sock:
            sock.sendall(data)
            assert closed_by_peer(sock), data
    wait_until(lambda: stats(b).protocol_errors == len(bad_streams) + len(after_connect))

    async def still_serving() -> list[Any]:
        async with client(b, "ok") as c:
            await c.subscribe("t", qos=1)
            await c.subscribe(DONE, qos=1)
            await c.publish("t", b"fine", qos=1)
            await c.publish(DONE, b"", qos=1)
            return await collect_until_done(c)

    assert run(still_serving()) == [("t", b"fine", 1, False)]


@pytest.mark.timeout(30)
def test_embedded_will_on_abrupt_close_and_keepalive_timeout(embedded_broker: BrokerHandle) -> None:
    b = embedded_broker
    watcher = raw_connect(b.port, "watcher")
    watcher.settimeout(5)
    raw_subscribe(watcher, "wills/#", qos=0)

    polite = raw_connect(b.port, "polite", will=("wills/polite", b"gone"))
    polite.sendall(b"\xe0\x00")  # DISCONNECT: the will is discarded
    polite.close()
    rude = raw_connect(b.port, "rude", will=("wills/rude", b"gone"))
    rude.close()  # no DISCONNECT: the will is published
    assert read_packet(watcher) == (0x30, _enc("wills/rude") + b"gone")

    t0 = time.monotonic()
    silent = raw_connect(b.port, "silent", keepalive=1, will=("wills/silent", b"timeout"))
    assert read_packet(watcher) == (0x30, _enc("wills/silent") + b"timeout")
    assert 1.4 < time.monotonic() - t0 < 6.0  # 1.5 x keepalive
    assert closed_by_peer(silent)
    silent.close()
    watcher.close()


@pytest.mark.timeout(30)
def test_embedded_same_client_id_takes_over(embedded_broker: BrokerHandle) -> None:
    first = raw_connect(embedded_broker.port, "dup")
    second = raw_connect(embedded_broker.port, "dup")
    with first, second:
        assert closed_by_peer(first)
        second.sendall(b"\xc0\x00")  # PINGREQ
        assert read_packet(second) == (0xD0, b"")


@pytest.mark.timeout(30)
def test_embedded_inflight_window_and_queue_limit() -> None:
    """Like mosquitto: max_inflight unacked QoS 1 deliveries, then a bounded queue, then drops."""
    with EmbeddedBroker(max_inflight=3, max_queued=2) as eb:
        sub = raw_connect(eb.port, "slow")
        pub = raw_connect(eb.port, "pub")
        with sub, pub:
            raw_subscribe(sub, "w", qos=1)
            for i in range(10):
                pub.sendall(packet(0x32, _enc("w") + struct.pack("!H", i + 1) + bytes([i])))
                assert read_packet(pub) == (0x40, struct.pack("!H", i + 1))
            delivered = [read_packet(sub) for _ in range(3)]
            assert [body[-1] for _, body in delivered] == [0, 1, 2]
            sub.settimeout(0.3)
            with pytest.raises(TimeoutError):
                read_packet(sub)  # window full
            assert eb.broker.stats.dropped == 5
            sub.settimeout(5)
            for _, body in delivered:  # ack all three: the two queued ones follow
                sub.sendall(packet(0x40, body[3:5]))
            assert [read_packet(sub)[1][-1] for _ in range(2)] == [3, 4]


@pytest.mark.timeout(30)
def test_embedded_with_paho_client(embedded_broker: BrokerHandle) -> None:
    got: list[tuple[str, bytes]] = []
    subscribed, arrived = threading.Event(), threading.Event()

    def on_message(_c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        got.append((msg.topic, msg.payload))
        arrived.set()

    c = paho.Client(CallbackAPIVersion.VERSION2, client_id="paho", protocol=paho.MQTTv311)
    c.on_message = on_message
    c.on_subscribe = lambda *_: subscribed.set()
    c.connect(embedded_broker.host, embedded_broker.port, keepalive=10)
    c.loop_start()
    try:
        c.subscribe("paho/#", qos=1)
        assert subscribed.wait(5)
        c.publish("paho/x", b"hello", qos=1).wait_for_publish(5)
        assert arrived.wait(5)
    finally:
        c.disconnect()
        c.loop_stop()
    assert got == [("paho/x", b"hello")]


@pytest.mark.timeout(30)
def test_minibroker_runs_in_the_callers_loop() -> None:
    async def scenario() -> None:
        async with MiniBroker() as mb, client(mb, "c") as c:
            await c.subscribe(DONE, qos=1)
            await c.publish(DONE, b"", qos=1)
            assert await collect_until_done(c) == []
        with pytest.raises(BrokerError, match="not started"):
            _ = MiniBroker().port
        port = free_port()
        server = asyncio.create_task(serve("127.0.0.1", port))
        await asyncio.sleep(0.1)
        async with aiomqtt.Client("127.0.0.1", port, protocol=V311) as c:
            await c.publish("x", b"y", qos=1)
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)
        assert not port_open(port)

    run(scenario())
