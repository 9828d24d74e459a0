"""The one thread that owns the store's SQLite connection, and the decorator that sends a
store method to it.

A sqlite3 connection carries one transaction: threads that share it see each other's
uncommitted rows, and one thread's ROLLBACK (after its own failure) undoes another's open
work. The serve loop uses the store from several threads (the processor commits, the outbox
reads and marks what the broker confirmed, snapshots and retention run beside them). So the
store opens its connection on a thread of its own and runs every method there, one call
after another, each whole: a caller on any other thread waits for its result (or its
StoreError). The connection keeps sqlite3's `check_same_thread`, so any use of it from
another thread is refused outright rather than silently shared."""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Concatenate, ParamSpec, Protocol, Self, TypeVar

from engine.errors import StoreError

P = ParamSpec("P")
R = TypeVar("R")


class OwnerThread:
    """Runs calls on one thread, the same one for the owner's whole life."""

    def __init__(self, name: str, what: str) -> None:
        """`name`: the thread's name; `what`: how errors name the owner ("alert store X")."""
        self.what = what
        self.closed = False
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._ident = self._pool.submit(threading.get_ident).result()

    @property
    def here(self) -> bool:
        """True on the owner thread itself."""
        return threading.get_ident() == self._ident

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """fn(*args, **kwargs) on the owner thread (directly when already on it)."""
        if self.here:
            return fn(*args, **kwargs)
        if self.closed:
            raise StoreError(f"{self.what} is closed")
        try:
            future = self._pool.submit(fn, *args, **kwargs)
        except RuntimeError:  # shut down meanwhile
            raise StoreError(f"{self.what} is closed") from None
        return future.result()

    def close(self) -> None:
        """No more calls; waits for the one running (never from the owner thread itself)."""
        self.closed = True
        self._pool.shutdown(wait=not self.here)


class _Owned(Protocol):
    _owner: OwnerThread


S = TypeVar("S", bound=_Owned)


def owned(fn: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
    """A method that runs on its object's owner thread, whoever calls it."""

    @functools.wraps(fn)
    def call(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._owner.call(fn, self, *args, **kwargs)

    return call


def own(cls: type, names: Iterable[str]) -> None:
    """Make these methods of `cls` run on its objects' owner thread (see `owned`)."""
    for name in names:
        setattr(cls, name, owned(getattr(cls, name)))


class OwnedResource:
    """A connection that lives on its own thread: `close()` runs `_close` there, then ends
    the thread (a second close does nothing); a context manager."""

    _owner: OwnerThread

    def _start(self, name: str, what: str) -> None:
        """Start the owner thread and run `_open` on it; a failed open ends the thread."""
        self._owner = OwnerThread(name, what)
        try:
            self._owner.call(self._open)
        except BaseException:
            self._owner.close()
            raise

    def _open(self) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if self._owner.closed:
            return
        with contextlib.suppress(StoreError):
            self._owner.call(self._close)
        self._owner.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
