"""Checking the evidence: the ledger's hash chain from its anchor, the anchor against the
prune row that recorded it, the alert log against the ledger's alert rows (each one names
its alert_log seq), and the whole against a checkpoint kept elsewhere.

A checkpoint is the chain's head as `audit verify` prints it (row n, its hash, the anchor,
the alert log's last seq). Kept outside the database it pins the end of the chain: a store
whose newest rows were deleted, or whose chain was rewritten, no longer contains it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from engine.store.ledger import GENESIS, RECORDS, Head, lines_of, read_anchor, row_hash
from engine.store.signing import Checkpoint, signature_problem
from engine.store.sql.conn import Conn
from engine.wire.replayline import line_is_event


class _Prune(msgspec.Struct):
    prune: int
    step: int
    hash: str
    alert_seq: int = 0


@dataclass
class VerifyReport:
    rows: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    first_n: int = 0
    last_n: int = 0
    head: bytes = GENESIS
    problem: str | None = None
    alert_log_checked: int = 0
    alert_log_before_retention: int = 0
    checkpoint: Checkpoint | None = None  # the store's signed one, else the chain's end
    signed: bool = False  # the store's signed checkpoint checked out
    pinned: bool = False  # the checkpoint kept elsewhere checked out

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass
class _Chain:
    """What the chain pass collects for the later checks."""

    prune: _Prune | None = None
    linked: dict[int, tuple[int, str, bytes]] = field(default_factory=dict)  # seq -> n, id, sha
    legacy: dict[bytes, int] = field(default_factory=dict)  # alert rows without a log seq
    wanted: set[int] = field(default_factory=set)  # rows whose hash a checkpoint names
    seen: dict[int, bytes] = field(default_factory=dict)
    step: int = 0
    now: float | None = None


def verify(
    db: Conn,
    *,
    pin: Checkpoint | None = None,
    trusted: Ed25519PublicKey | None = None,
    chunk: int = 20_000,
) -> VerifyReport:
    """Recompute the chain from its anchor; check the anchor, the alert log, the store's
    signed checkpoint (required when a `trusted` key is given) and `pin`, a checkpoint
    kept elsewhere."""
    rep = VerifyReport()
    anchor = read_anchor(db) or Head()
    row = db.execute("SELECT value FROM meta WHERE key = 'checkpoint'").fetchone()
    signed = None if row is None else msgspec.json.decode(str(row[0]), type=Checkpoint)
    ch = _Chain(step=anchor.step, wanted={c.n for c in (pin, signed) if c is not None})
    rep.first_n = anchor.n + 1
    _chain(db, anchor, ch, rep, chunk)
    for check in (_anchor_problem, _alert_log_problem):
        if rep.problem is None:
            rep.problem = check(db, anchor, ch, rep)
    if rep.problem is not None:
        return rep
    rep.checkpoint = signed or Checkpoint(
        rep.last_n, ch.step, rep.head.hex(), anchor.n, anchor.hash.hex(),
        max(ch.linked, default=ch.prune.alert_seq if ch.prune else 0), ch.now,
    )  # fmt: skip
    if signed is not None:
        rep.problem = signature_problem(signed, trusted) or _signed_problem(signed, anchor, ch, rep)
        rep.signed = rep.problem is None
    elif trusted is not None:
        rep.problem = "the store holds no signed checkpoint: it was deleted, or never signed"
    if rep.problem is None and pin is not None:
        rep.problem = (signature_problem(pin, trusted) if pin.sig else None) or _pin_problem(
            pin, anchor, ch, rep
        )
        rep.pinned = rep.problem is None
    return rep


def _signed_problem(cp: Checkpoint, anchor: Head, ch: _Chain, rep: VerifyReport) -> str | None:
    """The signed checkpoint in the store must be the chain's end, and its anchor."""
    if cp.n < rep.last_n:
        return (
            f"{rep.last_n - cp.n} rows after the signed checkpoint (row {cp.n}) were added"
            " by someone without the key"
        )
    if (cp.anchor_n, cp.anchor_hash) != (anchor.n, anchor.hash.hex()):
        return f"the chain anchor (row {anchor.n}) is not the signed one (row {cp.anchor_n})"
    return _pin_problem(cp, anchor, ch, rep)


def _chain(
    db: Conn,
    anchor: Head,
    ch: _Chain,
    rep: VerifyReport,
    chunk: int,
) -> None:
    prev, expect, last = anchor.hash, anchor.n + 1, anchor.n
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
                return
            want = row_hash(prev, n, kind, step, device, seq, t, body)
            if not isinstance(raw, bytes) or want != bytes(h):
                what = f"{kind} {device or ''} {'' if seq is None else seq}".strip()
                rep.problem = f"row {n} ({what}) does not match its hash: changed after writing"
                return
            prev, expect, last = want, n + 1, n
            rep.counts[kind] = rep.counts.get(kind, 0) + 1
            rep.rows += 1
            ch.step = step
            if kind == RECORDS:  # its lines count as the fix and event rows they replace
                for line in lines_of(RECORDS, body):
                    rec = "event" if line_is_event(line) else "fix"
                    rep.counts[rec] = rep.counts.get(rec, 0) + 1
            elif kind == "step":
                ch.now = t
            elif kind == "alert":
                k = hashlib.sha256(body).digest()
                if seq is None:
                    ch.legacy[k] = ch.legacy.get(k, 0) + 1
                else:
                    ch.linked[int(seq)] = (n, str(device), k)
            elif kind == "prune":
                ch.prune = msgspec.json.decode(body, type=_Prune)
            if n in ch.wanted:
                ch.seen[n] = want
    rep.last_n, rep.head = last, prev


def _anchor_problem(db: Conn, anchor: Head, ch: _Chain, rep: VerifyReport) -> str | None:
    if anchor.n == 0 and ch.prune is None:
        return None
    if ch.prune is None:
        return (
            f"the chain anchor in meta (row {anchor.n}) is recorded by no prune row in the"
            " ledger: rows were deleted from the front and the anchor forged"
        )
    p = ch.prune
    if (p.prune, p.step, p.hash) != (anchor.n, anchor.step, anchor.hash.hex()):
        return (
            f"the chain anchor in meta (row {anchor.n}) is not the one retention recorded"
            f" (row {p.prune}): forged"
        )
    return None


def _alert_log_problem(db: Conn, anchor: Head, ch: _Chain, rep: VerifyReport) -> str | None:
    """Every alert_log row after retention's cut is the ledger's alert row naming its seq,
    byte for byte, and every such ledger row has its alert_log row."""
    cut = ch.prune.alert_seq if ch.prune else 0
    linked = dict(ch.linked)
    for seq, alert_id, record in db.execute(
        "SELECT seq, alert_id, record FROM alert_log ORDER BY seq"
    ):
        if seq <= cut:
            rep.alert_log_before_retention += 1
            continue
        body = record if isinstance(record, bytes) else str(record).encode()
        k = hashlib.sha256(body).digest()
        got = linked.pop(int(seq), None)
        if got is None:
            if ch.legacy.get(k, 0) > 0:
                ch.legacy[k] -= 1
                rep.alert_log_checked += 1
                continue
            return f"alert_log record {seq} ({alert_id}) is not in the ledger: inserted"
        n, aid, want = got
        if want != k or aid != alert_id:
            return f"alert_log record {seq} ({alert_id}) differs from ledger row {n}: changed"
        rep.alert_log_checked += 1
    if linked:
        seq = min(linked)
        n, aid, _ = linked[seq]
        return f"alert_log record {seq} ({aid}, ledger row {n}) is missing: deleted"
    return None


def _pin_problem(pin: Checkpoint, anchor: Head, ch: _Chain, rep: VerifyReport) -> str | None:
    if pin.n > rep.last_n:
        return (
            f"the checkpoint names row {pin.n} but the ledger ends at row {rep.last_n}:"
            f" {pin.n - rep.last_n} newest rows were deleted"
        )
    if pin.n == anchor.n:
        seen = anchor.hash
    elif pin.n < anchor.n:
        return f"the checkpoint (row {pin.n}) is older than the retained ledger: cannot check"
    else:
        seen = ch.seen.get(pin.n, b"")
    if seen.hex() != pin.hash:
        return f"row {pin.n} does not have the checkpoint's hash: the chain was rewritten"
    return None
