"""The evidence ledger: append-only, hash-chained rows in the alert store.

Every engine step (a batch, a tick of time, a resume after a restart) and every alert
lifecycle record is one row; a batch's accepted fixes and events are one records row
after it (or, `ledger_rows = "record"`, a row each). Each row's hash covers the row and
the previous row's hash, so an edited, inserted or deleted row breaks the chain from there
on: `tagwatch audit verify` recomputes it.

Rows, in the order they happened:

    step  {"step": "batch"|"tick"|"resume"|"config", "now": engine clock, ...}  device/seq
          NULL (a batch: "records" stored after it, "refused" left out: see Step); a
          config step (a SIGHUP reload, or a start with changed files) also has "config":
          the zones and subjects files in force from then on (name, sha256, text)
    fix   a replay line (contract: fix + "tag")                         device, seq, t
    event a replay line (contract: event + "tag", "type": "event")      device, seq, t
    records  a batch step's fix and event lines in one row (the store's default, `ledger_rows
          = "step"`), "\n"-joined: the row's hash covers the root of their Merkle tree
          (engine/store/records/merkle.py) instead of the body, so one record is proven alone;
          ledger_index (engine/store/records/index.py) finds a device's records in them
                                                                    device/seq/t NULL
    alert the alert record's canonical JSON (as published)              device = alert id,
                                                        seq = its alert_log seq (NULL before
                                                        schema 2's linkage: matched by bytes)
    prune {"prune": n, "step": s, "hash": h, "alert_seq": a}: retention deleted the rows up
          to n (hash h, the new anchor; alert_log seqs up to a with them)   device/seq NULL
    snapshot {"snapshot": n, "sha256": h, "bytes": size}: the pipeline snapshot taken after
          row n has this hash; recovery uses a snapshot only when its row says so
    warning {"warning": id, "alert": alert id, "topic": t, "sha256": of the payload}: a
          warning to a protected device was decided (engine/notify/protected.py)
                                                   device = the protected device, seq = the
                                                   alert_log seq it warns of, t = wall time

The fix and event rows (or the one records row) after a step row are the records that
step handed the pipeline, in the order it handed them, so the steps replayed through a
pipeline rebuild its state exactly (restart recovery), and the fix/event bodies (the
records rows' lines) are a replay file of the evidence.

Retention deletes old rows from the front; the hash of the last deleted row is kept as the
chain's anchor (`meta`), so what is left still verifies, and a prune row appended to the
chain records that anchor: an anchor rewritten in `meta` no longer matches it. The chain
ends where the newest row is; a cut at the end shows only against a checkpoint (n, hash)
kept elsewhere (`tagwatch audit verify --checkpoint`)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from engine.store.records import fastroot, merkle
from engine.store.sql.conn import Conn
from engine.wire.decode import decode_replay_line
from engine.wire.fastpath import FixColumns, FixLines
from engine.wire.records import Record
from engine.wire.replayline import Column, DeviceCodes, encoded, encoded_columns

GENESIS = bytes(32)
log = logging.getLogger("tagwatch.ledger")
_enc = msgspec.json.Encoder()

SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger (
    n INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    step INTEGER NOT NULL,
    device TEXT,
    seq INTEGER,
    t REAL,
    body BLOB NOT NULL,
    hash BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_device ON ledger(device, seq) WHERE device IS NOT NULL;
CREATE INDEX IF NOT EXISTS ledger_steps ON ledger(step) WHERE kind = 'step';
-- The records rows alone (the index's tail is scanned from here: a ledger of rows per
-- record has none, and is not read through)
CREATE INDEX IF NOT EXISTS ledger_records ON ledger(n) WHERE kind = 'records';
-- Where each device's records sit in records rows (engine/store/records/index.py): a row
-- per device and flush, `at` packed (row n, line i, event?, seq, t) of each record.
CREATE TABLE IF NOT EXISTS ledger_index (
    device TEXT NOT NULL,
    n_lo INTEGER NOT NULL,
    n_hi INTEGER NOT NULL,
    t_lo REAL NOT NULL,
    t_hi REAL NOT NULL,
    at BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_index_device ON ledger_index(device, n_lo);
-- Pickled pipeline state after the step whose last ledger row is `n`.
CREATE TABLE IF NOT EXISTS snapshots (
    n INTEGER PRIMARY KEY,
    step INTEGER NOT NULL,
    now REAL NOT NULL,
    fingerprint TEXT NOT NULL,
    created_at REAL NOT NULL,
    state BLOB NOT NULL
);
"""


def decode_record(body: bytes) -> Record:
    recs, dead = decode_replay_line(body, "ledger")
    if len(recs) != 1 or dead:
        raise ValueError(f"ledger row is not one record: {body[:200]!r}")
    return recs[0]


@dataclass(frozen=True)
class Step:
    """One call into the pipeline: `kind` batch (process), tick, resume (a restart:
    `credit` seconds of engine downtime that is not the devices' silence), or config (the
    zones and subjects changed: `config` is engine.store.config.ConfigFiles.data()).

    A batch is stored `without` the records the pipeline refused leaving no trace (over
    the rate limit, out of time, unknown device): they changed no state, so the step
    replays to the same state without them; `refused` counts them (they are dead letters,
    budgeted per device), so a device flooding the engine costs no ledger row a record."""

    kind: str
    now: float
    records: Sequence[Record] = ()
    credit: float = 0.0
    refused: int = 0
    config: dict[str, Any] | None = None

    def without(self, rows: Sequence[int]) -> Step:
        """This step minus the records at `rows` (sorted indices), counted in `refused`."""
        if not rows:
            return self
        drop = set(rows)
        kept: Sequence[Record]
        if isinstance(self.records, FixLines | FixColumns):  # lines, columns stay so
            kept = self.records.without(drop)
        else:
            kept = [r for i, r in enumerate(self.records) if i not in drop]
        return Step(self.kind, self.now, kept, self.credit, self.refused + len(drop), self.config)

    def header(self) -> bytes:
        d: dict[str, object] = {"step": self.kind, "now": self.now}
        if self.kind == "batch":
            d["records"] = len(self.records)
        if self.refused:
            d["refused"] = self.refused
        if self.credit:
            d["credit"] = self.credit
        if self.config is not None:
            d["config"] = self.config
        return _enc.encode(d)


class _StepHead(msgspec.Struct):
    step: str
    now: float
    credit: float = 0.0
    refused: int = 0
    config: dict[str, Any] | None = None


RECORDS = "records"  # a step's records in one row


def records_root(body: bytes) -> bytes:
    """The Merkle root of a records row's lines: what its hash covers. A row of more than
    a few lines by the kernel (records/fastroot.py), which gives the same root."""
    if len(body) >= _KERNEL_BYTES:
        top = fastroot.records_root(body, _tree_root)
        if top is not None:
            return top
    return _tree_root(body)


def _tree_root(body: bytes) -> bytes:
    return merkle.root(merkle.leaves(lines_of(RECORDS, body)))


# Below this (a dozen lines) the kernel's set-up costs more than hashlib's hashes
_KERNEL_BYTES = 2048


def row_hash(
    prev: bytes,
    n: int,
    kind: str,
    step: int,
    device: str | None,
    seq: int | None,
    t: float | None,
    body: bytes,
) -> bytes:
    if kind == RECORDS:
        body = records_root(body)
    return _chained(prev, n, kind, step, device, seq, t, body)


def shown_hash(
    prev: bytes, n: int, step: int, body: bytes, i: int, of: int, path: Sequence[bytes]
) -> bytes | None:
    """The hash of records row `n` as one of its records proves it: the record's `body`
    at line `i` of `of`, with its Merkle `path` (None: the path fits no such tree)."""
    top = merkle.root_from_path(merkle.leaf(body), i, of, path)
    return None if top is None else _chained(prev, n, RECORDS, step, None, None, None, top)


def _chained(
    prev: bytes,
    n: int,
    kind: str,
    step: int,
    device: str | None,
    seq: int | None,
    t: float | None,
    body: bytes,
) -> bytes:
    h = hashlib.sha256(prev)
    head = f"{n}\x1f{kind}\x1f{step}\x1f{device or ''}\x1f{'' if seq is None else seq}\x1f"
    h.update(head.encode())
    h.update(b"" if t is None else repr(float(t)).encode())
    h.update(b"\x1f")
    h.update(body)
    return h.digest()


Row = tuple[int, str, int, str | None, int | None, float | None, bytes, bytes]
AlertRow = tuple[str, float, bytes, int]  # an alert's id, raised_t, bytes, alert_log seq


@dataclass
class Head:
    """Where the chain ends: the next row goes at n + 1 and chains onto `hash`."""

    n: int = 0
    step: int = 0
    hash: bytes = GENESIS


# Where a records row put each device's records: (row n, devices, is-event flags, seqs,
# times), in line order; engine/store/records/index.py files them by device.
Placed = tuple[int, Sequence[str] | DeviceCodes, Column, Column, Column]


class LedgerWriter:
    """Builds chained rows for one transaction; `advance` once it has committed.
    `per_step`: a batch's records go in one records row (`placed` says where), not a row
    each."""

    def __init__(self, head: Head, per_step: bool = False) -> None:
        self.head = head
        self.per_step = per_step
        self.placed: list[Placed] = []

    def rows(self, steps: Sequence[Step], alerts: Iterable[AlertRow]) -> list[Row]:
        """Rows for these steps (each followed by its records), then the alert records
        (id, raised_t, canonical bytes, alert_log seq) they decided."""
        n, step, prev = self.head.n, self.head.step, self.head.hash
        out: list[Row] = []

        def add(kind: str, device: str | None, seq: int | None, t: float | None, body: bytes):
            nonlocal n, prev
            n += 1
            prev = row_hash(prev, n, kind, step, device, seq, t, body)
            out.append((n, kind, step, device, seq, t, body, prev))

        sha = hashlib.sha256
        for st in steps:
            step += 1
            add("step", None, None, st.now, st.header())
            if self.per_step:
                if st.records:
                    fixes, devices, seqs, ts, body = encoded_columns(st.records)
                    n += 1
                    top = records_root(body)
                    prev = _chained(prev, n, RECORDS, step, None, None, None, top)
                    out.append((n, RECORDS, step, None, None, None, body, prev))
                    events = np.logical_not(np.asarray(fixes, dtype=np.bool_))
                    self.placed.append((n, devices, events, seqs, ts))
                continue
            # The records' rows: row_hash's rule in one sha256 call per row (the same
            # bytes; this loop is per accepted record, the engine's busiest write path)
            fix_mid, event_mid = f"\x1ffix\x1f{step}\x1f", f"\x1fevent\x1f{step}\x1f"
            for fix, device, seq, t, body in encoded(st.records):
                kind, mid = ("fix", fix_mid) if fix else ("event", event_mid)
                n += 1
                head = f"{n}{mid}{device}\x1f{seq}\x1f{float(t)!r}\x1f".encode()
                prev = sha(prev + head + body).digest()
                out.append((n, kind, step, device, seq, t, body, prev))
        for aid, raised_t, body, log_seq in alerts:
            add("alert", aid, log_seq, raised_t, body)
        return out

    def prune_row(self, anchor: Head, alert_seq: int) -> Row:
        """The row that records a retention cut: rows up to `anchor` are gone."""
        n = self.head.n + 1
        body = _enc.encode(
            {
                "prune": anchor.n,
                "step": anchor.step,
                "hash": anchor.hash.hex(),
                "alert_seq": alert_seq,
            }
        )
        h = row_hash(self.head.hash, n, "prune", self.head.step, None, None, None, body)
        return (n, "prune", self.head.step, None, None, None, body, h)

    def snapshot_row(self, n: int, digest: str, size: int) -> Row:
        """The row that records a snapshot taken after row `n`: its sha256 and size."""
        body = _enc.encode({"snapshot": n, "sha256": digest, "bytes": size})
        row_n = self.head.n + 1
        h = row_hash(self.head.hash, row_n, "snapshot", self.head.step, None, None, None, body)
        return (row_n, "snapshot", self.head.step, None, None, None, body, h)

    def note_row(self, kind: str, device: str, seq: int | None, t: float, body: bytes) -> Row:
        """A row recording something the engine did beside deciding (`warning`: a warning
        sent to a protected device); the chain covers it like any other row."""
        n = self.head.n + 1
        h = row_hash(self.head.hash, n, kind, self.head.step, device, seq, t, body)
        return (n, kind, self.head.step, device, seq, t, body, h)

    @staticmethod
    def after(rows: Sequence[Row], head: Head) -> Head:
        if not rows:
            return head
        last = rows[-1]
        return Head(last[0], last[2], last[7])


COLUMNS = ("n", "kind", "step", "device", "seq", "t", "body", "hash")
PG_TYPES = ("int8", "text", "int8", "text", "int8", "float8", "bytea", "bytea")  # a COPY's
INSERT = f"INSERT INTO ledger({', '.join(COLUMNS)}) VALUES (?,?,?,?,?,?,?,?)"


def read_head(db: Conn) -> Head:
    row = db.execute("SELECT n, step, hash FROM ledger ORDER BY n DESC LIMIT 1").fetchone()
    if row is not None:
        return Head(int(row[0]), int(row[1]), bytes(row[2]))
    anchor = read_anchor(db)
    return anchor if anchor is not None else Head()


def read_anchor(db: Conn) -> Head | None:
    """The last row retention deleted (the chain starts after it), or None."""
    got = dict(db.execute("SELECT key, value FROM meta WHERE key LIKE 'anchor_%'").fetchall())
    if "anchor_n" not in got:
        return None
    return Head(int(got["anchor_n"]), int(got["anchor_step"]), bytes.fromhex(got["anchor_hash"]))


def rows_after(
    db: Conn, columns: str, where: str, after: int = 0, page: int = 20_000
) -> Iterator[Any]:
    """The ledger rows after row `after` that `where` holds for, in order of n (`columns`
    starts with n). Read a page at a time: a long ledger never sits in memory whole, on a
    database whose driver fetches a query's every row at once as on one that streams."""
    last = after
    while True:
        rows = db.execute(
            f"SELECT {columns} FROM ledger WHERE n > ? AND {where} ORDER BY n LIMIT ?",
            (last, page),
        ).fetchall()
        yield from rows
        if len(rows) < page:
            return
        last = int(rows[-1][0])


def lines_of(kind: str, body: bytes) -> list[bytes]:
    """The replay lines a fix, event or records row holds."""
    return body.split(b"\n") if kind == RECORDS else [body]


def replay_steps(db: Conn, after_n: int, page: int = 20_000) -> Iterator[Step]:
    """The steps recorded after ledger row `after_n`, with their records, in order."""
    head: _StepHead | None = None
    recs: list[Record] = []
    where = "kind IN ('step', 'fix', 'event', 'records')"
    for _, kind, body in rows_after(db, "n, kind, body", where, after_n, page):
        if kind == "step":
            if head is not None:
                yield Step(head.step, head.now, recs, head.credit, head.refused, head.config)
            head, recs = msgspec.json.decode(bytes(body), type=_StepHead), []
        elif head is not None:  # records before the first step: cut off by retention
            for line in lines_of(kind, bytes(body)):
                try:
                    recs.append(decode_record(line))
                except ValueError as e:  # never stop a restart; say what was unread
                    log.error("ledger: %s; recovery continues without it", e)
    if head is not None:
        yield Step(head.step, head.now, recs, head.credit, head.refused, head.config)


class _SnapRow(msgspec.Struct):
    snapshot: int
    sha256: str
    bytes: int = -1


def snapshot_hash(db: Conn, n: int) -> str | None:
    """The sha256 the ledger records for the snapshot taken after row `n` (None: none)."""
    for (body,) in db.execute(
        "SELECT body FROM ledger WHERE kind = 'snapshot' AND n > ? ORDER BY n", (n,)
    ):
        try:
            row = msgspec.json.decode(bytes(body), type=_SnapRow)
        except msgspec.DecodeError:
            continue
        if row.snapshot == n:
            return row.sha256
    return None


def config_steps(db: Conn) -> Iterator[tuple[int, dict[str, Any]]]:
    """(ledger n, config) of every config step retained, newest first."""
    cur = db.execute(
        "SELECT n, body FROM ledger WHERE kind = 'step' AND CAST(body AS TEXT) LIKE ?"
        " ORDER BY n DESC",
        ('{"step":"config"%',),
    )
    for n, body in cur:
        head = msgspec.json.decode(bytes(body), type=_StepHead)
        if head.config is not None:
            yield int(n), head.config
