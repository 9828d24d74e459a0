"""One engine per store. A store's ledger holds one engine's steps: recovery replays them
through one pipeline, so two engines writing steps into one store (one SQLite file, one
PostgreSQL schema) would each restart into a state neither had. `tagwatch serve` holds
this lock for its whole life and refuses to start while another engine holds it.

- SQLite: an exclusive `flock` on `FILE-engine.lock` beside the store (SQLite's own
  locks are fcntl locks on the file itself; this one is separate from them). The file
  says which process holds it.
- PostgreSQL: a session advisory lock keyed by the schema, on a connection of its own
  whose application_name says which process holds it.

A session advisory lock goes with its session: a PostgreSQL restart, a network cut or an
administrator's pg_terminate_backend end it while the engine runs on (its store reconnects
by itself). So the engine's store is fenced (`EngineLock.fence`): every write transaction
first checks, under the ledger's write lock, that this engine's lock session still holds
the lock; when it does not, the transaction is rolled back and `LockLost` raised, and the
engine stops (a restart recovers from the ledger) rather than write beside another engine
that may have taken the lock meanwhile.

Either is released by the kernel or the server when the process dies, kill -9 included,
so a restart after a crash is not refused. A start that finds the lock held waits up to
`wait_s` for it (a service manager restarting an engine whose old process is still on its
way out), then fails with a StoreError naming the holder."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.errors import LockLost, StoreError
from engine.store.sql.conn import describe, is_url, split_url

POLL_S = 0.25


def _holder() -> str:
    return f"tagwatch serve pid {os.getpid()} on {socket.gethostname()}"


def lock_path(path: str) -> Path:
    """The SQLite store `path`'s engine lock file."""
    return Path(f"{path}-engine.lock")


def advisory_key(schema: str) -> int:
    """The advisory lock key of a schema's engine (a signed 64-bit integer)."""
    digest = hashlib.sha256(f"tagwatch engine {schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class EngineLock:
    """Held until `release` (or the process's end)."""

    def __init__(self, what: str, fd: int | None = None, conn: Any = None, key: int = 0) -> None:
        self.what = what
        self._fd = fd
        self._conn = conn
        self._key = key

    def fence(self) -> Callable[[Any], None] | None:
        """For the store's write transactions (PostgreSQL): a check, run on the store's own
        connection inside the transaction, that raises LockLost unless this lock's session
        still holds the lock. None on SQLite: a process's flock is not lost while it lives."""
        if self._conn is None:
            return None
        pid = int(self._conn.info.backend_pid)
        classid, objid = _lock_ids(self._key)
        what = self.what

        def check(db: Any) -> None:
            row = db.execute(
                "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = ?"
                " AND classid = ? AND objid = ? AND objsubid = 1",
                (pid, classid, objid),
            ).fetchone()
            if row is None:
                raise LockLost(
                    f"lost the engine lock ({what}): its PostgreSQL session (pid {pid}) ended."
                    " Stopping without writing: another engine may hold the store now, and a"
                    " restart recovers from the ledger"
                )

        return check

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None
        if self._conn is not None:
            # the session ends: the advisory lock with it (a lost connection released it)
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def __enter__(self) -> EngineLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def hold(target: str, wait_s: float = 10.0) -> EngineLock:
    """Take the engine lock of the store at `target` (a file or a URL naming its schema).
    StoreError when another engine still holds it after `wait_s`."""
    if is_url(target):
        return _hold_pg(target, wait_s)
    if target == ":memory:":
        return EngineLock("memory")
    return _hold_file(target, wait_s)


def _refused(target: str, holder: str, wait_s: float) -> StoreError:
    return StoreError(
        f"{describe(target)}: another engine is serving this store ({holder or 'holder unknown'});"
        f" waited {wait_s:g} s. Two engines on one store would interleave their decisions in"
        " one evidence ledger: stop the other one, or give this one its own --db (or --shard)"
    )


def _hold_file(path: str, wait_s: float) -> EngineLock:
    lp = lock_path(path)
    try:
        fd = os.open(lp, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as e:
        raise StoreError(f"cannot open the engine lock {lp}: {e.strerror}") from None
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
                os.close(fd)
                raise _refused(path, holder, wait_s) from None
            time.sleep(POLL_S)
    me = _holder().encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, me + b"\n", 0)
    return EngineLock(str(lp), fd=fd)


def _hold_pg(target: str, wait_s: float) -> EngineLock:
    import psycopg

    url, schema = split_url(target)
    key = advisory_key(schema)
    try:
        conn = psycopg.connect(
            url, autocommit=True, connect_timeout=10, application_name=_holder()[:63],
            keepalives=1, keepalives_idle=10, keepalives_interval=5, keepalives_count=3,
        )  # fmt: skip
    except psycopg.Error as e:
        raise StoreError(f"cannot connect to {describe(target)} for the engine lock") from e
    deadline = time.monotonic() + wait_s
    try:
        # The server's side of this session: a holder cut off by the network loses the
        # lock once these probes go unanswered (~25 s), not after the OS's 2 hours
        for name, value in (("idle", 10), ("interval", 5), ("count", 3)):
            conn.execute(f"SET tcp_keepalives_{name} = {value}")
        while True:
            got = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
            if got and got[0]:
                return EngineLock(f"advisory lock of schema {schema}", conn=conn, key=key)
            if time.monotonic() >= deadline:
                raise _refused(target, _pg_holder(conn, key), wait_s)
            time.sleep(POLL_S)
    except BaseException:
        conn.close()
        raise


def _lock_ids(key: int) -> tuple[int, int]:
    """How pg_locks shows a bigint advisory lock key: (classid, objid), its high and low
    32 bits, with objsubid 1."""
    return (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF


def _pg_holder(conn: Any, key: int) -> str:
    """The application_name of the session holding the advisory lock `key`, if visible."""
    classid, objid = _lock_ids(key)
    try:
        row = conn.execute(
            "SELECT a.application_name, a.client_addr FROM pg_locks l"
            " JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory'"
            " AND l.granted AND l.classid = %s AND l.objid = %s AND l.objsubid = 1",
            (classid, objid),
        ).fetchone()
    except Exception:
        return ""
    if not row:
        return ""
    addr = f" from {row[1]}" if row[1] else ""
    return f"{row[0]}{addr}"
