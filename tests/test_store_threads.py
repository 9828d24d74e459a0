"""The store used from several threads, as the serve loop does (the processor commits, the
outbox reads and marks, snapshots and retention run beside them): one thread owns the
connection (SQLite or PostgreSQL), so no caller sees another's transaction, and one caller's failure never
rolls back another's work.

A commit is held open at a known point (inside its transaction, when it signs the ledger
checkpoint) by a signing key that waits to be let go; meanwhile another thread uses the
store through the same public methods the outbox calls."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from engine.errors import StoreError
from engine.store.ledger import Step
from engine.store.sql.open import open_store
from engine.store.sql.store import SqlStore
from engine.wire.alerts import Alert, alert_id

GRACE_S = 2.0  # how long the other thread is given to finish while the commit is held


def _alert() -> Alert:
    return Alert(
        id=alert_id("S1", "Z1", "zone_breach", ("T1", 7)), kind="zone_breach", state="open",
        subject="S1", tag="T1", zone="Z1", severity="high", confidence=0.97, opened_t=100.0,
        raised_t=100.0, closed_t=None, evidence=[("T1", 7)],
    )  # fmt: skip


class HeldKey:
    """An Ed25519 key whose sign() (called inside the commit's transaction) says it was
    reached, waits to be let go, then signs, or fails as a disk would."""

    def __init__(self, fail: bool = False) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.reached = threading.Event()
        self.go = threading.Event()
        self.fail = fail

    def public_key(self) -> Any:
        return self.key.public_key()

    def sign(self, data: bytes) -> bytes:
        self.reached.set()
        assert self.go.wait(30)
        if self.fail:
            raise sqlite3.OperationalError("disk I/O error")
        return self.key.sign(data)


class Run(threading.Thread):
    """A store call in its own thread, keeping what it returned or raised."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.fn = fn
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = threading.Event()

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as e:
            self.error = e
        finally:
            self.done.set()


def _held_commit(store: SqlStore, key: HeldKey) -> Run:
    commit = Run(lambda: store.commit([_alert()], [], 100.0, steps=[Step("tick", 100.0)]))
    commit.start()
    assert key.reached.wait(30), "the commit never reached its checkpoint"
    return commit


def test_a_reader_never_sees_rows_of_a_transaction_that_is_not_committed(
    store_target: str,
) -> None:
    """While a commit is open (and then fails), the outbox's read must not return its
    alert record: published, it would be an alert the store does not hold."""
    key = HeldKey(fail=True)
    store = open_store(store_target, signing_key=key)  # type: ignore[arg-type]
    commit = _held_commit(store, key)
    reader = Run(store.unpublished)
    reader.start()
    reader.done.wait(GRACE_S)  # a reader that shares the open transaction returns now
    key.go.set()
    commit.join(30)
    reader.join(30)
    assert isinstance(commit.error, StoreError)  # the batch was not written
    assert reader.error is None
    assert reader.result == [], "the outbox read an alert record that was never committed"
    assert store.alert_log() == [] and store.unpublished() == []
    store.close()


def test_a_failing_mark_published_never_rolls_back_a_concurrent_commit(store_target: str) -> None:
    """The outbox's mark_published fails while the processor's commit is open: the commit
    must still go through whole, and the chain still verify."""
    key = HeldKey()
    store = open_store(store_target, signing_key=key)  # type: ignore[arg-type]
    commit = _held_commit(store, key)
    marker = Run(lambda: store.mark_published([object()]))  # type: ignore[list-item]
    marker.start()
    marker.done.wait(GRACE_S)
    key.go.set()
    commit.join(30)
    marker.join(30)
    assert isinstance(marker.error, StoreError)
    assert commit.error is None, f"the commit was lost: {commit.error}"
    assert [o.payload for o in commit.result] == [o.payload for o in store.unpublished()]
    assert [a.id for a in store.alert_log()] == [_alert().id]
    assert store.verify().problem is None
    store.close()


def test_the_connection_is_used_by_one_thread_only(store_target: str) -> None:
    """Every public method runs on the store's own thread; a call from any other thread,
    the constructor's included, is handed over to it and its errors come back."""
    store = open_store(store_target)
    seen: set[str] = set()
    errors: list[BaseException] = []

    def use() -> None:
        try:
            store.commit([_alert()], [], 100.0, steps=[Step("tick", 100.0)])
            store.mark_published([o.seq for o in store.unpublished()])
            seen.add(threading.current_thread().name)
        except BaseException as e:
            errors.append(e)

    workers = [threading.Thread(target=use) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    assert errors == [] and len(seen) == 4
    assert store.unpublished() == [] and len(store.alert_log()) == 4
    assert store.verify().problem is None
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.unpublished()
