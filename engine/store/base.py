"""What the engine asks of a durable store: the `Store` protocol and the outbox item.

The live engine (engine/mqtt/), replay and restart recovery are written against this
protocol, not against a database (engine/store/sql/store.py is the implementation, on
SQLite: sqlite.py, or PostgreSQL: sql/pgstore.py). Every method
that fails raises `engine.errors.StoreError`, whose message says what to do; nothing else
from the storage layer escapes."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from engine.store.casework.workflow import Action
from engine.store.ledger import Step
from engine.wire.alerts import Alert
from engine.wire.records import DeadLetter


@dataclass(frozen=True)
class OutboxItem:
    """An alert record committed but not yet confirmed published."""

    seq: int
    subject: str
    payload: bytes


class CommitTimes:
    """How long the store's commits take: a histogram (seconds) for the console's /metrics.
    Observed on the store's thread, read from the console's: a lock keeps a read whole."""

    BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

    def __init__(self) -> None:
        self._counts = [0] * (len(self.BUCKETS) + 1)  # the last: above every bucket
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        with self._lock:
            self._counts[bisect.bisect_left(self.BUCKETS, seconds)] += 1
            self._sum += seconds

    def read(self) -> tuple[list[tuple[float, int]], float]:
        """([(upper bound, cumulative count)], sum); the last bound is +inf."""
        with self._lock:
            counts, total = list(self._counts), self._sum
        out, run = [], 0
        for bound, n in zip((*self.BUCKETS, float("inf")), counts, strict=True):
            run += n
            out.append((bound, run))
        return out, total


class Store(Protocol):
    """The operations the serve loop, replay and recovery use, and nothing more."""

    def commit(
        self,
        alerts: Sequence[Alert],
        dead: Sequence[DeadLetter],
        now: float | None = None,
        *,
        steps: Sequence[Step] = (),
    ) -> list[OutboxItem]:
        """Write the steps, the alert records they decided and the dead letters in one
        transaction; the returned outbox items are durable. StoreError: nothing written."""
        ...

    def signed_checkpoint(self) -> bytes | None:
        """The last commit's signed ledger checkpoint (JSON), or None when not signing."""
        ...

    def missing(self, alerts: Sequence[Alert]) -> list[Alert]:
        """The alert records not already stored, byte for byte."""
        ...

    def save_snapshot(self, fingerprint: str, now: float, state: bytes, keep: int = 2) -> None:
        """Pipeline state as of the last committed step."""
        ...

    def latest_snapshot(self) -> tuple[int, float, str, bytes] | None:
        """(ledger n, engine clock, fingerprint, state) of the newest snapshot."""
        ...

    def snapshot_hash(self, n: int) -> str | None:
        """The sha256 the evidence ledger records for the snapshot taken after row n."""
        ...

    def config_steps(self) -> list[tuple[int, dict[str, Any]]]:
        """(ledger n, config) of the retained config steps, newest first."""
        ...

    def steps_after(self, n: int) -> Iterator[Step]:
        """The committed steps after ledger row `n`, in order, with their records."""
        ...

    def prune(self, before: float, chunk: int = 50_000) -> int:
        """Retention: delete evidence older than `before`; the number of rows deleted."""
        ...

    def prune_dead_letters(self, before: float, chunk: int = 50_000) -> int:
        """Retention: delete dead letters received before `before`; the number deleted."""
        ...

    def unpublished(self, limit: int = 10_000) -> list[OutboxItem]:
        """Alert records the broker has not confirmed, oldest first."""
        ...

    def mark_published(self, seqs: Iterable[int], now: float | None = None) -> None:
        """The broker confirmed these outbox items."""
        ...

    def note(self, kind: str, device: str, seq: int | None, t: float, body: bytes) -> int:
        """Append a row of `kind` (a warning to a protected device) to the ledger."""
        ...

    def act(self, alert_id: str, action: Action, now: float | None = None) -> OutboxItem:
        """Write a monitor's action on an alert as its next record (alert log, ledger,
        outbox) and return the item to publish (engine/store/casework/workflow.py)."""
        ...
