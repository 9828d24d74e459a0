"""Notifications (docs/notifications.md) through the public entry point: a real
`tagwatch serve` subprocess with `--webhook`, a real mosquitto, a webhook receiver in this
test (http.server on a free port) and protected devices subscribed to their topics.

Webhooks: every alert_log row reaches the receiver exactly once as acknowledged, signed
(the HMAC checked here), in seq order, its body the stored record byte for byte, also
after the receiver answered 500 for a while and across an engine restart with records
still undelivered. Warnings: a walk-in of an opted-in subject warns its OwnTracks phone
(the app's `action` cmd) and its dedicated unit (tagwatch/v1/protected/{device}/warning),
once per alert; a device that opted out and a subject that did not opt in get nothing.
Bad configuration is a clear error, exit 2."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from engine.cli.main import main
from engine.wire.alerts import decode_alert
from tests.helpers import AlertCollector, EngineProcess, fix, publish, square, wait_online

SECRET = b"s3cret-shared-with-the-receiver"
FIX = "tagwatch/v1/tags/{}/fix"


class Receiver:
    """A webhook receiver: answers `fail` (500) to the next `failing` requests, else 200,
    and keeps every request (timestamp, signature, delivery id, body, status answered)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.failing = 0  # how many more requests get a 500 (-1: all of them)
        self.lock = threading.Lock()
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with rec.lock:
                    fail = rec.failing != 0
                    if rec.failing > 0:
                        rec.failing -= 1
                    rec.requests.append({
                        "ts": self.headers["X-Tagwatch-Timestamp"],
                        "sig": self.headers["X-Tagwatch-Signature"],
                        "delivery": int(self.headers["X-Tagwatch-Delivery"]),
                        "type": self.headers["Content-Type"],
                        "body": body, "status": 500 if fail else 200,
                    })  # fmt: skip
                self.send_response(500 if fail else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def acked(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["status"] == 200]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def log_rows(db: Path | str) -> list[tuple[int, bytes]]:
    from engine.store.sql.open import connect

    c = connect(str(db), read_only=True)
    try:
        rows = c.execute("SELECT seq, record FROM alert_log ORDER BY seq").fetchall()
        return [(int(s), bytes(r)) for s, r in rows]
    finally:
        c.close()


def wait_until(pred: Any, eng: EngineProcess, timeout: float = 40.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        assert eng.running, eng.log_text()
        time.sleep(0.1)
    raise AssertionError(f"timed out: {what}\n{eng.log_text()[-4000:]}")


def walk_in(tag: str, t0: float, dx0: float = 0.0) -> list[tuple[str, bytes]]:
    """Outside, into the 100 m square around dx0 (east of the origin), out again."""
    pts = [-400.0, -250.0, -40.0, 20.0, 300.0, 450.0, 600.0, 750.0]
    return [(FIX.format(tag), json.dumps(fix(i, t0 + 60 * i, dx0 + dx, 0.0)).encode())
            for i, dx in enumerate(pts)]  # fmt: skip


def zone(zid: str, subject: str, dx0: float = 0.0) -> dict[str, Any]:
    return {
        "type": "Feature",
        "properties": {"id": zid, "subject": subject, "kind": "exclusion"},
        "geometry": {"type": "Polygon", "coordinates": [square(100.0, cx=dx0)]},
    }


def world(tmp: Path, subjects: str, features: list[dict[str, Any]]) -> tuple[Path, Path]:
    zones = tmp / "zones.geojson"
    zones.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    subj = tmp / "subjects.toml"
    subj.write_text(subjects)
    return zones, subj


def check_signed(r: dict[str, Any]) -> None:
    want = hmac.new(SECRET, r["ts"].encode() + b"." + r["body"], hashlib.sha256).hexdigest()
    assert r["sig"] == "sha256=" + want, r
    assert r["type"] == "application/json"
    assert abs(int(r["ts"]) - time.time()) < 600


@pytest.mark.mqtt
@pytest.mark.timeout(180)
def test_a_webhook_gets_every_record_once_signed_in_order_across_failures_and_a_restart(
    mosquitto: Any, tmp_path: Path, receiver: Receiver, store_target: str
) -> None:
    """On a SQLite file, and on PostgreSQL (the feed and its cursors in the engine's schema)."""
    zones, subjects = world(
        tmp_path, '[[subjects]]\nid = "S1"\ntags = ["T1"]\n', [zone("Z1", "S1")]
    )
    secret = tmp_path / "webhook.secret"
    secret.write_bytes(SECRET + b"\n")  # a trailing newline is not part of the secret
    db: Any = store_target if "://" in store_target else Path(store_target)
    args = ["--webhook", f"cms={receiver.url}", "--webhook-secret-file", str(secret)]
    receiver.failing = 2  # down at first: 500, 500, then 200
    t0 = float(int(time.time()) - 3600)

    async def walk(msgs: list[tuple[str, bytes]], opened_closed: int) -> None:
        async with AlertCollector(mosquitto.host, mosquitto.port) as col:
            await wait_online(mosquitto.host, mosquitto.port)
            await publish(mosquitto.host, mosquitto.port, msgs)
            await col.wait_for(lambda al: [a.state for a in al if a.kind == "zone_breach"][-1:]
                               == ["closed"])  # fmt: skip

    eng = EngineProcess(mosquitto.host, mosquitto.port, zones, subjects, db, extra_args=args)
    with eng:
        asyncio.run(walk(walk_in("T1", t0), 1))
        wait_until(lambda: {r["delivery"] for r in receiver.acked()} == {s for s, _ in log_rows(db)},
                   eng, what="every record delivered")  # fmt: skip
        assert [r["status"] for r in receiver.requests[:3]] == [500, 500, 200]
        assert receiver.requests[0]["delivery"] == receiver.requests[2]["delivery"]
        # The receiver goes down; a second walk-in is decided and published over MQTT, and
        # the engine stops with its records not delivered.
        receiver.failing = -1
        asyncio.run(walk(walk_in("T1", t0 + 1200), 2))
        n_before = len(receiver.acked())
        assert eng.stop() == 0, eng.log_text()
        assert len(log_rows(db)) > n_before
        receiver.failing = 0
        eng.start()
        wait_until(lambda: {r["delivery"] for r in receiver.acked()} == {s for s, _ in log_rows(db)},
                   eng, what="the backlog delivered after the restart")  # fmt: skip
        time.sleep(1.0)  # nothing more comes
        assert eng.stop() == 0, eng.log_text()
    rows = log_rows(db)
    acked = receiver.acked()
    assert [r["delivery"] for r in acked] == [s for s, _ in rows]  # once each, in seq order
    assert [r["body"] for r in acked] == [rec for _, rec in rows]  # the stored bytes exactly
    for r in receiver.requests:
        check_signed(r)
    kinds = [(decode_alert(b).kind, decode_alert(b).state) for _, b in rows]
    assert kinds.count(("zone_breach", "closed")) == 2, kinds
    assert "webhook cms" in eng.log_text()


WARN_SUBJECTS = """
[[subjects]]
id = "S1"
tags = ["T1"]
warn_protected = true
[[subjects.protected]]
device = "alice/phone"
radius_m = 50
[[subjects.protected]]
device = "U1"
radius_m = 50
[[subjects.protected]]
device = "carol/phone"
radius_m = 50
warn = false

[[subjects]]
id = "S2"
tags = ["T2"]
[[subjects.protected]]
device = "bob/phone"
radius_m = 50
"""


@pytest.mark.mqtt
@pytest.mark.timeout(120)
def test_an_opted_in_subjects_walk_in_warns_its_protected_devices_and_no_one_else(
    mosquitto: Any, tmp_path: Path
) -> None:
    zones, subjects = world(tmp_path, WARN_SUBJECTS, [zone("Z1", "S1"), zone("Z2", "S2", 5000.0)])
    db = tmp_path / "tw.db"
    t0 = float(int(time.time()) - 3600)
    got: list[tuple[str, bytes]] = []

    async def scenario() -> None:
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as dev:
            await dev.subscribe("owntracks/+/+/cmd", qos=1)
            await dev.subscribe("tagwatch/v1/protected/+/warning", qos=1)

            async def listen() -> None:
                async for m in dev.messages:
                    assert isinstance(m.payload, bytes)
                    got.append((str(m.topic), m.payload))

            task = asyncio.create_task(listen())
            async with AlertCollector(mosquitto.host, mosquitto.port) as col:
                await wait_online(mosquitto.host, mosquitto.port)
                msgs = walk_in("T1", t0) + walk_in("T2", t0, 5000.0)
                await publish(mosquitto.host, mosquitto.port, msgs)
                await col.wait_for(
                    lambda al: (
                        sorted(
                            a.subject for a in al if a.state == "closed" and a.kind == "zone_breach"
                        )
                        == ["S1", "S2"]
                    )
                )
            deadline = time.monotonic() + 10
            while len(got) < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)  # no more come
            task.cancel()

    with EngineProcess(mosquitto.host, mosquitto.port, zones, subjects, db) as eng:
        asyncio.run(scenario())
        assert eng.stop() == 0, eng.log_text()
    topics = sorted(t for t, _ in got)
    assert topics == ["owntracks/alice/phone/cmd", "tagwatch/v1/protected/U1/warning"], got
    phone = json.loads(dict(got)["owntracks/alice/phone/cmd"])
    assert phone["_type"] == "cmd" and phone["action"] == "action", phone
    assert "banned" in phone["notification"] and phone["content"] == phone["notification"]
    unit = json.loads(dict(got)["tagwatch/v1/protected/U1/warning"])
    assert unit["kind"] == "zone_breach" and "banned" in unit["text"], unit
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        rows = c.execute(
            "SELECT w.device, w.status, w.sent_at IS NOT NULL, a.subject, w.alert_id = a.alert_id"
            " FROM warnings w JOIN alert_log a ON a.seq = w.alert_seq ORDER BY w.device"
        ).fetchall()
    assert rows == [("U1", "sent", 1, "S1", 1), ("alice/phone", "sent", 1, "S1", 1)], rows
    # ...and each warning is a row of the hash-chained evidence ledger, which still verifies
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        noted = c.execute(
            "SELECT l.device, json_extract(l.body, '$.topic'), json_extract(l.body, '$.sha256'),"
            " a.subject FROM ledger l JOIN alert_log a ON a.seq = l.seq"
            " WHERE l.kind = 'warning' ORDER BY l.device"
        ).fetchall()
    assert [(d, t, sub) for d, t, _, sub in noted] == [
        ("U1", "tagwatch/v1/protected/U1/warning", "S1"),
        ("alice/phone", "owntracks/alice/phone/cmd", "S1"),
    ], noted
    sent = dict(got)
    for _, topic, digest, _ in noted:
        assert hashlib.sha256(sent[topic]).hexdigest() == digest
    assert main(["audit", "verify", "--db", str(db)]) == 0
    opened = [decode_alert(b) for _, b in log_rows(db)]
    opened = [a for a in opened if a.subject == "S1" and a.kind == "zone_breach"]
    assert unit["alert"] == opened[0].id and unit["severity"] == opened[0].severity, unit
    assert unit["t"] == opened[0].raised_t, (unit, opened[0])


def serve(tmp_path: Path, *extra: str) -> int:
    zones, subjects = world(
        tmp_path, '[[subjects]]\nid = "S1"\ntags = ["T1"]\n', [zone("Z1", "S1")]
    )
    return main(["serve", "--zones", str(zones), "--subjects", str(subjects),
                 "--db", str(tmp_path / "tw.db"), "--broker", "127.0.0.1:1", *extra])  # fmt: skip


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--webhook", "http://127.0.0.1:9/h"], "--webhook needs --webhook-secret-file"),
        (["--webhook", "http://127.0.0.1:9/h", "--webhook-secret-file", "/nonexistent/s"],
         "/nonexistent/s"),
        (["--webhook", "ftp://x/h", "--webhook-secret-file", "SECRET"], "not an http(s) URL"),
        (["--webhook", "a=http://x/1", "--webhook", "a=http://x/2", "--webhook-secret-file",
          "SECRET"], "given twice"),
        (["--webhook-secret-file", "SECRET"], "needs --webhook"),
        (["--webhook", "http://x/h", "--webhook-secret-file", "EMPTY"], "is empty"),
    ],
)  # fmt: skip
def test_bad_webhook_configuration_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    (tmp_path / "secret").write_text("x\n")
    (tmp_path / "empty").write_text(" \n")
    args = [str(tmp_path / "secret") if a == "SECRET" else a for a in args]
    args = [str(tmp_path / "empty") if a == "EMPTY" else a for a in args]
    assert serve(tmp_path, *args) == 2
    err = capsys.readouterr().err
    assert "tagwatch: error:" in err and says in err, err
    assert not (tmp_path / "tw.db").exists()  # refused before anything started


def test_warn_keys_are_checked_by_zones_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = WARN_SUBJECTS.replace("warn_protected = true", 'warn_protected = "yes"')
    bad = bad.replace("warn = false", "warn = 1")
    zones, subjects = world(tmp_path, bad, [zone("Z1", "S1"), zone("Z2", "S2", 5000.0)])
    assert main(["zones", "check", str(zones), str(subjects)]) != 0
    out = capsys.readouterr()
    text = out.out + out.err
    assert "warn_protected must be true or false" in text, text
    assert "warn must be true or false" in text, text
    ok_zones, ok_subjects = world(
        tmp_path, WARN_SUBJECTS, [zone("Z1", "S1"), zone("Z2", "S2", 5000.0)]
    )
    assert main(["zones", "check", str(ok_zones), str(ok_subjects)]) == 0


# -- the rules underneath, one at a time -----------------------------------------------------


Answer = tuple[int, dict[str, str]]  # status (0: the connection fails), headers


def test_a_receiver_answer_decides_how_soon_the_record_is_tried_again() -> None:
    """2xx: done; 5xx, 408, a dropped connection: backoff; 429/503: its Retry-After; any
    other 4xx: no faster than once a minute (never dropped)."""
    from engine.notify import webhook
    from engine.store.notify.feed import LogRow

    answers: list[Answer] = []

    def handler(request: Any) -> Any:
        import httpx

        code, headers = answers.pop(0)
        if code == 0:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(code, headers=headers)

    async def go() -> list[tuple[float | None, str]]:
        import httpx

        hook = webhook.Webhook("h", "http://r.invalid/x", SECRET)
        sender = webhook.WebhookSender(hook, None)  # type: ignore[arg-type]
        row = LogRow(7, "a", "open", "S1", b'{"id":"a"}', time.time())
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return [await sender._attempt(client, row) for _ in range(8)]

    answers += [(200, {}), (204, {}), (500, {}), (408, {}), (0, {}), (429, {"Retry-After": "7"}),
                (400, {}), (410, {})]  # fmt: skip
    got = asyncio.run(go())
    assert [w for w, _ in got] == [None, None, 0.0, 0.0, 0.0, 7.0, 60.0, 60.0], got
    assert "HTTP 400" in got[6][1] and "ConnectError" in got[4][1]


def test_a_warning_is_recorded_once_per_record_and_once_per_alert_per_repeat(
    tmp_path: Path, store_target: str
) -> None:
    """What the warner decides and the warnings table keeps: an escalation inside the
    repeat window warns no one again, after it it does; a record read twice (a restart)
    is never a second warning; closes, workflow actions, curfews and a subject that did
    not opt in warn no one."""
    from engine.notify.protected import plan
    from engine.store.notify.feed import LogRow, NotifyStore
    from engine.store.sql.open import open_store
    from zones.subjects import read_subjects

    subj = tmp_path / "s.toml"
    subj.write_text(WARN_SUBJECTS)
    subjects = {s.id: s for s in read_subjects(subj)[0]}
    open_store(store_target).close()

    def row(seq: int, **rec: Any) -> LogRow:
        base = {"id": "A1", "kind": "zone_breach", "state": "open", "subject": "S1", "zone": "Z1",
                "severity": "high", "raised_t": 1.0}  # fmt: skip
        return LogRow(
            seq, rec.get("id", "A1"), "open", "S1", json.dumps({**base, **rec}).encode(), 0.0
        )

    assert [w.device for w in plan(row(1), subjects)] == ["alice/phone", "U1"]
    prox = plan(row(2, kind="proximity", zone="U1", detail={"distance_m": 42.0}), subjects)
    assert [w.device for w in prox] == ["U1"] and json.loads(prox[0].payload)["distance_m"] == 42.0
    assert plan(row(3, kind="proximity", zone="carol/phone"), subjects) == []  # warn = false
    assert plan(row(4, state="closed"), subjects) == []
    assert plan(row(5, workflow="acknowledged", actions=[]), subjects) == []
    assert plan(row(6, kind="curfew_breach"), subjects) == []
    assert plan(row(7, subject="S2"), subjects) == []  # S2 did not opt in

    with NotifyStore(store_target) as store:
        first = store.add_warnings(plan(row(10), subjects), 10, repeat_s=600, now=1000.0)
        assert [w.device for w in first] == ["alice/phone", "U1"]
        again = store.add_warnings(plan(row(10), subjects), 10, repeat_s=600, now=5000.0)
        assert again == []  # the same record read again: never a second warning
        escalated = store.add_warnings(plan(row(11), subjects), 11, repeat_s=600, now=1300.0)
        assert escalated == []  # the same alert within 10 minutes
        later = store.add_warnings(plan(row(12), subjects), 12, repeat_s=600, now=1700.0)
        assert [w.device for w in later] == ["alice/phone", "U1"]
        assert store.warning_cursor() == 12
        assert [w.id for w in store.pending_warnings()] == [w.id for w in first + later]
        store.mark_warning(first[0].id, "sent")
        assert first[0].id not in [w.id for w in store.pending_warnings()]


@pytest.mark.mqtt
@pytest.mark.timeout(120)
def test_a_workflow_action_reaches_the_webhook_and_metrics_count_deliveries(
    mosquitto, tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A monitor's acknowledgement in the console is one more alert record: the case
    system's webhook gets it, signed, after the breach; /metrics counts both deliveries."""
    import httpx

    from tests.test_console_http import free_port, metric, token_for, wait_healthy
    from tests.test_console_workflow import add_user

    zones, subjects = world(
        tmp_path, '[[subjects]]\nid = "S1"\ntags = ["T1"]\n', [zone("Z1", "S1")]
    )
    (tmp_path / "secret").write_bytes(SECRET)
    db = tmp_path / "tw.db"
    add_user(monkeypatch, db, "bot", "monitor", "north")
    token = token_for(capsys, db, "bot")
    port = free_port()
    extra = ["--http", f"127.0.0.1:{port}", "--webhook", f"case={receiver.url}",
             "--webhook-secret-file", str(tmp_path / "secret")]  # fmt: skip
    eng = EngineProcess(mosquitto.host, mosquitto.port, zones, subjects, db, extra_args=extra)
    auth = {"Authorization": f"Bearer {token}"}
    with eng, httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=auth) as http:
        wait_healthy(http, eng)
        asyncio.run(publish(mosquitto.host, mosquitto.port, walk_in("T1", time.time() - 900)[:4]))
        wait_until(lambda: any(b"zone_breach" in r["body"] for r in receiver.acked()), eng,
                   what="the breach at the webhook")  # fmt: skip
        aid = decode_alert(receiver.acked()[0]["body"]).id
        assert http.post(f"/api/alerts/{aid}/ack").status_code == 200
        wait_until(lambda: any(b'"workflow":"acknowledged"' in r["body"] for r in receiver.acked()),
                   eng, what="the acknowledgement at the webhook")  # fmt: skip
        got = receiver.acked()
        for r in got:
            check_signed(r)
        acked = decode_alert(got[-1]["body"])
        assert (acked.id, acked.workflow, acked.actions[0]["user"]) == (aid, "acknowledged", "bot")  # type: ignore[index]
        assert [r["delivery"] for r in got] == sorted({r["delivery"] for r in got})
        # The receiver holds a delivery before the notifier has read its answer and
        # counted it: wait for the count (a CI run read /metrics in between)
        deadline = time.monotonic() + 10
        while True:
            text = http.get("/metrics").text
            ok = metric(text, "tagwatch_webhook_deliveries_total", result="ok")
            if ok == len(got) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert ok == len(got)
        assert metric(text, "tagwatch_protected_warnings_total", result="sent") == 0
        assert eng.stop() == 0, eng.log_text()
