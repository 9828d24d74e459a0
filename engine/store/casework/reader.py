"""What the console reads from the store, on a read-only connection of its own (SQLite's
WAL, PostgreSQL's MVCC: a reader never holds up the engine's commits): the alerts as they
stand with their workflow, the alert log after a point (the live feed), an alert's
records, and positions from the evidence ledger (a tag's track, the fixes an alert cites,
a protected device's positions around an alert). `open_reader` picks the database; a
PostgreSQL database with several shards' schemas is read through casework/shards.py."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from engine.store.casework.workflow import Workflow
from engine.store.owner import own
from engine.store.records.index import device_records
from engine.store.sql.conn import is_url
from engine.store.sql.open import store_targets
from engine.store.sql.store import SqlStore
from engine.store.sqlite import SqliteStore
from engine.wire.alerts import Alert, decode_alert

_LATEST = "SELECT MAX(seq) FROM alert_log GROUP BY alert_id"
_WITH_WORKFLOW = (
    "SELECT MAX(seq) FROM alert_log WHERE CAST(record AS TEXT) LIKE '%\"workflow\":%'"
    " GROUP BY alert_id"
)


class Position(msgspec.Struct, frozen=True):
    """One fix from the ledger as the console shows it."""

    tag: str
    seq: int
    t: float
    lat: float
    lon: float
    acc: float
    batt: int | None = None


class _Body(msgspec.Struct):
    t: float
    lat: float = float("nan")
    lon: float = float("nan")
    acc: float = float("nan")
    batt: int | None = None
    boot: int | None = None


_body = msgspec.json.Decoder(_Body)


class CaseReads(SqlStore):
    """A read-only view of one alert store for the console."""

    def __init__(self, path: str | Path, **kw: Any) -> None:
        super().__init__(path, read_only=True, **kw)

    def target_of(self, alert_id: str) -> str:
        """The store that holds `alert_id` (an evidence pack is read from it)."""
        return self.path

    def current(self) -> list[tuple[int, Alert, Workflow]]:
        """Every alert's latest record (with its alert_log seq) and its workflow."""
        with self._reading("the alert log") as db:
            latest = db.execute(
                f"SELECT seq, record FROM alert_log WHERE seq IN ({_LATEST}) ORDER BY seq"
            ).fetchall()
            flows = db.execute(
                f"SELECT record FROM alert_log WHERE seq IN ({_WITH_WORKFLOW})"
            ).fetchall()
        wf = {}
        for (record,) in flows:
            a = decode_alert(bytes(record))
            wf[a.id] = Workflow.of([a])
        out = []
        for seq, record in latest:
            a = decode_alert(bytes(record))
            out.append((int(seq), a, wf.get(a.id, Workflow())))
        return out

    def log_after(self, seq: int, limit: int = 500) -> list[tuple[int, Alert]]:
        """The alert records written after alert_log `seq`, oldest first, at most `limit`."""
        with self._reading("the alert log") as db:
            rows = db.execute(
                "SELECT seq, record FROM alert_log WHERE seq > ? ORDER BY seq LIMIT ?",
                (seq, limit),
            ).fetchall()
        return [(int(s), decode_alert(bytes(r))) for s, r in rows]

    def last_seq(self) -> int:
        with self._reading("the alert log") as db:
            row = db.execute("SELECT MAX(seq) FROM alert_log").fetchone()
        return int(row[0] or 0)

    def records(self, alert_id: str) -> list[tuple[int, Alert]]:
        """Every record of one alert, oldest first ([] for an unknown id)."""
        with self._reading("the alert log") as db:
            rows = db.execute(
                "SELECT seq, record FROM alert_log WHERE alert_id = ? ORDER BY seq", (alert_id,)
            ).fetchall()
        return [(int(s), decode_alert(bytes(r))) for s, r in rows]

    def positions(
        self, device: str, since: float, until: float, limit: int = 5000
    ) -> list[Position]:
        """The device's fixes in the ledger with event time in [since, until], oldest first
        (at most the newest `limit`)."""
        with self._reading("the evidence ledger") as db:
            found = device_records(db, device, fixes_only=True, t0=since, t1=until)
        newest = sorted(found, key=lambda f: f.t)[-limit:] if limit > 0 else []
        return [_position(device, f.seq, f.body) for f in newest]

    def cited(self, evidence: Sequence[Sequence[Any]]) -> list[Position]:
        """The fixes an alert's evidence cites ([tag, seq(, boot)]), where the ledger still
        has them (events and pruned rows are left out)."""
        out: list[Position] = []
        with self._reading("the evidence ledger") as db:
            for ev in evidence:
                tag, seq = str(ev[0]), int(ev[1])
                boot = ev[2] if len(ev) > 2 else None
                for f in device_records(db, tag, fixes_only=True, seq=seq):
                    p = _body.decode(f.body)
                    if boot is None or p.boot in (None, boot):
                        out.append(_position(tag, seq, f.body))
                        break
        return out

    def last_seen(self, device: str) -> tuple[float, int | None] | None:
        """(event time, battery %) of the device's newest record in the ledger."""
        with self._reading("the evidence ledger") as db:
            rows = device_records(db, device, newest=50)[::-1]
        if not rows:
            return None
        batt = next((b for f in rows if (b := _body.decode(f.body).batt) is not None), None)
        return rows[0].t, batt


def _position(device: str, seq: int, body: bytes) -> Position:
    b = _body.decode(bytes(body))
    return Position(device, int(seq), b.t, b.lat, b.lon, b.acc, b.batt)


own(CaseReads, ("current", "log_after", "last_seq", "records", "positions", "cited", "last_seen"))


class CaseReader(CaseReads, SqliteStore):
    """The console's view of a SQLite store."""


def open_reader(target: str) -> Any:
    """The console's reader of `target`: a file, one PostgreSQL schema, or (a URL naming
    no schema, whose database holds several stores: shards) all of them at once.
    StoreError when there is no store there."""
    if not is_url(target):
        return CaseReader(target)
    from engine.store.casework.shards import PgCaseReader, ShardedReader

    targets = store_targets(target)
    return PgCaseReader(targets[0]) if len(targets) == 1 else ShardedReader(target, targets)
