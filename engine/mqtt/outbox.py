"""The outbox: alert records committed to the store and waiting for the broker's PUBACK.

An alert record is published (QoS 1) only after the commit that holds it, and marked
published only when the broker confirms it. What is unconfirmed stays in the store and is
published again every `outbox_retry_s`, on every reconnect and before the engine stops:
at least once, never lost.

A PUBACK is not always a yes: an MQTT 5 broker refuses a message with a reason code of 0x80
or more (0x87 "not authorized" when its ACL denies the engine the alert topic). A refused
record stays unpublished and is retried like any other; while records are refused the
engine's status is `degraded` saying so, and the stats line counts them (`refused`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from engine.errors import StoreError
from engine.mqtt.session import MqttSession
from engine.settings import Settings
from engine.store.base import OutboxItem, Store
from engine.wire import topics

log = logging.getLogger("tagwatch.serve")


class Outbox:
    """Publishes the store's unconfirmed alert records through the session."""

    def __init__(self, store: Store, session: MqttSession, settings: Settings) -> None:
        self.store = store
        self.session = session
        self.settings = settings
        self.published = 0  # records the broker confirmed
        self.refused = 0  # publishes the broker refused (PUBACK reason code >= 0x80)
        self.failed = 0  # publishes that failed (connection lost, no PUBACK in time)
        self._lock = asyncio.Lock()
        self._inflight: set[int] = set()  # outbox seqs being published right now
        self._tasks: set[asyncio.Task[None]] = set()  # publishes started by spawn()

    def spawn(self, items: list[OutboxItem]) -> None:
        """Publish these in the background: the processor goes on deciding while the broker
        confirms (under a backlog its PUBACKs are slow). Records are put on the wire in
        the order spawned."""
        task = asyncio.create_task(self.publish(items), name="outbox")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settle(self, timeout: float) -> None:
        """Wait (at most `timeout` s) for the background publishes still on their way."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    async def publish(self, items: list[OutboxItem]) -> None:
        """Publish these (skipping any already on the way); mark the confirmed ones."""
        client = self.session.client
        if client is None:
            return  # stays in the outbox; published on reconnect or by the retry loop
        prefix = self.settings.alert_topic_prefix
        items = [i for i in items if i.seq not in self._inflight]
        self._inflight.update(i.seq for i in items)

        refused: dict[str, list[int]] = {}  # why -> seqs

        async def one(item: OutboxItem) -> int | None:
            topic = topics.alerts(item.subject, prefix)
            try:
                rc = await self.session.publish_confirmed(topic, item.payload)
            except aiomqtt.MqttError as e:
                self.failed += 1
                log.warning("alert publish failed (kept in outbox): %s", e)
                return None
            if rc >= 0x80:
                why = f"0x{rc:02X} {ReasonCode(PacketTypes.PUBACK, identifier=rc)} on {topic}"
                refused.setdefault(why, []).append(item.seq)
                return None
            return item.seq

        try:
            done = [s for s in await asyncio.gather(*(one(i) for i in items)) if s is not None]
            await self._refusals(refused, bool(done))
            if done:
                try:
                    await asyncio.to_thread(self.store.mark_published, done)
                except StoreError as e:  # published again later: at least once
                    log.warning("%s", e)
                    return
                self.published += len(done)
        finally:
            self._inflight.difference_update(i.seq for i in items)

    async def _refusals(self, refused: dict[str, list[int]], accepted: bool) -> None:
        """Say what the broker refused (ERROR, degraded status); online again once it takes
        alert records and refuses none."""
        n = sum(len(s) for s in refused.values())
        self.refused += n
        if n:
            why = "; ".join(f"{len(s)} refused ({w})" for w, s in sorted(refused.items()))
            log.error(
                "BROKER REFUSED ALERT PUBLISH: %s; kept in the outbox and retried every"
                " %.0f s: let the engine publish on the alert topics (its ACL)",
                why, self.settings.outbox_retry_s,
            )  # fmt: skip
            await self.session.set_status(f"broker refuses alert records: {why}", "outbox")
        elif accepted and self.session.problem("outbox") is not None:
            log.warning("broker accepts alert records again")
            await self.session.set_status(None, "outbox")

    async def flush(self, timeout: float | None = None) -> None:
        """Publish the whole unconfirmed backlog (at most `timeout` seconds)."""
        async with self._lock:
            try:
                backlog = await asyncio.to_thread(self.store.unpublished)
            except StoreError as e:
                log.warning("cannot read the outbox: %s", e)
                return
            if backlog:
                log.info("publishing %d alert records from the outbox", len(backlog))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.publish(backlog), timeout)

    async def retry_forever(self) -> None:
        """Whatever the broker has not confirmed is published again until it is."""
        while True:
            await asyncio.sleep(self.settings.outbox_retry_s)
            if self.session.client is not None:
                await self.flush(timeout=30.0)
