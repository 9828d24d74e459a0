"""Where a device's records are in a ledger of records rows (engine/store/ledger.py).

A records row holds a whole step's fixes and events, so the ledger's (device, seq) index
no longer finds one device's. An index row per record would cost what the row per record
did (each commit of a fleet's batch dirtied an index page per device, dearer as the
ledger grew: docs/durability.md). So the engine keeps the places in memory and files them
every `ledger_index_s` seconds or `ledger_index_max` records, in the same transaction as
the ledger rows of that commit: one `ledger_index` row per device and flush, whose `at`
packs each record's (row n, line i, is an event, seq, t). `meta.index_n` is the last
ledger row the flushed rows cover.

Readers take a device's records from three places, in ledger order: rows of its own
(a ledger written a row per record, `ledger_rows = "record"`, or before the records row
existed), the flushed index, and the records rows after `index_n` (the tail, at most one
flush's worth, scanned). A kill -9 loses only the memory: the tail is still scanned by
readers, and the next engine files it again from the ledger at start (`Pending.load`).
The index is derived data and not in the hash chain: `audit verify` checks the rows, and a
wrong index only hides records from a reader, which the chain still holds."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import NamedTuple

import numpy as np

from engine.store import ledger
from engine.store.ledger import RECORDS, AlertRow, Head, LedgerWriter, Placed, Row, Step
from engine.store.sql.conn import Conn, insert_rows
from engine.wire.replayline import DeviceCodes, line_place, line_prefix

log = logging.getLogger("tagwatch.ledger")

AT = np.dtype([("n", "<i8"), ("i", "<i4"), ("event", "u1"), ("seq", "<i8"), ("t", "<f8")])
COLUMNS = ("device", "n_lo", "n_hi", "t_lo", "t_hi", "at")
PG_TYPES = ("text", "int8", "int8", "float8", "float8", "bytea")


def index_n(db: Conn) -> int:
    """The last ledger row the flushed index covers (0: none)."""
    row = db.execute("SELECT value FROM meta WHERE key = 'index_n'").fetchone()
    return int(row[0]) if row else 0


class Pending:
    """The places of records not yet filed (the engine's side), and when to file them."""

    def __init__(self, every_s: float = 5.0, max_records: int = 100_000) -> None:
        self.every_s = every_s
        self.max_records = max_records
        self.placed: list[Placed] = []
        self.count = 0
        self.since = time.monotonic()

    def due(self, more: Sequence[Placed]) -> bool:
        n = self.count + sum(len(p[1]) for p in more)
        return n > 0 and (n >= self.max_records or time.monotonic() - self.since >= self.every_s)

    def rows(self, more: Sequence[Placed]) -> list[tuple[str, int, int, float, float, bytes]]:
        """The index rows of everything pending and `more`: one per device, its places in
        ledger order (grouped in numpy: a flush files up to `max_records` places of as
        many devices, and a loop per device cost more than the commit it rides in)."""
        placed = [*self.placed, *more]
        total = sum(len(p[1]) for p in placed)
        if not total:
            return []
        at = np.empty(total, dtype=AT)
        sizes = [len(p[1]) for p in placed]
        at["n"] = np.repeat([p[0] for p in placed], sizes)
        at["i"] = np.concatenate([np.arange(m) for m in sizes])
        for name, col in (("event", 2), ("seq", 3), ("t", 4)):
            at[name] = np.concatenate([np.asarray(p[col], dtype=AT[name]) for p in placed])
        names, codes = _device_codes([p[1] for p in placed])
        order = np.argsort(codes, kind="stable")  # each device's places stay in order
        srt, c = at[order], codes[order]
        starts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
        ends = np.r_[starts[1:], total]
        blob, size = srt.tobytes(), AT.itemsize
        rows = [
            (names[d], lo, hi, tl, th, blob[a * size : b * size])
            for d, lo, hi, tl, th, a, b in zip(
                c[starts].tolist(), srt["n"][starts].tolist(), srt["n"][ends - 1].tolist(),
                np.minimum.reduceat(srt["t"], starts).tolist(),
                np.maximum.reduceat(srt["t"], starts).tolist(),
                starts.tolist(), ends.tolist(), strict=True,
            )
        ]  # fmt: skip
        # each device's row in order of its first place (codes may be numbered otherwise)
        return [rows[k] for k in np.argsort(order[starts], kind="stable").tolist()]

    def committed(self, more: Sequence[Placed], filed: bool) -> None:
        """A commit holding `more` went in; `filed`: it filed everything pending too."""
        if filed:
            self.placed, self.count, self.since = [], 0, time.monotonic()
        else:
            self.placed.extend(more)
            self.count += sum(len(p[1]) for p in more)

    def load(self, db: Conn) -> None:
        """What the ledger holds after the filed index (a restart: an engine killed before
        it filed them), pending again."""
        self.placed, self.count = [], 0
        for n, body in _tail(db, index_n(db)):
            got = [line_place(line) for line in ledger.lines_of(RECORDS, body)]
            good = [p for p in got if p is not None]
            if len(good) < len(got):  # changed after writing (audit verify names the row)
                log.error("ledger row %d holds a line that is no record: not indexed", n)
                continue
            devices, seqs, ts, events = zip(*good, strict=True)
            self.placed.append((n, devices, events, seqs, ts))
            self.count += len(devices)


def _device_codes(columns: Sequence[Sequence[str] | DeviceCodes]) -> tuple[list[str], np.ndarray]:
    """The devices of these columns each once (numbered as met: a column of codes by code),
    and each place's number (uint16 when they fit: numpy's stable sort of those is a radix
    sort, 8x). Columns of codes into one table are mapped per distinct code, not per place."""
    ids: dict[str, int] = {}
    parts: list[np.ndarray] = []
    tables: dict[int, tuple[np.ndarray, list[int]]] = {}  # per table: its names, its parts
    for col in columns:
        if isinstance(col, DeviceCodes):
            names, at = tables.get(id(col.table), (col.names, []))
            tables[id(col.table)] = (col.names if len(col.names) > len(names) else names, at)
            at.append(len(parts))
            parts.append(col.codes)
        else:
            parts.append(
                np.fromiter((ids.setdefault(d, len(ids)) for d in col), np.int64, len(col))
            )
    for names, at in tables.values():
        distinct = np.unique(np.concatenate([parts[i] for i in at]))
        to = np.zeros(len(names), dtype=np.int64)
        to[distinct] = [ids.setdefault(d, len(ids)) for d in names[distinct].tolist()]
        for i in at:
            parts[i] = to[parts[i]]
    small = np.uint16 if len(ids) <= 1 << 16 else np.int64
    return list(ids), np.concatenate(parts).astype(small)


def _tail(db: Conn, after: int) -> Iterator[tuple[int, bytes]]:
    """The records rows after row `after` (a page of 200: each holds a step's lines)."""
    for n, body in ledger.rows_after(db, "n, body", "kind = 'records'", after, page=200):
        yield int(n), bytes(body)


class Filing:
    """The store's ledger writes (engine/store/sql/store.py): a commit's rows, a records
    row per step (`per_step`) or a row per record, and the index filed when due."""

    def __init__(self, per_step: bool = True, every_s: float = 5.0, most: int = 100_000) -> None:
        self.per_step = per_step
        self.pending = Pending(every_s, most)
        self._staged: tuple[list[Placed], bool] = ([], False)

    def write(
        self, db: Conn, head: Head, steps: Sequence[Step], alerts: Iterable[AlertRow]
    ) -> list[Row]:
        """Insert the rows of these steps and alerts after `head`, and file the index when
        due (inside the caller's transaction); `committed` once it has committed."""
        w = LedgerWriter(head, self.per_step)
        rows = w.rows(steps, alerts)
        if rows:
            insert_rows(db, "ledger", ledger.COLUMNS, ledger.PG_TYPES, rows)
        due = self.pending.due(w.placed)
        if due:
            got = self.pending.rows(w.placed)
            if got:
                insert_rows(db, "ledger_index", COLUMNS, PG_TYPES, got)
            db.execute(
                "INSERT INTO meta(key, value) VALUES ('index_n', ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (str(rows[-1][0] if rows else head.n),),
            )
        self._staged = (w.placed, due)
        return rows

    def committed(self) -> None:
        self.pending.committed(*self._staged)
        self._staged = ([], False)


class Found(NamedTuple):
    """One of a device's records: ledger row n, line i of a records row (-1: a row of its
    own), kind ("fix"/"event"), seq, event time, its replay line."""

    n: int
    i: int
    kind: str
    seq: int
    t: float
    body: bytes


def device_records(
    db: Conn,
    device: str,
    *,
    fixes_only: bool = False,
    seq: int | None = None,
    t0: float | None = None,
    t1: float | None = None,
    newest: int | None = None,
) -> list[Found]:
    """The device's records in ledger order, those with `seq` or event time in [t0, t1]
    only when given; `newest`: only the last that many."""
    out = _own_rows(db, device, fixes_only, seq, t0, t1, newest)
    upto = index_n(db)

    def keep(a: np.ndarray) -> np.ndarray:
        ok = np.ones(len(a), dtype=bool)
        if fixes_only:
            ok &= a["event"] == 0
        if seq is not None:
            ok &= a["seq"] == seq
        if t0 is not None:
            ok &= a["t"] >= t0
        if t1 is not None:
            ok &= a["t"] <= t1
        return a[ok]

    places = _filed(db, device, upto, t0, t1, newest, keep)
    if newest is not None:
        places = places[-newest:]
    out.extend(_lines_at(db, places))
    # The tail, not filed yet: the device's lines placed as the index would, kept alike
    needle, tail, lines = line_prefix(device), [], {}
    for n, body in _tail(db, upto):
        if needle not in body:
            continue
        for i, line in enumerate(ledger.lines_of(RECORDS, body)):
            if line.startswith(needle) and (place := line_place(line)) is not None:
                _, s, t, event = place
                tail.append((n, i, event, s, t))
                lines[(n, i)] = line
    out.extend(_found(p, lines[(int(p["n"]), int(p["i"]))]) for p in keep(np.array(tail, AT)))
    out.sort(key=lambda f: (f.n, f.i))
    return out[-newest:] if newest is not None else out


def _own_rows(
    db: Conn,
    device: str,
    fixes_only: bool,
    seq: int | None,
    t0: float | None,
    t1: float | None,
    newest: int | None,
) -> list[Found]:
    sql = "SELECT n, kind, seq, t, body FROM ledger WHERE device = ?"
    sql += " AND kind = 'fix'" if fixes_only else " AND kind IN ('fix', 'event')"
    params: list[object] = [device]
    for cond, v in (("seq = ?", seq), ("t >= ?", t0), ("t <= ?", t1)):
        if v is not None:
            sql += f" AND {cond}"
            params.append(v)
    if newest is not None:
        sql += " ORDER BY n DESC LIMIT ?"
        params.append(newest)
    rows = db.execute(sql, params).fetchall()
    got = [Found(int(n), -1, str(k), int(s), float(t), bytes(b)) for n, k, s, t, b in rows]
    return sorted(got)


def _filed(
    db: Conn,
    device: str,
    upto: int,
    t0: float | None,
    t1: float | None,
    newest: int | None,
    keep: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """The device's filed places (AT) that `keep` keeps, in ledger order; with `newest`,
    at least the last that many (filed rows read newest first until they hold enough)."""
    sql = "SELECT at FROM ledger_index WHERE device = ? AND n_hi <= ?"
    params: list[object] = [device, upto]
    if t0 is not None:
        sql += " AND t_hi >= ?"
        params.append(t0)
    if t1 is not None:
        sql += " AND t_lo <= ?"
        params.append(t1)
    parts: list[np.ndarray] = []
    held = 0
    for (blob,) in db.execute(sql + " ORDER BY n_lo DESC", params):
        a = keep(np.frombuffer(bytes(blob), dtype=AT))
        parts.append(a)
        held += len(a)
        if newest is not None and held >= newest:
            break
    if not parts:
        return np.empty(0, dtype=AT)
    return np.concatenate(parts[::-1])


def _lines_at(db: Conn, places: np.ndarray, chunk: int = 200) -> list[Found]:
    """The records at these places (rows retention deleted give nothing)."""
    out: list[Found] = []
    rows = np.unique(places["n"])
    for k in range(0, len(rows), chunk):
        part = [int(x) for x in rows[k : k + chunk]]
        marks = ",".join("?" * len(part))
        bodies = {
            int(n): ledger.lines_of(RECORDS, bytes(b))
            for n, b in db.execute(
                f"SELECT n, body FROM ledger WHERE kind = ? AND n IN ({marks})",
                [RECORDS, *part],
            )
        }
        lo, hi = part[0], part[-1]
        sel = places[(places["n"] >= lo) & (places["n"] <= hi)]
        for p in sel:
            lines = bodies.get(int(p["n"]))
            if lines is not None and int(p["i"]) < len(lines):
                out.append(_found(p, lines[int(p["i"])]))
    return out


def _found(p: np.void, line: bytes) -> Found:
    """The record at place `p` (an AT row) whose line is `line`."""
    kind = "event" if p["event"] else "fix"
    return Found(int(p["n"]), int(p["i"]), kind, int(p["seq"]), float(p["t"]), line)


def all_records(
    db: Conn, t0: float | None = None, t1: float | None = None, page: int = 2000
) -> Iterator[bytes]:
    """Every fix and event line in ledger order, those with event time in [t0, t1) only
    when given (`audit export`)."""
    where = "kind IN ('fix', 'event', 'records')"
    for _, kind, t, body in ledger.rows_after(db, "n, kind, t, body", where, page=page):
        for line in ledger.lines_of(kind, bytes(body)):
            if t0 is not None or t1 is not None:
                place = line_place(line) if kind == RECORDS else None
                if kind == RECORDS and place is None:
                    continue  # no record: its time is unknown
                tt = float(t) if place is None else place[2]
                if (t0 is not None and tt < t0) or (t1 is not None and tt >= t1):
                    continue
            yield line
