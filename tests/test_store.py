"""The alert store on SQLite and on PostgreSQL (the `store_target` fixture): one
transaction per batch, outbox, dead letters, reopen, what a failure says."""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path

import pytest

from engine.errors import StoreError
from engine.store.base import Store
from engine.store.sql.conn import DB_ERRORS, dialect
from engine.store.sql.open import connect, open_store, shard_target
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


def test_commit_outbox_and_current_state(store_target: str) -> None:
    db = store_target
    with open_store(db) as st:
        out = st.commit([_alert()], [DeadLetter("t/x", b"\x00garbage", "not valid JSON")])
        assert [o.subject for o in out] == ["S1"]
        assert decode_alert(out[0].payload) == _alert()
        assert [u.seq for u in st.unpublished()] == [out[0].seq]
        st.mark_published([out[0].seq])
        assert st.unpublished() == []
        st.commit([_alert("closed", 160.0)], [])
        assert [a.state for a in st.current_alerts()] == ["closed"]
        assert [a.state for a in st.alert_log()] == ["open", "closed"]
    # durable across reopen, and (SQLite) really WAL
    with open_store(db) as st:
        assert [a.state for a in st.alert_log()] == ["open", "closed"]
        dl = st.dead_letters()
        assert dl[0].payload == b"\x00garbage" and dl[0].reason == "not valid JSON"
        assert len(st.unpublished()) == 1  # the closed record was never marked
    if "://" not in db:
        mode = sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"


def test_dead_letter_payload_is_capped_but_size_kept(store_target: str) -> None:
    with open_store(store_target, dead_letter_max_bytes=10) as st:
        st.commit([], [DeadLetter("o", b"x" * 1000, "too big")])
        row = st.dead_letters()[0]
        assert row.size == 1000 and row.payload == b"x" * 10


def test_unwritable_location_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    with pytest.raises(StoreError, match="cannot open alert store"):
        SqliteStore(blocker / "sub" / "a.db")


def test_schema_version_mismatch_is_refused(store_target: str) -> None:
    db = store_target
    open_store(db).close()
    con = connect(db)
    con.execute("UPDATE meta SET value='999' WHERE key='schema'")
    con.close()
    with pytest.raises(StoreError, match="schema version 999"):
        open_store(db)


def _hold_the_write_lock(db: str) -> tuple[object, object]:
    """Another writer holding the store's write lock: (its connection, how to let go)."""
    if "://" not in db:
        other = sqlite3.connect(db, timeout=0)
        other.execute("BEGIN EXCLUSIVE")
        return other, sqlite3.OperationalError
    from engine.store.sql.conn import PgError

    other = connect(db)  # type: ignore[assignment]
    other.execute("BEGIN")
    other.execute("LOCK TABLE ledger IN ACCESS EXCLUSIVE MODE")
    return other, PgError


def test_failed_batch_leaves_nothing_behind(store_target: str) -> None:
    db = store_target
    open_store(db).close()
    st = open_store(db, busy_timeout_s=0.05)
    other, cause = _hold_the_write_lock(db)  # another writer holds the lock
    with pytest.raises(StoreError, match="write failed") as err:
        st.commit([_alert()], [DeadLetter("o", b"x", "r")])
    assert "another process holds a lock" in str(err.value)  # what to do about it
    assert isinstance(err.value.__cause__, cause)  # type: ignore[arg-type]
    other.execute("ROLLBACK")  # type: ignore[attr-defined]
    other.close()  # type: ignore[attr-defined]
    assert st.alert_log() == [] and st.dead_letters() == []
    st.commit([_alert()], [])
    assert len(st.alert_log()) == 1
    st.close()


def test_sqlite_store_is_the_store_the_engine_asks_for(store_target: str) -> None:
    """The serve loop, replay and recovery take a `Store`; mypy checks this assignment."""
    with open_store(store_target) as st:
        store: Store = st
        assert store.unpublished() == [] and store.latest_snapshot() is None


def test_a_failed_read_is_a_store_error_with_its_cause(store_target: str) -> None:
    """Nothing of sqlite3 or psycopg escapes the store: a read of a damaged store raises
    StoreError naming the store and what it was reading, with the driver's error (psycopg:
    wrapped) as its cause; a URL's password is never in it."""
    db = store_target
    with open_store(db) as st:
        con = connect(db)
        con.executescript("DROP TABLE alert_log; DROP TABLE ledger;")
        lite = dialect(con) == "sqlite"
        con.close()
        with pytest.raises(StoreError, match="cannot read the outbox") as err:
            st.unpublished()
        assert (db if lite else "tagwatch:***@127.0.0.1") in str(err.value)
        assert "s3cret-pw" not in str(err.value)
        assert isinstance(err.value.__cause__, DB_ERRORS)
        with pytest.raises(StoreError, match="cannot read the evidence ledger"):
            list(st.steps_after(0))
        with pytest.raises(StoreError, match="cannot read the alert log"):
            st.missing([_alert()])


def test_an_unreachable_postgresql_url_is_a_clear_store_error() -> None:
    """Nothing listens there: the error names the server (password masked) and says what
    to check; psycopg's error is only its cause."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens on it
    url = f"postgresql://tagwatch:s3cret-pw@127.0.0.1:{port}/tagwatch"
    with pytest.raises(StoreError) as err:
        open_store(url, busy_timeout_s=1.0)
    text = str(err.value)
    assert f"cannot open alert store postgresql://tagwatch:***@127.0.0.1:{port}/tagwatch" in text
    assert "s3cret-pw" not in text
    assert "PostgreSQL server is not reachable" in text, text


def test_a_url_names_its_schema_and_a_file_has_none(tmp_path: Path) -> None:
    from engine.store.sql.conn import describe, split_url, with_schema
    from engine.store.sql.pg import shard_schema

    url = "postgresql://u:pw@db.example:5432/tw?sslmode=require"
    assert split_url(url) == (url, "tagwatch")
    named = with_schema(url, shard_schema(1, 4))
    assert split_url(named) == (url, "tagwatch_shard_1")
    assert (
        describe(named)
        == "postgresql://u:***@db.example:5432/tw?sslmode=require&schema=tagwatch_shard_1"
    )
    with pytest.raises(ValueError, match="shard 4/4"):
        shard_schema(4, 4)
    with pytest.raises(ValueError, match="lower case"):
        with_schema(url, "Robert'); DROP TABLE")
    assert shard_target(url, 1, 4) == named
    assert (
        shard_target("/var/lib/tagwatch/tagwatch.db", 2, 4)
        == "/var/lib/tagwatch/tagwatch.shard2.db"
    )
    with pytest.raises(StoreError, match="schema goes with a PostgreSQL URL"):
        open_store(tmp_path / "a.db", schema="tagwatch_shard_0")


def test_a_nul_in_a_dead_letters_text_cannot_fail_the_commit(store_target: str) -> None:
    """A device id or reason with a NUL byte (PostgreSQL's text refuses it) is stored,
    escaped there, and the batch with it commits."""
    with open_store(store_target) as st:
        st.commit(
            [_alert()], [DeadLetter("t/x", b"\x00", "unknown device T\x00x", device="T\x00x")]
        )
        row = st.dead_letters()[0]
        assert row.payload == b"\x00" and len(st.alert_log()) == 1
        assert row.device in ("T\x00x", "T\\x00x") and row.reason.endswith(row.device)
