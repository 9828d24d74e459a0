"""Durable store (SQLite, WAL): alert lifecycle records, current alert state, dead letters,
the publish outbox, the hash-chained evidence ledger (engine/store/ledger.py) and the pipeline
snapshots restart recovery starts from. Everything one batch produces is committed in one
transaction; the engine acknowledges the batch's messages only after that commit."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import msgspec

from engine.errors import StoreError
from engine.store import ledger
from engine.store.base import OutboxItem
from engine.store.deadletters import DeadLetterBudget
from engine.store.ledger import LedgerWriter, Step
from engine.wire.alerts import Alert, decode_alert, encode_alert
from engine.wire.records import DeadLetter

SCHEMA_VERSION = 2

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
_ADDED = (
    ("dead_letters", "sha256", "TEXT"),  # hex SHA-256 of everything rejected
    ("dead_letters", "device", "TEXT"),  # the device it came from, when known
    ("dead_letters", "count", "INTEGER NOT NULL DEFAULT 1"),  # > 1: a summary row
)


@dataclass(frozen=True)
class DeadLetterRow:
    seq: int
    received_at: float
    origin: str
    reason: str
    size: int
    payload: bytes  # an excerpt (the first bytes) when size is larger
    sha256: str | None = None  # None in rows written before the hash was kept
    device: str | None = None
    count: int = 1  # dead letters this row stands for (> 1: a budget summary)


class SqliteStore:
    """The embedded store. `path` ':memory:' gives a throwaway store (replay, tests)."""

    def __init__(
        self,
        path: str | Path,
        *,
        dead_letter_max_bytes: int = 512,
        dead_letter_budget: int = 50,
        dead_letter_window_s: float = 600.0,
        busy_timeout_s: float = 2.0,
    ) -> None:
        self.path = str(path)
        self.dead_letter_max_bytes = dead_letter_max_bytes
        self.budget = DeadLetterBudget(dead_letter_budget, dead_letter_window_s)
        self.busy_timeout_s = busy_timeout_s
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = self._connect()
            self._db.executescript(_SCHEMA + ledger.SCHEMA)
            self._check_version()
            self._add_columns()
            self.head = ledger.read_head(self._db)
        except (sqlite3.Error, OSError) as e:
            raise StoreError(f"cannot open alert store {self.path}: {e}{advice(e)}") from e

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
        if self.path != ":memory:":
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{self.path}: could not switch SQLite to WAL ({mode})")
        # FULL: a commit survives power loss, not just a process crash. Alerts are never
        # lost, so we pay the fsync per batch (batches amortise it).
        db.execute("PRAGMA synchronous=FULL")
        return db

    def _after_failure(self) -> None:
        """A write failed (locked, disk full, I/O error): roll back, and if the connection
        itself is unusable open a new one. The ledger head is re-read from the file: it is
        the truth about what committed."""
        try:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            self.head = ledger.read_head(self._db)
            return
        except sqlite3.Error:
            if self.path == ":memory:":
                return
        with contextlib.suppress(sqlite3.Error):
            self._db.close()
        try:
            self._db = self._connect()
            self.head = ledger.read_head(self._db)
        except (sqlite3.Error, StoreError):
            pass  # the next commit fails again and says why

    def _fail(self, doing: str, e: sqlite3.Error) -> NoReturn:
        raise StoreError(f"alert store {self.path}: {doing}: {e}{advice(e)}") from e

    @contextlib.contextmanager
    def _reading(self, what: str) -> Iterator[sqlite3.Connection]:
        """A read outside any transaction: a failure leaves nothing to roll back."""
        try:
            yield self._db
        except sqlite3.Error as e:
            self._fail(f"cannot read {what}", e)

    def _check_version(self) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is None:
            self._db.execute(
                "INSERT INTO meta(key, value) VALUES('schema', ?)", (str(SCHEMA_VERSION),)
            )
        elif int(row[0]) == 1:  # version 2 only added tables (ledger, snapshots)
            self._db.execute(
                "UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION),)
            )
        elif int(row[0]) != SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {row[0]}, this tagwatch expects"
                f" {SCHEMA_VERSION}: use the tagwatch that wrote it, or another --db"
            )

    def _add_columns(self) -> None:
        for table, column, decl in _ADDED:
            have = {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")

    # -- writing -----------------------------------------------------------------------
    def commit(
        self,
        alerts: Sequence[Alert],
        dead: Sequence[DeadLetter],
        now: float | None = None,
        *,
        steps: Sequence[Step] = (),
    ) -> list[OutboxItem]:
        """Write one batch in one transaction: the pipeline steps and the records they
        took (evidence ledger), the alert records they decided (ledger, log, current
        state, outbox) and the dead letters.

        Returns the outbox items to publish; they are durable when this returns. Raises
        StoreError when nothing was written (the caller keeps everything and retries)."""
        now = time.time() if now is None else now
        out: list[OutboxItem] = []
        plan = self.budget.plan(dead, now)
        dead = plan.rows
        if not alerts and not dead and not steps:
            self.budget.apply(plan)
            return out
        db = self._db
        payloads = [encode_alert(a) for a in alerts]
        rows = LedgerWriter(self.head).rows(
            steps, [(a.id, a.raised_t, p) for a, p in zip(alerts, payloads, strict=True)]
        )
        try:
            db.execute("BEGIN IMMEDIATE")
            if rows:
                db.executemany(ledger.INSERT, rows)
            for a, payload in zip(alerts, payloads, strict=True):
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
                self._insert_dead(dead, now)
            db.execute("COMMIT")
        except sqlite3.Error as e:
            expected = LedgerWriter.after(rows, self.head)
            self._after_failure()
            if rows and self.head == expected:
                # COMMIT failed after the data was durable: it is in; the outbox
                # flush publishes its alerts.
                self.budget.apply(plan)
                return []
            self._fail("write failed", e)
        self.head = LedgerWriter.after(rows, self.head)
        self.budget.apply(plan)
        return out

    def _insert_dead(self, dead: Sequence[DeadLetter], now: float) -> None:
        self._db.executemany(
            "INSERT INTO dead_letters(received_at, origin, reason, size, payload, sha256,"
            " device, count) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (now, d.origin, d.reason, d.size, d.payload[: self.dead_letter_max_bytes],
                 d.sha256 or None, d.device, d.count)
                for d in dead
            ],
        )  # fmt: skip

    def flush_dead_letters(self, now: float | None = None) -> None:
        """Write the summaries of dead letters held over budget (on close; best effort)."""
        now = time.time() if now is None else now
        rows = self.budget.drain(now)
        if not rows:
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._insert_dead(rows, now)
            self._db.execute("COMMIT")
        except sqlite3.Error as e:
            self._after_failure()
            self._fail("cannot write the dead-letter summaries", e)

    def missing(self, alerts: Sequence[Alert]) -> list[Alert]:
        """The alert records not already in the log, byte for byte (restart recovery
        re-decides what was committed before the crash: those are not new)."""
        out = []
        with self._reading("the alert log") as db:
            for a in alerts:
                row = db.execute(
                    "SELECT 1 FROM alert_log WHERE alert_id = ? AND record = ? LIMIT 1",
                    (a.id, encode_alert(a)),
                ).fetchone()
                if row is None:
                    out.append(a)
        return out

    # -- snapshots and retention -------------------------------------------------------
    def save_snapshot(self, fingerprint: str, now: float, state: bytes, keep: int = 2) -> None:
        """Pipeline state as of the ledger head (the last committed step)."""
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "INSERT OR REPLACE INTO snapshots(n, step, now, fingerprint, created_at, state)"
                " VALUES (?,?,?,?,?,?)",
                (self.head.n, self.head.step, now, fingerprint, time.time(), state),
            )
            db.execute(
                "DELETE FROM snapshots WHERE n NOT IN"
                " (SELECT n FROM snapshots ORDER BY n DESC LIMIT ?)",
                (keep,),
            )
            db.execute("COMMIT")
        except sqlite3.Error as e:
            self._after_failure()
            self._fail("cannot save snapshot", e)

    def latest_snapshot(self) -> tuple[int, float, str, bytes] | None:
        """(ledger n, engine clock, fingerprint, state) of the newest snapshot."""
        with self._reading("the snapshots") as db:
            row = db.execute(
                "SELECT n, now, fingerprint, state FROM snapshots ORDER BY n DESC LIMIT 1"
            ).fetchone()
        return None if row is None else (int(row[0]), float(row[1]), str(row[2]), bytes(row[3]))

    def steps_after(self, n: int) -> Iterator[Step]:
        """Streamed: a long ledger (no snapshot yet, or a rebuild) never sits in memory."""
        with self._reading("the evidence ledger") as db:
            yield from ledger.replay_steps(db, n)

    def last_step_now(self) -> float | None:
        with self._reading("the evidence ledger") as db:
            row = db.execute(
                "SELECT t FROM ledger WHERE kind = 'step' ORDER BY n DESC LIMIT 1"
            ).fetchone()
        return None if row is None else float(row[0])

    def prune(self, before: float, chunk: int = 50_000) -> int:
        """Retention: delete ledger rows from the front whose step ran before `before`
        (engine clock), never past the newest snapshot (recovery starts there). The last
        deleted row becomes the chain's anchor. Closed alerts whose records were all
        written before the anchor's step (and published) leave alert_log and alerts with
        it. Returns ledger rows deleted (one chunk at most)."""
        with self._reading("the evidence ledger") as db:
            snap = db.execute("SELECT MAX(n) FROM snapshots").fetchone()[0]
            if snap is None:
                return 0
            row = db.execute(
                "SELECT MIN(n) FROM ledger WHERE kind = 'step' AND t >= ?", (before,)
            ).fetchone()[0]
            first = db.execute("SELECT MIN(n) FROM ledger").fetchone()[0]
        limit = int(snap) if row is None else min(int(snap), int(row) - 1)
        if first is None or limit < int(first):
            return 0
        limit = min(limit, int(first) + chunk - 1)
        try:
            db.execute("BEGIN IMMEDIATE")
            n, step, h = db.execute(
                "SELECT n, step, hash FROM ledger WHERE n <= ? ORDER BY n DESC LIMIT 1", (limit,)
            ).fetchone()
            (cut,) = db.execute(
                "SELECT MAX(t) FROM ledger WHERE kind = 'step' AND n <= ?", (limit,)
            ).fetchone()
            cur = db.execute("DELETE FROM ledger WHERE n <= ?", (limit,))
            if cut is not None:
                _prune_alerts(db, min(before, float(cut)))
            db.executemany(
                "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                [("anchor_n", str(n)), ("anchor_step", str(step)), ("anchor_hash", bytes(h).hex())],
            )
            db.execute("COMMIT")
        except sqlite3.Error as e:
            self._after_failure()
            self._fail("retention failed", e)
        return int(cur.rowcount)

    def prune_dead_letters(self, before: float, chunk: int = 50_000) -> int:
        """Retention: delete dead letters received before `before` (one chunk at most)."""
        try:
            cur = self._db.execute(
                "DELETE FROM dead_letters WHERE seq IN (SELECT seq FROM dead_letters"
                " WHERE received_at < ? ORDER BY seq LIMIT ?)",
                (before, chunk),
            )
        except sqlite3.Error as e:
            self._after_failure()
            self._fail("dead-letter retention failed", e)
        return int(cur.rowcount)

    def verify(self) -> ledger.VerifyReport:
        with self._reading("the evidence ledger") as db:
            return ledger.verify(db)

    def mark_published(self, seqs: Iterable[int], now: float | None = None) -> None:
        now = time.time() if now is None else now
        rows = [(now, s) for s in seqs]
        if not rows:
            return
        try:
            self._db.executemany("UPDATE alert_log SET published_at=? WHERE seq=?", rows)
        except sqlite3.Error as e:
            self._after_failure()
            self._fail("cannot mark published", e)

    # -- reading -----------------------------------------------------------------------
    def unpublished(self, limit: int = 10_000) -> list[OutboxItem]:
        with self._reading("the outbox") as db:
            rows = db.execute(
                "SELECT seq, subject, record FROM alert_log WHERE published_at IS NULL"
                " ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [OutboxItem(int(s), str(sub), bytes(r)) for s, sub, r in rows]

    def alert_log(self) -> list[Alert]:
        with self._reading("the alert log") as db:
            rows = db.execute("SELECT record FROM alert_log ORDER BY seq").fetchall()
        return [decode_alert(bytes(r[0])) for r in rows]

    def current_alerts(self, state: str | None = None) -> list[Alert]:
        sql = "SELECT record FROM alert_log WHERE seq IN (SELECT MAX(seq) FROM alert_log GROUP BY alert_id)"
        with self._reading("the alert log") as db:
            rows = db.execute(sql + " ORDER BY seq").fetchall()
        alerts = [decode_alert(bytes(r[0])) for r in rows]
        return [a for a in alerts if state is None or a.state == state]

    def dead_letters(self, limit: int | None = None) -> list[DeadLetterRow]:
        sql = (
            "SELECT seq, received_at, origin, reason, size, payload, sha256, device, count"
            " FROM dead_letters ORDER BY seq"
        )
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._reading("the dead letters") as db:
            rows = db.execute(sql).fetchall()
        return [
            DeadLetterRow(int(a), float(b), str(c), str(d), int(e), bytes(f), g, h, int(i))
            for a, b, c, d, e, f, g, h, i in rows
        ]

    def close(self) -> None:
        with contextlib.suppress(StoreError):
            self.flush_dead_letters()
        with contextlib.suppress(sqlite3.Error):
            self._db.close()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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


def advice(e: BaseException) -> str:
    """' (what to do)' for a storage error whose cause is recognised, else ''."""
    text = str(e).lower()
    for words, what in _ADVICE:
        if any(w in text for w in words):
            return f" ({what})"
    return ""


def _prune_alerts(db: sqlite3.Connection, before: float) -> None:
    """Closed alerts whose every record was written (and published) before `before`: their
    evidence left the ledger, recovery never decides them again, so they go too."""
    old = (
        "SELECT id FROM alerts WHERE state = 'closed' AND updated_at < ? AND id NOT IN"
        " (SELECT alert_id FROM alert_log WHERE written_at >= ? OR published_at IS NULL)"
    )
    db.execute(f"DELETE FROM alert_log WHERE alert_id IN ({old})", (before, before))
    db.execute(f"DELETE FROM alerts WHERE id IN ({old})", (before, before))


def _evidence_json(a: Alert) -> str:
    return msgspec.json.encode(a.evidence).decode()
