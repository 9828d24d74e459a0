"""Choosing the database from a `--db` target (or the serve config's `db`): a file path is
SQLite, a `postgresql://` or `postgres://` URL is PostgreSQL, in the schema its `schema`
parameter names (default `tagwatch`; a shard's engine: `shard_schema(i, n)`). Every place
that opens a store, a reader or a raw connection asks here, so the choice is made once.

    open_store(target, schema=None, **settings)   the engine's store (engine/store/base.py)
    connect(target, ...)                          a raw connection (audit, notifications)
    shard_target(target, i, n)                    where shard i of n keeps its store
    store_targets(target)                         one target per store a reader reads:
                                                  the file, or every store schema of the
                                                  database (`tagwatch`, `tagwatch_shard_*`)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.errors import StoreError
from engine.store.schema import advice
from engine.store.sql.conn import DB_ERRORS, Conn, describe, is_url, split_url, with_schema
from engine.store.sql.store import SqlStore


def open_store(target: str | Path, *, schema: str | None = None, **settings: Any) -> SqlStore:
    """The store at `target` (SqliteStore or PgStore), with SqlStore's settings
    (dead-letter limits, busy_timeout_s, read_only, signing_key). `schema` (PostgreSQL
    only) overrides the URL's. StoreError when it cannot be opened."""
    if is_url(target):
        from engine.store.sql.pgstore import PgStore

        return PgStore(str(target), schema=schema, **settings)
    if schema is not None:
        raise StoreError(f"--db {target}: a schema goes with a PostgreSQL URL, not a file")
    from engine.store.sqlite import SqliteStore

    return SqliteStore(target, **settings)


def connect(
    target: str,
    *,
    read_only: bool = False,
    busy_timeout_s: float = 5.0,
    lock: str | None = None,
    schema: str | None = None,
) -> Conn:
    """A connection to `target` (a driver's error propagates: DB_ERRORS). A read-only
    SQLite file must exist; a read-only schema too."""
    if is_url(target):
        from engine.store.sql import pg

        url, named = split_url(target)
        return pg.connect(
            url, schema or named, read_only=read_only, lock=lock, timeout_s=busy_timeout_s
        )
    from engine.store.sqlite import connect_file

    if read_only and not Path(target).is_file():
        raise StoreError(f"no alert store at {target}")
    return connect_file(target, read_only=read_only, busy_timeout_s=busy_timeout_s)


def shard_target(target: str, i: int, n: int) -> str:
    """Where the engine of shard `i` of `n` keeps its store: on PostgreSQL the URL naming
    schema `shard_schema(i, n)` (readers of the bare URL see every shard); a SQLite file
    gets a file of its own beside it (`tagwatch.shard0.db`: readers see one shard only)."""
    from engine.store.sql import pg

    schema = pg.shard_schema(i, n)
    if is_url(target):
        return with_schema(target, schema)
    p = Path(target)
    return str(p.with_name(f"{p.stem}.shard{i}{p.suffix}"))


def store_targets(target: str) -> list[str]:
    """What a reader of `target` reads: [the file], or each store schema of the database
    as a URL naming it (a URL that names a schema: that one only). StoreError."""
    if not is_url(target):
        if not Path(target).is_file():
            raise StoreError(f"no alert store at {target}")
        return [target]
    if "schema=" in target.partition("?")[2]:
        return [target]
    from engine.store.sql import pg

    url, schema = split_url(target)
    try:
        db = pg.connect(url, schema, read_only=True, create=False, check=False)
        try:
            names = pg.store_schemas(db)
        finally:
            db.close()
    except DB_ERRORS as e:
        raise StoreError(f"cannot read {describe(target)}: {e}{advice(e)}") from e
    if not names:
        raise StoreError(
            f"no alert store in {describe(target)} (no schema tagwatch or tagwatch_shard_N)"
        )
    return [with_schema(target, n) for n in names]
