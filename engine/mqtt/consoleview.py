"""The running engine as the console sees it (engine/console/view.py's `EngineView`):
health from the session's state, the serve loop's counters, the subjects and zones in
force, and the way in for a monitor's action.

Called on the event loop by the console's handlers: every read is an attribute of objects
that live there, nothing waits on a thread or the broker. An action is written by the
engine's own store (on its owner thread, between two commits: the ledger has one head)
and published from the outbox like any decided record."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np

from engine.console.view import EngineStats, NotifyStats
from engine.mqtt.serve import Engine
from engine.store.base import CommitTimes, OutboxItem
from engine.store.casework.workflow import Action
from zones.model import Subject, Zone
from zones.rows import ZoneRows


class ServeView:
    def __init__(self, engine: Engine, notify: Callable[[], NotifyStats] | None = None) -> None:
        """`notify`: the notifier's totals for /metrics, when one runs."""
        self.engine = engine
        self.notify = notify
        self._commit_times = getattr(engine.store, "commit_times", None) or CommitTimes()
        self._by_id: tuple[object, dict[str, Subject], ZonesById] | None = None
        self._publishing: set[asyncio.Task[None]] = set()

    def health(self) -> str | None:
        e = self.engine
        if e.stopping.is_set():
            return "stopping"
        if e.session.client is None:
            return f"not connected to the broker {e.session.broker.host}:{e.session.broker.port}"
        return e.session.degraded

    def stats(self) -> EngineStats:
        e, c = self.engine, self.engine.counters
        return EngineStats(
            received=c.received, processed=c.processed, fixes=c.fixes, events=c.events,
            duplicates=c.duplicates, dead_letters=c.dead, alert_records=c.alerts,
            published=e.outbox.published, publish_refused=e.outbox.refused,
            publish_failed=e.outbox.failed, store_errors=c.store_errors, lag_s=c.lag_s,
            queue_depth=e.lanes.qsize(), commit_times=self._commit_times,
            notify=self.notify() if self.notify else None,
        )  # fmt: skip

    def _maps(self) -> tuple[dict[str, Subject], ZonesById]:
        zs = self.engine.pipeline.zoneset
        if self._by_id is None or self._by_id[0] is not zs:  # a SIGHUP changed them
            self._by_id = (zs, {s.id: s for s in zs.subjects}, ZonesById(zs.zones))
        return self._by_id[1], self._by_id[2]

    def subjects(self) -> Mapping[str, Subject]:
        return self._maps()[0]

    def zones(self) -> Mapping[str, Zone]:
        return self._maps()[1]

    def zones_of(self, subject_id: str) -> list[Zone]:
        return self._maps()[1].of_subject(subject_id)

    async def act(self, alert_id: str, action: Action) -> OutboxItem:
        item = await asyncio.to_thread(self.engine.store.act, alert_id, action)
        # Durable now; published at once if connected, else by the outbox's retry loop.
        task = asyncio.get_running_loop().create_task(self.engine.outbox.publish([item]))
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)
        return item


class ZonesById(Mapping[str, Zone]):
    """The zones in force by id, each made from the zone rows when asked. A dict of every
    Zone would hold ~2 KB a zone: gigabytes at 500,000 subjects with a few zones each."""

    def __init__(self, zones: Sequence[Zone]) -> None:
        self._zones = zones
        self._ids = zones.ids if isinstance(zones, ZoneRows) else tuple(z.id for z in zones)

    def __getitem__(self, zone_id: str) -> Zone:
        try:
            return self._zones[self._ids.index(zone_id)]  # a scan in C: ~10 ms at 1.5M
        except ValueError:
            raise KeyError(zone_id) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def of_subject(self, subject_id: str) -> list[Zone]:
        """The subject's zones, in file order."""
        zs = self._zones
        if not isinstance(zs, ZoneRows):
            return [z for z in zs if z.subject == subject_id]
        try:
            k = zs.subject_ids.index(subject_id)
        except ValueError:
            return []
        return [zs[int(r)] for r in np.flatnonzero(zs.subject == k)]
