"""SQLite alert store: WAL, one transaction per batch, outbox, dead letters, reopen."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from engine.errors import StoreError
from engine.store.base import Store
from engine.store.sqlite import SqliteStore
from engine.wire.alerts import Alert, alert_id, decode_alert
from engine.wire.records import DeadLetter


def _alert(state: str = "open", closed_t: float | None = None) -> Alert:
    return Alert(
        id=alert_id("S1", "Z1", "zone_breach", ("T1", 7)),
        kind="zone_breach",
        state=state,  # type: ignore[arg-type]
        subject="S1",
        tag="T1",
        zone="Z1",
        severity="high",
        confidence=0.97,
        opened_t=100.0,
        raised_t=100.0,
        closed_t=closed_t,
        evidence=[("T1", 7), ("T1", 8)],
    )


def test_commit_outbox_and_current_state(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    with SqliteStore(db) as st:
        out = st.commit([_alert()], [DeadLetter("t/x", b"\x00garbage", "not valid JSON")])
        assert [o.subject for o in out] == ["S1"]
        assert decode_alert(out[0].payload) == _alert()
        assert [u.seq for u in st.unpublished()] == [out[0].seq]
        st.mark_published([out[0].seq])
        assert st.unpublished() == []
        st.commit([_alert("closed", 160.0)], [])
        assert [a.state for a in st.current_alerts()] == ["closed"]
        assert [a.state for a in st.alert_log()] == ["open", "closed"]
    # durable across reopen, and really WAL
    with SqliteStore(db) as st:
        assert [a.state for a in st.alert_log()] == ["open", "closed"]
        dl = st.dead_letters()
        assert dl[0].payload == b"\x00garbage" and dl[0].reason == "not valid JSON"
        assert len(st.unpublished()) == 1  # the closed record was never marked
    mode = sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_dead_letter_payload_is_capped_but_size_kept(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "a.db", dead_letter_max_bytes=10) as st:
        st.commit([], [DeadLetter("o", b"x" * 1000, "too big")])
        row = st.dead_letters()[0]
        assert row.size == 1000 and row.payload == b"x" * 10


def test_unwritable_location_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    with pytest.raises(StoreError, match="cannot open alert store"):
        SqliteStore(blocker / "sub" / "a.db")


def test_schema_version_mismatch_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    SqliteStore(db).close()
    con = sqlite3.connect(db)
    con.execute("UPDATE meta SET value='999' WHERE key='schema'")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="schema version 999"):
        SqliteStore(db)


def test_failed_batch_leaves_nothing_behind(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    st = SqliteStore(db, busy_timeout_s=0.05)
    other = sqlite3.connect(db, timeout=0)
    other.execute("BEGIN EXCLUSIVE")  # another writer holds the lock
    with pytest.raises(StoreError, match="write failed") as err:
        st.commit([_alert()], [DeadLetter("o", b"x", "r")])
    assert "another process holds a lock" in str(err.value)  # what to do about it
    assert isinstance(err.value.__cause__, sqlite3.OperationalError)
    other.rollback()
    other.close()
    assert st.alert_log() == [] and st.dead_letters() == []
    st.commit([_alert()], [])
    assert len(st.alert_log()) == 1
    st.close()


def test_sqlite_store_is_the_store_the_engine_asks_for(tmp_path: Path) -> None:
    """The serve loop, replay and recovery take a `Store`; mypy checks this assignment."""
    with SqliteStore(tmp_path / "a.db") as st:
        store: Store = st
        assert store.unpublished() == [] and store.latest_snapshot() is None


def test_a_failed_read_is_a_store_error_with_its_cause(tmp_path: Path) -> None:
    """Nothing of sqlite3 escapes the store: a read of a damaged store raises StoreError
    naming the store and what it was reading, with the sqlite3 error as its cause."""
    db = tmp_path / "a.db"
    with SqliteStore(db) as st:
        con = sqlite3.connect(db)
        con.executescript("DROP TABLE alert_log; DROP TABLE ledger;")
        con.close()
        with pytest.raises(StoreError, match="cannot read the outbox") as err:
            st.unpublished()
        assert str(db) in str(err.value)
        assert isinstance(err.value.__cause__, sqlite3.Error)
        with pytest.raises(StoreError, match="cannot read the evidence ledger"):
            list(st.steps_after(0))
        with pytest.raises(StoreError, match="cannot read the alert log"):
            st.missing([_alert()])
