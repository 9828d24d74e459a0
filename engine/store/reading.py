"""Reading an alert store read-only, for `tagwatch audit` and the evidence pack
(engine/evidence/): an alert's ledger rows, the rows its evidence cites (by the engine's
seq-space rules), a tag's fixes over a time window, the configuration in force at a row,
the store's signed checkpoint and the chain's head.

Opened read-only (SQLite's `mode=ro`, PostgreSQL's read-only transactions): reading
evidence never changes what it reads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from engine.core.intake.seqspace import SeqSpaces
from engine.errors import StoreError
from engine.settings import Settings
from engine.store.ledger import (
    GENESIS,
    RECORDS,
    Head,
    config_steps,
    lines_of,
    read_anchor,
    read_head,
)
from engine.store.records import merkle
from engine.store.records.index import Found, device_records
from engine.store.schema import advice
from engine.store.signing import Checkpoint, read_mark
from engine.store.sql.conn import DB_ERRORS, Conn, describe
from engine.store.sql.open import connect


def open_ro(path: str) -> Conn:
    """The store at `path` (a file, or a PostgreSQL URL naming its schema), read-only;
    StoreError when it is missing or has no ledger."""
    try:
        db = connect(path, read_only=True)
        db.execute("SELECT 1 FROM ledger LIMIT 1")
    except DB_ERRORS as e:
        raise StoreError(
            f"{describe(path)}: not a tagwatch store with an evidence ledger ({e})"
        ) from e
    return db


def evidence_row(
    db: Conn,
    tag: str,
    seq: int,
    boot: int | None,
    spaces: dict[str, dict[tuple[int, int, int], int]],
) -> Found | None:
    """The record evidence (tag, seq[, boot]) cites: the first with that seq, or with a
    boot, the first whose body carries that boot, else (a tag without a boot counter) the
    first in that seq space, found by laying the tag's ledger records out in seq spaces
    with the engine's rules (engine/core/intake/seqspace.py)."""
    rows = device_records(db, tag, seq=seq)
    if boot is None or not rows:
        return rows[0] if rows else None
    for f in rows:
        if msgspec.json.decode(f.body).get("boot") == boot:
            return f
    if tag not in spaces:
        spaces[tag] = _space_of_rows(db, tag)
    for f in rows:
        if spaces[tag].get((f.n, f.i, seq)) == boot:
            return f
    return None


def _space_of_rows(db: Conn, tag: str) -> dict[tuple[int, int, int], int]:
    """(ledger row, line, seq) -> seq-space index for every fix and event of `tag`."""
    recs = device_records(db, tag)
    sp = SeqSpaces(1, Settings().restart_seq_drop)
    boots = [msgspec.json.decode(r.body).get("boot") for r in recs]
    eseq = sp.map(
        np.zeros(len(recs), dtype=np.int64),
        np.array([r.seq for r in recs], dtype=np.int64),
        np.array([r.t for r in recs], dtype=np.float64),
        np.array([-1 if b is None else b for b in boots], dtype=np.int64),
    )
    out = {}
    for r, e in zip(recs, eseq.tolist(), strict=True):
        b = sp.cite(0, e)[1]
        out[(r.n, r.i, r.seq)] = 0 if b is None else b
    return out


@dataclass(frozen=True)
class LedgerRow:
    """One ledger row as stored, and `prev`: the hash it chains onto (the row before's,
    the retention anchor's, or the genesis zeros), so its hash can be recomputed alone.

    A record inside a records row (`i` >= 0) is shown as its own: `kind`, `device`, `seq`,
    `t` and `body` are the record's, `n`, `step`, `hash` and `prev` the row's, and `path`
    is the record's Merkle path to the root the row's hash covers (`of` leaves)."""

    n: int
    kind: str
    step: int
    device: str | None
    seq: int | None
    t: float | None
    body: bytes
    hash: bytes
    prev: bytes
    i: int = -1
    of: int = 0
    path: tuple[bytes, ...] = ()

    @property
    def key(self) -> tuple[int, int]:
        """(n, i): what tells this row (or record of a records row) from every other."""
        return self.n, self.i

    @property
    def place(self) -> str:
        """ "n", or "n:i" for line i of records row n."""
        return str(self.n) if self.i < 0 else f"{self.n}:{self.i}"


_COLS = "n, kind, step, device, seq, t, body, hash"


class LedgerReader:
    """Read-only queries over one store; every storage error is a StoreError naming it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._db = open_ro(path)
        self._spaces: dict[str, dict[tuple[int, int, int], int]] = {}
        self._trees: dict[int, list[list[bytes]]] = {}  # records row n -> its Merkle tree

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> LedgerReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _q(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        try:
            return self._db.execute(sql, params).fetchall()
        except DB_ERRORS as e:
            raise StoreError(
                f"{describe(self.path)}: cannot read the alert store: {e}{advice(e)}"
            ) from e

    def _rows(self, where: str, params: Sequence[object]) -> list[LedgerRow]:
        got = self._q(f"SELECT {_COLS} FROM ledger WHERE {where} ORDER BY n", params)
        return [self._row(r) for r in got]

    def _row(self, r: Sequence[Any]) -> LedgerRow:
        n = int(r[0])
        prev = self._q("SELECT hash FROM ledger WHERE n = ?", (n - 1,))
        if prev:
            before = bytes(prev[0][0])
        else:
            anchor = self.anchor()
            before = anchor.hash if anchor is not None and anchor.n == n - 1 else GENESIS
        t = None if r[5] is None else float(r[5])
        seq = None if r[4] is None else int(r[4])
        return LedgerRow(n, str(r[1]), int(r[2]), r[3], seq, t, bytes(r[6]), bytes(r[7]), before)

    def alert_rows(self, alert_id: str) -> list[LedgerRow]:
        """The alert's lifecycle records (and any action rows kept under its id), in order."""
        return self._rows("kind = 'alert' AND device = ?", (alert_id,))

    def row(self, n: int) -> LedgerRow | None:
        got = self._rows("n = ?", (n,))
        return got[0] if got else None

    def _record(self, device: str, f: Found) -> LedgerRow | None:
        """`device`'s record's row (its own, or its records row shown as the record's)."""
        row = self.row(f.n)
        if row is None or f.i < 0:
            return row
        lines = lines_of(RECORDS, row.body)
        tree = self._trees.get(f.n)
        if tree is None:  # a pack proves many records of a row: its tree is built once
            if len(self._trees) >= 16:
                self._trees.pop(next(iter(self._trees)))
            tree = self._trees[f.n] = merkle.levels(merkle.leaves(lines))
        path = tuple(merkle.path(tree, f.i))
        return LedgerRow(
            row.n, f.kind, row.step, device, f.seq, f.t, f.body,
            row.hash, row.prev, f.i, len(lines), path,
        )  # fmt: skip

    def evidence(self, tag: str, seq: int, boot: int | None) -> LedgerRow | None:
        """The row evidence (tag, seq[, boot]) cites (the lookup `audit alert` prints)."""
        try:
            hit = evidence_row(self._db, tag, seq, boot, self._spaces)
        except DB_ERRORS as e:
            raise StoreError(
                f"{describe(self.path)}: cannot read the alert store: {e}{advice(e)}"
            ) from e
        return None if hit is None else self._record(tag, hit)

    def fixes(self, device: str, t0: float, t1: float) -> list[LedgerRow]:
        """The fixes of `device` with event time in [t0, t1], in ledger order."""
        try:
            found = device_records(self._db, device, fixes_only=True, t0=t0, t1=t1)
        except DB_ERRORS as e:
            raise StoreError(
                f"{describe(self.path)}: cannot read the alert store: {e}{advice(e)}"
            ) from e
        return [r for f in found if (r := self._record(device, f)) is not None]

    def config_before(self, n: int) -> tuple[int, dict[str, Any]] | None:
        """(row, config) of the config step in force at row `n`: the newest before it, else
        (a store whose earlier config steps retention cut off) the oldest retained one."""
        try:
            steps = list(config_steps(self._db))
        except DB_ERRORS as e:
            raise StoreError(
                f"{describe(self.path)}: cannot read the alert store: {e}{advice(e)}"
            ) from e
        before = [s for s in steps if s[0] < n]
        if before:
            return before[0]
        return steps[-1] if steps else None

    def signed_checkpoint(self) -> Checkpoint | None:
        """The checkpoint the engine signed in its last commit (None: not a signed store)."""
        got = self._q("SELECT value FROM meta WHERE key = 'checkpoint'")
        if not got:
            return None
        try:
            return msgspec.json.decode(str(got[0][0]), type=Checkpoint)
        except msgspec.DecodeError:
            return None

    def mark(self) -> Checkpoint:
        """The unsigned checkpoint of the chain's end (a store kept without a key)."""
        try:
            return read_mark(self._db, read_head(self._db))
        except DB_ERRORS as e:
            raise StoreError(
                f"{describe(self.path)}: cannot read the alert store: {e}{advice(e)}"
            ) from e

    def head(self) -> Head:
        try:
            return read_head(self._db)
        except DB_ERRORS as e:
            raise StoreError(
                f"{describe(self.path)}: cannot read the alert store: {e}{advice(e)}"
            ) from e

    def anchor(self) -> Head | None:
        try:
            return read_anchor(self._db)
        except DB_ERRORS as e:
            raise StoreError(
                f"{describe(self.path)}: cannot read the alert store: {e}{advice(e)}"
            ) from e
