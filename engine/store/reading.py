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
from engine.store.ledger import GENESIS, Head, config_steps, read_anchor, read_head
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
    spaces: dict[str, dict[tuple[int, int], int]],
) -> tuple[int, bytes] | None:
    """The ledger row evidence (tag, seq[, boot]) cites: the first with that seq, or with a
    boot, the first whose body carries that boot, else (a tag without a boot counter) the
    first in that seq space, found by laying the tag's ledger records out in seq spaces
    with the engine's rules (engine/core/intake/seqspace.py)."""
    rows = db.execute(
        "SELECT n, body FROM ledger WHERE device = ? AND seq = ? AND kind IN ('fix', 'event') ORDER BY n",
        (tag, seq),
    ).fetchall()
    if boot is None or not rows:
        return (int(rows[0][0]), bytes(rows[0][1])) if rows else None
    for n, body in rows:
        if msgspec.json.decode(bytes(body)).get("boot") == boot:
            return int(n), bytes(body)
    if tag not in spaces:
        spaces[tag] = _space_of_rows(db, tag)
    for n, body in rows:
        if spaces[tag].get((int(n), seq)) == boot:
            return int(n), bytes(body)
    return None


def _space_of_rows(db: Conn, tag: str) -> dict[tuple[int, int], int]:
    """(ledger row, seq) -> seq-space index for every fix and event of `tag`."""
    recs = db.execute(
        "SELECT n, seq, t, body FROM ledger WHERE device = ? AND kind IN ('fix', 'event') ORDER BY n",
        (tag,),
    ).fetchall()
    sp = SeqSpaces(1, Settings().restart_seq_drop)
    boots = [msgspec.json.decode(bytes(r[3])).get("boot") for r in recs]
    eseq = sp.map(
        np.zeros(len(recs), dtype=np.int64),
        np.array([r[1] for r in recs], dtype=np.int64),
        np.array([r[2] for r in recs], dtype=np.float64),
        np.array([-1 if b is None else b for b in boots], dtype=np.int64),
    )
    out = {}
    for r, e in zip(recs, eseq.tolist(), strict=True):
        b = sp.cite(0, e)[1]
        out[(int(r[0]), int(r[1]))] = 0 if b is None else b
    return out


@dataclass(frozen=True)
class LedgerRow:
    """One ledger row as stored, and `prev`: the hash it chains onto (the row before's,
    the retention anchor's, or the genesis zeros), so its hash can be recomputed alone."""

    n: int
    kind: str
    step: int
    device: str | None
    seq: int | None
    t: float | None
    body: bytes
    hash: bytes
    prev: bytes


_COLS = "n, kind, step, device, seq, t, body, hash"


class LedgerReader:
    """Read-only queries over one store; every storage error is a StoreError naming it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._db = open_ro(path)
        self._spaces: dict[str, dict[tuple[int, int], int]] = {}

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

    def evidence(self, tag: str, seq: int, boot: int | None) -> LedgerRow | None:
        """The row evidence (tag, seq[, boot]) cites (the lookup `audit alert` prints)."""
        try:
            hit = evidence_row(self._db, tag, seq, boot, self._spaces)
        except DB_ERRORS as e:
            raise StoreError(
                f"{describe(self.path)}: cannot read the alert store: {e}{advice(e)}"
            ) from e
        return None if hit is None else self.row(hit[0])

    def fixes(self, device: str, t0: float, t1: float) -> list[LedgerRow]:
        """The fix rows of `device` with event time in [t0, t1], in ledger order."""
        return self._rows("kind = 'fix' AND device = ? AND t >= ? AND t <= ?", (device, t0, t1))

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
