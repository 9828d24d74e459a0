"""The notification feed: the alert log read page by page after a position, and the
positions and warnings the notifiers keep, on connections of their own.

Why not the engine's store: its connection and thread belong to the serve loop, which
must never wait on a webhook receiver, and the evidence ledger's head is its alone. So the
notifiers read `alert_log` on a read-only connection (they can write nothing of it) and
write their own tables on a second one, both on one thread of their own (the owner
pattern of engine/store/owner.py). Their tables are not in the hash chain: a warning row
names the alert_log seq it warns of, and that row is in the chain.

Tables (additive, created on first use):
- `webhook_cursor(name, url, seq, updated_at)`: the last alert_log seq each webhook's
  receiver acknowledged (2xx). Written after each acknowledgement: a restart resumes after
  it (at least once: a crash between the 2xx and this write sends that record again).
- `warning_cursor(name, seq, updated_at)`: how far the protected-device warner has read
  (an optimisation: re-reading is harmless, warnings are unique per record and device).
- `warnings`: one row per warning: the alert record (seq, id), the device, the topic and
  payload, when it was decided, when the broker confirmed it, and its status
  (pending, sent, expired)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from engine.errors import StoreError
from engine.store.owner import OwnedResource, own
from engine.store.schema import advice
from engine.store.sql.conn import DB_ERRORS, Conn, describe
from engine.store.sql.open import connect

SCHEMA = """
CREATE TABLE IF NOT EXISTS webhook_cursor (
    name TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    seq INTEGER NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS warning_cursor (
    name TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS warnings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_seq INTEGER NOT NULL,
    alert_id TEXT NOT NULL,
    device TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_at REAL NOT NULL,
    sent_at REAL,
    status TEXT NOT NULL DEFAULT 'pending',
    UNIQUE (alert_seq, device)
);
CREATE INDEX IF NOT EXISTS warnings_alert ON warnings(alert_id, device, created_at);
CREATE INDEX IF NOT EXISTS warnings_pending ON warnings(id) WHERE status = 'pending';
"""
PAGE_MAX = 100  # alert_log rows read at once: a slow receiver costs bounded memory


@dataclass(frozen=True)
class LogRow:
    """One alert_log row: the record bytes exactly as published."""

    seq: int
    alert_id: str
    state: str
    subject: str
    record: bytes
    written_at: float


@dataclass(frozen=True)
class Warning:
    """A warning to one protected device about one alert record."""

    alert_seq: int
    alert_id: str
    device: str
    topic: str
    payload: bytes
    id: int = 0  # the warnings row, once stored
    created_at: float = 0.0


class NotifyStore(OwnedResource):
    """The feed and the notifiers' tables of the engine's store at `path` (which must
    exist: the engine creates it)."""

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 5.0) -> None:
        """`path`: the store's file, or a PostgreSQL URL (its schema: the engine's)."""
        self.path = str(path)
        self.name = describe(self.path)
        self.busy_timeout_s = busy_timeout_s
        self._start("tagwatch-notify", f"notification store {self.name}")

    def _open(self) -> None:
        try:
            # the file (or schema) must exist: the engine creates it
            self._ro = connect(self.path, read_only=True, busy_timeout_s=self.busy_timeout_s)
            # SQLite: synchronous=FULL, as the engine's (a warning sent is evidence)
            self._rw = connect(self.path, busy_timeout_s=self.busy_timeout_s)
            self._rw.executescript(SCHEMA)
        except DB_ERRORS as e:
            raise StoreError(f"cannot open {self.name} for notifications: {e}{advice(e)}") from e

    def _close(self) -> None:
        for db in (getattr(self, "_ro", None), getattr(self, "_rw", None)):
            if db is not None:
                with contextlib.suppress(*DB_ERRORS):
                    db.close()

    def _fail(self, doing: str, e: BaseException) -> NoReturn:
        raise StoreError(f"notification store {self.name}: {doing}: {e}{advice(e)}") from e

    @contextlib.contextmanager
    def _write(self, doing: str) -> Iterator[Conn]:
        try:
            self._rw.execute("BEGIN IMMEDIATE")
            yield self._rw
            self._rw.execute("COMMIT")
        except DB_ERRORS as e:
            with contextlib.suppress(*DB_ERRORS):
                self._rw.execute("ROLLBACK")
            self._fail(doing, e)

    def _read(self, db: Conn, sql: str, params: tuple[object, ...] = ()) -> list:  # type: ignore[type-arg]
        try:
            return db.execute(sql, params).fetchall()
        except DB_ERRORS as e:
            self._fail("cannot read", e)

    # -- the feed ------------------------------------------------------------------------
    def alert_log_after(self, seq: int, limit: int = PAGE_MAX) -> list[LogRow]:
        """Up to `limit` (at most PAGE_MAX) alert_log rows after `seq`, in seq order."""
        rows = self._read(
            self._ro,
            "SELECT seq, alert_id, state, subject, record, written_at FROM alert_log"
            " WHERE seq > ? ORDER BY seq LIMIT ?",
            (seq, min(limit, PAGE_MAX)),
        )
        return [
            LogRow(int(a), str(b), str(c), str(d), bytes(e), float(f)) for a, b, c, d, e, f in rows
        ]

    def last_seq(self) -> int:
        """The newest alert_log seq (0: none yet)."""
        return int(self._read(self._ro, "SELECT COALESCE(MAX(seq), 0) FROM alert_log")[0][0])

    # -- webhook positions ---------------------------------------------------------------
    def webhook_cursor(self, name: str) -> int | None:
        """The last seq `name`'s receiver acknowledged, or None for a webhook never run."""
        rows = self._read(self._rw, "SELECT seq FROM webhook_cursor WHERE name = ?", (name,))
        return int(rows[0][0]) if rows else None

    def set_webhook_cursor(self, name: str, url: str, seq: int) -> None:
        with self._write("cannot store the webhook position") as db:
            db.execute(
                "INSERT INTO webhook_cursor(name, url, seq, updated_at) VALUES (?,?,?,?)"
                " ON CONFLICT(name) DO UPDATE SET url=excluded.url, seq=excluded.seq,"
                " updated_at=excluded.updated_at",
                (name, url, seq, time.time()),
            )

    # -- warnings ------------------------------------------------------------------------
    def warning_cursor(self, name: str = "warnings") -> int | None:
        rows = self._read(self._rw, "SELECT seq FROM warning_cursor WHERE name = ?", (name,))
        return int(rows[0][0]) if rows else None

    def set_warning_cursor(self, seq: int, name: str = "warnings") -> None:
        with self._write("cannot store the warning position") as db:
            self._cursor(db, name, seq)

    @staticmethod
    def _cursor(db: Conn, name: str, seq: int) -> None:
        db.execute(
            "INSERT INTO warning_cursor(name, seq, updated_at) VALUES (?,?,?)"
            " ON CONFLICT(name) DO UPDATE SET seq=excluded.seq, updated_at=excluded.updated_at",
            (name, seq, time.time()),
        )

    def add_warnings(
        self, warnings: Sequence[Warning], seq: int, repeat_s: float, now: float | None = None
    ) -> list[Warning]:
        """Record these warnings (pending) and the warner's position `seq` in one
        transaction. Skipped: one already recorded for the same record and device (read
        again after a restart), and one for the same alert and device less than
        `repeat_s` ago (an escalation). Returns those recorded, with their row ids."""
        now = time.time() if now is None else now
        out: list[Warning] = []
        with self._write("cannot record the warnings") as db:
            for w in warnings:
                recent = db.execute(
                    "SELECT 1 FROM warnings WHERE (alert_seq = ? AND device = ?) OR"
                    " (alert_id = ? AND device = ? AND created_at > ?) LIMIT 1",
                    (w.alert_seq, w.device, w.alert_id, w.device, now - repeat_s),
                ).fetchone()
                if recent:
                    continue
                (row_id,) = db.execute(
                    "INSERT INTO warnings(alert_seq, alert_id, device, topic, payload,"
                    " created_at) VALUES (?,?,?,?,?,?) RETURNING id",
                    (w.alert_seq, w.alert_id, w.device, w.topic, w.payload, now),
                ).fetchone()
                out.append(Warning(w.alert_seq, w.alert_id, w.device, w.topic, w.payload,
                                   int(row_id), now))  # fmt: skip
            self._cursor(db, "warnings", seq)
        return out

    def pending_warnings(self, limit: int = PAGE_MAX) -> list[Warning]:
        rows = self._read(
            self._rw,
            "SELECT alert_seq, alert_id, device, topic, payload, id, created_at FROM warnings"
            " WHERE status = 'pending' ORDER BY id LIMIT ?",
            (limit,),
        )
        return [Warning(int(a), str(b), str(c), str(d), bytes(e), int(f), float(g))
                for a, b, c, d, e, f, g in rows]  # fmt: skip

    def mark_warning(self, row_id: int, status: str, now: float | None = None) -> None:
        """`sent` (the broker confirmed it) or `expired` (too old to be worth sending)."""
        now = time.time() if now is None else now
        sent_at = now if status == "sent" else None
        with self._write("cannot mark the warning") as db:
            db.execute("UPDATE warnings SET status = ?, sent_at = ? WHERE id = ?",
                       (status, sent_at, row_id))  # fmt: skip


# Run on the notifiers' own thread (engine/store/owner.py), whichever thread calls them.
own(NotifyStore, (
    "alert_log_after", "last_seq", "webhook_cursor", "set_webhook_cursor",
    "warning_cursor", "set_warning_cursor", "add_warnings", "pending_warnings", "mark_warning",
))  # fmt: skip
