"""The account store: users, API tokens, console sessions and the access log, in the alert
store's SQLite file on a connection of its own, or on PostgreSQL in the common schema
(`tagwatch`, whatever schema the URL names: one set of accounts for every shard).

Ownership: like the alert store (engine/store/owner.py), this connection lives on one
thread of its own and every public method runs there, whole. It is a second connection to
the same WAL file, not the engine's: a console request never queues behind a commit on the
engine's store thread, and the engine's commits never wait for a console read (WAL readers
do not block the writer). Its writes (a login, a logout) are single small transactions;
SQLite's one-writer lock makes the engine's next commit wait at most for one of them.

The access log is append-only (triggers refuse UPDATE and DELETE). It is not part of the
evidence ledger's hash chain: the chain's head belongs to the engine's store thread."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from engine.errors import StoreError, TagwatchError
from engine.store.access.schema import APPEND_ONLY, ROLES, SCHEMA
from engine.store.owner import OwnedResource, own
from engine.store.schema import advice
from engine.store.sql.conn import DB_ERRORS, DEFAULT_SCHEMA, Conn, describe, dialect, is_url
from engine.store.sql.open import connect
from engine.store.sqlite import create_file

_OPEN_ERRORS: tuple[type[Exception], ...] = (*DB_ERRORS, OSError)


class AccountError(TagwatchError):
    """An account operation is refused: no such user, a name taken, a bad role."""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    team: str | None
    disabled: bool


@dataclass(frozen=True)
class Session:
    user: User
    csrf: str
    expires_at: float


@dataclass(frozen=True)
class AccessRow:
    seq: int
    t: float
    user: str
    client: str
    action: str
    detail: str


_USER = "SELECT name, role, team, disabled FROM users"


def _user(row: tuple[object, ...]) -> User:
    name, role, team, disabled = row
    return User(str(name), str(role), None if team is None else str(team), bool(disabled))


class AccountStore(OwnedResource):
    """Accounts and the access log of the store at `path` (created if missing)."""

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 5.0) -> None:
        self.path = str(path)
        self.name = describe(self.path)
        self.busy_timeout_s = busy_timeout_s
        self._start("tagwatch-accounts", f"account store {self.name}")

    def _open(self) -> None:
        try:
            if not is_url(self.path):
                create_file(self.path)
            # SQLite: WAL, synchronous=FULL (the access log is evidence), as the engine's
            self._db = connect(self.path, busy_timeout_s=self.busy_timeout_s, schema=DEFAULT_SCHEMA)
            self._db.executescript(SCHEMA + APPEND_ONLY[dialect(self._db)])
        except _OPEN_ERRORS as e:
            raise StoreError(f"cannot open account store {self.name}: {e}{advice(e)}") from e

    def _fail(self, doing: str, e: BaseException) -> NoReturn:
        raise StoreError(f"account store {self.name}: {doing}: {e}{advice(e)}") from e

    @contextlib.contextmanager
    def _write(self, doing: str) -> Iterator[Conn]:
        """One transaction; rolled back and a StoreError on failure."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            yield self._db
            self._db.execute("COMMIT")
        except DB_ERRORS as e:
            with contextlib.suppress(*DB_ERRORS):
                self._db.execute("ROLLBACK")
            self._fail(doing, e)
        except BaseException:
            with contextlib.suppress(*DB_ERRORS):
                self._db.execute("ROLLBACK")
            raise

    def _read(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        try:
            return list(self._db.execute(sql, params).fetchall())
        except DB_ERRORS as e:
            self._fail("cannot read", e)

    @staticmethod
    def _log(db: Conn, user: str, client: str, action: str, detail: str) -> None:
        db.execute(
            'INSERT INTO access_log(t, "user", client, action, detail) VALUES (?,?,?,?,?)',
            (time.time(), user, client, action, detail),
        )

    def _need(self, db: Conn, name: str) -> None:
        if db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone() is None:
            raise AccountError(f"no user {name!r} in {self.name}")

    # -- accounts (the command line: `tagwatch users ...`) --------------------------------
    def add_user(self, name: str, role: str, team: str | None, password_hash: str) -> User:
        if role not in ROLES:
            raise AccountError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        now = time.time()
        with self._write("cannot add the user") as db:
            if db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise AccountError(f"user {name!r} already exists in {self.name}")
            db.execute(
                "INSERT INTO users(name, role, team, password, created_at, changed_at)"
                " VALUES (?,?,?,?,?,?)",
                (name, role, team, password_hash, now, now),
            )
            self._log(db, name, "cli", "user_add", f"role {role}, team {team or '-'}")
        return User(name, role, team, False)

    def set_password(self, name: str, password_hash: str) -> None:
        """A new password; the user's console sessions end (they log in again)."""
        with self._write("cannot change the password") as db:
            self._need(db, name)
            db.execute(
                "UPDATE users SET password = ?, changed_at = ? WHERE name = ?",
                (password_hash, time.time(), name),
            )
            db.execute('DELETE FROM sessions WHERE "user" = ?', (name,))
            self._log(db, name, "cli", "user_passwd", "")

    def add_token(self, name: str, token_sha256: str) -> None:
        with self._write("cannot store the token") as db:
            self._need(db, name)
            db.execute(
                'INSERT INTO api_tokens(sha256, "user", created_at) VALUES (?,?,?)',
                (token_sha256, name, time.time()),
            )
            self._log(db, name, "cli", "token_add", token_sha256[:12])

    def disable(self, name: str) -> None:
        """No more logins, sessions or tokens for `name` (kept: the log names them)."""
        with self._write("cannot disable the user") as db:
            self._need(db, name)
            db.execute("UPDATE users SET disabled = 1, changed_at = ? WHERE name = ?",
                       (time.time(), name))  # fmt: skip
            db.execute('DELETE FROM sessions WHERE "user" = ?', (name,))
            db.execute('DELETE FROM api_tokens WHERE "user" = ?', (name,))
            self._log(db, name, "cli", "user_disable", "")

    def users(self) -> list[User]:
        return [_user(r) for r in self._read(_USER + " ORDER BY name")]

    # -- authentication (the console) -------------------------------------------------------
    def password_of(self, name: str) -> tuple[User, str] | None:
        """(user, stored hash) of an enabled user, or None."""
        rows = self._read(
            "SELECT name, role, team, disabled, password FROM users"
            " WHERE name = ? AND disabled = 0",
            (name,),
        )
        return (_user(rows[0][:4]), str(rows[0][4])) if rows else None

    def by_token(self, token_sha256: str) -> User | None:
        rows = self._read(
            _USER
            + ' WHERE disabled = 0 AND name = (SELECT "user" FROM api_tokens WHERE sha256 = ?)',
            (token_sha256,),
        )
        return _user(rows[0]) if rows else None

    def open_session(
        self, user: User, sid_sha256: str, csrf: str, client: str, max_age_s: float
    ) -> Session:
        """A new console session, and the login in the access log, in one transaction."""
        now = time.time()
        with self._write("cannot open a session") as db:
            db.execute("DELETE FROM sessions WHERE expires_at < ?", (now,))
            db.execute(
                'INSERT INTO sessions(sha256, "user", csrf, client, created_at, expires_at)'
                " VALUES (?,?,?,?,?,?)",
                (sid_sha256, user.name, csrf, client, now, now + max_age_s),
            )
            self._log(db, user.name, client, "login", "")
        return Session(user, csrf, now + max_age_s)

    def session(self, sid_sha256: str) -> Session | None:
        """The live session with this id (an enabled user's, not expired), or None."""
        rows = self._read(
            "SELECT u.name, u.role, u.team, u.disabled, s.csrf, s.expires_at FROM sessions s"
            ' JOIN users u ON u.name = s."user" WHERE s.sha256 = ? AND u.disabled = 0'
            " AND s.expires_at > ?",
            (sid_sha256, time.time()),
        )
        if not rows:
            return None
        r = rows[0]
        return Session(_user(r[:4]), str(r[4]), float(r[5]))  # type: ignore[arg-type]

    def close_session(self, sid_sha256: str, user: str, client: str) -> None:
        with self._write("cannot end the session") as db:
            db.execute("DELETE FROM sessions WHERE sha256 = ?", (sid_sha256,))
            self._log(db, user, client, "logout", "")

    # -- the access log -------------------------------------------------------------------
    def log(self, user: str, client: str, action: str, detail: str = "") -> None:
        with self._write("cannot write the access log") as db:
            self._log(db, user, client, action, detail)

    def access_log(self, limit: int = 1000, action: str | None = None) -> list[AccessRow]:
        """The newest `limit` rows (of one `action` only, if given), oldest first."""
        where, params = ("WHERE action = ?", (action,)) if action else ("", ())
        rows = self._read(
            f'SELECT seq, t, "user", client, action, detail FROM access_log {where}'
            " ORDER BY seq DESC LIMIT ?",
            (*params, limit),
        )
        return [AccessRow(*r) for r in reversed(rows)]  # type: ignore[arg-type]

    def _close(self) -> None:
        self._db.close()


# Run on the account store's own thread, whichever thread calls them.
own(AccountStore, (
    "add_user", "set_password", "add_token", "disable", "users", "password_of", "by_token",
    "open_session", "session", "close_session", "log", "access_log",
))  # fmt: skip
