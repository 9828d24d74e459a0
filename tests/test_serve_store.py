"""`tagwatch serve` and its store, through a real mosquitto: a stop while the store fails
never snapshots ahead of the ledger (the next run decides the redelivered messages again),
and a broker's refusal of an alert publish (PUBACK reason code >= 0x80) keeps the record in
the outbox until the broker takes it."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from engine.broker.process import MosquittoProcess
from engine.store.sqlite import SqliteStore
from tests.faultkit import ExclusiveLock, retained_status, wait_log
from tests.helpers import (
    AlertCollector,
    EngineProcess,
    fix,
    ledger_records,
    publish,
    wait_online,
    write_world,
)

pytestmark = [pytest.mark.mqtt, pytest.mark.timeout(150)]

FIX = "tagwatch/v1/tags/T1/fix"


def _walk_in(t0: float) -> list[tuple[str, bytes]]:
    """T1 approaches Z1 (seq 0-3, outside), then stands deep inside it (seq 4-6)."""
    pts = [(-600, 0), (-500, 0), (-400, 0), (-300, 0), (0, 0), (5, 0), (-5, 0)]
    return [
        (FIX, json.dumps(fix(i, t0 + 30 * i, dx, dy)).encode()) for i, (dx, dy) in enumerate(pts)
    ]


def _breach_rows(db: Path) -> list[tuple[str, str, bool]]:
    """(alert id, state, published) of the store's zone_breach records, in order."""
    with SqliteStore(db, read_only=True) as st:
        waiting = {o.seq for o in st.unpublished()}
        con = sqlite3.connect(db)
        try:
            seqs = [s for (s,) in con.execute("SELECT seq FROM alert_log ORDER BY seq")]
        finally:
            con.close()
        return [
            (a.id, a.state, s not in waiting)
            for s, a in zip(seqs, st.alert_log(), strict=True)
            if a.kind == "zone_breach"
        ]


def _ledger_fixes(db: Path) -> set[int]:
    con = sqlite3.connect(db)
    try:
        return {s for _, s, k, _ in ledger_records(con) if k == "fix"}
    finally:
        con.close()


def test_stop_while_the_store_fails_never_snapshots_ahead_and_the_next_run_alerts(
    mosquitto_persistent: MosquittoProcess, tmp_path: Path
) -> None:
    """The store is locked by another process while T1 walks into its zone: the engine
    decides the breach but cannot commit it, and is stopped (SIGTERM) while failing. The
    lock goes just as the engine gives up its pending steps, so its closing snapshot could
    be written: it must not be (the pipeline state holds steps the ledger lacks). Restarted
    on a healthy store, the broker redelivers the unacknowledged fixes; they are decided
    again, not dropped as duplicates, and the breach is stored and published."""
    zones, subjects = write_world(tmp_path)
    db = tmp_path / "tw.db"
    broker = mosquitto_persistent
    msgs = _walk_in(time.time() - 600)
    eng = EngineProcess(broker.host, broker.port, zones, subjects, db)
    with eng:
        asyncio.run(wait_online(broker.host, broker.port))
        asyncio.run(publish(broker.host, broker.port, msgs[:4]))
        deadline = time.monotonic() + 20
        while _ledger_fixes(db) != set(range(4)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _ledger_fixes(db) == set(range(4)), eng.log_text()
        lock = ExclusiveLock(db, 60).start()
        mark = len(eng.log_text())
        asyncio.run(publish(broker.host, broker.port, msgs[4:]))
        assert wait_log(eng.log_text, "STORE FAILING", mark, 30) is not None, eng.log_text()
        assert eng.proc is not None
        eng.proc.terminate()  # SIGTERM while the store fails
        gave_up = wait_log(eng.log_text, "not committed", mark, 30)
        lock.release()  # the closing snapshot would now go through
        assert gave_up is not None, eng.log_text()
        assert eng.proc.wait(20) == 0  # (a second SIGTERM would find no handler left)
        first_log = eng.log_text()
    assert _breach_rows(db) == []  # nothing of the locked stretch was written
    assert _ledger_fixes(db) == set(range(4))

    async def restart() -> list:  # type: ignore[type-arg]
        async with AlertCollector(broker.host, broker.port) as col:
            with EngineProcess(broker.host, broker.port, zones, subjects, db) as again:
                try:
                    return await col.wait_for(
                        lambda al: any(a.kind == "zone_breach" for a in al), 30
                    )
                finally:
                    again.stop()

    try:
        alerts = asyncio.run(restart())
    except AssertionError as e:
        raise AssertionError(
            f"no breach after the restart: {e}\nstore breach rows {_breach_rows(db)}\n"
            f"first run's log tail:\n{first_log[-2500:]}"
        ) from None
    assert _ledger_fixes(db) == set(range(7))
    rows = _breach_rows(db)
    assert rows and rows[0][1] == "open" and rows[0][2]  # stored and published
    assert next(a.id for a in alerts if a.kind == "zone_breach") == rows[0][0]
    with SqliteStore(db, read_only=True) as st:
        assert st.verify().problem is None


ACL_DENY = """\
# anonymous clients (the test's monitor, the tags): everything
topic readwrite #
user engine
topic deny tagwatch/v1/alerts/#
topic readwrite #
"""
ACL_ALLOW = """\
topic readwrite #
user engine
topic readwrite #
"""


def test_a_refused_alert_publish_stays_in_the_outbox_until_the_broker_takes_it(
    mosquitto_path: str, tmp_path: Path
) -> None:
    """mosquitto's ACL denies the engine's user the alert topics: an MQTT 5 broker answers
    the alert's QoS 1 publish with PUBACK 0x87 "not authorized". The record must stay in
    the outbox (not marked published), be retried, and show in the engine's status and
    stats line; once the ACL lets the engine publish (SIGHUP reloads it), the retry
    delivers the alert and the outbox empties."""
    zones, subjects = write_world(tmp_path)
    db = tmp_path / "tw.db"
    acl = tmp_path / "acl"
    acl.write_text(ACL_DENY)
    broker = MosquittoProcess(
        workdir=tmp_path / "mosquitto", executable=mosquitto_path,
        extra_config=[f"acl_file {acl}"],
    )  # fmt: skip
    msgs = _walk_in(time.time() - 600)

    async def scenario(eng: EngineProcess) -> list:  # type: ignore[type-arg]
        async with AlertCollector(broker.host, broker.port) as col:
            await wait_online(broker.host, broker.port)
            mark = len(eng.log_text())
            await publish(broker.host, broker.port, msgs)
            for _ in range(2):  # refused, then refused again by the retry
                seen = await asyncio.to_thread(
                    wait_log, eng.log_text, "BROKER REFUSED ALERT PUBLISH", mark, 30
                )
                assert seen is not None, eng.log_text()
                mark = eng.log_text().index("BROKER REFUSED ALERT PUBLISH", mark) + 1
            rows = _breach_rows(db)
            assert rows and not rows[0][2], f"a refused alert was marked published: {rows}"
            assert col.alerts == []
            status = await asyncio.to_thread(retained_status, broker.host, broker.port)
            assert status is not None and status["state"] == "degraded", status
            assert "0x87" in status["reason"] and "Not authorized" in status["reason"], status
            assert re.search(r"refused [1-9]", eng.log_text()), "stats line counts no refusal"
            acl.write_text(ACL_ALLOW)
            assert broker.proc is not None
            broker.proc.send_signal(signal.SIGHUP)  # mosquitto reloads its ACL file
            alerts = await col.wait_for(lambda al: any(a.kind == "zone_breach" for a in al))
            deadline = time.monotonic() + 30
            while (status or {}).get("state") != "online" and time.monotonic() < deadline:
                status = await asyncio.to_thread(retained_status, broker.host, broker.port)
            assert status is not None and status["state"] == "online", status
            return alerts

    with broker:
        eng = EngineProcess(
            broker.host, broker.port, zones, subjects, db, extra_args=["--username", "engine"]
        )
        with eng:
            alerts = asyncio.run(scenario(eng))
            assert eng.stop() == 0
    rows = _breach_rows(db)
    assert rows and all(published for _, _, published in rows), rows
    assert next(a.id for a in alerts if a.kind == "zone_breach") == rows[0][0]
    assert "broker accepts alert records again" in eng.log_text()
