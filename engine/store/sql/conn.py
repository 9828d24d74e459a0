"""What the store's modules are written against: a connection with sqlite3's shape
(`execute` with `?` placeholders, `executemany`, `executescript`, `in_transaction`,
`close`), which a sqlite3 connection is and PostgreSQL's adapter (pg.py) imitates; the
errors a store module catches (`DB_ERRORS`: sqlite3's, and the adapter's `PgError` that
wraps psycopg's); and what a `--db` target names: a SQLite file, or a PostgreSQL URL whose
password is never printed (`describe`).

SQL is written once, in the dialect both understand: `?` placeholders, ON CONFLICT upserts,
RETURNING. What differs (types in DDL, `BEGIN IMMEDIATE`, `CAST(x AS TEXT)` of bytes) the
adapter translates; what cannot be translated a module asks with `dialect(db)`."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

DEFAULT_SCHEMA = "tagwatch"  # the common namespace: an unsharded engine, accounts
_URL = re.compile(r"^postgres(ql)?://", re.IGNORECASE)
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PgError(Exception):
    """A PostgreSQL error (psycopg's, as its cause), raised by the adapter."""


DB_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, PgError)


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Conn(Protocol):
    """A sqlite3.Connection, or PostgreSQL's adapter: the store's SQL runs on either."""

    @property
    def in_transaction(self) -> bool: ...

    def execute(self, sql: str, parameters: Any = ..., /) -> Any: ...

    def executemany(self, sql: str, parameters: Any, /) -> Any: ...

    def executescript(self, sql: str, /) -> Any: ...

    def close(self) -> None: ...


def insert_rows(
    db: Conn, table: str, columns: Sequence[str], pg_types: Sequence[str], rows: Sequence[Any]
) -> None:
    """Many rows into `table`: an executemany INSERT, or on PostgreSQL a binary COPY
    (`pg_types`: the columns' types). Measured on a 2,000-record step of ledger rows: COPY
    0.85 µs of CPU a row and 19 ms a step, executemany 6.4 µs and 47 ms."""
    copy = getattr(db, "copy_rows", None)
    if copy is not None:
        copy(table, columns, pg_types, rows)
        return
    # SQLite: many rows a statement. executemany steps once a row, and sqlite3 lets go of
    # the GIL around each step: with the engine's other threads busy, taking it back cost
    # up to the switch interval a row (commits of 500 rows took 150-700 ms under a backlog)
    one = f"({','.join('?' * len(columns))})"
    per = max(1, min(_SQLITE_ROWS, 32_000 // len(columns)))
    head = f"INSERT INTO {table}({', '.join(columns)}) VALUES "
    for k in range(0, len(rows), per):
        part = rows[k : k + per]
        sql = _multi.get((head, len(part)))
        if sql is None:
            sql = head + ",".join([one] * len(part))
            if len(_multi) < 64:
                _multi[(head, len(part))] = sql
        db.execute(sql, [v for row in part for v in row])


_SQLITE_ROWS = 2000  # rows a statement (SQLite >= 3.32 takes 32,766 parameters)
_multi: dict[tuple[str, int], str] = {}  # (head, rows) -> the statement


def dialect(db: Conn) -> str:
    """ "sqlite" or "postgresql"."""
    return str(getattr(db, "dialect", "sqlite"))


def _no_nul(text: Any) -> Any:
    return text.replace("\x00", "\\x00") if isinstance(text, str) and "\x00" in text else text


def _same(text: Any) -> Any:
    return text


def text_for(db: Conn) -> Callable[[Any], Any]:
    """How untrusted text (a dead letter's device, origin, reason) is stored: as it is, but
    on PostgreSQL, whose text type refuses NUL, with a NUL written as the 4 characters
    \\x00 (a device cannot make a commit fail, and so wedge the engine, with one byte)."""
    return _no_nul if dialect(db) == "postgresql" else _same


def is_url(target: object) -> bool:
    """True for a PostgreSQL URL (postgresql://... or postgres://...), not a file."""
    return isinstance(target, str) and bool(_URL.match(target))


def check_schema(name: str) -> str:
    """A schema name the store may use unquoted: lower case letters, digits and _."""
    if not _SCHEMA_NAME.match(name):
        raise ValueError(
            f"schema {name!r}: use lower case letters, digits and _ (at most 63, not a digit first)"
        )
    return name


def split_url(url: str) -> tuple[str, str]:
    """(the URL without tagwatch's own `schema` parameter, the schema it names or the
    default `tagwatch`)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), DEFAULT_SCHEMA)
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    return urlunsplit(parts._replace(query=rest)), check_schema(schema)


def with_schema(url: str, schema: str) -> str:
    """`url` naming `schema` (replacing any schema it named)."""
    bare, _ = split_url(url)
    parts = urlsplit(bare)
    query = [*parse_qsl(parts.query, keep_blank_values=True), ("schema", check_schema(schema))]
    return urlunsplit(parts._replace(query=urlencode(query)))


def describe(target: object) -> str:
    """The target as messages show it: a URL with its password masked."""
    text = str(target)
    if not is_url(text):
        return text
    parts = urlsplit(text)
    if parts.password is None:
        return text
    host = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def mask_in(text: str, target: object) -> str:
    """`text` with the target's password masked wherever it appears (a driver's message)."""
    if is_url(target):
        password = urlsplit(str(target)).password
        if password:
            text = text.replace(password, "***")
    return text
