"""The store on PostgreSQL: the same logic as SQLite's (engine/store/sql/store.py) in one
schema of a database (engine/store/sql/pg.py), `tagwatch` unless the URL's `schema`
parameter or the caller names another (a shard's: `shard_schema(i, n)`).

A schema is to PostgreSQL what a file is to SQLite: its own ledger chain, snapshots,
alert log and outbox, dead letters and alert state, so restart recovery, retention and
`audit verify` work on it alone. A transaction that writes takes the ledger's write lock
first (engine/store/sql/pg.py: BEGIN IMMEDIATE), then re-reads the chain's head if
another writer moved it (a monitor's action written by a console in another process), so
two writers of one schema take turns and the chain stays whole."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.store import ledger
from engine.store.sql import pg
from engine.store.sql.conn import split_url
from engine.store.sql.store import SqlStore


class PgStore(SqlStore):
    """The store in schema `schema` (default: the URL's, else `tagwatch`) of the
    PostgreSQL database at `url`."""

    _db: pg.PgConn

    def __init__(self, url: str | Path, *, schema: str | None = None, **kw: Any) -> None:
        bare, named = split_url(str(url))
        self.schema = pg.check_schema(schema) if schema else named
        self._url = bare
        kw.setdefault("busy_timeout_s", 5.0)
        super().__init__(url, **kw)
        self._owner.what = f"{self._kind} {self.name} (schema {self.schema})"

    def _connect(self) -> pg.PgConn:
        return pg.connect(
            self._url, self.schema, read_only=self.read_only,
            lock=None if self.read_only else "ledger", timeout_s=self.busy_timeout_s,
        )  # fmt: skip

    def _columns(self, table: str) -> set[str]:
        return self._db.columns(table)

    def _begin(self) -> None:
        super()._begin()
        if ledger.read_head(self._db) != self.head:
            self._reread_head()
