"""500 open alerts: the console's queue answers and its live feed keeps up.

500 subjects walk into their zones over MQTT (2000 fixes) against a real `tagwatch serve
--http`; a supervisor's feed, opened before, gets every one of the 500 breaches; the queue
holds all 500 in order (critical first, oldest first) and answers quickly while the feed
runs; an action on one alert reaches the feed within 2 s. Timing is reported, not judged
(tests check behaviour; bench/ holds the targets)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import EngineProcess, fix, publish, square, write_world
from tests.test_console_http import free_port, token_for, wait_healthy
from tests.test_console_workflow import WALK_IN, Browser, add_user

pytestmark = [pytest.mark.mqtt, pytest.mark.timeout(240)]
N = 500


def test_five_hundred_open_alerts(mosquitto, tmp_path: Path, monkeypatch, capsys) -> None:
    features = [
        {"type": "Feature", "properties": {"id": f"Z{i}", "subject": f"S{i}", "kind": "exclusion"},
         "geometry": {"type": "Polygon", "coordinates": [square(100.0)]}}
        for i in range(N)
    ]  # fmt: skip
    subjects = "".join(f'[[subjects]]\nid = "S{i}"\ntags = ["T{i}"]\n' for i in range(N))
    zones, subjects_file = write_world(tmp_path, features, subjects)
    db = tmp_path / "tw.db"
    add_user(monkeypatch, db, "sue", "supervisor", "north")
    add_user(monkeypatch, db, "bot", "supervisor", "north")
    token = token_for(capsys, db, "bot")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    eng = EngineProcess(mosquitto.host, mosquitto.port, zones, subjects_file, db,
                        extra_args=["--http", f"127.0.0.1:{port}"])  # fmt: skip
    with eng, httpx.Client(base_url=base, timeout=30.0) as http:
        wait_healthy(http, eng)
        sue = Browser(base, "sue")
        t0 = time.time() - 600
        asyncio.run(publish(mosquitto.host, mosquitto.port, [
            (f"tagwatch/v1/tags/T{i}/fix", json.dumps(fix(k, t0 + 60 * k, dx, dy)).encode())
            for k, (dx, dy) in enumerate(WALK_IN) for i in range(N)
        ]))  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if len({e["id"] for e in sue.events if e["kind"] == "zone_breach"}) >= N:
                break
            time.sleep(0.2)
        breaches = {e["id"] for e in sue.events if e["kind"] == "zone_breach"}
        assert len(breaches) == N, (len(breaches), eng.log_text()[-2000:])

        auth = {"Authorization": f"Bearer {token}"}
        t = time.perf_counter()
        q = http.get("/api/alerts", params={"state": "open"}, headers=auth)
        took = time.perf_counter() - t
        assert q.status_code == 200
        got = [a for a in q.json() if a["kind"] == "zone_breach"]
        assert len(got) == N and {a["id"] for a in got} == breaches
        ranks = [(a["severity"] != "critical", a["raised_t"]) for a in q.json()]
        assert ranks == sorted(ranks)  # critical first, then the longest waiting
        print(f"\n/api/alerts with {len(q.json())} open alerts: {took * 1000:.0f} ms")

        one = got[-1]["id"]
        t = time.monotonic()
        assert sue.post(f"/api/alerts/{one}/ack").status_code == 200
        sue.wait_event(lambda e: e["id"] == one and e["workflow"] == "acknowledged", timeout=2.0)
        print(f"ack -> feed: {(time.monotonic() - t) * 1000:.0f} ms")
        sue.close()
        assert eng.stop() == 0, eng.log_text()
