"""One engine per store (engine/store/sql/enginelock.py), through `tagwatch serve` on both
databases: a second engine on a store another engine serves is refused, naming the holder,
and changes nothing; after a kill -9 of the holder a new engine starts at once."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from engine.errors import StoreError
from engine.store.sql.enginelock import advisory_key, hold, lock_path
from tests.helpers import EngineProcess, fix, publish, wait_online, write_world

pytestmark = [pytest.mark.mqtt, pytest.mark.timeout(120)]


def _wait_exit(eng: EngineProcess, timeout: float = 30.0) -> int:
    assert eng.proc is not None
    return eng.proc.wait(timeout)


def _wait_log(eng: EngineProcess, text: str, count: int, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while eng.log_text().count(text) < count:
        assert eng.running, eng.log_text()
        assert time.monotonic() < end, eng.log_text()
        time.sleep(0.1)


def test_a_second_engine_on_a_served_store_is_refused(
    mosquitto, tmp_path: Path, store_target: str
) -> None:
    zones, subjects = write_world(tmp_path)
    quick = tmp_path / "quick.toml"
    quick.write_text("engine_lock_wait_s = 1.0\n")
    host, port = mosquitto.host, mosquitto.port
    with EngineProcess(host, port, zones, subjects, store_target) as first:
        asyncio.run(wait_online(host, port))
        second_dir = tmp_path / "second"
        second_dir.mkdir()
        z2, s2 = write_world(second_dir)  # its own log file; the same store
        second = EngineProcess(host, port, z2, s2, store_target, quick)
        if "://" not in store_target:
            second.log = tmp_path / "second.log"
        with second:
            assert _wait_exit(second) != 0
        said = second.log_text()
        assert "another engine is serving this store" in said, said
        assert f"pid {first.pid}" in said, said  # names the holder
        assert "Traceback" not in said, said
        assert "broker: connected" not in said  # refused before touching the broker
        assert first.running
        # The holder dies without warning: its lock goes with it, a new engine starts
        first.kill()
        with EngineProcess(host, port, zones, subjects, store_target) as third:
            _wait_log(third, "broker: connected to", 2)
            assert "another engine" not in third.log_text()
            assert third.stop() == 0, third.log_text()


def test_lock_in_process(tmp_path: Path) -> None:
    """The lock itself: held, refused while held (after waiting), free once released."""
    db = str(tmp_path / "x.db")
    with hold(db, 0.0) as lk:
        assert lock_path(db).read_text().startswith("tagwatch serve pid")
        t = time.monotonic()
        with pytest.raises(StoreError, match="another engine is serving"):
            hold(db, 0.5)
        assert time.monotonic() - t >= 0.5
        assert lk.what.endswith("x.db-engine.lock")
    hold(db, 0.0).release()
    assert hold(":memory:", 0.0).what == "memory"
    assert advisory_key("tagwatch") != advisory_key("tagwatch_shard_0")
    assert -(2**63) <= advisory_key("tagwatch") < 2**63


def _terminate(url: str, pid: int) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as c:
        assert c.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)


def _ledger_rows(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as c:
        return int(c.execute("SELECT count(*) FROM tagwatch.ledger").fetchone()[0])  # type: ignore[index]


def test_a_store_whose_engine_lock_is_gone_writes_nothing(pg_url: str) -> None:
    """The fence: the lock's session ends (a server restart, a network cut, an
    administrator) while the engine runs on; its store's next write is refused with
    LockLost, rolled back, and so is every one after (another engine may hold it now)."""
    from engine.errors import LockLost
    from engine.store.ledger import Step
    from engine.store.sql.open import open_store

    store = open_store(pg_url)
    lk = hold(store.target, 0.0)
    try:
        store.fence = lk.fence()
        assert store.fence is not None
        store.commit([], [], 10.0, steps=[Step("tick", 10.0)])  # held: written
        before = _ledger_rows(pg_url)
        assert before >= 1
        _terminate(pg_url, lk._conn.info.backend_pid)
        for now in (11.0, 12.0):
            with pytest.raises(LockLost, match="lost the engine lock"):
                store.commit([], [], now, steps=[Step("tick", now)])
        assert _ledger_rows(pg_url) == before
        # ...while another engine now takes the store at once
        hold(store.target, 0.0).release()
    finally:
        store.close()
        lk.release()
    assert hold(":memory:", 0.0).fence() is None


def test_serve_stops_when_its_engine_lock_is_lost(mosquitto, tmp_path: Path, pg_url: str) -> None:
    """Through `tagwatch serve` on PostgreSQL: its lock session is terminated; the engine's
    next commit finds the lock gone, and it stops with exit code 2 and the reason, leaving
    what it had not committed unacknowledged; a new engine then serves the store."""
    import psycopg

    zones, subjects = write_world(tmp_path)
    host, port = mosquitto.host, mosquitto.port
    with EngineProcess(host, port, zones, subjects, pg_url) as eng:
        asyncio.run(wait_online(host, port))
        with psycopg.connect(pg_url, autocommit=True) as c:
            (pid,) = c.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                (f"tagwatch serve pid {eng.pid} on {__import__('socket').gethostname()}"[:63],),
            ).fetchone()  # type: ignore[misc]
        _terminate(pg_url, pid)
        # a fix to decide: its step is the next write (a tick's step would be too)
        msg = json.dumps(fix(1, time.time(), 500.0, 500.0))
        asyncio.run(publish(host, port, [("tagwatch/v1/tags/T1/fixes", msg)]))
        assert _wait_exit(eng) == 2
        said = eng.log_text()
        assert "lost the engine lock" in said and "Traceback" not in said, said
    with EngineProcess(host, port, zones, subjects, pg_url) as again:
        _wait_log(again, "broker: connected to", 2)
        assert again.stop() == 0, again.log_text()
