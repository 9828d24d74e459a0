"""The embedded store: SQLite (WAL, synchronous=FULL) in one file, created private (0600).
The store's logic is engine/store/sql/store.py, the same on PostgreSQL; this says how to
open the file: writable (creating it and its folder), or read-only with SQLite's mode=ro
(a reader can write nothing, not even a schema upgrade). ':memory:' gives a throwaway
store (replay, tests)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from engine.errors import StoreError
from engine.store.schema import advice, create_private
from engine.store.sql.store import SqlStore


def connect_file(path: str, *, read_only: bool, busy_timeout_s: float) -> sqlite3.Connection:
    """A connection to the store file at `path` (autocommit: the store's SQL opens its
    transactions itself); WAL and synchronous=FULL unless read-only. sqlite3.Error."""
    ms = int(busy_timeout_s * 1000)
    if read_only:
        db = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
        db.execute(f"PRAGMA busy_timeout={ms}")
        return db
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(f"PRAGMA busy_timeout={ms}")
    if path != ":memory:":
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"{path}: could not switch SQLite to WAL ({mode})")
    # FULL: a commit survives power loss, not just a process crash. Alerts are never
    # lost, so we pay the fsync per batch (batches amortise it).
    db.execute("PRAGMA synchronous=FULL")
    return db


def create_file(path: str) -> None:
    """The store's file, empty and private, and its folder (OSError)."""
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        create_private(Path(path))


class SqliteStore(SqlStore):
    """The store in the SQLite file at `path`."""

    def _open(self) -> None:
        if self.read_only and not Path(self.path).is_file():
            raise StoreError(f"no alert store at {self.path}")
        if not self.read_only:
            try:
                create_file(self.path)
            except OSError as e:
                raise StoreError(f"cannot open alert store {self.path}: {e}{advice(e)}") from e
        super()._open()

    def _connect(self) -> sqlite3.Connection:
        return connect_file(self.path, read_only=self.read_only, busy_timeout_s=self.busy_timeout_s)

    def _columns(self, table: str) -> set[str]:
        return {str(r[1]) for r in self._db.execute(f"PRAGMA table_info({table})")}
