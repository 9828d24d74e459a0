"""The store's logic, one for SQLite and PostgreSQL: alert lifecycle records, current alert
state, dead letters, the publish outbox, the hash-chained evidence ledger
(engine/store/ledger.py) and the pipeline snapshots restart recovery starts from.
Everything one batch produces is committed in one transaction; the engine acknowledges
the batch's messages only after that commit. engine/store/sqlite.py and pgstore.py say
how to connect; the SQL is the same (engine/store/sql/conn.py).

One connection, one thread: the connection lives on the store's own thread
(engine/store/owner.py) and every public method runs there, whole, one after another,
whoever calls it: the outbox never reads a batch's rows before its commit, a failing
`mark_published` rolls back only itself, two writers never interleave ledger rows.
sqlite3's `check_same_thread` stays on: any other use of the connection is refused."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from engine.errors import StoreError
from engine.store import ledger, retention, signing
from engine.store.base import CommitTimes, OutboxItem
from engine.store.casework.workflow import Action, UnknownAlert, Workflow
from engine.store.deadletters import DeadLetterBudget, DeadLetterRow
from engine.store.ledger import LedgerWriter, Step
from engine.store.owner import OwnedResource, own
from engine.store.records.index import Filing
from engine.store.schema import ADDED, SCHEMA, advice, check_version
from engine.store.signing import Checkpoint
from engine.store.sql.conn import DB_ERRORS, Conn, describe, text_for
from engine.store.verify import VerifyReport, verify
from engine.wire.alerts import Alert, decode_alert, encode_alert
from engine.wire.records import DeadLetter

_OPEN_ERRORS: tuple[type[Exception], ...] = (*DB_ERRORS, OSError)
_REOPEN_ERRORS: tuple[type[Exception], ...] = (*DB_ERRORS, StoreError)


class SqlStore(OwnedResource):
    """The store over a connection its subclass makes (`_connect`): SqliteStore, PgStore."""

    _signed: tuple[Checkpoint, bytes] | None = None  # signed_checkpoint()'s last answer
    fence: Callable[[Conn], None] | None = None  # see _begin
    _db: Conn
    _kind = "alert store"

    def __init__(
        self,
        path: str | Path,
        *,
        dead_letter_max_bytes: int = 512,
        dead_letter_budget: int = 50,
        dead_letter_window_s: float = 600.0,
        busy_timeout_s: float = 2.0,
        read_only: bool = False,
        signing_key: Ed25519PrivateKey | None = None,
        ledger_rows: str = "step",
        ledger_index_s: float = 5.0,
        ledger_index_max: int = 100_000,
    ) -> None:
        """`path`: what the subclass connects to. `read_only`: open an existing store
        that it can write nothing to (a reader such as `tagwatch alerts`: not even a
        schema upgrade). `signing_key`: every commit also stores the chain's checkpoint
        signed with it (engine/store/signing.py), so `audit verify` shows a cut or
        rewritten end. `ledger_rows`: "step" (a records row per batch) or "record" (a row
        each); the records rows' index is filed every `ledger_index_s` s or `_max` records."""
        self.filing = Filing(ledger_rows == "step", ledger_index_s, ledger_index_max)
        self.path = str(path)
        self.name = describe(self.path)  # what messages show: a URL's password masked
        self.signing_key = signing_key
        self.dead_letter_max_bytes = dead_letter_max_bytes
        self.budget = DeadLetterBudget(dead_letter_budget, dead_letter_window_s)
        self.busy_timeout_s = busy_timeout_s
        self.read_only = read_only
        self.commit_times = CommitTimes()  # /metrics: tagwatch_commit_seconds
        self._start("tagwatch-store", f"{self._kind} {self.name}")

    @property
    def target(self) -> str:
        """What names this store for another connection to it (the notifiers')."""
        return self.path

    def _connect(self) -> Conn:
        raise NotImplementedError

    def _columns(self, table: str) -> set[str]:
        raise NotImplementedError

    def _open(self) -> None:
        try:
            self._db = self._connect()
            if not self.read_only:
                self._db.executescript(SCHEMA + ledger.SCHEMA)
            check_version(self._db, self.name, self.read_only)
            if not self.read_only:
                for table, column, decl in ADDED:
                    if column not in self._columns(table):
                        self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
                self.filing.pending.load(self._db)
            self._reread_head()
        except _OPEN_ERRORS as e:
            raise StoreError(f"cannot open {self._kind} {self.name}: {e}{advice(e)}") from e

    def _reread_head(self) -> None:
        """The ledger's head and checkpoint as the database has them: the truth about
        what committed."""
        self.head = ledger.read_head(self._db)
        self._mark = signing.read_mark(self._db, self.head)

    def _begin(self) -> None:
        """Open a write transaction. Another writer of the same store (PostgreSQL: a
        console's action written into a shard's schema) may have appended to the ledger
        since: the head is re-read under the write lock when it moved.

        `fence` (`tagwatch serve`'s store on PostgreSQL: enginelock.py) checks, under
        that lock, that the engine still holds its engine lock; LockLost if not."""
        self._db.execute("BEGIN IMMEDIATE")
        if self.fence is not None:
            try:
                self.fence(self._db)
            except StoreError:
                with contextlib.suppress(*DB_ERRORS):
                    self._db.execute("ROLLBACK")
                raise

    def _after_failure(self) -> None:
        """A write failed (locked, disk full, I/O error, connection lost): roll back, and
        if the connection itself is unusable open a new one. The ledger head is re-read
        from the database."""
        try:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            self._reread_head()
            return
        except DB_ERRORS:
            if self.path == ":memory:":
                return
        with contextlib.suppress(*DB_ERRORS):
            self._db.close()
        try:
            self._db = self._connect()
            self._reread_head()
        except _REOPEN_ERRORS:
            pass  # the next commit fails again and says why

    def _fail(self, doing: str, e: BaseException) -> NoReturn:
        raise StoreError(f"{self._kind} {self.name}: {doing}: {e}{advice(e)}") from e

    @contextlib.contextmanager
    def _reading(self, what: str) -> Iterator[Conn]:
        """A read outside any transaction: a failure leaves nothing to roll back."""
        try:
            yield self._db
        except DB_ERRORS as e:
            self._fail(f"cannot read {what}", e)

    def _sign(self, mark: Checkpoint) -> None:
        """Store the signed checkpoint, inside the caller's transaction."""
        if self.signing_key is not None:
            signing.store_signed(self._db, mark, self.signing_key)

    def signed_checkpoint(self) -> bytes | None:
        """The checkpoint of the last commit, signed: the bytes `meta` holds (Ed25519
        signatures are deterministic). None without a signing key or an empty ledger.
        Not sent to the store's thread: it reads one attribute and touches no connection,
        and the serve loop calls it from the event loop, which must not wait on a commit."""
        key, mark = self.signing_key, self._mark
        if key is None or self.head.n == 0:
            return None
        if self._signed is None or self._signed[0] is not mark:
            self._signed = (mark, signing.sign(mark, key).encode())
        return self._signed[1]

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
        db, t0 = self._db, time.perf_counter()
        payloads = [encode_alert(a) for a in alerts]
        rows: list[ledger.Row] = []
        try:
            self._begin()
            for a, payload in zip(alerts, payloads, strict=True):
                (seq,) = db.execute(
                    "INSERT INTO alert_log(alert_id, state, subject, record, written_at)"
                    " VALUES (?, ?, ?, ?, ?) RETURNING seq",
                    (a.id, a.state, a.subject, payload, now),
                ).fetchone()
                out.append(OutboxItem(int(seq), a.subject, payload))
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
            # Each alert row names its alert_log seq: a changed log row shows in the chain
            got = zip(alerts, payloads, out, strict=True)
            rows = self.filing.write(
                db, self.head, steps, [(a.id, a.raised_t, p, o.seq) for a, p, o in got]
            )
            if rows:
                end = LedgerWriter.after(rows, self.head)
                mark = msgspec.structs.replace(
                    self._mark, n=end.n, step=end.step, hash=end.hash.hex(),
                    alert_seq=out[-1].seq if out else self._mark.alert_seq,
                    now=steps[-1].now if steps else self._mark.now,
                )  # fmt: skip
                self._sign(mark)
            if dead:
                self._insert_dead(dead, now)
            db.execute("COMMIT")
        except DB_ERRORS as e:
            expected = LedgerWriter.after(rows, self.head)
            self._after_failure()
            if rows and self.head == expected:  # COMMIT failed, but the data is in:
                self.filing.committed()  # the outbox flush publishes its alerts
                self.budget.apply(plan)
                return []
            self._fail("write failed", e)
        self.commit_times.observe(time.perf_counter() - t0)
        self.filing.committed()
        if rows:
            self.head, self._mark = LedgerWriter.after(rows, self.head), mark
        self.budget.apply(plan)
        return out

    def act(self, alert_id: str, action: Action, now: float | None = None) -> OutboxItem:
        """A monitor's action: its record (casework/workflow.py) written like a decided one
        (alert log, ledger, outbox); the item to publish. UnknownAlert, ActionRefused."""
        with self._reading("the alert log") as db:
            rows = db.execute(
                "SELECT record FROM alert_log WHERE alert_id = ? ORDER BY seq", (alert_id,)
            ).fetchall()
        if not rows:
            raise UnknownAlert(f"no alert {alert_id}")
        records = [decode_alert(bytes(r[0])) for r in rows]
        record = Workflow.of(records).after(action).record(records[-1])
        return self.commit([record], [], now)[0]

    def _insert_dead(self, dead: Sequence[DeadLetter], now: float) -> None:
        """Their text is what a device sent: PostgreSQL's text refuses NUL (shown as \\x00)."""
        txt = text_for(self._db)
        self._db.executemany(
            "INSERT INTO dead_letters(received_at, origin, reason, size, payload, sha256,"
            " device, count) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (now, txt(d.origin), txt(d.reason), d.size,
                 d.payload[: self.dead_letter_max_bytes], d.sha256 or None, txt(d.device), d.count)
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
            self._begin()
            self._insert_dead(rows, now)
            self._db.execute("COMMIT")
        except DB_ERRORS as e:
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
        """Pipeline state as of the ledger head (the last committed step), and a ledger
        row with its sha256 (recovery uses a snapshot only when the two agree)."""
        db = self._db
        try:
            self._begin()
            head = self.head
            mark_row = LedgerWriter(head).snapshot_row(
                head.n, hashlib.sha256(state).hexdigest(), len(state)
            )
            db.execute(
                "INSERT INTO snapshots(n, step, now, fingerprint, created_at, state)"
                " VALUES (?,?,?,?,?,?) ON CONFLICT(n) DO UPDATE SET step=excluded.step,"
                " now=excluded.now, fingerprint=excluded.fingerprint,"
                " created_at=excluded.created_at, state=excluded.state",
                (head.n, head.step, now, fingerprint, time.time(), state),
            )
            db.execute(
                "DELETE FROM snapshots WHERE n NOT IN"
                " (SELECT n FROM snapshots ORDER BY n DESC LIMIT ?)",
                (keep,),
            )
            end, mark = self._append(mark_row)
            db.execute("COMMIT")
        except DB_ERRORS as e:
            self._after_failure()
            self._fail("cannot save snapshot", e)
        self.head, self._mark = end, mark

    def _append(self, row: ledger.Row) -> tuple[ledger.Head, Checkpoint]:
        """Insert one ledger row after the head, and sign the new end (in a transaction)."""
        self._db.execute(ledger.INSERT, row)
        end = LedgerWriter.after([row], self.head)
        mark = msgspec.structs.replace(self._mark, n=end.n, step=end.step, hash=end.hash.hex())
        self._sign(mark)
        return end, mark

    def note(self, kind: str, device: str, seq: int | None, t: float, body: bytes) -> int:
        """Append a `kind` row (ledger.py: `warning`) to the evidence ledger; its n."""
        try:
            self._begin()
            end, mark = self._append(LedgerWriter(self.head).note_row(kind, device, seq, t, body))
            self._db.execute("COMMIT")
        except DB_ERRORS as e:
            self._after_failure()
            self._fail("cannot write to the evidence ledger", e)
        self.head, self._mark = end, mark
        return end.n

    def snapshot_hash(self, n: int) -> str | None:
        """The sha256 the evidence ledger records for the snapshot taken after row n."""
        with self._reading("the evidence ledger") as db:
            return ledger.snapshot_hash(db, n)

    def config_steps(self) -> list[tuple[int, dict[str, Any]]]:
        """(ledger n, config) of the retained config steps, newest first."""
        with self._reading("the evidence ledger") as db:
            return list(ledger.config_steps(db))

    def latest_snapshot(self) -> tuple[int, float, str, bytes] | None:
        """(ledger n, engine clock, fingerprint, state) of the newest snapshot."""
        with self._reading("the snapshots") as db:
            row = db.execute(
                "SELECT n, now, fingerprint, state FROM snapshots ORDER BY n DESC LIMIT 1"
            ).fetchone()
        return None if row is None else (int(row[0]), float(row[1]), str(row[2]), bytes(row[3]))

    def steps_after(self, n: int, chunk: int = 256) -> Iterator[Step]:
        """Streamed: a long ledger (no snapshot yet, or a rebuild) never sits in memory.
        The cursor stays on the store's thread; the steps come over `chunk` at a time."""
        steps = iter(self._owner.call(ledger.replay_steps, self._db, n))
        try:
            while got := self._owner.call(self._next_steps, steps, chunk):
                yield from got
        finally:
            if close := getattr(steps, "close", None):  # the cursor goes on its own thread
                with contextlib.suppress(StoreError):
                    self._owner.call(close)

    def _next_steps(self, steps: Iterator[Step], chunk: int) -> list[Step]:
        with self._reading("the evidence ledger"):
            return list(itertools.islice(steps, chunk))

    def last_step_now(self) -> float | None:
        q = "SELECT t FROM ledger WHERE kind = 'step' ORDER BY n DESC LIMIT 1"
        with self._reading("the evidence ledger") as db:
            row = db.execute(q).fetchone()
        return None if row is None else float(row[0])

    def prune(self, before: float, chunk: int = 50_000) -> int:
        """Retention: delete ledger rows from the front whose step ran before `before`
        (engine clock), never past the newest snapshot (engine/store/retention.py).
        Returns ledger rows deleted (one chunk at most)."""
        try:
            done = retention.prune_front(self._db, before, chunk, self._mark, self._sign)
        except DB_ERRORS as e:
            self._after_failure()
            self._fail("retention failed", e)
        if done is None:
            return 0
        deleted, self.head, self._mark = done
        return deleted

    def prune_dead_letters(self, before: float, chunk: int = 50_000) -> int:
        """Retention: delete dead letters received before `before` (one chunk at most)."""
        try:
            cur = self._db.execute(
                "DELETE FROM dead_letters WHERE seq IN (SELECT seq FROM dead_letters"
                " WHERE received_at < ? ORDER BY seq LIMIT ?)",
                (before, chunk),
            )
        except DB_ERRORS as e:
            self._after_failure()
            self._fail("dead-letter retention failed", e)
        return int(cur.rowcount)

    def verify(self) -> VerifyReport:
        with self._reading("the evidence ledger") as db:
            return verify(db)

    def mark_published(self, seqs: Iterable[int], now: float | None = None) -> None:
        now = time.time() if now is None else now
        rows = [(now, s) for s in seqs]
        if not rows:
            return
        try:
            self._db.executemany("UPDATE alert_log SET published_at=? WHERE seq=?", rows)
        except DB_ERRORS as e:
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

    def _close(self) -> None:
        with contextlib.suppress(StoreError):
            self.flush_dead_letters()
        with contextlib.suppress(*DB_ERRORS):
            self._db.close()


# Run on the store's thread (engine/store/owner.py), whichever thread calls them.
own(SqlStore, (
    "commit", "flush_dead_letters", "missing", "save_snapshot", "latest_snapshot",
    "snapshot_hash", "config_steps",
    "last_step_now", "prune", "prune_dead_letters", "verify", "mark_published",
    "unpublished", "alert_log", "current_alerts", "dead_letters", "act", "note",
))  # fmt: skip


def _evidence_json(a: Alert) -> str:
    return msgspec.json.encode(a.evidence).decode()
