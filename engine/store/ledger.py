"""The evidence ledger: append-only, hash-chained rows in the alert store.

Every accepted fix and event, every engine step (a batch, a tick of time, a resume after
a restart) and every alert lifecycle record is one row. Each row's hash covers the row and
the previous row's hash, so an edited, inserted or deleted row breaks the chain from there
on: `tagwatch audit verify` recomputes it.

Rows, in the order they happened:

    step  {"step": "batch"|"tick"|"resume", "now": engine clock, ...}   device/seq NULL
    fix   a replay line (contract: fix + "tag")                         device, seq, t
    event a replay line (contract: event + "tag", "type": "event")      device, seq, t
    alert the alert record's canonical JSON (as published)              device = alert id

The fix and event rows after a step row are the records that step handed the pipeline, in
the order it handed them, so the steps replayed through a pipeline rebuild its state
exactly (restart recovery), and the fix/event bodies are a replay file of the evidence.

Retention deletes old rows from the front; the hash of the last deleted row is kept as the
chain's anchor, so what is left still verifies."""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import msgspec

from engine.wire.decode import decode_replay_line
from engine.wire.records import FixRecord, Record
from engine.wire.replayline import encode_record

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
    """One call into the pipeline: `kind` batch (process), tick, or resume (a restart:
    `credit` seconds of engine downtime that is not the devices' silence)."""

    kind: str
    now: float
    records: Sequence[Record] = ()
    credit: float = 0.0

    def header(self) -> bytes:
        d: dict[str, object] = {"step": self.kind, "now": self.now}
        if self.kind == "batch":
            d["records"] = len(self.records)
        if self.credit:
            d["credit"] = self.credit
        return _enc.encode(d)


class _StepHead(msgspec.Struct):
    step: str
    now: float
    credit: float = 0.0


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
    h = hashlib.sha256(prev)
    head = f"{n}\x1f{kind}\x1f{step}\x1f{device or ''}\x1f{'' if seq is None else seq}\x1f"
    h.update(head.encode())
    h.update(b"" if t is None else repr(float(t)).encode())
    h.update(b"\x1f")
    h.update(body)
    return h.digest()


Row = tuple[int, str, int, str | None, int | None, float | None, bytes, bytes]


@dataclass
class Head:
    """Where the chain ends: the next row goes at n + 1 and chains onto `hash`."""

    n: int = 0
    step: int = 0
    hash: bytes = GENESIS


class LedgerWriter:
    """Builds chained rows for one transaction; `advance` once it has committed."""

    def __init__(self, head: Head) -> None:
        self.head = head

    def rows(self, steps: Sequence[Step], alerts: Iterable[tuple[str, float, bytes]]) -> list[Row]:
        """Rows for these steps (each followed by its records), then the alert records
        (id, raised_t, canonical bytes) they decided."""
        n, step, prev = self.head.n, self.head.step, self.head.hash
        out: list[Row] = []

        def add(kind: str, device: str | None, seq: int | None, t: float | None, body: bytes):
            nonlocal n, prev
            n += 1
            prev = row_hash(prev, n, kind, step, device, seq, t, body)
            out.append((n, kind, step, device, seq, t, body, prev))

        for st in steps:
            step += 1
            add("step", None, None, st.now, st.header())
            for r in st.records:
                kind = "fix" if isinstance(r, FixRecord) else "event"
                add(kind, r.device, r.seq, r.t, encode_record(r))
        for aid, raised_t, body in alerts:
            add("alert", aid, None, raised_t, body)
        return out

    @staticmethod
    def after(rows: Sequence[Row], head: Head) -> Head:
        if not rows:
            return head
        last = rows[-1]
        return Head(last[0], last[2], last[7])


INSERT = "INSERT INTO ledger(n, kind, step, device, seq, t, body, hash) VALUES (?,?,?,?,?,?,?,?)"


def read_head(db: sqlite3.Connection) -> Head:
    row = db.execute("SELECT n, step, hash FROM ledger ORDER BY n DESC LIMIT 1").fetchone()
    if row is not None:
        return Head(int(row[0]), int(row[1]), bytes(row[2]))
    anchor = read_anchor(db)
    return anchor if anchor is not None else Head()


def read_anchor(db: sqlite3.Connection) -> Head | None:
    """The last row retention deleted (the chain starts after it), or None."""
    got = dict(db.execute("SELECT key, value FROM meta WHERE key LIKE 'anchor_%'").fetchall())
    if "anchor_n" not in got:
        return None
    return Head(int(got["anchor_n"]), int(got["anchor_step"]), bytes.fromhex(got["anchor_hash"]))


def replay_steps(db: sqlite3.Connection, after_n: int) -> Iterator[Step]:
    """The steps recorded after ledger row `after_n`, with their records, in order."""
    cur = db.execute(
        "SELECT kind, body FROM ledger WHERE n > ? AND kind != 'alert' ORDER BY n", (after_n,)
    )
    head: _StepHead | None = None
    recs: list[Record] = []
    for kind, body in cur:
        if kind == "step":
            if head is not None:
                yield Step(head.step, head.now, recs, head.credit)
            head, recs = msgspec.json.decode(bytes(body), type=_StepHead), []
        elif head is not None:  # records before the first step: cut off by retention
            try:
                recs.append(decode_record(bytes(body)))
            except ValueError as e:  # never stop a restart; say what could not be read
                log.error("ledger: %s; recovery continues without it", e)
    if head is not None:
        yield Step(head.step, head.now, recs, head.credit)


@dataclass
class VerifyReport:
    rows: int = 0
    counts: dict[str, int] | None = None
    first_n: int = 0
    last_n: int = 0
    head: bytes = GENESIS
    problem: str | None = None
    alert_log_checked: int = 0

    @property
    def ok(self) -> bool:
        return self.problem is None


def verify(db: sqlite3.Connection, *, chunk: int = 20_000) -> VerifyReport:
    """Recompute the chain from its anchor; then check every alert_log record is in it."""
    rep = VerifyReport(counts={})
    anchor = read_anchor(db) or Head()
    prev, expect = anchor.hash, anchor.n + 1
    rep.first_n = expect
    counts: dict[str, int] = {}
    last = anchor.n
    while True:
        rows = db.execute(
            "SELECT n, kind, step, device, seq, t, body, hash FROM ledger WHERE n > ?"
            " ORDER BY n LIMIT ?",
            (last, chunk),
        ).fetchall()
        if not rows:
            break
        for n, kind, step, device, seq, t, raw, h in rows:
            body = raw if isinstance(raw, bytes) else str(raw).encode()
            if n != expect:
                rep.problem = f"row {expect} is missing (next row is {n})"
                return rep
            want = row_hash(prev, n, kind, step, device, seq, t, body)
            if not isinstance(raw, bytes) or want != bytes(h):
                what = f"{kind} {device or ''} {'' if seq is None else seq}".strip()
                rep.problem = f"row {n} ({what}) does not match its hash: changed after writing"
                return rep
            prev, expect, last = want, n + 1, n
            counts[kind] = counts.get(kind, 0) + 1
            rep.rows += 1
    rep.last_n, rep.head, rep.counts = last, prev, counts
    # Alert records must each be in the chain, byte for byte.
    have: dict[bytes, int] = {}
    for (body,) in db.execute("SELECT body FROM ledger WHERE kind = 'alert'"):
        k = hashlib.sha256(bytes(body)).digest()
        have[k] = have.get(k, 0) + 1
    anchor_cut = anchor.n > 0
    for seq, record in db.execute("SELECT seq, record FROM alert_log ORDER BY seq"):
        k = hashlib.sha256(bytes(record)).digest()
        if have.get(k, 0) > 0:
            have[k] -= 1
        elif not anchor_cut:
            rep.problem = f"alert_log record {seq} is not in the ledger: changed or inserted"
            return rep
        rep.alert_log_checked += 1
    return rep
