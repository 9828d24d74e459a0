"""The live engine: an aiomqtt loop that receives, micro-batches and hands records to the
pipeline, commits results durably, then publishes alerts (QoS 1) from the outbox.

Shape (one owner task group, every task awaited):

    receiver --(bounded queue)--> processor --> store.commit --> publisher (outbox)

The receiver reconnects with capped exponential backoff; on every (re)connect it
resubscribes, republishes the outbox backlog and announces itself on the retained
status topic (with a will that says "offline")."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from dataclasses import dataclass, field

import aiomqtt
import msgspec

from engine.alerts import Alert, alert_topic
from engine.decode import Limits, decode_message
from engine.errors import StoreError
from engine.pipeline import Pipeline
from engine.records import DeadLetter, Record
from engine.settings import Settings
from engine.store import OutboxItem, SqliteStore

log = logging.getLogger("tagwatch.serve")

SUBSCRIPTIONS = (
    "tagwatch/v1/tags/+/fix",
    "tagwatch/v1/tags/+/fixes",
    "tagwatch/v1/tags/+/event",
    "owntracks/+/+",
)
STATUS_TOPIC = "tagwatch/v1/engine/status"
CMD_TOPIC = "tagwatch/v1/tags/{tag}/cmd"


@dataclass
class Counters:
    """Live counters, logged periodically and readable by tests."""

    received: int = 0
    processed: int = 0
    fixes: int = 0
    events: int = 0
    duplicates: int = 0
    dead: int = 0
    alerts: int = 0
    published: int = 0
    connects: int = 0
    batches: int = 0
    commands: int = 0
    lag_s: float = 0.0
    extra: dict[str, int] = field(default_factory=dict)

    def line(self, depth: int) -> str:
        return (
            f"received {self.received} processed {self.processed} (fixes {self.fixes}, "
            f"events {self.events}, dup {self.duplicates}, dead {self.dead}) "
            f"alerts {self.alerts} published {self.published} queue {depth} "
            f"lag {self.lag_s * 1000:.0f} ms connects {self.connects}"
        )


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> BrokerAddress:
        host, _, port = text.rpartition(":")
        if not host:
            host, port = text, "1883"
        return cls(host.strip("[]"), int(port))


class Engine:
    """Owns the pipeline, the store and the MQTT connection for one engine process."""

    def __init__(
        self,
        pipeline: Pipeline,
        store: SqliteStore,
        broker: BrokerAddress,
        *,
        client_id: str = "tagwatch-engine",
        settings: Settings | None = None,
        stats_every_s: float = 10.0,
    ) -> None:
        self.pipeline = pipeline
        self.store = store
        self.broker = broker
        self.client_id = client_id
        self.settings = settings or pipeline.settings
        self.stats_every_s = stats_every_s
        self.limits = Limits()
        self.counters = Counters()
        self.queue: asyncio.Queue[tuple[str, bytes, float]] = asyncio.Queue(self.settings.queue_max)
        self.client: aiomqtt.Client | None = None
        self.connected = asyncio.Event()
        self.stopping = asyncio.Event()
        self._outbox_lock = asyncio.Lock()
        self._unsaved: list[Alert] = []
        # Reporting-rate commands decided but not yet sent: (tag, payload)
        self.commands: list[tuple[str, dict[str, float]]] = []

    # -- lifecycle -----------------------------------------------------------------------
    async def run(self) -> None:
        """Run until `stop()`; then drain what was received, commit, and publish."""
        async with asyncio.TaskGroup() as tg:
            receiver = tg.create_task(self._receiver(), name="receiver")
            processor = tg.create_task(self._processor(), name="processor")
            stats = tg.create_task(self._stats(), name="stats")
            await self.stopping.wait()
            # Stop taking new input, finish what is queued, then hang up.
            await self.queue.join()
            processor.cancel()
            stats.cancel()
            await self._flush_outbox(timeout=2.0)
            receiver.cancel()
        log.info("engine stopped: %s", self.counters.line(self.queue.qsize()))

    def stop(self) -> None:
        self.stopping.set()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop)

    # -- receiving -----------------------------------------------------------------------
    async def _receiver(self) -> None:
        backoff = 0.25
        while True:
            try:
                will = aiomqtt.Will(STATUS_TOPIC, b'{"state":"offline"}', qos=1, retain=True)
                async with aiomqtt.Client(
                    self.broker.host,
                    self.broker.port,
                    identifier=self.client_id,
                    will=will,
                    keepalive=15,
                    timeout=10,
                ) as client:
                    client.pending_calls_threshold = 10_000
                    for topic in SUBSCRIPTIONS:
                        await client.subscribe(topic, qos=1)
                    self.client = client
                    self.counters.connects += 1
                    self.connected.set()
                    backoff = 0.25
                    log.info("connected to %s:%d", self.broker.host, self.broker.port)
                    await client.publish(STATUS_TOPIC, b'{"state":"online"}', qos=1, retain=True)
                    await self._flush_outbox()
                    async for msg in client.messages:
                        payload = msg.payload
                        if not isinstance(payload, bytes):
                            payload = b"" if payload is None else str(payload).encode()
                        await self.queue.put((str(msg.topic), payload, time.monotonic()))
                        self.counters.received += 1
            except aiomqtt.MqttError as e:
                self.connected.clear()
                self.client = None
                log.warning(
                    "broker %s:%d: %s; reconnecting in %.1fs",
                    self.broker.host,
                    self.broker.port,
                    e,
                    backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    # -- processing ----------------------------------------------------------------------
    async def _next_batch(self) -> list[tuple[str, bytes, float]]:
        """Up to batch_max items, waiting at most batch_wait_s once one has arrived; an
        empty list when nothing arrived for a second (time still passes: see _tick)."""
        try:
            first = await asyncio.wait_for(self.queue.get(), 1.0)
        except TimeoutError:
            return []
        items = [first]
        deadline = time.monotonic() + self.settings.batch_wait_s
        while len(items) < self.settings.batch_max:
            try:
                items.append(self.queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                items.append(await asyncio.wait_for(self.queue.get(), left))
            except TimeoutError:
                break
        return items

    def _decide(self, items: list[tuple[str, bytes, float]]) -> list[OutboxItem]:
        """Decode, run the pipeline, commit. Runs in a worker thread (kernels drop the GIL)."""
        recs: list[Record] = []
        dead: list[DeadLetter] = []
        for topic, payload, _ in items:
            r, d = decode_message(topic, payload, self.limits)
            recs.extend(r)
            dead.extend(d)
        res = self.pipeline.process(recs, origin="mqtt", arrival=time.monotonic(), wall=time.time())
        dead.extend(res.dead)
        self.commands.extend(res.commands)
        c = self.counters
        c.fixes += res.fixes
        c.events += res.events
        c.duplicates += res.duplicates
        c.dead += len(dead)
        c.alerts += len(res.alerts)
        for letter in dead:
            log.info("dead letter from %s: %s", letter.origin, letter.reason)
        self._unsaved.extend(res.alerts)
        return self._commit_unsaved(dead)

    def _tick(self) -> list[OutboxItem]:
        """Let wall time pass: give up seq gaps held too long, decide what they held."""
        res = self.pipeline.tick(time.monotonic(), wall=time.time())
        self.commands.extend(res.commands)
        self.counters.alerts += len(res.alerts)
        self._unsaved.extend(res.alerts)
        return self._commit_unsaved([])

    def _commit_unsaved(self, dead: list[DeadLetter]) -> list[OutboxItem]:
        """Commit decided-but-unsaved alert records; on failure they stay for the next try
        (the pipeline has moved on: these records exist nowhere else)."""
        if not self._unsaved and not dead:
            return []
        out = self.store.commit(self._unsaved, dead)
        self._unsaved = []
        return out

    async def _processor(self) -> None:
        while True:
            items = await self._next_batch()
            if not items:
                try:
                    outbox = await asyncio.to_thread(self._tick)
                except StoreError as e:
                    log.error("cannot persist alert records: %s; retrying", e)
                    continue
                if outbox:
                    await self._publish(outbox)
                await self._send_commands()
                continue
            while True:
                try:
                    outbox = await asyncio.to_thread(self._decide, items)
                    break
                except StoreError as e:
                    # Nothing from this batch is durable: keep it, say so loudly, retry.
                    log.error("cannot persist batch of %d: %s; retrying in 1s", len(items), e)
                    await asyncio.sleep(1.0)
            now = time.monotonic()
            self.counters.lag_s = now - items[0][2]
            self.counters.processed += len(items)
            self.counters.batches += 1
            for _ in items:
                self.queue.task_done()
            if outbox:
                await self._publish(outbox)
            await self._send_commands()

    # -- publishing ----------------------------------------------------------------------
    async def _publish(self, items: list[OutboxItem]) -> None:
        client = self.client
        if client is None:
            return  # stays in the outbox; published on reconnect
        prefix = self.settings.alert_topic_prefix

        async def one(item: OutboxItem) -> int | None:
            try:
                await client.publish(alert_topic(prefix, item.subject), item.payload, qos=1)
                return item.seq
            except aiomqtt.MqttError as e:
                log.warning("alert publish failed (kept in outbox): %s", e)
                return None

        done = [s for s in await asyncio.gather(*(one(i) for i in items)) if s is not None]
        if done:
            await asyncio.to_thread(self.store.mark_published, done)
            self.counters.published += len(done)

    async def _send_commands(self) -> None:
        """Ask tags to report faster (or relax) on tagwatch/v1/tags/{tag}/cmd, QoS 1. Not
        stored: a command lost to a disconnect is superseded by the next state change, and
        the tag falls back to its own rate anyway."""
        client = self.client
        if client is None or not self.commands:
            return
        cmds, self.commands = self.commands, []
        for tag, payload in cmds:
            try:
                await client.publish(CMD_TOPIC.format(tag=tag), msgspec.json.encode(payload), qos=1)
                self.counters.commands += 1
            except aiomqtt.MqttError as e:
                log.warning("command to %s failed: %s", tag, e)

    async def _flush_outbox(self, timeout: float | None = None) -> None:
        async with self._outbox_lock:
            backlog = await asyncio.to_thread(self.store.unpublished)
            if backlog:
                log.info("publishing %d alert records from the outbox", len(backlog))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._publish(backlog), timeout)

    async def _stats(self) -> None:
        while True:
            await asyncio.sleep(self.stats_every_s)
            log.info("%s", self.counters.line(self.queue.qsize()))
