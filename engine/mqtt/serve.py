"""The live engine: an aiomqtt loop that receives, micro-batches and hands records to the
pipeline, commits results durably, acknowledges, then publishes alerts (QoS 1) from the
outbox.

Shape (one owner task group, every task awaited):

    receiver --(bounded queue)--> processor --> store.commit --> PUBACK --> publisher

Delivery guarantees (docs/durability.md):
- The engine holds a persistent MQTT v5 session (fixed client id, no clean start, session
  expiry), so the broker queues for it while it is down.
- aiomqtt 2.x has paho acknowledge a QoS 1 message as soon as it is read off the socket.
  The engine turns that off (paho's `manual_ack_set(True)` on the client aiomqtt wraps)
  and sends each PUBACK itself, only after the batch holding the message is committed:
  the records as evidence, the alert records and dead letters they produced, and the step
  restart recovery replays. A crash before that commit means the broker redelivers.
- Every step (batch, tick, resume) is in the evidence ledger; a restart restores the
  newest snapshot and replays the steps after it (engine/store/recovery.py).
- Alert records are published from the outbox and marked only when the broker confirms;
  what is unconfirmed is retried every `outbox_retry_s` and on every reconnect.
- When the store cannot be written (locked, disk full) the engine stops: no new batches,
  no acknowledgements, an ERROR each retry and a retained "degraded" status saying why.

The receiver reconnects with capped exponential backoff; on every (re)connect it
resubscribes, republishes the outbox backlog and announces itself on the retained
status topic (with a will that says "offline")."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
import msgspec
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from engine.core.pipeline import BatchResult, Pipeline
from engine.errors import StoreError
from engine.settings import Settings
from engine.store import recovery
from engine.store.ledger import Step
from engine.store.sqlite import OutboxItem, SqliteStore
from engine.wire.alerts import Alert, alert_topic
from engine.wire.decode import Limits, decode_message
from engine.wire.records import DeadLetter, Record

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
    acked: int = 0
    store_errors: int = 0
    lag_s: float = 0.0
    extra: dict[str, int] = field(default_factory=dict)

    def line(self, depth: int) -> str:
        return (
            f"received {self.received} processed {self.processed} (fixes {self.fixes}, "
            f"events {self.events}, dup {self.duplicates}, dead {self.dead}) "
            f"alerts {self.alerts} published {self.published} acked {self.acked} queue {depth} "
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


@dataclass(frozen=True)
class _Item:
    """One received message: where it came from and how to acknowledge it."""

    topic: str
    payload: bytes
    received: float  # monotonic
    gen: int  # connection it arrived on: a PUBACK only makes sense on that one
    mid: int
    qos: int


@dataclass
class _Pending:
    """Decided but not yet committed: kept across failed commits, never decided twice."""

    steps: list[Step] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.steps or self.alerts or self.dead)


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
        client_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.store = store
        self.broker = broker
        self.client_id = client_id
        self.settings = settings or pipeline.settings
        self.stats_every_s = stats_every_s
        self.client_kwargs = dict(client_kwargs or {})
        self.limits = Limits()
        self.counters = Counters()
        self.queue: asyncio.Queue[_Item] = asyncio.Queue(self.settings.queue_max)
        self.client: aiomqtt.Client | None = None
        self.gen = 0
        self.connected = asyncio.Event()
        self.stopping = asyncio.Event()
        self._outbox_lock = asyncio.Lock()
        self._inflight: set[int] = set()  # outbox seqs being published right now
        self._pending = _Pending()
        self._now = 0.0  # the engine clock: wall time that never runs backwards
        self._fingerprint = recovery.fingerprint(pipeline)
        self._last_snapshot = 0.0
        self._last_prune = 0.0
        self.mqtt5 = True  # until a broker says it does not speak it
        self.degraded: str | None = None  # why the store cannot be written, while it can't
        # Reporting-rate commands decided but not yet sent: (tag, payload)
        self.commands: list[tuple[str, dict[str, float]]] = []

    # -- the engine clock ------------------------------------------------------------------
    def clock(self) -> float:
        """Wall time, never backwards (an NTP step back must not reopen decided gaps).
        Every pipeline step runs on it and records it, so recovery replays the same times."""
        self._now = max(self._now, time.time())
        return self._now

    # -- recovery --------------------------------------------------------------------------
    def recover(self) -> recovery.Recovered:
        """Before connecting: rebuild the pipeline's state from the store, credit the
        downtime, and commit that as a resume step. Raises StoreError if it can't."""
        rec = recovery.recover(self.pipeline, self.store)
        if rec.steps or rec.from_snapshot:
            log.info("%s", rec.line())
        if rec.alerts:
            log.warning(
                "recovery decided %d alert records the store lacks (a changed configuration?);"
                " committing and publishing them",
                len(rec.alerts),
            )
        if rec.last_now is not None:
            self._now = rec.last_now
            downtime = max(0.0, time.time() - rec.last_now)
            step = Step("resume", self.clock(), credit=round(downtime, 3))
            recovery.apply(self.pipeline, step)
            self._pending.steps.append(step)
            log.info("resuming after %.1f s down: that time is not the tags' silence", downtime)
            # Tags asked to report faster before the crash: ask again (idempotent).
            self.commands += [
                (tag, {"rate_s": self.settings.report_fast_s}) for tag in sorted(self.pipeline.fast)
            ]
        self._pending.alerts += rec.alerts
        self.store.commit(self._pending.alerts, [], self._now, steps=self._pending.steps)
        self._pending = _Pending()
        if rec.steps:
            self._snapshot()
        return rec

    # -- lifecycle -----------------------------------------------------------------------
    async def run(self) -> None:
        """Run until `stop()`; then drain what was received, commit, and publish."""
        async with asyncio.TaskGroup() as tg:
            receiver = tg.create_task(self._receiver(), name="receiver")
            processor = tg.create_task(self._processor(), name="processor")
            stats = tg.create_task(self._stats(), name="stats")
            retry = tg.create_task(self._outbox_retry(), name="outbox")
            await self.stopping.wait()
            # Stop taking new input (what arrives now is not acknowledged: the broker gives
            # it to the next run), finish what is queued, then hang up. The processor is
            # not cancelled: a cancelled await leaves its worker thread running.
            await processor  # returns once the queue is empty (or the store gave up)
            stats.cancel()
            retry.cancel()
            with contextlib.suppress(StoreError):
                await asyncio.to_thread(self._commit_pending)
                await asyncio.to_thread(self._snapshot)
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
    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = int(self.settings.session_expiry_s)
        props.ReceiveMaximum = max(1, min(65535, int(self.settings.receive_max)))
        return props

    def _new_client(self) -> aiomqtt.Client:
        will = aiomqtt.Will(STATUS_TOPIC, b'{"state":"offline"}', qos=1, retain=True)
        common: dict[str, Any] = dict(
            identifier=self.client_id, will=will, keepalive=15, timeout=10, **self.client_kwargs
        )
        if self.mqtt5:
            client = aiomqtt.Client(
                self.broker.host, self.broker.port, protocol=aiomqtt.ProtocolVersion.V5,
                clean_start=False, properties=self._connect_properties(), **common,
            )  # fmt: skip
        else:
            client = aiomqtt.Client(
                self.broker.host, self.broker.port, protocol=aiomqtt.ProtocolVersion.V311,
                clean_session=False, **common,
            )  # fmt: skip
        # aiomqtt does not expose manual acknowledgement; the paho client it wraps does.
        # Before connecting: a resumed session's queued messages arrive with the CONNACK,
        # and paho would acknowledge them before any of our code ran. From here on a PUBACK
        # goes out only from _ack(), after the commit.
        client._client.manual_ack_set(True)
        return client

    async def _receiver(self) -> None:
        backoff = 0.25
        while True:
            try:
                async with self._new_client() as client:
                    client.pending_calls_threshold = 10_000
                    for topic in SUBSCRIPTIONS:
                        await client.subscribe(topic, qos=1)
                    self.gen += 1
                    gen = self.gen
                    self.client = client
                    self.counters.connects += 1
                    self.connected.set()
                    backoff = 0.25
                    log.info("connected to %s:%d", self.broker.host, self.broker.port)
                    await self._announce()
                    await self._flush_outbox()
                    async for msg in client.messages:
                        if self.stopping.is_set():
                            continue
                        payload = msg.payload
                        if not isinstance(payload, bytes):
                            payload = b"" if payload is None else str(payload).encode()
                        item = _Item(
                            str(msg.topic), payload, time.monotonic(), gen, msg.mid, msg.qos
                        )
                        await self.queue.put(item)
                        self.counters.received += 1
            except aiomqtt.MqttError as e:
                self.connected.clear()
                self.client = None
                if self.mqtt5 and _unsupported_protocol(e):
                    self.mqtt5 = False
                    log.warning(
                        "broker %s:%d does not speak MQTT 5: using 3.1.1 with a persistent"
                        " session (clean session off); the broker's own limits then stand"
                        " for session expiry and messages in flight",
                        self.broker.host, self.broker.port,
                    )  # fmt: skip
                    continue
                log.warning(
                    "broker %s:%d: %s; reconnecting in %.1fs",
                    self.broker.host,
                    self.broker.port,
                    e,
                    backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def _announce(self) -> None:
        """The retained status: online, or degraded with the reason."""
        client = self.client
        if client is None:
            return
        body: dict[str, str] = {"state": "online"}
        if self.degraded is not None:
            body = {"state": "degraded", "reason": self.degraded}
        with contextlib.suppress(aiomqtt.MqttError):
            await client.publish(STATUS_TOPIC, msgspec.json.encode(body), qos=1, retain=True)

    def _ack(self, items: list[_Item]) -> None:
        """PUBACK what is now durable, in the order received, on the connection it came on
        (after a reconnect the broker redelivers the rest; the pipeline drops duplicates)."""
        client = self.client
        if client is None:
            return
        paho = client._client
        n = 0
        for it in items:
            if it.qos > 0 and it.gen == self.gen:
                paho.ack(it.mid, it.qos)
                n += 1
        self.counters.acked += n

    # -- processing ----------------------------------------------------------------------
    async def _next_batch(self) -> list[_Item]:
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

    def _decide(self, items: list[_Item]) -> None:
        """Decode and run the pipeline (a worker thread: kernels drop the GIL). The step and
        what it decided wait in _pending until committed."""
        recs: list[Record] = []
        dead: list[DeadLetter] = []
        for it in items:
            r, d = decode_message(it.topic, it.payload, self.limits)
            recs.extend(r)
            dead.extend(d)
        step = Step("batch", self.clock(), recs)
        res = recovery.apply(self.pipeline, step)
        dead.extend(res.dead)
        c = self.counters
        c.fixes += res.fixes
        c.events += res.events
        c.duplicates += res.duplicates
        c.dead += len(dead)
        for letter in dead:
            log.info("dead letter from %s: %s", letter.origin, letter.reason)
        self._take(step, res, dead)

    def _tick(self) -> bool:
        """Let time pass: give up seq gaps held too long, open silences that fell due.
        True when the step decided something (it is then committed at once)."""
        step = Step("tick", self.clock())
        res = recovery.apply(self.pipeline, step)
        self._take(step, res, [])
        return bool(res.alerts or res.commands)

    def _take(self, step: Step, res: BatchResult, dead: list[DeadLetter]) -> None:
        p = self._pending
        p.steps.append(step)
        p.alerts.extend(res.alerts)
        p.dead.extend(dead)
        self.commands.extend(res.commands)
        self.counters.alerts += len(res.alerts)

    def _commit_pending(self) -> list[OutboxItem]:
        """Commit every decided step with what it produced, in one transaction; on failure
        everything stays pending (the pipeline has moved on: it exists nowhere else)."""
        p = self._pending
        if not p:
            return []
        out = self.store.commit(p.alerts, p.dead, self._now, steps=p.steps)
        self._pending = _Pending()
        return out

    async def _commit(self) -> list[OutboxItem] | None:
        """Commit, retrying until it works. While it doesn't, nothing new is decided and
        nothing acknowledged: the broker holds the messages. Said loudly, every retry.
        None when asked to stop before it worked (the next run gets the messages again)."""
        delay = 0.5
        while True:
            try:
                out = await asyncio.to_thread(self._commit_pending)
            except StoreError as e:
                if self.stopping.is_set():
                    log.error(
                        "stopping with %d steps not committed (%s): their messages were not"
                        " acknowledged, so the broker delivers them to the next run",
                        len(self._pending.steps), e,
                    )  # fmt: skip
                    self._pending = _Pending()
                    return None
                self.counters.store_errors += 1
                pending = self._pending
                log.error(
                    "STORE FAILING, not acknowledging input: %s (%d steps, %d alert records,"
                    " %d dead letters waiting); retrying in %.1fs",
                    e, len(pending.steps), len(pending.alerts), len(pending.dead), delay,
                )  # fmt: skip
                if self.degraded is None:
                    self.degraded = f"alert store cannot be written: {e}"
                    await self._announce()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if self.degraded is not None:
                log.warning("store writable again; resuming")
                self.degraded = None
                await self._announce()
            return out

    async def _processor(self) -> None:
        while not (self.stopping.is_set() and self.queue.empty()):
            items = await self._next_batch()
            if not items:
                decided = await asyncio.to_thread(self._tick)
                if decided or len(self._pending.steps) >= 60:
                    outbox = await self._commit()
                    if outbox is None:
                        return
                    await self._after_commit(outbox, [])
                await self._send_commands()
                continue
            await asyncio.to_thread(self._decide, items)
            outbox = await self._commit()
            if outbox is None:
                for _ in items:
                    self.queue.task_done()
                return
            await self._after_commit(outbox, items)
            now = time.monotonic()
            self.counters.lag_s = now - items[0].received
            self.counters.processed += len(items)
            self.counters.batches += 1
            for _ in items:
                self.queue.task_done()
            await self._send_commands()

    async def _after_commit(self, outbox: list[OutboxItem], items: list[_Item]) -> None:
        self._ack(items)
        if outbox:
            await self._publish(outbox)
        now = self._now
        st = self.settings
        if now - self._last_snapshot >= st.snapshot_every_s:
            await asyncio.to_thread(self._snapshot)
        if st.evidence_retention_days > 0 and now - self._last_prune >= 3600.0:
            self._last_prune = now
            await asyncio.to_thread(self._prune, now - st.evidence_retention_days * 86400.0)

    def _snapshot(self) -> None:
        """Pipeline state as of the last commit (nothing may be pending)."""
        if self._pending:
            return
        self._last_snapshot = self._now
        try:
            self.store.save_snapshot(self._fingerprint, self._now, recovery.snapshot(self.pipeline))
        except StoreError as e:
            log.warning("%s; a restart replays more of the ledger", e)

    def _prune(self, before: float) -> None:
        try:
            n = self.store.prune(before)
        except StoreError as e:
            log.warning("%s", e)
            return
        if n:
            log.info("retention: %d evidence ledger rows older than the retention deleted", n)

    # -- publishing ----------------------------------------------------------------------
    async def _publish(self, items: list[OutboxItem]) -> None:
        client = self.client
        if client is None:
            return  # stays in the outbox; published on reconnect or by the retry loop
        prefix = self.settings.alert_topic_prefix
        items = [i for i in items if i.seq not in self._inflight]
        self._inflight.update(i.seq for i in items)

        async def one(item: OutboxItem) -> int | None:
            try:
                await client.publish(alert_topic(prefix, item.subject), item.payload, qos=1)
                return item.seq
            except aiomqtt.MqttError as e:
                log.warning("alert publish failed (kept in outbox): %s", e)
                return None

        try:
            done = [s for s in await asyncio.gather(*(one(i) for i in items)) if s is not None]
            if done:
                try:
                    await asyncio.to_thread(self.store.mark_published, done)
                except StoreError as e:  # published again later: at least once
                    log.warning("%s", e)
                    return
                self.counters.published += len(done)
        finally:
            self._inflight.difference_update(i.seq for i in items)

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
            try:
                backlog = await asyncio.to_thread(self.store.unpublished)
            except sqlite3.Error as e:
                log.warning("cannot read the outbox: %s", e)
                return
            if backlog:
                log.info("publishing %d alert records from the outbox", len(backlog))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._publish(backlog), timeout)

    async def _outbox_retry(self) -> None:
        """Whatever the broker has not confirmed is published again until it is."""
        while True:
            await asyncio.sleep(self.settings.outbox_retry_s)
            if self.client is not None:
                await self._flush_outbox(timeout=30.0)

    async def _stats(self) -> None:
        while True:
            await asyncio.sleep(self.stats_every_s)
            log.info("%s", self.counters.line(self.queue.qsize()))


def _unsupported_protocol(e: aiomqtt.MqttError) -> bool:
    """CONNACK "unsupported protocol version" (MQTT 5 reason 0x84, 3.1.1 return code 1)."""
    rc = getattr(e, "rc", None)
    value = getattr(rc, "value", rc)
    return value in (0x84, 1) and isinstance(e, aiomqtt.MqttCodeError)
