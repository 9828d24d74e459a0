"""`tagwatch serve` end to end through a real mosquitto: alerts on the topic and in SQLite,
broker restarts survived, garbage dead-lettered while good fixes keep raising alerts."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path

import pytest

from engine.store.sqlite import SqliteStore
from tests.helpers import (
    AlertCollector,
    EngineProcess,
    fix,
    ledger_records,
    publish,
    wait_online,
    write_world,
)

pytestmark = [pytest.mark.mqtt, pytest.mark.timeout(120)]

# Recent event times: live, the engine judges them on the host's wall time (live_clock "wall")
T0 = float(int(time.time()) - 7200)  # the garbage test's track runs to T0 + 6420
FIX = "tagwatch/v1/tags/T1/fix"


def track_in_and_out(seq0: int = 0) -> list[tuple[str, bytes]]:
    """Outside, then two fixes 60+ m deep inside Z1, then outside for longer than the exit
    gap (hysteresis): one episode, opened then closed."""
    pts = [(-400, 0), (-250, 0), (-40, 10), (20, -5), (300, 0), (450, 0), (600, 0), (750, 0)]
    return [
        (FIX, json.dumps(fix(seq0 + i, T0 + 60 * (seq0 + i), dx, dy)).encode())
        for i, (dx, dy) in enumerate(pts)
    ]


def _episode_done(alerts: list) -> bool:  # type: ignore[type-arg]
    return [a.state for a in alerts if a.kind == "zone_breach"] == ["open", "closed"]


def test_enter_and_leave_gives_one_alert_opened_then_closed(mosquitto, tmp_path: Path) -> None:
    zones, subjects = write_world(tmp_path)
    db = tmp_path / "tw.db"

    async def scenario() -> list:  # type: ignore[type-arg]
        async with AlertCollector(mosquitto.host, mosquitto.port) as col:
            await wait_online(mosquitto.host, mosquitto.port)
            await publish(mosquitto.host, mosquitto.port, track_in_and_out())
            return await col.wait_for(_episode_done)

    with EngineProcess(mosquitto.host, mosquitto.port, zones, subjects, db) as eng:
        alerts = asyncio.run(scenario())
        assert eng.stop() == 0, eng.log_text()
    breach = [a for a in alerts if a.kind == "zone_breach"]
    assert breach[0].id == breach[1].id
    assert breach[0].subject == "S1" and breach[0].zone == "Z1" and breach[0].tag == "T1"
    assert breach[0].opened_t == T0 + 120 and breach[1].closed_t == T0 + 240
    assert breach[1].evidence == [("T1", 2), ("T1", 3)]
    with SqliteStore(db) as st:
        log = [(a.id, a.state) for a in st.alert_log() if a.kind == "zone_breach"]
        assert log == [(breach[0].id, "open"), (breach[0].id, "closed")]
        assert st.unpublished() == []  # both were confirmed by the broker
    # the WAL store is a plain SQLite database anyone can query
    rows = sqlite3.connect(db).execute("SELECT state FROM alerts WHERE kind='zone_breach'")
    assert rows.fetchall() == [("closed",)]


def test_broker_restart_mid_run_still_gets_the_alert(mosquitto, tmp_path: Path) -> None:
    zones, subjects = write_world(tmp_path)
    db = tmp_path / "tw.db"
    track = track_in_and_out()

    async def scenario() -> list:  # type: ignore[type-arg]
        await wait_online(mosquitto.host, mosquitto.port)
        await publish(mosquitto.host, mosquitto.port, track[:2])  # outside, approaching
        await asyncio.sleep(0.5)
        await asyncio.to_thread(mosquitto.kill)  # broker dies without warning
        await asyncio.sleep(1.0)
        await asyncio.to_thread(mosquitto.restart)
        async with AlertCollector(mosquitto.host, mosquitto.port) as col:
            await wait_online(mosquitto.host, mosquitto.port)  # engine reconnected
            await publish(mosquitto.host, mosquitto.port, track[2:])
            return await col.wait_for(_episode_done)

    with EngineProcess(mosquitto.host, mosquitto.port, zones, subjects, db) as eng:
        alerts = asyncio.run(scenario())
        assert eng.stop() == 0
        log = eng.log_text()
    assert log.count("connected to") >= 2, log
    assert "kept this session" not in log, log  # a broker without its store lost it: renewed
    assert log.index("kernels warmed in") < log.index("connected to"), log  # before input
    breach = [a for a in alerts if a.kind == "zone_breach"]
    assert breach[0].id == breach[1].id and breach[0].evidence == [("T1", 2)]


GARBAGE: list[tuple[str, bytes]] = [
    (FIX, b"{not json"),
    (FIX, b'{"seq": 1, "t": 1774710000, "lat": 91.5, "lon": 0.1, "acc": 5}'),
    (FIX, b'{"seq": 2, "t": 1774710000, "lat": 51.5, "lon": -0.12, "acc": 0}'),
    (FIX, b'{"seq": 3, "t": 1774710000, "lat": NaN, "lon": -0.12, "acc": 5}'),
    (FIX, b'{"t": 1774710000, "lat": 51.5, "lon": -0.12, "acc": 5}'),
    (FIX, b"\xff\xfe\x00binary"),
    (FIX, b"x" * 400_000),
    ("tagwatch/v1/tags/T1/fixes", b'[{"seq": 4}, "nope"]'),
    ("tagwatch/v1/tags/T1/event", b'{"seq": 5, "t": 1774710000, "event": "strap_cut"}'),
    ("tagwatch/v1/tags/NOBODY/fix", json.dumps(fix(1, T0, 0, 0)).encode()),
]


def test_garbage_goes_to_dead_letters_while_good_fixes_raise_alerts(
    mosquitto, tmp_path: Path
) -> None:
    zones, subjects = write_world(tmp_path)
    db = tmp_path / "tw.db"
    track = track_in_and_out(seq0=100)
    # garbage interleaved with the good track
    mixed = [m for pair in zip(GARBAGE, track + track[:4], strict=False) for m in pair]
    mixed += GARBAGE[len(track) :]

    async def scenario() -> list:  # type: ignore[type-arg]
        async with AlertCollector(mosquitto.host, mosquitto.port) as col:
            await wait_online(mosquitto.host, mosquitto.port)
            await publish(mosquitto.host, mosquitto.port, mixed)
            return await col.wait_for(_episode_done)

    with EngineProcess(mosquitto.host, mosquitto.port, zones, subjects, db) as eng:
        asyncio.run(scenario())
        assert eng.stop() == 0, eng.log_text()
    with SqliteStore(db) as st:
        dead = st.dead_letters()
    reasons = "\n".join(f"{d.origin}: {d.reason}" for d in dead)
    # every garbage message is accounted for (the /fixes batch gives one per bad element)
    assert len(dead) >= len(GARBAGE), reasons
    for needle in ["JSON", "lat", "acc", "seq", "strap_cut", "NOBODY", "400000"]:
        assert needle in reasons, f"no dead letter mentions {needle!r}:\n{reasons}"
    assert all(d.origin for d in dead)


def test_a_seq_gap_that_never_fills_delays_decisions_only_briefly(
    mosquitto, tmp_path: Path
) -> None:
    """Fixes after a lost message wait for it (it may be in flight), but not for long."""
    zones, subjects = write_world(tmp_path)
    db = tmp_path / "tw.db"
    track = track_in_and_out()
    del track[1]  # seq 1 is lost for good: everything after it waits behind the gap

    async def scenario() -> tuple[list, float]:  # type: ignore[type-arg]
        async with AlertCollector(mosquitto.host, mosquitto.port) as col:
            await wait_online(mosquitto.host, mosquitto.port)
            t0 = asyncio.get_running_loop().time()
            await publish(mosquitto.host, mosquitto.port, track)
            alerts = await col.wait_for(_episode_done, timeout=40)
            return alerts, asyncio.get_running_loop().time() - t0

    with EngineProcess(mosquitto.host, mosquitto.port, zones, subjects, db) as eng:
        alerts, waited = asyncio.run(scenario())
        assert eng.stop() == 0, eng.log_text()
    assert 5.0 <= waited <= 30.0  # held for hold_wall_s (10 s), then decided
    breach = [a for a in alerts if a.kind == "zone_breach"]
    assert breach[0].evidence == [("T1", 2)] and breach[1].closed_t == T0 + 240


def test_sigterm_while_the_store_is_locked_exits_and_the_next_run_gets_everything(
    mosquitto_persistent, tmp_path: Path
) -> None:
    """Stopping must not hang on a stuck store, nor pretend: what was not committed was not
    acknowledged, and the next run receives it from the broker."""
    import time

    from tests.faultkit import ExclusiveLock

    zones, subjects = write_world(tmp_path)
    db = tmp_path / "tw.db"
    broker = mosquitto_persistent
    t0 = time.time() - 3600
    msgs = [(FIX, json.dumps(fix(i, t0 + 30 * i, -500, 0)).encode()) for i in range(40)]

    def ledger_seqs() -> set[int]:
        con = sqlite3.connect(db)
        try:
            return {s for _, s, k, _ in ledger_records(con) if k == "fix"}
        finally:
            con.close()

    eng = EngineProcess(broker.host, broker.port, zones, subjects, db)
    with eng:
        asyncio.run(wait_online(broker.host, broker.port))
        asyncio.run(publish(broker.host, broker.port, msgs[:20]))
        deadline = time.monotonic() + 20
        while len(ledger_seqs()) < 20 and time.monotonic() < deadline:
            time.sleep(0.1)
        lock = ExclusiveLock(db, 60).start()
        asyncio.run(publish(broker.host, broker.port, msgs[20:]))
        deadline = time.monotonic() + 20
        while "STORE FAILING" not in eng.log_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        started = time.monotonic()
        assert eng.stop(timeout=15) == 0
        stop_s = time.monotonic() - started
        lock.release()
        lock.join()
        log = eng.log_text()
    assert "STORE FAILING" in log and "not committed" in log, log
    assert stop_s < 10
    assert ledger_seqs() == set(range(20))  # nothing of the locked stretch went in
    with EngineProcess(broker.host, broker.port, zones, subjects, db):
        deadline = time.monotonic() + 30
        while ledger_seqs() != set(range(40)) and time.monotonic() < deadline:
            time.sleep(0.2)
    assert ledger_seqs() == set(range(40))


@pytest.mark.parametrize("cmd", [["watch", "--plain"], ["checkpoint"]])
@pytest.mark.parametrize("broker", ["x:abc", "127.0.0.1:99999", ""])
def test_a_bad_broker_address_is_a_clear_error_not_a_traceback(
    cmd: list[str], broker: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine.cli.main import main

    assert main([cmd[0], "--broker", broker, *cmd[1:]]) == 2
    err = capsys.readouterr().err
    assert "expected HOST:PORT" in err and "Traceback" not in err, err
