"""Configuration that changes while monitoring goes on: SIGHUP makes a running `tagwatch
serve` re-read its zones and subjects (through a real mosquitto). A valid change takes
effect within seconds without a restart or a replay of history; a file with a problem
changes nothing and the retained status says why. And restart recovery replays a reload
exactly (the config step holds the files)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from engine.core.pipeline import Pipeline
from engine.store import recovery
from engine.store.config import ConfigFiles
from engine.store.ledger import Step
from engine.store.sqlite import SqliteStore
from engine.wire.alerts import Alert, encode_alert
from engine.wire.records import FixRecord
from tests.helpers import (
    AlertCollector,
    EngineProcess,
    fix,
    offset,
    publish,
    square,
    wait_online,
    write_world,
)

pytestmark = [pytest.mark.mqtt, pytest.mark.timeout(180)]

STATUS = "tagwatch/v1/engine/status"
PROBES = 40  # subjects whose single deep fix each is one alert: the lag probes


def _zone(zid: str, subject: str) -> dict[str, Any]:
    return {
        "type": "Feature",
        "properties": {"id": zid, "subject": subject, "kind": "exclusion"},
        "geometry": {"type": "Polygon", "coordinates": [square(100.0)]},
    }


def _subjects(ids: list[str]) -> str:
    return "".join(f'[[subjects]]\nid = "{s}"\ntags = ["T{s}"]\n' for s in ids)


def _world(d: Path, ids: list[str]) -> tuple[Path, Path]:
    return write_world(d, [_zone(f"Z{s}", s) for s in ids], _subjects(ids))


def _deep(tag: str, seq: int) -> tuple[str, bytes]:
    """One fix 90 m deep inside the tag's zone, 5 m accuracy: decisive on its own."""
    return (f"tagwatch/v1/tags/{tag}/fix", json.dumps(fix(seq, time.time() - 1, 0, 10)).encode())


async def _status(host: str, port: int, pred: Any, timeout: float = 30.0) -> dict[str, str]:
    """The retained engine status, once `pred` holds for it."""

    async def go() -> dict[str, str]:
        async with aiomqtt.Client(host, port) as c:
            await c.subscribe(STATUS, qos=1)
            async for m in c.messages:
                st = json.loads(bytes(m.payload))  # type: ignore[arg-type]
                if pred(st):
                    return st  # type: ignore[no-any-return]
        raise AssertionError("status subscription ended")

    return await asyncio.wait_for(go(), timeout)


class _TimedCollector(AlertCollector):
    """Alerts with the monotonic time each one arrived."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self.arrived: dict[str, float] = {}  # subject -> first zone_breach arrival

    def got(self, alert: Alert) -> None:
        if alert.kind == "zone_breach":
            self.arrived.setdefault(alert.subject, time.monotonic())
        super().got(alert)


def _breach_of(alerts: list[Alert], subject: str) -> bool:
    return any(a.kind == "zone_breach" and a.subject == subject for a in alerts)


def test_sighup_with_a_new_subject_alerts_its_breach_without_rebuild_or_stall(
    mosquitto, tmp_path: Path
) -> None:
    """Probe subjects send one deep fix every 50 ms before, across and after the reload;
    each probe's publish -> alert time is its lag. The new subject's tag is unknown before
    the reload (dead-lettered) and alerted on its first fixes after it."""
    host, port = mosquitto.host, mosquitto.port
    probes = [f"P{i:02d}" for i in range(PROBES)]
    zones, subjects = _world(tmp_path, probes)
    db = tmp_path / "tw.db"
    lags: dict[str, float] = {}

    async def scenario(eng: EngineProcess) -> list[Alert]:
        async with _TimedCollector(host, port) as col:
            await wait_online(host, port)
            sent: dict[str, float] = {}
            async with aiomqtt.Client(host, port) as c:
                for k, p in enumerate(probes):
                    if k == PROBES // 3:  # a third of the way: the new subject arrives
                        _world(tmp_path, [*probes, "NEW"])
                        assert eng.pid is not None
                        eng.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
                    topic, payload = _deep(f"T{p}", 1)
                    sent[p] = time.monotonic()
                    await c.publish(topic, payload, qos=1)
                    await asyncio.sleep(0.05)
            st = await _status(host, port, lambda s: s.get("config") == "reloaded")
            assert st["config_subjects_sha256"] == ConfigFiles.read(zones, subjects).hashes[1]
            await publish(host, port, [_deep("TNEW", 1), _deep("TNEW", 2)])
            seen = col.arrived
            await col.wait_for(lambda _: all(p in seen for p in [*probes, "NEW"]), timeout=60)
            lags.update({p: seen[p] - sent[p] for p in probes})
            return col.alerts

    with EngineProcess(host, port, zones, subjects, db) as eng:
        alerts = asyncio.run(scenario(eng))
        assert eng.stop() == 0, eng.log_text()
    log = eng.log_text()
    assert "configuration reloaded in" in log and "rebuilding" not in log, log
    assert _breach_of(alerts, "NEW")
    worst = max(lags.values())
    print(f"max probe lag across the SIGHUP reload: {worst * 1000:.0f} ms")
    assert worst < 2.0, sorted(lags.items(), key=lambda x: -x[1])[:5]
    # the change is evidence: a config step with the files' hashes and texts
    con = sqlite3.connect(db)
    bodies = [
        json.loads(b)
        for (b,) in con.execute("SELECT body FROM ledger WHERE kind='step' ORDER BY n")
        if b'"config"' in bytes(b)
    ]
    assert bodies and '"NEW"' in bodies[-1]["config"]["subjects"]["text"]


def test_a_broken_zones_file_on_sighup_changes_nothing_and_the_status_says_why(
    mosquitto, tmp_path: Path
) -> None:
    host, port = mosquitto.host, mosquitto.port
    zones, subjects = write_world(tmp_path)  # S1 wears T1; Z1
    good = zones.read_text()
    db = tmp_path / "tw.db"

    async def scenario(eng: EngineProcess) -> tuple[dict[str, str], list[Alert]]:
        async with AlertCollector(host, port) as col:
            await wait_online(host, port)
            zones.write_text(good.replace('"exclusion"', '"exclusoin"'))
            eng.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
            st = await _status(host, port, lambda s: s.get("config") == "refused")
            t = time.time() - 120
            await publish(host, port, [
                ("tagwatch/v1/tags/T1/fix", json.dumps(fix(i, t + 30 * i, dx, 0)).encode())
                for i, dx in enumerate([-400, -250, -40, 20])
            ])  # fmt: skip
            return st, await col.wait_for(lambda a: _breach_of(a, "S1"))

    with EngineProcess(host, port, zones, subjects, db) as eng:
        st, alerts = asyncio.run(scenario(eng))
        assert eng.stop() == 0, eng.log_text()
    assert st["state"] == "online"
    assert "exclusoin" in st["config_reason"] and str(zones) in st["config_reason"], st
    assert st["config_zones_sha256"] == hashlib.sha256(good.encode()).hexdigest()  # still in force
    assert [a.zone for a in alerts if a.kind == "zone_breach"][:1] == ["Z1"]
    assert "configuration reload REFUSED, nothing changed" in eng.log_text()


def test_restart_recovery_replays_a_reload_exactly(tmp_path: Path) -> None:
    """A config step in the ledger between a snapshot and a crash: the recovered engine is
    on the new files with the state the live one had, and decides what it decides."""
    ids = ["A", "B"]
    zones, subjects = _world(tmp_path, ids)
    old = ConfigFiles.read(zones, subjects)
    later = tmp_path / "later"
    later.mkdir()
    z2, s2 = _world(later, [*ids, "C"])
    new = ConfigFiles.read(z2, s2)
    rng = random.Random(3)
    t0 = time.time() - 3600
    steps: list[Step] = []
    for i in range(60):
        recs = [
            FixRecord(f"T{s}", i, t0 + 30 * i, *offset(rng.uniform(-300, 300), 0), 8.0)
            for s in [*ids, "C"]
        ]
        steps.append(Step("batch", t0 + 30 * i + 1, recs))
    steps.insert(20, Step("config", t0 + 30 * 20, config=new.data()))
    steps.insert(0, Step("config", t0 - 1, config=old.data()))  # as serve records at start

    def drive(
        p: Pipeline, store: SqliteStore | None, part: list[Step]
    ) -> tuple[Pipeline, list[bytes]]:
        out: list[bytes] = []
        for st in part:
            if st.kind == "config":
                p, _ = recovery.apply_config(p, st)
                res_alerts: list[Alert] = []
            else:
                res_alerts = recovery.apply(p, st).alerts
            out += [encode_alert(a) for a in res_alerts]
            if store is not None:
                store.commit(res_alerts, [], st.now, steps=[st])
                if st is steps[10]:
                    store.save_snapshot(
                        recovery.fingerprint(p), st.now, recovery.snapshot(p, old.hashes)
                    )
        return p, out

    db = tmp_path / "r.db"
    with SqliteStore(db) as store:
        a, _ = drive(Pipeline(old.zoneset()), store, steps[:40])
    with SqliteStore(db) as store:
        rec = recovery.recover(Pipeline(new.zoneset()), store, new)
    assert rec.from_snapshot and rec.config == new.hashes and rec.alerts == []
    assert rec.pipeline is not None
    b = rec.pipeline
    assert recovery.snapshot(b, new.hashes) == recovery.snapshot(a, new.hashes)
    _, fa = drive(a, None, steps[40:])
    _, fb = drive(b, None, steps[40:])
    assert fa, "the future should decide something"
    assert fb == fa
