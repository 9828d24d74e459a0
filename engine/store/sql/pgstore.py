"""The store on PostgreSQL: the same logic as SQLite's (engine/store/sql/store.py) in one
schema of a database (engine/store/sql/pg.py), `tagwatch` unless the URL's `schema`
parameter or the caller names another (a shard's: `shard_schema(i, n)`).

A schema is to PostgreSQL what a file is to SQLite: its own ledger chain, snapshots,
alert log and outbox, dead letters and alert state, so restart recovery, retention and
`audit verify` work on it alone. A transaction that writes takes the ledger's write lock
first (engine/store/sql/pg.py: BEGIN IMMEDIATE), then re-reads the chain's head if
another writer moved it (a monitor's action written by a console in another process), so
two writers of one schema take turns and the chain stays whole.

A monitor's action on an alert another shard holds (`act`) is written into that shard's
schema by a store opened on it with this one's settings and signing key (the shards of
one deployment share the key: `tagwatch.key` by default), and returned with seq 0: this
engine's outbox publishes it and marks nothing of its own; the holding shard's outbox
publishes it again and marks it (at least once, as every alert record)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.store import ledger
from engine.store.base import OutboxItem
from engine.store.casework.workflow import Action, UnknownAlert
from engine.store.sql import pg
from engine.store.sql.conn import split_url, with_schema
from engine.store.sql.store import SqlStore


class PgStore(SqlStore):
    """The store in schema `schema` (default: the URL's, else `tagwatch`) of the
    PostgreSQL database at `url`."""

    _db: pg.PgConn

    def __init__(self, url: str | Path, *, schema: str | None = None, **kw: Any) -> None:
        bare, named = split_url(str(url))
        self.schema = pg.check_schema(schema) if schema else named
        self._url = bare
        self._settings = kw
        self._others: dict[str, PgStore] = {}  # other shards' schemas an action went to
        kw.setdefault("busy_timeout_s", 5.0)
        super().__init__(url, **kw)
        self._owner.what = f"{self._kind} {self.name} (schema {self.schema})"

    @property
    def target(self) -> str:
        return with_schema(self.path, self.schema)

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

    def act(self, alert_id: str, action: Action, now: float | None = None) -> OutboxItem:
        """A monitor's action, written into the schema that holds the alert (this one, or
        another shard's: then returned with seq 0, see above). UnknownAlert, ActionRefused."""
        try:
            return super().act(alert_id, action, now)
        except UnknownAlert:
            schema = self._owner.call(self._holder, alert_id)
            if schema is None:
                raise
        if schema not in self._others:
            self._others[schema] = PgStore(self._url, schema=schema, **self._settings)
        item = self._others[schema].act(alert_id, action, now)
        return OutboxItem(0, item.subject, item.payload)

    def _holder(self, alert_id: str) -> str | None:
        """The other store schema of this database whose alert log has `alert_id`."""
        with self._reading("the other shards' alert logs") as db:
            for schema in pg.store_schemas(self._db):
                if (
                    schema != self.schema
                    and db.execute(
                        f"SELECT 1 FROM {schema}.alert_log WHERE alert_id = ? LIMIT 1", (alert_id,)
                    ).fetchone()
                ):
                    return schema
        return None

    def close(self) -> None:
        for other in self._others.values():
            other.close()
        super().close()
