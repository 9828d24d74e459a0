"""The store's tables (besides the ledger's), their version and additive columns, how the
database file is created (private), and what a user can do about a storage error."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

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
    (("locked", "busy"), "another process holds a lock on it (a second engine, a backup, a"
     " sqlite3 shell): stop it or let it finish"),
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
