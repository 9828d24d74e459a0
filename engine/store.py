"""Durable store (SQLite, WAL): alert lifecycle records, current alert state, dead letters,
and the publish outbox. Everything one batch produces is committed in one transaction."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from engine.alerts import Alert, decode_alert, encode_alert
from engine.errors import StoreError
from engine.records import DeadLetter

SCHEMA_VERSION = 1

_SCHEMA = """
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
CREATE TABLE IF NOT EXISTS dead_letters (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at REAL NOT NULL,
    origin TEXT NOT NULL,
    reason TEXT NOT NULL,
    size INTEGER NOT NULL,
    payload BLOB NOT NULL
);
"""


@dataclass(frozen=True)
class OutboxItem:
    """An alert record committed but not yet confirmed published."""

    seq: int
    subject: str
    payload: bytes


@dataclass(frozen=True)
class DeadLetterRow:
    seq: int
    received_at: float
    origin: str
    reason: str
    size: int
    payload: bytes


class SqliteStore:
    """The embedded store. `path` ':memory:' gives a throwaway store (replay, tests)."""

    def __init__(self, path: str | Path, *, dead_letter_max_bytes: int = 65_536) -> None:
        self.path = str(path)
        self.dead_letter_max_bytes = dead_letter_max_bytes
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA busy_timeout=5000")
            if self.path != ":memory:":
                mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise StoreError(f"{self.path}: could not switch SQLite to WAL ({mode})")
            # FULL: a commit survives power loss, not just a process crash. Alerts are
            # never lost, so we pay the fsync per batch (batches amortise it).
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._check_version()
        except (sqlite3.Error, OSError) as e:
            raise StoreError(f"cannot open alert store {self.path}: {e}") from e

    def _check_version(self) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is None:
            self._db.execute(
                "INSERT INTO meta(key, value) VALUES('schema', ?)", (str(SCHEMA_VERSION),)
            )
        elif int(row[0]) != SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {row[0]}, this tagwatch expects {SCHEMA_VERSION}"
            )

    # -- writing -----------------------------------------------------------------------
    def commit(
        self, alerts: Sequence[Alert], dead: Sequence[DeadLetter], now: float | None = None
    ) -> list[OutboxItem]:
        """Write one batch's alert records and dead letters in one transaction.

        Returns the outbox items to publish; they are durable when this returns."""
        now = time.time() if now is None else now
        out: list[OutboxItem] = []
        if not alerts and not dead:
            return out
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            for a in alerts:
                payload = encode_alert(a)
                cur = db.execute(
                    "INSERT INTO alert_log(alert_id, state, subject, record, written_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (a.id, a.state, a.subject, payload, now),
                )
                out.append(OutboxItem(int(cur.lastrowid or 0), a.subject, payload))
                db.execute(
                    "INSERT INTO alerts(id, kind, state, subject, tag, zone, severity,"
                    " confidence, opened_t, raised_t, closed_t, evidence, updated_at)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
                    " ON CONFLICT(id) DO UPDATE SET state=excluded.state,"
                    " severity=excluded.severity, confidence=excluded.confidence,"
                    " closed_t=excluded.closed_t, evidence=excluded.evidence,"
                    " updated_at=excluded.updated_at",
                    (
                        a.id, a.kind, a.state, a.subject, a.tag, a.zone, a.severity,
                        a.confidence, a.opened_t, a.raised_t, a.closed_t,
                        _evidence_json(a), now,
                    ),
                )  # fmt: skip
            if dead:
                db.executemany(
                    "INSERT INTO dead_letters(received_at, origin, reason, size, payload)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [
                        (now, d.origin, d.reason, len(d.payload),
                         d.payload[: self.dead_letter_max_bytes])
                        for d in dead
                    ],
                )  # fmt: skip
            db.execute("COMMIT")
        except sqlite3.Error as e:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise StoreError(f"alert store {self.path}: write failed: {e}") from e
        return out

    def mark_published(self, seqs: Iterable[int], now: float | None = None) -> None:
        now = time.time() if now is None else now
        rows = [(now, s) for s in seqs]
        if not rows:
            return
        try:
            self._db.executemany("UPDATE alert_log SET published_at=? WHERE seq=?", rows)
        except sqlite3.Error as e:
            raise StoreError(f"alert store {self.path}: cannot mark published: {e}") from e

    # -- reading -----------------------------------------------------------------------
    def unpublished(self, limit: int = 10_000) -> list[OutboxItem]:
        rows = self._db.execute(
            "SELECT seq, subject, record FROM alert_log WHERE published_at IS NULL"
            " ORDER BY seq LIMIT ?",
            (limit,),
        ).fetchall()
        return [OutboxItem(int(s), str(sub), bytes(r)) for s, sub, r in rows]

    def alert_log(self) -> list[Alert]:
        rows = self._db.execute("SELECT record FROM alert_log ORDER BY seq").fetchall()
        return [decode_alert(bytes(r[0])) for r in rows]

    def current_alerts(self, state: str | None = None) -> list[Alert]:
        sql = "SELECT record FROM alert_log WHERE seq IN (SELECT MAX(seq) FROM alert_log GROUP BY alert_id)"
        rows = self._db.execute(sql + " ORDER BY seq").fetchall()
        alerts = [decode_alert(bytes(r[0])) for r in rows]
        return [a for a in alerts if state is None or a.state == state]

    def dead_letters(self, limit: int | None = None) -> list[DeadLetterRow]:
        sql = (
            "SELECT seq, received_at, origin, reason, size, payload FROM dead_letters ORDER BY seq"
        )
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [
            DeadLetterRow(int(a), float(b), str(c), str(d), int(e), bytes(f))
            for a, b, c, d, e, f in self._db.execute(sql).fetchall()
        ]

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.close()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _evidence_json(a: Alert) -> str:
    return msgspec.json.encode(a.evidence).decode()
