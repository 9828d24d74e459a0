"""Retention of the evidence ledger: rows deleted from the front, the chain re-anchored.

The last deleted row becomes the chain's anchor (kept in `meta`), and a prune row appended
to the chain records it, so an anchor rewritten in `meta` no longer matches. Never past the
newest snapshot (recovery starts there). Closed alerts whose records were all written
before the anchor (and published) leave alert_log and alerts with it. Runs inside the
store (engine/store/sql/store.py), on its thread."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import msgspec

from engine.errors import StoreError
from engine.store import ledger
from engine.store.ledger import LedgerWriter
from engine.store.sql.conn import Conn
from engine.wire.checkpoint import Checkpoint

if TYPE_CHECKING:  # base.py imports this module's neighbours: only for the annotation
    from engine.store.base import Store

log = logging.getLogger("tagwatch.serve")


def prune_front(
    db: Conn, before: float, chunk: int, mark: Checkpoint,
    sign: Callable[[Checkpoint], None],
) -> tuple[int, ledger.Head, Checkpoint] | None:  # fmt: skip
    """Delete ledger rows whose step ran before `before` (one chunk at most) in one
    transaction, signing the new end with `sign`: (rows deleted, new head, new checkpoint),
    or None when nothing is old enough. a database error (DB_ERRORS) propagates (rolled back by the caller)."""
    snap = db.execute("SELECT MAX(n) FROM snapshots").fetchone()[0]
    if snap is None:
        return None
    row = db.execute(
        "SELECT MIN(n) FROM ledger WHERE kind = 'step' AND t >= ?", (before,)
    ).fetchone()[0]
    first = db.execute("SELECT MIN(n) FROM ledger").fetchone()[0]
    limit = int(snap) if row is None else min(int(snap), int(row) - 1)
    if first is None or limit < int(first):
        return None
    limit = min(limit, int(first) + chunk - 1)
    db.execute("BEGIN IMMEDIATE")
    n, step, h = db.execute(
        "SELECT n, step, hash FROM ledger WHERE n <= ? ORDER BY n DESC LIMIT 1", (limit,)
    ).fetchone()
    # The alert_log seqs whose ledger rows go: verify no longer expects them.
    (aseq,) = db.execute(
        "SELECT MAX(seq) FROM ledger WHERE kind = 'alert' AND n <= ?", (limit,)
    ).fetchone()
    old = db.execute("SELECT value FROM meta WHERE key = 'anchor_alert_seq'").fetchone()
    aseq = max(int(aseq or 0), int(old[0]) if old else 0)
    anchor = ledger.Head(int(n), int(step), bytes(h))
    head = ledger.read_head(db)
    prune_row = LedgerWriter(head).prune_row(anchor, aseq)
    db.execute(ledger.INSERT, prune_row)
    cur = db.execute("DELETE FROM ledger WHERE n <= ?", (limit,))
    db.execute("DELETE FROM ledger_index WHERE n_hi <= ?", (limit,))
    _prune_alerts(db, aseq)
    db.executemany(
        "INSERT INTO meta(key, value) VALUES (?, ?)"
        " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [("anchor_n", str(n)), ("anchor_step", str(step)),
         ("anchor_hash", bytes(h).hex()), ("anchor_alert_seq", str(aseq))],
    )  # fmt: skip
    cp = msgspec.structs.replace(
        mark, n=prune_row[0], step=prune_row[2], hash=prune_row[7].hex(),
        anchor_n=anchor.n, anchor_hash=anchor.hash.hex(),
    )  # fmt: skip
    sign(cp)
    db.execute("COMMIT")
    return int(cur.rowcount), LedgerWriter.after([prune_row], head), cp


def _prune_alerts(db: Conn, upto_seq: int) -> None:
    """Closed alerts whose every record's ledger row went with retention (alert_log seq up
    to `upto_seq`) and was published: recovery never decides them again, so they go too.
    By seq, not time, so `audit verify` (which checks the log against the ledger above the
    anchor's alert seq) never finds a log row missing."""
    old = (
        "SELECT id FROM alerts WHERE state = 'closed' AND id NOT IN"
        " (SELECT alert_id FROM alert_log WHERE seq > ? OR published_at IS NULL)"
    )
    db.execute(f"DELETE FROM alert_log WHERE alert_id IN ({old})", (upto_seq,))
    db.execute(f"DELETE FROM alerts WHERE id IN ({old})", (upto_seq,))


def prune_due(store: Store, evidence_days: float, dead_letter_days: float, now: float) -> None:
    """The serve loop's hourly retention (0 days: keep forever); a store error is logged,
    not raised (retention tries again next hour)."""
    try:
        n = store.prune(now - evidence_days * 86400.0) if evidence_days > 0 else 0
        d = (
            store.prune_dead_letters(now - dead_letter_days * 86400.0)
            if dead_letter_days > 0
            else 0
        )
    except StoreError as e:
        log.warning("%s", e)
        return
    if n:
        log.info("retention: %d evidence ledger rows older than the retention deleted", n)
    if d:
        log.info("retention: %d dead letters older than the retention deleted", d)
