"""The console's casework through `tagwatch serve --http` (a real subprocess, a real
mosquitto): alert pages, workflow actions, the live feed, teams and the access log.

A walk-in for a north subject and one for a south subject; a north monitor sees only
hers in the queue and the live feed, opens the other only with a reason (logged, and
flagged for the supervisor); acknowledges, notes, assigns and resolves through the API
with the CSRF header; every action is published over MQTT as an alert record, stands in
`tagwatch audit alert` and leaves `audit verify` passing; the feed reconnects after an
engine restart and catches up with what happened meanwhile."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.cli.main import main
from tests.helpers import AlertCollector, EngineProcess, fix, publish, square, write_world
from tests.test_console_http import PASSWORD, free_port, login, wait_healthy

pytestmark = [pytest.mark.mqtt, pytest.mark.timeout(180)]

SUBJECTS = (
    '[[subjects]]\nid = "S1"\ntags = ["T1"]\nrisk = 3\nteam = "north"\n'
    '[[subjects]]\nid = "S2"\ntags = ["T2"]\nrisk = 2\nteam = "south"\n'
)
ZONES = [
    {"type": "Feature", "properties": {"id": f"Z{i}", "subject": f"S{i}", "kind": "exclusion"},
     "geometry": {"type": "Polygon", "coordinates": [square(100.0)]}}
    for i in (1, 2)
]  # fmt: skip
WALK_IN = [(-400, 0), (-250, 0), (-40, 10), (20, -5)]


def add_user(monkeypatch: pytest.MonkeyPatch, db: Path, name: str, role: str, team: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["users", "add", name, "--role", role, "--team", team, "--db", str(db)]) == 0


def walk_in(host: str, port: int, tag: str, t0: float) -> None:
    asyncio.run(publish(host, port, [
        (f"tagwatch/v1/tags/{tag}/fix", json.dumps(fix(i, t0 + 60 * i, dx, dy)).encode())
        for i, (dx, dy) in enumerate(WALK_IN)
    ]))  # fmt: skip


class Browser:
    """A logged-in session (cookie + CSRF) and, like EventSource, a live feed that
    reconnects with Last-Event-ID whenever the stream ends."""

    def __init__(self, base: str, name: str) -> None:
        self.http = httpx.Client(base_url=base, timeout=10.0)
        r = login(self.http, name)
        assert r.status_code == 200, r.text
        self.csrf = r.json()["csrf"]
        self.events: list[dict[str, Any]] = []  # event: alert
        self.notices: list[dict[str, Any]] = []  # event: access (supervisors)
        self.last_id: str | None = None
        self.connects = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def post(
        self, path: str, body: dict[str, Any] | None = None, csrf: bool = True
    ) -> httpx.Response:
        headers = {"X-CSRF-Token": self.csrf} if csrf else {}
        return self.http.post(path, json=body or {}, headers=headers)

    def _listen(self) -> None:
        while not self._stop.is_set():
            headers = {"Last-Event-ID": self.last_id} if self.last_id else {}
            try:
                with self.http.stream("GET", "/api/events", headers=headers, timeout=30.0) as r:
                    self.connects += 1
                    data, eid, kind = None, None, "message"
                    for line in r.iter_lines():
                        if line.startswith("id: "):
                            eid = line[4:]
                        elif line.startswith("event: "):
                            kind = line[7:]
                        elif line.startswith("data: "):
                            data = line[6:]
                        elif line == "" and data is not None:
                            if kind == "alert":
                                self.events.append(json.loads(data))
                                self.last_id = eid
                            else:
                                self.notices.append({"event": kind, **json.loads(data)})
                            data, kind = None, "message"
            except httpx.HTTPError:
                pass
            time.sleep(0.3)

    def wait_event(self, pred: Any, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in list(self.events):
                if pred(e):
                    return e
            time.sleep(0.05)
        raise AssertionError(f"no such event; got {self.events}")

    def close(self) -> None:
        self._stop.set()
        self.http.close()


@pytest.fixture
def world(
    mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_target: str
) -> Iterator[dict[str, Any]]:
    """The console on a SQLite file, and on PostgreSQL."""
    zones, subjects = write_world(tmp_path, ZONES, SUBJECTS)
    db: Any = store_target if "://" in store_target else Path(store_target)
    for name, role, team in (("alice", "monitor", "north"), ("carol", "monitor", "south"),
                             ("sue", "supervisor", "north"), ("ada", "admin", "north")):  # fmt: skip
        add_user(monkeypatch, db, name, role, team)
    port = free_port()
    eng = EngineProcess(mosquitto.host, mosquitto.port, zones, subjects, db,
                        extra_args=["--http", f"127.0.0.1:{port}"])  # fmt: skip
    with eng, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10.0) as http:
        wait_healthy(http, eng)
        yield {"http": http, "eng": eng, "db": db, "base": f"http://127.0.0.1:{port}"}
        if eng.running:
            assert eng.stop() == 0, eng.log_text()


def test_teams_actions_feed_and_the_access_log(world, mosquitto, capsys) -> None:
    eng, db, base = world["eng"], world["db"], world["base"]
    for path in ("/api/alerts/x", "/api/subjects/S1", "/api/access", "/api/users", "/api/events"):
        assert world["http"].get(path).status_code == 401, path
    assert world["http"].post("/api/alerts/x/ack").status_code == 401
    alice, sue = Browser(base, "alice"), Browser(base, "sue")
    collector = AlertCollector(mosquitto.host, mosquitto.port)

    async def scenario() -> list[Any]:
        async with collector:
            t0 = time.time() - 600
            await asyncio.to_thread(walk_in, mosquitto.host, mosquitto.port, "T1", t0)
            await asyncio.to_thread(walk_in, mosquitto.host, mosquitto.port, "T2", t0)
            mine = await asyncio.to_thread(
                alice.wait_event, lambda e: e["subject"] == "S1" and e["kind"] == "zone_breach"
            )
            other = await asyncio.to_thread(
                sue.wait_event, lambda e: e["subject"] == "S2" and e["kind"] == "zone_breach"
            )
            aid = mine["id"]
            # the queue and the feed of a north monitor hold no south subject
            q = alice.http.get("/api/alerts").json()
            assert {a["subject"] for a in q} == {"S1"}, q
            assert {a["subject"] for a in sue.http.get("/api/alerts").json()} == {"S1", "S2"}

            page = alice.http.get(f"/api/alerts/{aid}").json()
            assert page["alert"]["id"] == aid and page["zone"]["id"] == "Z1"
            assert page["zone"]["geometry"]["type"] == "Polygon"
            assert len(page["track"]) == len(WALK_IN) and page["fixes"]
            assert {(f["tag"], f["seq"]) for f in page["fixes"]} <= {
                (p["tag"], p["seq"]) for p in page["track"]
            }
            assert page["records"][0]["state"] == "open"
            pack = alice.http.get(f"/api/alerts/{aid}/export")
            assert pack.status_code == 200 and pack.headers["content-type"] == "application/zip"
            with zipfile.ZipFile(io.BytesIO(pack.content)) as z:
                assert sorted(n.rsplit(".", 1)[1] for n in z.namelist()) == [
                    "geojson",
                    "json",
                    "pdf",
                ]
                assert z.read(next(n for n in z.namelist() if n.endswith(".pdf")))[:5] == b"%PDF-"
            assert alice.http.get("/api/alerts/nope/export").status_code == 404
            # another team's: refused without a reason, logged and flagged with one
            no = alice.http.get(f"/api/alerts/{other['id']}")
            assert no.status_code == 403 and no.json()["need_reason"] is True
            yes = alice.http.get(f"/api/alerts/{other['id']}", params={"reason": "duty cover"})
            assert yes.status_code == 200 and yes.json()["subject"]["team"] == "south"
            assert alice.post(f"/api/alerts/{other['id']}/ack").status_code == 403

            # the workflow, by cookie with the CSRF header
            assert alice.post(f"/api/alerts/{aid}/ack", csrf=False).status_code == 403
            ack = alice.post(f"/api/alerts/{aid}/ack")
            assert ack.status_code == 200, ack.text
            assert (ack.json()["workflow"], ack.json()["state"]) == ("acknowledged", "acknowledged")
            assert alice.post(f"/api/alerts/{aid}/ack").status_code == 409
            assert (
                alice.post(f"/api/alerts/{aid}/note", {"text": "called probation"}).status_code
                == 200
            )
            assert alice.post(f"/api/alerts/{aid}/assign", {"to": "nobody"}).status_code == 400
            assert alice.post(f"/api/alerts/{aid}/assign", {"to": "carol"}).status_code == 200
            assert (
                alice.post(f"/api/alerts/{aid}/resolve", {"outcome": "guilty"}).status_code == 400
            )
            done = alice.post(f"/api/alerts/{aid}/resolve",
                              {"outcome": "false_alarm", "note": "at the bus stop"})  # fmt: skip
            assert done.status_code == 200 and done.json()["outcome"] == "false_alarm"
            assert done.json()["assigned"] == "carol"
            assert [a["action"] for a in done.json()["actions"]] == [
                "ack",
                "note",
                "assign",
                "resolve",
            ]
            assert alice.post(f"/api/alerts/{aid}/reopen").status_code == 403
            assert alice.post("/api/alerts/nope/ack").status_code == 404
            # both browsers saw it live
            for b in (alice, sue):
                b.wait_event(lambda e: e["id"] == aid and e["workflow"] == "resolved")
            await collector.wait_for(
                lambda got: any(a.id == aid and a.workflow == "resolved" for a in got)
            )
            return collector.alerts

    published = asyncio.run(scenario())
    aid = next(a.id for a in published if a.subject == "S1")
    actions = [a for a in published if a.id == aid and a.workflow is not None]
    assert [a.workflow for a in actions] == ["acknowledged"] * 3 + ["resolved"]
    assert actions[-1].actions and actions[-1].actions[0]["user"] == "alice"

    # the supervisor: the flagged view, the access log, reopen, reports; admin: users
    flagged = sue.http.get("/api/access", params={"flagged": "1"}).json()
    assert [(r["user"], r["subject"], r["reason"]) for r in flagged] == [
        ("alice", "S2", "duty cover")
    ]
    log = sue.http.get("/api/access").json()
    assert any(
        r["user"] == "alice" and r["action"] == "view_alert" and r["alert"] == aid for r in log
    )
    assert alice.http.get("/api/access").status_code == 403
    assert alice.http.get("/api/users").status_code == 403
    ada = Browser(base, "ada")
    assert {u["name"] for u in ada.http.get("/api/users").json()} == {
        "alice",
        "carol",
        "sue",
        "ada",
    }
    re = sue.post(f"/api/alerts/{aid}/reopen")
    assert re.status_code == 200 and re.json()["workflow"] == "acknowledged"
    report = sue.http.get("/api/reports/outcomes").json()
    assert any(r["subject"] == "S1" and r["alerts"] == 1 for r in report)

    # an engine restart: the feed reconnects and catches up with what came meanwhile
    connects = sue.connects
    assert eng.stop() == 0, eng.log_text()
    # queued by the broker meanwhile: the tag starts its seqs again (a restarted tag)
    walk_in(mosquitto.host, mosquitto.port, "T1", time.time() - 300)
    eng.restart()
    wait_healthy(world["http"], eng)
    late = sue.wait_event(lambda e: e["subject"] == "S1" and e["id"] != aid, timeout=30)
    assert late["kind"] == "device_restart", late
    assert sue.connects > connects
    for b in (alice, sue, ada):
        b.close()
    assert eng.stop() == 0, eng.log_text()

    capsys.readouterr()
    assert main(["audit", "alert", aid, "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert '"workflow":"resolved"' in out and '"outcome":"false_alarm"' in out
    assert main(["audit", "verify", "--db", str(db)]) == 0


def test_an_acknowledgement_survives_kill_9_and_reaches_a_subscriber(
    world, mosquitto, monkeypatch
) -> None:
    """The answer to an action means it is durable: SIGKILL the engine the moment the ack
    returns. A monitoring system subscribed with a persistent session (away meanwhile) gets
    the acknowledgement record whether it left before the kill (queued by the broker) or
    only from the outbox after the restart; the workflow stands and the ledger verifies."""
    import aiomqtt

    eng, base = world["eng"], world["base"]

    async def subscriber(collect: float) -> list[Any]:
        got: list[Any] = []
        async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="case-system",
                                  clean_session=False) as c:  # fmt: skip
            await c.subscribe("tagwatch/v1/alerts/+", qos=1)
            deadline = time.monotonic() + collect
            while time.monotonic() < deadline:
                try:
                    m = await asyncio.wait_for(anext(c.messages), deadline - time.monotonic())
                except TimeoutError:
                    break
                got.append(json.loads(m.payload))  # type: ignore[arg-type]
                if got[-1].get("workflow"):
                    break
        return got

    asyncio.run(subscriber(0.1))  # the persistent session exists; then it is away
    alice = Browser(base, "alice")
    try:
        walk_in(mosquitto.host, mosquitto.port, "T1", time.time() - 600)
        aid = alice.wait_event(lambda e: e["kind"] == "zone_breach")["id"]
        assert alice.post(f"/api/alerts/{aid}/ack").status_code == 200
        eng.kill()
    finally:
        alice.close()
    eng.restart()
    wait_healthy(world["http"], eng)
    got = asyncio.run(subscriber(20.0))
    acked = [a for a in got if a["id"] == aid and a.get("workflow")]
    assert acked and acked[0]["workflow"] == "acknowledged", got
    assert acked[0]["actions"][0]["user"] == "alice"
    sue = Browser(base, "sue")
    try:
        q = {a["id"]: a for a in sue.http.get("/api/alerts").json()}
        assert q[aid]["workflow"] == "acknowledged" and q[aid]["state"] == "acknowledged"
    finally:
        sue.close()
    assert eng.stop() == 0, eng.log_text()
    assert main(["audit", "verify", "--db", str(world["db"])]) == 0
