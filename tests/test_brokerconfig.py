"""`tagwatch broker-config` against a real mosquitto: TLS, passwords, and who may touch what."""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import os
import pwd
import signal
import socket
import ssl
import subprocess
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from paho.mqtt.enums import CallbackAPIVersion

from engine.broker import credentials
from engine.broker.process import (
    BROKER_PERSISTENCE_OPTIONS,
    BROKER_QUEUE_OPTIONS,
    find_mosquitto,
    free_port,
)
from engine.cli.main import main
from engine.errors import ConfigError
from engine.mqtt import auth as mqttauth

pytestmark = pytest.mark.mqtt

NOT_AUTHORIZED = 0x87  # MQTT 5 reason code; paho maps a v3.1.1 CONNACK refusal 5 to it too
SUBJECTS = """
[[subjects]]
id = "S1"
tags = ["T1"]
[[subjects.protected]]
device = "alice/phone"
radius_m = 500

[[subjects]]
id = "S2"
tags = ["T2"]
[[subjects.protected]]
device = "bob/phone"
radius_m = 500
[[subjects.protected]]
device = "P9"
radius_m = 300

[[gateways]]
id = "GW1"
tags = ["T1", "T2"]
"""
ADDED = """
[[subjects]]
id = "S3"
tags = ["T3"]
"""
# written by mosquitto_passwd 2.0.11 (`mosquitto_passwd -b -c f alice secret`)
MOSQUITTO_PASSWD_LINE = (
    "alice:$7$101$0dp6mPmL+xQ5MCvt$UeNuJ2+OvWyNvRzTgJANSEGXHz1+/dbiHFCQvmQstcK7m7sorM+2gUZWa"
    "LtaMcgu8t5BBQNaiDNZtEMMjP112w=="
)


# -- a broker from a generated directory --------------------------------------------------


@dataclass
class Site:
    out: Path
    port: int
    creds: dict[str, Any]
    proc: subprocess.Popen[bytes]

    def password(self, user: str) -> str:
        for group in ("engine", "monitor", "tags", "units", "phones", "gateways"):
            if user in self.creds.get(group, {}):
                return str(self.creds[group][user]["password"])
        raise KeyError(user)

    def log(self) -> str:
        return (self.out / "mosquitto.log").read_text(errors="replace")


def _mosquitto() -> str:
    exe = find_mosquitto()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but mosquitto is not installed", pytrace=False)
        pytest.skip("mosquitto is not installed")
    return exe


def _generate(subjects: Path, out: Path, port: int, *extra: str) -> int:
    """broker-config through the public entry point; the broker runs as whoever runs the
    tests (root: `user root`), on loopback only."""
    me = pwd.getpwuid(os.geteuid()).pw_name
    argv = ["broker-config", "--subjects", str(subjects), "--out", str(out), "--port", str(port)]
    return main([*argv, "--bind", "127.0.0.1", "--broker-user", me, *extra])


@contextmanager
def running(out: Path, port: int) -> Iterator[Site]:
    """mosquitto -c out/mosquitto.conf, as generated; killed on the way out."""
    exe = _mosquitto()
    log = (out / "mosquitto.log").open("ab")
    proc = subprocess.Popen(
        [exe, "-c", str(out / "mosquitto.conf")],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    creds = tomllib.loads((out / "credentials.toml").read_text())
    site = Site(out, port, creds, proc)
    try:
        deadline = time.monotonic() + 10
        while True:
            assert proc.poll() is None, f"mosquitto exited:\n{site.log()}"
            assert time.monotonic() < deadline, f"mosquitto did not listen:\n{site.log()}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.02)
        yield site
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("brokerconfig")
    (root / "subjects.toml").write_text(SUBJECTS)
    port = free_port()
    assert _generate(root / "subjects.toml", root / "broker", port, "--shards", "2") == 0
    with running(root / "broker", port) as s:
        yield s


class Peer:
    """A paho client driven step by step (no loop thread), so every wait has a bound."""

    def __init__(
        self,
        site: Site,
        username: str | None = None,
        password: str | None = None,
        *,
        tls: bool = True,
        system_ca: bool = False,
        protocol: mqtt.MQTTProtocolVersion = mqtt.MQTTv5,
        client_id: str = "",
    ) -> None:
        self.site = site
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id, protocol=protocol)
        if username is not None:
            self.c.username_pw_set(username, password)
        if tls:
            self.c.tls_set(ca_certs=None if system_ca else str(site.out / "ca.crt"))
        self.connack: Any = None
        self.closed: Any = None
        self.pubacks: dict[int, Any] = {}
        self.subacks: dict[int, list[Any]] = {}
        self.messages: list[tuple[str, bytes]] = []
        self.c.on_connect = lambda _c, _u, _f, rc, _p: setattr(self, "connack", rc)
        self.c.on_disconnect = lambda _c, _u, _f, rc, _p: setattr(self, "closed", rc)
        self.c.on_publish = lambda _c, _u, mid, rc, _p: self.pubacks.__setitem__(mid, rc)
        self.c.on_subscribe = lambda _c, _u, mid, rcs, _p: self.subacks.__setitem__(mid, rcs)
        self.c.on_message = lambda _c, _u, m: self.messages.append((m.topic, bytes(m.payload)))

    def pump(self, done: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting on the broker")
            if self.c.loop(0.02) != mqtt.MQTT_ERR_SUCCESS and self.closed is None:
                self.closed = "lost"

    def connect(self) -> Any:
        """The CONNACK reason code (None if the connection closed without one)."""
        self.c.connect("127.0.0.1", self.site.port, keepalive=30)
        self.pump(lambda: self.connack is not None or self.closed is not None)
        return self.connack

    def ok(self) -> Peer:
        rc = self.connect()
        assert rc is not None and rc.value == 0, rc
        return self

    def publish(self, topic: str, payload: bytes = b"x") -> Any:
        """Publish at QoS 1 and return the PUBACK's reason code."""
        info = self.c.publish(topic, payload, qos=1)
        self.pump(lambda: info.mid in self.pubacks)
        return self.pubacks[info.mid]

    def subscribe(self, *topics: str) -> None:
        for topic in topics:
            _, mid = self.c.subscribe(topic, qos=1)
            self.pump(lambda mid=mid: mid in self.subacks)  # type: ignore[misc]

    def receive_until(self, topic: str, payload: bytes) -> list[tuple[str, bytes]]:
        """Everything received up to and including (topic, payload)."""
        self.pump(lambda: (topic, payload) in self.messages)
        return self.messages[: self.messages.index((topic, payload)) + 1]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop(0.02)


@pytest.fixture
def peers(site: Site) -> Iterator[Callable[..., Peer]]:
    made: list[Peer] = []

    def make(username: str | None = None, password: str | None = None, **kw: Any) -> Peer:
        pw = password if password is not None or username is None else site.password(username)
        made.append(Peer(site, username, pw, **kw))
        return made[-1]

    yield make
    for p in made:
        p.close()


def fix(tag: str, kind: str = "fix") -> str:
    return f"tagwatch/v1/tags/{tag}/{kind}"


# -- 1, 2: tags publish their own fixes and nobody else's ---------------------------------


def test_a_tag_publishes_its_own_fix_and_the_engine_receives_it(peers: Callable[..., Peer]) -> None:
    engine = peers("engine").ok()
    engine.subscribe(fix("+"), fix("+", "fixes"), fix("+", "event"))
    t1 = peers("T1").ok()
    for kind in ("fix", "fixes", "event"):
        assert t1.publish(fix("T1", kind), kind.encode()).value == 0
    got = engine.receive_until(fix("T1", "event"), b"event")
    assert got == [(fix("T1", k), k.encode()) for k in ("fix", "fixes", "event")]


def test_the_engines_priority_lane_logs_in_with_its_password_and_reads_tags_input_only(
    site: Site, peers: Callable[..., Peer]
) -> None:
    """It reads tags' events, and fixes (a watched tag's, engine/mqtt/lanes.py), nothing
    else (not a phone's location) and writes nothing."""
    lane = peers("engine-urgent", site.password("engine")).ok()
    lane.subscribe(fix("+"), fix("+", "event"), "owntracks/#")
    t1, phone = peers("T1").ok(), peers("alice").ok()
    assert t1.publish(fix("T1"), b"a fix").value == 0
    assert phone.publish("owntracks/alice/phone", b"a location").value == 0
    assert t1.publish(fix("T1", "event"), b"an event").value == 0
    assert lane.receive_until(fix("T1", "event"), b"an event") == [
        (fix("T1"), b"a fix"), (fix("T1", "event"), b"an event")
    ]  # fmt: skip
    assert lane.publish("tagwatch/v1/alerts/S1", b"forged").value == NOT_AUTHORIZED
    assert lane.publish("tagwatch/v1/engine/status", b"forged").value == NOT_AUTHORIZED
    assert "engine-urgent" in (site.out / "credentials.toml").read_text()


def test_engine_shards_log_in_with_the_engines_password_and_own_their_status(
    site: Site, peers: Callable[..., Peer]
) -> None:
    """broker-config --shards 2: engine-1-of-2 (and its lane) log in with the engine's
    password, read tags' input and write their own status and checkpoint only; a monitor
    reads every shard's status."""
    shard = peers("engine-1-of-2", site.password("engine")).ok()
    shard.subscribe(fix("+"))
    assert peers("engine-1-of-2-urgent", site.password("engine")).ok()
    t1 = peers("T1").ok()
    assert t1.publish(fix("T1"), b"a fix").value == 0
    assert shard.receive_until(fix("T1"), b"a fix") == [(fix("T1"), b"a fix")]
    own = "tagwatch/v1/engine/status/1-of-2"
    assert shard.publish(own, b"online").value < 0x80  # 16: accepted, nobody listening
    for other in ("tagwatch/v1/engine/status", "tagwatch/v1/engine/status/0-of-2"):
        assert shard.publish(other, b"forged").value == NOT_AUTHORIZED
    assert shard.publish("tagwatch/v1/engine/checkpoint/1-of-2", b"cp").value < 0x80
    monitor = peers("monitor").ok()
    monitor.subscribe("tagwatch/v1/engine/status/+")
    assert shard.publish(own, b"again").value == 0
    assert (own, b"again") in monitor.receive_until(own, b"again")
    text = (site.out / "credentials.toml").read_text()
    assert "engine-0-of-2" in text and "engine-1-of-2-urgent" in text


def test_a_gateway_publishes_on_its_own_batch_topic_only(peers: Callable[..., Peer]) -> None:
    engine = peers("engine").ok()
    engine.subscribe("tagwatch/v1/gateway/+/fixes", fix("+"))
    gw = peers("GW1").ok()
    mine = "tagwatch/v1/gateway/GW1/fixes"
    forged = ["tagwatch/v1/gateway/GW2/fixes", fix("T1"), "tagwatch/v1/alerts/S1"]
    assert [gw.publish(t, b"forged").value for t in forged] == [NOT_AUTHORIZED] * 3
    assert gw.publish(mine, b"[]").value == 0
    assert engine.receive_until(mine, b"[]") == [(mine, b"[]")]


@pytest.mark.parametrize("protocol", [mqtt.MQTTv5, mqtt.MQTTv311], ids=["v5", "v311"])
def test_a_tag_cannot_publish_as_another_tag(
    peers: Callable[..., Peer], protocol: mqtt.MQTTProtocolVersion
) -> None:
    engine = peers("engine").ok()
    engine.subscribe(fix("+"), "tagwatch/v1/alerts/#")
    t1 = peers("T1", protocol=protocol).ok()
    forged = [fix("T2"), fix("P9"), "tagwatch/v1/alerts/S2", "owntracks/alice/phone"]
    codes = [t1.publish(topic, b"forged").value for topic in forged]
    if protocol == mqtt.MQTTv5:
        assert codes == [NOT_AUTHORIZED] * len(forged)
    else:  # MQTT 3.1.1 has no way to say no: the PUBACK says success and the message is dropped
        assert codes == [0] * len(forged)
    assert t1.publish(fix("T1"), b"sentinel").value == 0
    got = engine.receive_until(fix("T1"), b"sentinel")
    assert got == [(fix("T1"), b"sentinel")]  # nothing forged arrived before it


# -- 3, 4: logging in ---------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [mqtt.MQTTv5, mqtt.MQTTv311], ids=["v5", "v311"])
def test_anonymous_wrong_password_and_unknown_users_are_refused_at_connect(
    site: Site, peers: Callable[..., Peer], protocol: mqtt.MQTTProtocolVersion
) -> None:
    attempts = {
        "anonymous": peers(protocol=protocol),
        "wrong password": peers("T1", "not-the-password", protocol=protocol),
        "T2's password as T1": peers("T1", site.password("T2"), protocol=protocol),
        "unknown user": peers("mallory", site.password("T1"), protocol=protocol),
    }
    for what, peer in attempts.items():
        rc = peer.connect()
        assert rc is not None and rc.value == NOT_AUTHORIZED, f"{what}: {rc}"
    assert peers("T1", protocol=protocol).connect().value == 0  # the right one still works


def test_tls_needs_the_ca_and_plain_tcp_gets_nothing(peers: Callable[..., Peer]) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        peers("T1", system_ca=True).connect()  # the system's CAs never signed our broker
    plain = peers("T1", tls=False)
    assert plain.connect() is None  # mosquitto closes the connection: no CONNACK
    assert plain.closed is not None


def test_the_certificate_names_the_broker_and_keys_are_private(site: Site) -> None:
    cert = x509.load_pem_x509_certificate((site.out / "server.crt").read_bytes())
    ca = x509.load_pem_x509_certificate((site.out / "ca.crt").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost"}
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    assert cert.issuer == ca.subject
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    ca_life = ca.not_valid_after_utc - ca.not_valid_before_utc
    assert dt.timedelta(days=3649) < ca_life < dt.timedelta(days=3652)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= dt.timedelta(days=826)
    for name in ("ca.key", "credentials.toml"):
        assert (site.out / name).stat().st_mode & 0o777 == 0o600, name
    for name in ("server.key", "passwd"):  # the broker's user reads them through its group
        assert (site.out / name).stat().st_mode & 0o077 in (0o000, 0o040), name
    conf = (site.out / "mosquitto.conf").read_text()
    settings = [ln for ln in conf.splitlines() if ln and not ln.startswith("#")]
    for opt in (*BROKER_QUEUE_OPTIONS, *BROKER_PERSISTENCE_OPTIONS, "allow_anonymous false"):
        assert opt in settings
    paths = [
        ln.split(None, 1)[1] for ln in settings if ln.split()[0].endswith(("file", "location"))
    ]
    assert len(paths) == 6 and all(p.startswith(str(site.out) + "/") for p in paths)


# -- 5, 6: monitors, phones, commands -----------------------------------------------------


def test_a_monitor_reads_alerts_but_cannot_publish_them_nor_read_fixes(
    peers: Callable[..., Peer],
) -> None:
    monitor = peers("monitor").ok()
    monitor.subscribe("tagwatch/v1/alerts/#", "tagwatch/v1/engine/status", fix("+"), "owntracks/#")
    assert monitor.publish("tagwatch/v1/alerts/S1", b"fake alert").value == NOT_AUTHORIZED
    assert monitor.publish(fix("T1"), b"fake fix").value == NOT_AUTHORIZED
    assert peers("T1").ok().publish(fix("T1"), b"a fix").value == 0
    assert peers("alice").ok().publish("owntracks/alice/phone", b"a phone fix").value == 0
    engine = peers("engine").ok()
    assert engine.publish("tagwatch/v1/engine/status", b"online").value == 0
    assert engine.publish("tagwatch/v1/alerts/S1", b"real alert").value == 0
    got = monitor.receive_until("tagwatch/v1/alerts/S1", b"real alert")
    assert got == [
        ("tagwatch/v1/engine/status", b"online"),
        ("tagwatch/v1/alerts/S1", b"real alert"),
    ]


def test_no_one_can_take_over_the_engines_session_by_its_client_id(
    peers: Callable[..., Peer],
) -> None:
    engine = peers("engine", client_id="tagwatch-engine").ok()
    engine.subscribe(fix("+"))
    hijack = peers("T1", client_id="tagwatch-engine")
    assert hijack.connect().value == 0  # as client "T1": the username replaces the id
    assert hijack.publish(fix("T1"), b"from the hijacker").value == 0
    assert engine.receive_until(fix("T1"), b"from the hijacker")  # the engine is still on
    assert engine.closed is None
    peers("T1").ok()  # the same username twice: the newer connection wins
    hijack.pump(lambda: hijack.closed is not None)


def test_a_phone_publishes_only_its_own_owntracks_topic(peers: Callable[..., Peer]) -> None:
    engine = peers("engine").ok()
    engine.subscribe("owntracks/#", fix("+"))
    alice = peers("alice").ok()
    for topic in ("owntracks/bob/phone", "owntracks/alice/tablet", fix("T1"), fix("alice")):
        assert alice.publish(topic, b"forged").value == NOT_AUTHORIZED, topic
    assert alice.publish("owntracks/alice/phone", b"mine").value == 0
    assert engine.receive_until("owntracks/alice/phone", b"mine") == [
        ("owntracks/alice/phone", b"mine")
    ]


def test_a_protected_unit_publishes_on_the_tag_topics_under_its_own_id(
    peers: Callable[..., Peer],
) -> None:
    engine = peers("engine").ok()
    engine.subscribe(fix("+"))
    unit = peers("P9").ok()
    assert unit.publish(fix("T2"), b"forged").value == NOT_AUTHORIZED
    assert unit.publish(fix("P9"), b"mine").value == 0
    assert engine.receive_until(fix("P9"), b"mine") == [(fix("P9"), b"mine")]


def test_a_tag_reads_its_own_commands_and_no_one_elses(peers: Callable[..., Peer]) -> None:
    t1 = peers("T1").ok()
    t1.subscribe(fix("T2", "cmd"), fix("T1", "cmd"), fix("+"), "owntracks/#", "tagwatch/#")
    engine = peers("engine").ok()
    assert engine.publish(fix("T2", "cmd"), b'{"rate_s": 15.0}').value == 0
    assert peers("T2").ok().publish(fix("T2"), b"T2's fix").value == 0
    assert peers("alice").ok().publish("owntracks/alice/phone", b"victim").value == 0
    assert engine.publish(fix("T1", "cmd"), b'{"rate_s": 60.0}').value == 0
    got = t1.receive_until(fix("T1", "cmd"), b'{"rate_s": 60.0}')
    assert got == [(fix("T1", "cmd"), b'{"rate_s": 60.0}')]


def test_mqttauth_connects_aiomqtt_with_tls_and_a_password_file(site: Site, tmp_path: Path) -> None:
    pwfile = tmp_path / "engine.password"
    pwfile.write_text(site.password("engine") + "\n")
    parser = argparse.ArgumentParser()
    mqttauth.add_arguments(parser)
    argv = ["--username", "engine", "--password-file", str(pwfile)]
    args = parser.parse_args([*argv, "--cafile", str(site.out / "ca.crt")])
    auth = mqttauth.MqttAuth.from_args(args, environ={})
    assert auth.password == site.password("engine") and "password=" not in repr(auth)

    async def roundtrip(a: mqttauth.MqttAuth) -> bytes:
        async with aiomqtt.Client("127.0.0.1", site.port, **a.kwargs()) as c:
            await c.subscribe("tagwatch/v1/engine/status", qos=1)
            await c.publish("tagwatch/v1/engine/status", b"via aiomqtt", qos=1)
            async for m in c.messages:
                return bytes(m.payload)  # type: ignore[arg-type]
        raise AssertionError("no message")

    assert asyncio.run(asyncio.wait_for(roundtrip(auth), 10)) == b"via aiomqtt"
    wrong = mqttauth.MqttAuth("engine", "wrong", auth.cafile)
    with pytest.raises(aiomqtt.MqttCodeError, match="Not authorized"):
        asyncio.run(asyncio.wait_for(roundtrip(wrong), 10))


def test_mqttauth_takes_passwords_from_a_file_or_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = argparse.ArgumentParser()
    mqttauth.add_arguments(p)
    for argv in (["--password", "hunter2"], ["--password=hunter2"], ["--passw", "hunter2"]):
        with pytest.raises(SystemExit):
            p.parse_args(argv)
        err = capsys.readouterr().err
        assert "--password-file" in err and "hunter2" not in err
    env = {mqttauth.PASSWORD_ENV: "from-env"}
    auth = mqttauth.MqttAuth.from_args(p.parse_args(["--username", "u"]), environ=env)
    assert (auth.password, auth.kwargs()) == ("from-env", {"username": "u", "password": "from-env"})
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        mqttauth.MqttAuth.from_args(
            p.parse_args(["--username", "u", "--password-file", str(empty)])
        )
    with pytest.raises(ConfigError, match="--username"):
        mqttauth.MqttAuth.from_args(p.parse_args([]), environ=env)
    with pytest.raises(ConfigError, match="no such file"):
        mqttauth.MqttAuth.from_args(p.parse_args(["--cafile", str(tmp_path / "nope")]), environ={})


# -- 7: the command line ------------------------------------------------------------------


def _creds(out: Path) -> dict[str, Any]:
    return tomllib.loads((out / "credentials.toml").read_text())


def _san(out: Path) -> list[str]:
    cert = x509.load_pem_x509_certificate((out / "server.crt").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(v) for v in san.get_values_for_type(x509.DNSName)]


def test_force_keeps_the_ca_and_passwords_and_a_reloaded_broker_lets_new_tags_in(
    tmp_path: Path,
) -> None:
    subjects, out, port = tmp_path / "subjects.toml", tmp_path / "broker", free_port()
    subjects.write_text(SUBJECTS)
    assert _generate(subjects, out, port) == 0
    ca, creds = (out / "ca.crt").read_bytes(), _creds(out)
    passwd = dict(ln.split(":", 1) for ln in (out / "passwd").read_text().splitlines())
    with running(out, port) as site:
        alice = Peer(site, "alice", site.password("alice")).ok()
        subjects.write_text(SUBJECTS + ADDED)
        assert _generate(subjects, out, port, "--force", "--host", "tags.example.org") == 0
        site.proc.send_signal(signal.SIGHUP)  # reloads passwd, acl and the certificate
        site.creds = _creds(out)
        deadline = time.monotonic() + 5
        while (rc := Peer(site, "T3", site.password("T3")).connect()).value != 0:
            assert time.monotonic() < deadline, rc
            time.sleep(0.05)
        assert Peer(site, "T1", creds["tags"]["T1"]["password"]).connect().value == 0
        assert not alice.publish("owntracks/alice/phone").is_failure  # still connected
    assert (out / "ca.crt").read_bytes() == ca
    new = _creds(out)
    for group in ("engine", "monitor", "phones", "units"):
        assert new[group] == creds[group]
    assert new["tags"] == {**creds["tags"], "T3": new["tags"]["T3"]}
    new_passwd = dict(ln.split(":", 1) for ln in (out / "passwd").read_text().splitlines())
    assert {u: h for u, h in new_passwd.items() if u != "T3"} == passwd  # hashes kept too
    assert "tags.example.org" in _san(out)


def test_force_rotates_retires_restores_and_remembers_its_settings(tmp_path: Path) -> None:
    subjects, out, port = tmp_path / "subjects.toml", tmp_path / "broker", free_port()
    subjects.write_text(SUBJECTS)
    assert _generate(subjects, out, port, "--host", "tags.example.org") == 0
    creds = _creds(out)
    argv = ["broker-config", "--subjects", str(subjects), "--out", str(out), "--force"]

    assert main([*argv, "--rotate", "T1"]) == 0
    rotated = _creds(out)
    assert rotated["tags"]["T1"]["password"] != creds["tags"]["T1"]["password"]
    assert rotated["tags"]["T2"] == creds["tags"]["T2"]

    subjects.write_text(SUBJECTS.split('[[subjects]]\nid = "S2"')[0])  # S2 removed by mistake
    assert main(argv) == 0
    assert {"T2", "bob", "P9", "GW1"} == set(_creds(out)["retired"])  # GW1's table went too
    assert "T2:" not in (out / "passwd").read_text()
    assert "user T2\n" not in (out / "acl").read_text()
    subjects.write_text(SUBJECTS)  # and put back: the same passwords again
    assert main(argv) == 0
    restored = _creds(out)
    assert restored["tags"]["T2"] == creds["tags"]["T2"] and "retired" not in restored

    assert main([*argv, "--rotate-all"]) == 0
    everyone = _creds(out)
    for group in ("engine", "monitor", "tags", "phones", "units", "gateways"):
        for user, entry in everyone[group].items():
            assert entry["password"] != restored[group][user]["password"], (group, user)
    # not given again, yet remembered: port, bind address, broker user, hosts
    assert f"listener {port} 127.0.0.1\n" in (out / "mosquitto.conf").read_text()
    assert everyone["broker"]["hosts"] == ["tags.example.org"] and everyone["broker"]["run_as"]
    assert "tags.example.org" in _san(out)


def test_an_existing_directory_is_not_overwritten_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    subjects, out = tmp_path / "subjects.toml", tmp_path / "broker"
    subjects.write_text(SUBJECTS)
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    argv = ["broker-config", "--subjects", str(subjects), "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--force" in err and "notes.txt" in err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert main([*argv, "--force"]) == 0
    assert "passwords: 9 new, 0 kept" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (None, "file not found"),
        ("[[subjects]\nid = 1", "not valid TOML"),
        ('[[subjects]]\nid = "S1"\ntags = ["T+1"]', "'T+1'"),
        ('[[subjects]]\nid = "S1"\ntags = ["T 1"]', "'T 1'"),
        ('[[subjects]]\nid = "S1"\ntags = ["T\\u00071"]', "U+0007"),
        ('[[subjects]]\nid = "S1"\ntags = ["T:1"]', "'T:1'"),
        ('[[subjects]]\nid = "S1"\ntags = ["T1", "T2", "T1"]\nrisk = 0', "(and 1 more problem)"),
    ],
    ids=["missing", "toml", "wildcard", "space", "control", "colon", "several"],
)
def test_a_bad_subjects_file_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str | None, named: str
) -> None:
    subjects = tmp_path / "subjects.toml"
    if text is not None:
        subjects.write_text(text)
    rc = main(["broker-config", "--subjects", str(subjects), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("tagwatch: error: ") and err.count("\n") == 1, err
    assert named in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("tags", "devices", "named"),
    [
        (["engine"], [], "'engine'"),
        (["monitor"], [], "'monitor'"),
        (["T1"], ["T1/phone"], "'T1'"),
        (["T1"], ["engine/phone"], "'engine'"),
        (["T1"], ["P1", "P1/phone"], "'P1'"),
        (["T1"], ["a/b/c"], "'a/b/c'"),
        (["T1"], ["al ice/phone"], "'al ice/phone'"),
    ],
)
def test_usernames_that_collide_or_cannot_be_usernames_are_errors(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    tags: list[str],
    devices: list[str],
    named: str,
) -> None:
    text = f'[[subjects]]\nid = "S1"\ntags = {tags!r}\n'.replace("'", '"')
    for d in devices:
        text += f'[[subjects.protected]]\ndevice = "{d}"\nradius_m = 100\n'
    (tmp_path / "subjects.toml").write_text(text)
    argv = ["broker-config", "--subjects", str(tmp_path / "subjects.toml")]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and named in err, err


def test_an_unusable_out_directory_or_host_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "subjects.toml").write_text(SUBJECTS)
    (tmp_path / "file").write_text("")
    argv = ["broker-config", "--subjects", str(tmp_path / "subjects.toml")]
    assert main([*argv, "--out", str(tmp_path / "file" / "broker")]) == 2
    assert "cannot use --out" in capsys.readouterr().err
    assert main([*argv, "--out", str(tmp_path / "b"), "--host", "bad host"]) == 2
    assert "'bad host'" in capsys.readouterr().err
    assert main([*argv, "--out", str(tmp_path / "b"), "--bind", "0.0.0.0\nuser root"]) == 2
    assert "--bind" in capsys.readouterr().err
    assert main([*argv, "--out", str(tmp_path / "b\nuser root")]) == 2
    assert "control character" in capsys.readouterr().err
    assert main([*argv, "--out", str(tmp_path / "b"), "--broker-user", "no-such-user-x"]) == 2
    assert "no-such-user-x" in capsys.readouterr().err


def test_password_hashes_are_mosquitto_passwd_compatible() -> None:
    user, encoded = MOSQUITTO_PASSWD_LINE.split(":", 1)
    assert credentials.check_password("secret", encoded)
    assert not credentials.check_password("Secret", encoded)
    salt = base64.b64decode(encoded.split("$")[3])
    assert f"{user}:{credentials.hash_password('secret', salt)}" == MOSQUITTO_PASSWD_LINE
    fresh = credentials.hash_password("pw")
    assert fresh.startswith("$7$101$") and fresh != credentials.hash_password("pw")


# -- one bad tag hurts only itself (issue 13, item 3) -------------------------------------------


def test_a_packet_over_the_engines_payload_limit_disconnects_the_tag(
    peers: Callable[..., Peer],
) -> None:
    """max_packet_size: the broker, not the engine, refuses what the engine would
    dead-letter anyway (before: a 10 MB publish was accepted and queued for the engine)."""
    engine = peers("engine").ok()
    engine.subscribe(fix("+", "fixes"))
    t1 = peers("T1").ok()
    biggest = b"[" + b" " * (262_144 - 2) + b"]"  # the engine's payload limit: still delivered
    assert t1.publish(fix("T1", "fixes"), biggest).value == 0
    assert engine.receive_until(fix("T1", "fixes"), biggest)
    t1.c.publish(fix("T1", "fixes"), b"[" + b" " * 400_000 + b"]", qos=1)
    t1.pump(lambda: t1.closed is not None)
    assert [m for m in engine.messages if len(m[1]) > 262_144] == []
    conf = (engine.site.out / "mosquitto.conf").read_text()
    assert "\nmax_packet_size 266240\n" in conf


def test_a_tags_qos0_reaches_the_engine_at_qos1_and_qos2_is_refused(
    peers: Callable[..., Peer],
) -> None:
    """QoS 0 from a tag would reach the engine unacknowledged: no Receive Maximum
    back-pressure, and lost while the engine is down. upgrade_outgoing_qos delivers it at
    the engine's subscription QoS (1); max_qos 1 refuses QoS 2 at the listener."""
    engine = peers("engine").ok()
    got: list[int] = []
    engine.c.on_message = lambda _c, _u, m: (
        got.append(m.qos),
        engine.messages.append((m.topic, bytes(m.payload))),
    )
    engine.subscribe(fix("+"))
    t1 = peers("T1").ok()
    t1.c.publish(fix("T1"), b"qos0", qos=0)
    engine.receive_until(fix("T1"), b"qos0")
    assert got == [1]
    t2 = peers("T2").ok()
    t2.c.publish(fix("T2"), b"qos2", qos=2)
    t2.pump(lambda: t2.closed is not None)
    assert (fix("T2"), b"qos2") not in engine.messages
