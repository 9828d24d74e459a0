"""The running engine as the console sees it (engine/console/view.py's `EngineView`):
health from the session's state, the serve loop's counters, the subjects in force.

Called on the event loop by the console's handlers: every read is an attribute of objects
that live there, nothing waits on a thread or the broker."""

from __future__ import annotations

from collections.abc import Mapping

from engine.console.view import EngineStats
from engine.mqtt.serve import Engine
from engine.store.base import CommitTimes
from zones.model import Subject


class ServeView:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._commit_times = getattr(engine.store, "commit_times", None) or CommitTimes()
        self._subjects: tuple[object, dict[str, Subject]] | None = None

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
            queue_depth=e.queue.qsize(), commit_times=self._commit_times,
        )  # fmt: skip

    def subjects(self) -> Mapping[str, Subject]:
        zs = self.engine.pipeline.zoneset
        if self._subjects is None or self._subjects[0] is not zs:  # a SIGHUP changed them
            self._subjects = (zs, {s.id: s for s in zs.subjects})
        return self._subjects[1]
