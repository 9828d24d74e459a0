"""The console's reader of a PostgreSQL database whose alerts are kept by several engines
(`tagwatch serve --shard i/N`), each in a schema of its own (engine/store/sql/pg.py):
one read-only reader per schema, their answers merged, so a monitor sees every shard's
alerts in one queue.

An alert_log seq belongs to its schema: two shards both have a seq 7. Merged, a record's
seq is `seq * SPAN + k` (k: the schema's place among the stores, `tagwatch` first, then
the shards in order), unique and in each shard's order. The live feed follows every
schema at once: it asks for the records after the newest merged seq it was given, and
this reader keeps where it is in each schema, so a shard that commits later than another
is never skipped over."""

from __future__ import annotations

from typing import Any

from engine.errors import StoreError
from engine.store.casework.reader import CaseReads, Position
from engine.store.casework.workflow import Workflow
from engine.store.deadletters import DeadLetterRow
from engine.store.sql.conn import describe
from engine.store.sql.pgstore import PgStore
from engine.wire.alerts import Alert

SPAN = 256  # stores a merged seq can tell apart


class PgCaseReader(CaseReads, PgStore):
    """The console's view of one PostgreSQL schema."""


class ShardedReader:
    """CaseReads' answers over several schemas of one database (`targets`: URLs naming
    them, engine/store/sql/open.py store_targets)."""

    def __init__(self, path: str, targets: list[str]) -> None:
        if len(targets) > SPAN:
            raise StoreError(f"{describe(path)}: more than {SPAN} stores to read at once")
        self.path = path
        self.targets = targets
        self.readers: list[PgCaseReader] = []
        try:
            for t in targets:
                self.readers.append(PgCaseReader(t))
        except BaseException:
            self.close()
            raise
        self._cursors = [0] * len(targets)  # per schema: the last seq handed to the feed
        self._handed = -1  # the newest merged seq handed out

    def close(self) -> None:
        for r in self.readers:
            r.close()

    def __enter__(self) -> ShardedReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def merged(seq: int, k: int) -> int:
        return seq * SPAN + k

    def current(self) -> list[tuple[int, Alert, Workflow]]:
        out: list[tuple[int, Alert, Workflow]] = []
        for k, r in enumerate(self.readers):
            got = r.current()
            self._cursors[k] = max((s for s, _, _ in got), default=0)
            out += [(self.merged(s, k), a, w) for s, a, w in got]
        out.sort(key=lambda e: e[0])
        self._handed = max((e[0] for e in out), default=0)
        return out

    def log_after(self, seq: int, limit: int = 500) -> list[tuple[int, Alert]]:
        if seq != self._handed:  # not where the feed left off: start every schema at seq
            self._cursors = [max(0, (seq - k) // SPAN) for k in range(len(self.readers))]
        rows = [
            (self.merged(s, k), k, s, a)
            for k, r in enumerate(self.readers)
            for s, a in r.log_after(self._cursors[k], limit)
        ]
        rows.sort(key=lambda e: e[0])
        rows = rows[:limit]
        for _, k, s, _ in rows:
            self._cursors[k] = max(self._cursors[k], s)
        self._handed = max([seq] + [m for m, _, _, _ in rows])
        return [(m, a) for m, _, _, a in rows]

    def last_seq(self) -> int:
        return max(self.merged(r.last_seq(), k) for k, r in enumerate(self.readers))

    def _holder(self, alert_id: str) -> tuple[int, list[tuple[int, Alert]]]:
        for k, r in enumerate(self.readers):
            got = r.records(alert_id)
            if got:
                return k, got
        return -1, []

    def records(self, alert_id: str) -> list[tuple[int, Alert]]:
        k, got = self._holder(alert_id)
        return [(self.merged(s, k), a) for s, a in got]

    def target_of(self, alert_id: str) -> str:
        k, _ = self._holder(alert_id)
        return self.targets[k] if k >= 0 else self.path

    def positions(
        self, device: str, since: float, until: float, limit: int = 5000
    ) -> list[Position]:
        got = [p for r in self.readers for p in r.positions(device, since, until, limit)]
        got.sort(key=lambda p: p.t)
        return got[-limit:] if limit else []

    def cited(self, evidence: Any) -> list[Position]:
        out: list[Position] = []
        seen: set[tuple[str, int]] = set()
        for r in self.readers:
            for p in r.cited(evidence):
                if (p.tag, p.seq) not in seen:
                    seen.add((p.tag, p.seq))
                    out.append(p)
        return out

    def last_seen(self, device: str) -> tuple[float, int | None] | None:
        got = [s for r in self.readers if (s := r.last_seen(device)) is not None]
        return max(got, key=lambda s: s[0]) if got else None

    # -- what `tagwatch alerts` and `watch` read, store after store ----------------------
    def alert_log(self) -> list[Alert]:
        return [a for r in self.readers for a in r.alert_log()]

    def current_alerts(self, state: str | None = None) -> list[Alert]:
        return [a for r in self.readers for a in r.current_alerts(state)]

    def dead_letters(self, limit: int | None = None) -> list[DeadLetterRow]:
        return [d for r in self.readers for d in r.dead_letters(limit)]
