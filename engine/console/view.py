"""What the console needs from the running engine, and nothing more: the `EngineView`
protocol and the plain numbers it hands over.

The console (engine/console/) sits beside the serve loop, not above it: it may not import
engine/mqtt (the connection, the loop) or engine/core. The serve command gives it an
adapter (engine/mqtt/consoleview.py) that reads the loop's counters and the session's
state on the event loop, where they live, without waiting on anything."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from engine.store.base import CommitTimes, OutboxItem
from engine.store.casework.workflow import Action
from zones.model import Subject, Zone


@dataclass(frozen=True)
class EngineStats:
    """The serve loop's counters at one moment (all since the engine started)."""

    received: int = 0  # MQTT messages received
    processed: int = 0  # ...decided and committed
    fixes: int = 0  # fixes decided
    events: int = 0  # device events decided
    duplicates: int = 0
    dead_letters: int = 0
    alert_records: int = 0  # lifecycle records decided
    published: int = 0  # alert records the broker confirmed
    publish_refused: int = 0  # ...refused (PUBACK reason code >= 0x80)
    publish_failed: int = 0  # ...failed (connection lost, no PUBACK in time)
    store_errors: int = 0  # commits that failed (each retried)
    lag_s: float = 0.0  # received -> committed, of the last batch's first message
    queue_depth: int = 0  # messages received and not yet decided
    commit_times: CommitTimes = field(default_factory=CommitTimes)
    notify: NotifyStats | None = None  # webhooks and warnings, when a notifier runs


class NotifyStats(Protocol):
    """The notifier's totals (engine/notify/notifier.py NotifyCounts)."""

    @property
    def webhook_delivered(self) -> int: ...
    @property
    def webhook_failed(self) -> int: ...
    @property
    def webhook_lag_s(self) -> float: ...
    @property
    def warnings_sent(self) -> int: ...
    @property
    def warnings_failed(self) -> int: ...
    @property
    def warnings_expired(self) -> int: ...


class EngineView(Protocol):
    def health(self) -> str | None:
        """None while the engine is online, else why not (offline, degraded, stopping)."""
        ...

    def stats(self) -> EngineStats: ...

    def subjects(self) -> Mapping[str, Subject]:
        """The subjects in force (they change on SIGHUP), by id."""
        ...

    def zones(self) -> Mapping[str, Zone]:
        """The zones in force, by id."""
        ...

    def zones_of(self, subject_id: str) -> list[Zone]:
        """The zones in force of one subject (without going through every zone)."""
        ...

    async def act(self, alert_id: str, action: Action) -> OutboxItem:
        """Do a monitor's action: written by the engine's store (ledger, alert log,
        outbox) and published like a decided record. Raises UnknownAlert,
        ActionRefused, StoreError."""
        ...
