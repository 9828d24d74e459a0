"""`tagwatch serve --http`: the console's API through the public entry point, a real
`tagwatch serve` subprocess against a real mosquitto, spoken to with httpx.

401 without a session or a token; logins right and wrong, limited, and in the access log;
a cookie POST without the CSRF header refused; bearer tokens; /healthz; /metrics parsed
with prometheus-client's own parser, its fixes counter rising with published fixes; and a
walk-in published over MQTT showing in /api/alerts."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.cli.main import main
from engine.store.access.accounts import AccountStore
from tests.helpers import EngineProcess, fix, publish, write_world

pytestmark = [pytest.mark.mqtt, pytest.mark.timeout(120)]

PASSWORD = "correct horse battery"
SUBJECTS = '[[subjects]]\nid = "S1"\ntags = ["T1"]\nrisk = 3\nteam = "north"\n'
FIX = "tagwatch/v1/tags/T1/fix"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def add_user(monkeypatch: pytest.MonkeyPatch, db: Path, name: str, role: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["users", "add", name, "--role", role, "--team", "north", "--db", str(db)]) == 0


def token_for(capsys: pytest.CaptureFixture[str], db: Path, name: str) -> str:
    capsys.readouterr()
    assert main(["users", "token", name, "--db", str(db)]) == 0
    return capsys.readouterr().out.strip()


def wait_healthy(http: httpx.Client, eng: EngineProcess, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert eng.running, eng.log_text()
        try:
            if http.get("/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"console never healthy; log:\n{eng.log_text()}")


@pytest.fixture
def console(
    mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, store_target: str
) -> Iterator[tuple[httpx.Client, EngineProcess, Path, str]]:
    """The console on a SQLite file, and on PostgreSQL."""
    zones, subjects = write_world(tmp_path, subjects_toml=SUBJECTS)
    db: Any = store_target if "://" in store_target else Path(store_target)
    add_user(monkeypatch, db, "alice", "monitor")
    add_user(monkeypatch, db, "bob", "monitor")
    add_user(monkeypatch, db, "bot", "supervisor")
    token = token_for(capsys, db, "bot")
    port = free_port()
    eng = EngineProcess(mosquitto.host, mosquitto.port, zones, subjects, db,
                        extra_args=["--http", f"127.0.0.1:{port}"])  # fmt: skip
    with eng, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10.0) as http:
        wait_healthy(http, eng)
        yield http, eng, db, token
        assert eng.stop() == 0, eng.log_text()
    with pytest.raises(httpx.TransportError):  # SIGTERM took the console down with the engine
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2.0)


def login(http: httpx.Client, name: str, password: str = PASSWORD) -> httpx.Response:
    return http.post("/api/login", json={"username": name, "password": password})


def test_sessions_csrf_tokens_and_the_access_log(console) -> None:
    http, _, db, token = console
    # nothing but login, healthz and metrics without a session or a token
    for path in ("/api/session", "/api/alerts", "/api/nothing-here"):
        assert http.get(path).status_code == 401, path
    assert http.post("/api/logout").status_code == 401
    assert http.get("/api/alerts", headers={"Authorization": "Bearer tw_wrong"}).status_code == 401

    r = login(http, "alice", "not her password")
    assert r.status_code == 401 and "set-cookie" not in r.headers
    assert login(http, "nobody").status_code == 401
    assert http.post("/api/login", content=b"not json").status_code == 400

    r = login(http, "alice")
    assert r.status_code == 200, r.text
    assert r.json()["user"] == "alice" and r.json()["role"] == "monitor"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie
    s = http.get("/api/session")
    assert s.status_code == 200
    assert s.json() == {"user": "alice", "role": "monitor", "team": "north",
                        "csrf": r.json()["csrf"], "via": "session", "tiles": None}  # fmt: skip
    assert http.get("/api/alerts").status_code == 200  # a GET needs no CSRF token

    # a cookie POST without (or with a wrong) X-CSRF-Token is refused, and changes nothing
    assert http.post("/api/logout").status_code == 403
    assert http.post("/api/logout", headers={"X-CSRF-Token": "guess"}).status_code == 403
    assert http.get("/api/session").status_code == 200
    out = http.post("/api/logout", headers={"X-CSRF-Token": s.json()["csrf"]})
    assert out.status_code == 200
    assert http.get("/api/session").status_code == 401  # the session is gone server-side

    # an API token: no cookie, no CSRF header needed
    bearer = httpx.Client(base_url=str(http.base_url), timeout=10.0,
                          headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    with bearer:
        me = bearer.get("/api/session")
        assert me.status_code == 200 and me.json()["user"] == "bot" and me.json()["csrf"] is None
        assert bearer.get("/api/alerts").status_code == 200
        assert bearer.post("/api/nothing-here").status_code == 404  # past auth and CSRF

    # failed logins are limited per user: the 6th attempt is refused unchecked, even right
    for _ in range(5):
        assert login(http, "bob", "wrong password!").status_code == 401
    limited = login(http, "bob")
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
    assert login(http, "alice").status_code == 200  # another user is not held back

    with AccountStore(db) as accounts:
        log = [(r.user, r.client, r.action) for r in accounts.access_log()]
    web = [row for row in log if row[1] != "cli"]
    assert web[:4] == [
        ("alice", "127.0.0.1", "login_failed"),
        ("nobody", "127.0.0.1", "login_failed"),
        ("alice", "127.0.0.1", "login"),
        ("alice", "127.0.0.1", "logout"),
    ]
    assert web[4:] == [("bob", "127.0.0.1", "login_failed")] * 5 + [
        ("bob", "127.0.0.1", "login_limited"),
        ("alice", "127.0.0.1", "login"),
    ]


def metric(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


def test_metrics_healthz_and_a_walk_in_in_the_queue(console, mosquitto) -> None:
    http, eng, _, token = console
    assert http.get("/healthz").json() == {"status": "online"}
    before = http.get("/metrics")
    assert before.status_code == 200 and before.headers["content-type"].startswith("text/plain")
    assert metric(before.text, "tagwatch_fixes_decided_total") == 0
    assert metric(before.text, "tagwatch_engine_online") == 1
    assert metric(before.text, "tagwatch_commit_seconds_count") is not None  # recovery's commit

    # A client that sends half a request and stalls holds up neither the engine nor the
    # console (and not the shutdown at the end: SIGTERM still stops both)
    stalled = socket.create_connection((http.base_url.host, http.base_url.port))
    stalled.sendall(b"GET /api/alerts HTTP/1.1\r\nHost: x\r\n")
    t0 = time.time() - 600  # recent: live, event times are judged on wall time
    walk_in = [(-400, 0), (-250, 0), (-40, 10), (20, -5)]  # two fixes deep inside Z1
    asyncio.run(publish(mosquitto.host, mosquitto.port, [
        (FIX, json.dumps(fix(i, t0 + 60 * i, dx, dy)).encode())
        for i, (dx, dy) in enumerate(walk_in)
    ]))  # fmt: skip

    auth = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + 30
    while True:
        queue = http.get("/api/alerts", params={"state": "open"}, headers=auth).json()
        if any(a["kind"] == "zone_breach" for a in queue) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    breach = [a for a in queue if a["kind"] == "zone_breach"]
    assert len(breach) == 1, (queue, eng.log_text())
    a = breach[0]
    assert (a["subject"], a["zone"], a["state"], a["severity"]) == ("S1", "Z1", "open", "critical")
    assert (a["workflow"], a["actions"], a["team"], a["risk"]) == ("new", [], "north", 3)
    assert http.get("/api/alerts", params={"state": "closed"}, headers=auth).json() == []
    assert http.get("/api/alerts", params={"workflow": "resolved"}, headers=auth).json() == []
    assert http.get("/api/alerts", params={"state": "bogus"}, headers=auth).status_code == 400

    after = http.get("/metrics").text
    assert metric(after, "tagwatch_fixes_decided_total") == len(walk_in)
    assert metric(after, "tagwatch_messages_received_total") == len(walk_in)
    assert metric(after, "tagwatch_open_alerts", kind="zone_breach", severity="critical") == 1
    assert metric(after, "tagwatch_alerts_published_total") >= 1  # type: ignore[operator]
    assert metric(after, "tagwatch_commit_seconds_count") > metric(  # type: ignore[operator]
        before.text, "tagwatch_commit_seconds_count"
    )
    assert metric(after, "tagwatch_publish_failures_total", why="refused") == 0
    assert http.get("/").status_code == 200  # the console's page: coming
    assert eng.stop() == 0, eng.log_text()  # SIGTERM with the stalled client still there
    stalled.close()


def test_http_address_problems_are_clear_errors(tmp_path: Path, capsys) -> None:
    """A port in use, a bad address, half a TLS pair: exit 2 saying so, before the engine
    connects to anything (no broker runs here)."""
    zones, subjects = write_world(tmp_path)
    base = ["serve", "--zones", str(zones), "--subjects", str(subjects),
            "--db", str(tmp_path / "tw.db"), "--broker", "127.0.0.1:1"]  # fmt: skip
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        assert main([*base, "--http", f"127.0.0.1:{port}"]) == 2
    assert f"--http: cannot listen on 127.0.0.1:{port}: Address already in use" in (
        capsys.readouterr().err
    )
    assert main([*base, "--http", "localhost:http"]) == 2
    assert "expected HOST:PORT" in capsys.readouterr().err
    assert main([*base, "--http", "127.0.0.1:0", "--http-cert", "c.pem"]) == 2
    assert "--http-cert and --http-key go together" in capsys.readouterr().err
    for tiles in (
        str(tmp_path / "no-such-dir"),
        "ftp://tiles/{z}/{x}/{y}.png",
        "https://t.example/",
    ):
        assert main([*base, "--http", "127.0.0.1:0", "--http-tiles", tiles]) == 2
        assert "--http-tiles" in capsys.readouterr().err
    assert not (tmp_path / "tw.db").exists()  # nothing was started


def test_under_tls_the_session_cookie_is_secure(
    mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--http-cert/--http-key: the console speaks HTTPS, and its cookie says Secure."""
    import datetime as dt
    import ssl

    from engine.broker.tls import make_ca, make_server_cert, pem

    now = dt.datetime.now(dt.UTC)
    ca = make_ca(now)
    key, cert = make_server_cert(ca, [], now)
    (tmp_path / "ca.pem").write_bytes(pem(ca[1]))
    (tmp_path / "cert.pem").write_bytes(pem(cert))
    (tmp_path / "key.pem").write_bytes(pem(key))
    zones, subjects = write_world(tmp_path, subjects_toml=SUBJECTS)
    db = tmp_path / "tw.db"
    add_user(monkeypatch, db, "alice", "monitor")
    port = free_port()
    tls = ["--http-cert", str(tmp_path / "cert.pem"), "--http-key", str(tmp_path / "key.pem")]
    eng = EngineProcess(mosquitto.host, mosquitto.port, zones, subjects, db,
                        extra_args=["--http", f"127.0.0.1:{port}", *tls])  # fmt: skip
    trust = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    with eng, httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=trust) as http:
        wait_healthy(http, eng)
        r = login(http, "alice")
        assert r.status_code == 200, r.text
        assert "secure" in r.headers["set-cookie"].lower()
        assert http.get("/api/session").json()["user"] == "alice"
        assert eng.stop() == 0, eng.log_text()


@pytest.mark.parametrize("local", [True, False])
def test_a_tile_layer_only_when_the_operator_gives_one(
    mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, local: bool
) -> None:
    """--http-tiles DIR serves the tiles at /tiles/ (same origin); --http-tiles URL lets the
    page's CSP load images from that server alone; /api/session tells the page which."""
    (tmp_path / "tiles" / "3" / "4").mkdir(parents=True)
    (tmp_path / "tiles" / "3" / "4" / "2.png").write_bytes(b"\x89PNG tile")
    given = str(tmp_path / "tiles") if local else "https://{s}.tiles.example/{z}/{x}/{y}.png"
    zones, subjects = write_world(tmp_path, subjects_toml=SUBJECTS)
    db = tmp_path / "tw.db"
    add_user(monkeypatch, db, "alice", "monitor")
    port = free_port()
    eng = EngineProcess(mosquitto.host, mosquitto.port, zones, subjects, db,
                        extra_args=["--http", f"127.0.0.1:{port}", "--http-tiles", given])  # fmt: skip
    with eng, httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
        wait_healthy(http, eng)
        assert login(http, "alice").status_code == 200
        csp = http.get("/").headers["content-security-policy"]
        img = next(d for d in csp.split("; ") if d.startswith("img-src"))
        if local:
            assert http.get("/api/session").json()["tiles"] == "/tiles/{z}/{x}/{y}.png"
            assert http.get("/tiles/3/4/2.png").content == b"\x89PNG tile"
            assert http.get("/tiles/../tw.db").status_code == 404
            assert img == "img-src 'self' data:"
        else:
            assert http.get("/api/session").json()["tiles"] == given
            assert img == "img-src 'self' data: https://*.tiles.example"
            assert http.get("/tiles/3/4/2.png").status_code == 404
        assert eng.stop() == 0, eng.log_text()


def test_hostile_requests_get_clear_answers_and_change_nothing(console) -> None:
    """Garbage, oversized and odd requests to the console: a 4xx saying why, never a 500,
    never a change, and the engine stays healthy."""
    http, eng, _, token = console
    auth = {"Authorization": f"Bearer {token}"}
    bad = [
        ("POST", "/api/alerts/x/note", b"\xff\xfe not json"),
        ("POST", "/api/alerts/x/note", b"[1, 2, 3]"),
        ("POST", "/api/alerts/x/note", b'{"text": ' + b'"a' * 20_000 + b'"}'),
        ("POST", "/api/alerts/x/assign", b'{"to": 7}'),
        ("POST", "/api/alerts/x/frobnicate", b"{}"),
        ("POST", "/api/login", b'{"username": 1, "password": []}'),
    ]
    for method, path, body in bad:
        r = http.request(method, path, content=body, headers=auth)
        assert 400 <= r.status_code < 500 and "error" in r.json(), (path, r.status_code, r.text)
    for path in ("/static/../../engine.log", "/static/%2e%2e/%2e%2e/tw.db", "/tiles/x"):
        assert http.get(path).status_code == 404, path
    assert http.get("/api/alerts", params={"workflow": "x" * 5000}, headers=auth).status_code == 400
    with http.stream("GET", "/api/events", headers={**auth, "Last-Event-ID": "not-a-number"}) as r:
        assert r.status_code == 200
        assert next(r.iter_lines()) == "retry: 1000"
    assert http.get("/healthz").status_code == 200 and eng.running
