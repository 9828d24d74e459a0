"""The store's tables (besides the ledger's), their version and additive columns, how the
database file is created (private), and what a user can do about a storage error (SQLite's
or PostgreSQL's)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from engine.errors import StoreError
from engine.store.sql.conn import Conn

SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- Current state of every alert (one row per id), for monitors and queries.
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    subject TEXT NOT NULL,
    tag TEXT,
    zone TEXT,
    severity TEXT NOT NULL,
    confidence REAL NOT NULL,
    opened_t REAL NOT NULL,
    raised_t REAL NOT NULL,
    closed_t REAL,
    evidence TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_subject ON alerts(subject, state);
-- Every lifecycle record, append-only, in the order decided; doubles as the outbox:
-- published_at stays NULL until the broker has acknowledged the publish.
CREATE TABLE IF NOT EXISTS alert_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id TEXT NOT NULL,
    state TEXT NOT NULL,
    subject TEXT NOT NULL,
    record BLOB NOT NULL,
    written_at REAL NOT NULL,
    published_at REAL
);
CREATE INDEX IF NOT EXISTS alert_log_unpublished ON alert_log(seq) WHERE published_at IS NULL;
CREATE INDEX IF NOT EXISTS alert_log_alert ON alert_log(alert_id);
CREATE TABLE IF NOT EXISTS dead_letters (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at REAL NOT NULL,
    origin TEXT NOT NULL,
    reason TEXT NOT NULL,
    size INTEGER NOT NULL,
    payload BLOB NOT NULL
    -- added later (ALTER TABLE in _add_columns for older stores): sha256, device, count
);
CREATE INDEX IF NOT EXISTS dead_letters_received ON dead_letters(received_at);
"""
# Columns added to existing tables, additively: (table, column, declaration).
ADDED = (
    ("dead_letters", "sha256", "TEXT"),  # hex SHA-256 of everything rejected
    ("dead_letters", "device", "TEXT"),  # the device it came from, when known
    ("dead_letters", "count", "INTEGER NOT NULL DEFAULT 1"),  # > 1: a summary row
)


# What a user can do about a storage error, by the words of its message.
_ADVICE = (
    (("locked", "busy", "lock timeout"), "another process holds a lock on it (a second"
     " engine, a backup, a sqlite3 or psql shell): stop it or let it finish"),
    (("could not connect", "connection refused", "connection failed", "timeout expired",
      "server closed the connection", "terminating connection", "could not translate host"),
     "the PostgreSQL server is not reachable: check that it runs, the URL's host and port,"
     " and the network"),
    (("password authentication failed", "no pg_hba.conf entry", "role \"",),
     "check the URL's user and password, and the server's pg_hba.conf"),
    (("database \"",), "check the URL's database name (create it first:"
     " createdb), or the --db path"),
    (("deadlock", "could not serialize"), "another writer got in the way: it is retried"),
    (("read-only transaction",), "the server is a read-only replica: point --db at the"
     " primary"),
    (("full", "too large", "quota", "no space"), "free space on its disk, or raise the"
     " file size limit or quota"),
    (("readonly", "read-only", "permission", "unable to open"), "make the file and its"
     " folder readable and writable by this user"),
    (("malformed", "not a database", "encrypted"), "the file is damaged or not a tagwatch"
     " store: move it aside or restore a backup"),
    (("i/o",), "the disk reported an I/O error: check it (dmesg, smartctl)"),
    (("not a directory", "no such file"), "check the path: its folder must exist or be"
     " creatable by this user"),
)  # fmt: skip


def check_version(db: Conn, name: str, read_only: bool) -> None:
    """Record the schema version in a new store, upgrade a version 1 store (version 2 only
    added tables: the ledger, snapshots), refuse any other. Readers read what is there."""
    row = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
    if read_only and (row is None or int(row[0]) in (1, SCHEMA_VERSION)):
        return  # readers read what is there; the engine upgrades
    if row is None:
        db.execute("INSERT INTO meta(key, value) VALUES('schema', ?)", (str(SCHEMA_VERSION),))
    elif int(row[0]) == 1:
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION),))
    elif int(row[0]) != SCHEMA_VERSION:
        raise StoreError(
            f"{name} has schema version {row[0]}, this tagwatch expects"
            f" {SCHEMA_VERSION}: use the tagwatch that wrote it, or another --db"
        )


def create_private(path: Path) -> None:
    """Create `path` empty with mode 0600 if it does not exist: the store holds victims'
    phone positions. SQLite gives its -wal and -shm files the database file's mode."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def advice(e: BaseException) -> str:
    """' (what to do)' for a storage error whose cause is recognised, else ''."""
    text = str(e).lower()
    for words, what in _ADVICE:
        if any(w in text for w in words):
            return f" ({what})"
    return ""
