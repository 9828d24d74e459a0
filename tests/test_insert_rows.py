"""conn.insert_rows, the ledger's bulk insert: many rows a statement on SQLite (several
statements past `_SQLITE_ROWS`), a binary COPY on PostgreSQL; the rows read back the same
as the executemany INSERT gives them, NULLs and bytes included."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.store import ledger
from engine.store.sql import conn as conn_mod
from engine.store.sql.conn import insert_rows
from engine.store.sql.open import connect


def _rows(n: int) -> list[tuple[object, ...]]:
    return [
        (i + 1, "fix" if i % 3 else "step", i // 3, None if i % 3 == 0 else f"T{i % 7}é",
         None if i % 3 == 0 else i, None if i % 11 == 0 else 1.7e9 + i / 7, bytes([i % 256]) * (i % 50),
         bytes(32))
        for i in range(n)
    ]  # fmt: skip


@pytest.mark.parametrize("n", [0, 1, 5, 2 * 2000 + 3])
def test_insert_rows_reads_back_as_executemany(
    tmp_path: Path, n: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(conn_mod, "_SQLITE_ROWS", 2000)
    rows = _rows(n)
    got = []
    for how in ("bulk", "many"):
        db = connect(str(tmp_path / f"{how}.db"))
        db.executescript(ledger.SCHEMA)
        db.execute("BEGIN")
        if how == "bulk":
            insert_rows(db, "ledger", ledger.COLUMNS, ledger.PG_TYPES, rows)
        else:
            db.executemany(ledger.INSERT, rows)
        db.execute("COMMIT")
        got.append(db.execute("SELECT * FROM ledger ORDER BY n").fetchall())
        db.close()
    assert got[0] == got[1]
    assert len(got[0]) == n


def test_insert_rows_on_postgresql(pg_url: str) -> None:
    rows = _rows(300)
    db = connect(pg_url)
    db.executescript(ledger.SCHEMA)
    db.execute("BEGIN IMMEDIATE")
    insert_rows(db, "ledger", ledger.COLUMNS, ledger.PG_TYPES, rows)
    db.execute("COMMIT")
    back = db.execute("SELECT n, kind, step, device, seq, t, body, hash FROM ledger ORDER BY n")
    assert [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in back] == rows
    db.close()
