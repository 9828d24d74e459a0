"""The notifiers of one `tagwatch serve`: a task per webhook and the protected-device
warner, over one NotifyStore, beside the serve loop until the engine stops.

Its own failure rule, like the console's: it may fail, the engine may not. Nothing here
raises into the serve command's task group; a store or receiver that fails is retried and
said in the log, and the engine decides, commits and publishes as before."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from engine.errors import StoreError
from engine.notify.protected import Ledger, ProtectedWarner, Publish
from engine.notify.webhook import Webhook, WebhookSender
from engine.store.notify.feed import NotifyStore
from zones.model import Subject

log = logging.getLogger("tagwatch.notify")


@dataclass(frozen=True)
class NotifyCounts:
    """For /metrics and the log: totals since the engine started."""

    webhook_delivered: int
    webhook_failed: int
    webhook_lag_s: float  # the oldest record not yet acknowledged by some receiver
    warnings_sent: int
    warnings_failed: int
    warnings_expired: int


class Notifier:
    """Opened before the engine runs (so the warner's start is the log's end then)."""

    def __init__(
        self,
        db: str | Path,
        webhooks: list[Webhook],
        subjects: Callable[[], Mapping[str, Subject]],
        publish: Publish,
        ledger: Ledger | None = None,
    ) -> None:
        """Raises StoreError when the store cannot be opened for notifications. `ledger`:
        the engine store's `note` (each warning decided becomes a ledger row)."""
        self.store = NotifyStore(db)
        try:
            start = self.store.warning_cursor()
            if start is None:
                start = self.store.last_seq()
        except StoreError:
            self.store.close()
            raise
        self.senders = [WebhookSender(h, self.store) for h in webhooks]
        self.warner = ProtectedWarner(self.store, subjects, publish, start=start, ledger=ledger)

    @classmethod
    def open(
        cls,
        db: str | Path,
        webhooks: list[Webhook],
        subjects: Callable[[], Mapping[str, Subject]],
        publish: Publish,
        ledger: Ledger | None = None,
    ) -> Notifier | None:
        """A Notifier; None (said in the log) when the store cannot be opened for it and
        no webhook was asked for: warnings alone never stop the engine from starting."""
        try:
            return cls(db, webhooks, subjects, publish, ledger)
        except StoreError as e:
            if webhooks:
                raise
            log.warning("protected-device warnings are off: %s", e)
            return None

    def poke(self) -> None:
        """New records were committed: read the alert log now rather than at the next poll."""
        for s in self.senders:
            s.wake.set()
        self.warner.wake.set()

    def counts(self) -> NotifyCounts:
        w = self.warner.stats
        return NotifyCounts(
            webhook_delivered=sum(s.stats.delivered for s in self.senders),
            webhook_failed=sum(s.stats.failed for s in self.senders),
            webhook_lag_s=max((s.lag_s() for s in self.senders), default=0.0),
            warnings_sent=w.sent, warnings_failed=w.failed, warnings_expired=w.expired,
        )  # fmt: skip

    async def run(self, stopping: asyncio.Event) -> None:
        """Until `stopping` is set; then stop (an attempt in flight is abandoned: its record
        is sent again by the next run) and close the store. Never raises."""
        tasks = [asyncio.create_task(_guard(s.run, f"webhook {s.hook.name}")) for s in self.senders]
        tasks.append(asyncio.create_task(_guard(self.warner.run, "protected-device warnings")))
        try:
            await stopping.wait()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(StoreError, TimeoutError):
                await asyncio.wait_for(self.warner.close(), 2.0)
            await asyncio.to_thread(self.store.close)
            c = self.counts()
            log.info("notifications stopped: webhook records delivered %d (failed attempts"
                     " %d), warnings sent %d (failed %d, expired %d)", c.webhook_delivered,
                     c.webhook_failed, c.warnings_sent, c.warnings_failed,
                     c.warnings_expired)  # fmt: skip


async def _guard(run: Callable[[], object], what: str) -> None:
    """Run a notifier; a bug in it is logged and the notifier restarted, never raised."""
    while True:
        try:
            await run()  # type: ignore[misc]
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed; restarting it in 5 s", what)
            await asyncio.sleep(5.0)
