"""The live engine's serve loop: receive, micro-batch, hand records to the pipeline,
commit results durably, acknowledge, then publish alerts (QoS 1) from the outbox.

Shape (one owner task group, every task awaited):

    session(s) --(bounded queues)--> processor --> store.commit --> PUBACK --> outbox
    (the next batch is decided while the last one's commit lands: engine/mqtt/pending.py)
Tags' events come on a second session too, a priority lane the processor takes first
(engine/mqtt/lanes.py): a tamper event does not wait behind a backlog of fixes.

Delivery guarantees (docs/durability.md):
- The session (engine/mqtt/session.py) is persistent (MQTT v5, fixed client id, no clean
  start, session expiry), so the broker queues for the engine while it is down, and it
  sends each PUBACK only when told: after the batch holding the message is committed (the
  records as evidence, the alert records and dead letters they produced, and the step
  restart recovery replays). A crash before that commit means the broker redelivers.
- Every step (batch, tick, resume) is in the evidence ledger; a restart restores the
  newest snapshot and replays the steps after it (engine/store/recovery.py).
- Alert records are published from the outbox (engine/mqtt/outbox.py) and marked only
  when the broker confirms; what is unconfirmed is retried every `outbox_retry_s` and on
  every reconnect.
- When the store cannot be written (locked, disk full) the engine stops: no new batches,
  no acknowledgements, an ERROR each retry and a retained "degraded" status saying why.
- After each commit the store's new signed ledger checkpoint is published, retained, on
  tagwatch/v1/engine/checkpoint (and again on every reconnect): a copy of where the chain
  ended that lives outside the store, for `tagwatch audit verify --checkpoint`.

SIGHUP re-reads the zones and subjects between two batches (engine/mqtt/reload.py,
docs/configuration.md): nothing changes unless both files are valid."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from typing import Any

from engine.core.pipeline import BatchResult, Pipeline
from engine.errors import LockLost, StoreError
from engine.mqtt import reload
from engine.mqtt.checkpoint import CheckpointPublisher
from engine.mqtt.counters import Counters
from engine.mqtt.hostclock import HostClock
from engine.mqtt.lanes import MAIN, Lanes, quiet, urgent_session
from engine.mqtt.outbox import Outbox
from engine.mqtt.pending import InFlight, Pending
from engine.mqtt.session import BrokerAddress, Incoming, MqttSession
from engine.mqtt.shards import Routing, check_store
from engine.settings import Settings
from engine.store import recovery, retention
from engine.store.base import OutboxItem, Store
from engine.store.config import ConfigError, ConfigFiles
from engine.store.ledger import Step
from engine.wire import topics
from engine.wire.commands import encode_rate_command
from engine.wire.decode import Limits, decode_into
from engine.wire.fastpath import FixLines
from engine.wire.records import DeadLetter

log = logging.getLogger("tagwatch.serve")
_LOG_DEAD_MAX = 10  # dead letters logged one by one per batch; the rest in one line


class Engine:
    """Owns the pipeline, the store and the MQTT connection for one engine process."""

    def __init__(
        self,
        pipeline: Pipeline,
        store: Store,
        broker: BrokerAddress,
        *,
        client_id: str = "tagwatch-engine",
        settings: Settings | None = None,
        stats_every_s: float = 10.0,
        client_kwargs: dict[str, Any] | None = None,
        config: ConfigFiles | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.config = config  # the files `pipeline` was built from (None: reload is off)
        self._reload_wanted = False
        self.store = store
        self.settings = settings or pipeline.settings
        self.stats_every_s = stats_every_s
        self.shard = config.shard if config is not None else None
        self.routing = rt = Routing.of(self.shard, pipeline.zoneset)
        client_id, client_kwargs = client_id + rt.suffix, rt.login(client_kwargs)
        self.session = MqttSession(
            broker, self.settings, client_id=client_id, client_kwargs=client_kwargs,
            filters=rt.filters, status_topic=rt.status,
        )  # fmt: skip
        self.urgent = None
        if self.settings.urgent_lane:
            self.urgent = urgent_session(broker, self.settings, client_id, client_kwargs)
        self.lanes = Lanes(self.session, self.urgent, self.settings.queue_max,
                           self.settings.urgent_watch_max, rt.lane_event)  # fmt: skip
        self.outbox = Outbox(store, self.session, self.settings)
        self.limits = Limits()
        self.counters = Counters()
        self.stopping = asyncio.Event()
        self._pending = Pending()
        self._inflight = InFlight()  # a commit landing while the next batch is decided
        self.hostclock = HostClock(self.settings.clock_step_confirm_s)
        self._fingerprint = recovery.fingerprint(pipeline)
        self._last_snapshot = 0.0
        self._last_prune = 0.0
        self._state_ahead = False  # the pipeline holds steps the ledger lacks: never snapshot it
        self.fatal: str | None = None  # why the engine stopped itself (LockLost)
        self.checkpoints = CheckpointPublisher(store, self.session, rt.checkpoint)
        # Reporting-rate commands decided but not yet sent: (tag, rate_s)
        self.commands: list[tuple[str, float]] = []

    # -- the engine clock ------------------------------------------------------------------
    def clock(self) -> float:
        """The engine clock, read now (engine/mqtt/hostclock.py)."""
        return self.hostclock.read()

    @property
    def _now(self) -> float:
        return self.hostclock.now

    @_now.setter
    def _now(self, value: float) -> None:
        self.hostclock.now = value

    # -- recovery --------------------------------------------------------------------------
    def recover(self) -> recovery.Recovered:
        """Before connecting: rebuild the pipeline's state from the store, credit the
        downtime, and commit that as a resume step. Raises StoreError if it can't."""
        start = self.pipeline
        check_store(self.store, self.shard, str(getattr(self.store, "name", "")))
        rec = recovery.recover(start, self.store, self.config)
        assert rec.pipeline is not None
        self.pipeline = rec.pipeline
        if rec.steps or rec.from_snapshot:
            log.info("%s", rec.line())
        if self.config is not None and rec.config != self.config.hashes:
            # Started on other files than the ledger's last configuration: from here on the
            # files on disk are in force, recorded as a config step (state moves by ids).
            if self.pipeline is not start:
                self.pipeline = recovery.reconfigure(self.pipeline, start.zoneset)
            self._pending.steps.append(Step("config", self.clock(), config=self.config.data()))
            moved = "changed: state carried across by ids; " if rec.from_snapshot else ""
            log.info("configuration %sin force from now, in the evidence ledger: %s", moved,
                     reload.hashes_line(self.config))  # fmt: skip
        self._fingerprint = recovery.fingerprint(self.pipeline)
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
                (tag, self.settings.report_fast_s) for tag in sorted(self.pipeline.fast)
            ]
        self._pending.alerts += rec.alerts
        self.store.commit(self._pending.alerts, [], self._now, steps=self._pending.steps)
        self._pending = Pending()
        if rec.steps or rec.remapped or not rec.from_snapshot:
            self._snapshot()
        self._last_snapshot = self._now  # one taken now, or restored with nothing after it
        return rec

    # -- lifecycle -----------------------------------------------------------------------
    async def run(self) -> None:
        """Run until `stop()`; then drain what was received, commit, and publish."""
        async with asyncio.TaskGroup() as tg:
            receiver = tg.create_task(
                self.session.run(self._on_connect, self._on_message), name="receiver"
            )
            urgent = None
            if self.urgent is not None:  # with the watched tags of the state recovered
                await self.lanes.watch(self.pipeline.fast, self.pipeline.zoneset.subjects)
                urgent = tg.create_task(self.urgent.run(quiet, self._on_message), name="urgent")
            processor = tg.create_task(self._processor(), name="processor")
            stats = tg.create_task(self._stats(), name="stats")
            retry = tg.create_task(self.outbox.retry_forever(), name="outbox")
            await self.stopping.wait()
            # Stop taking new input (what arrives now is not acknowledged: the broker gives
            # it to the next run), finish what is queued, then hang up. The processor is
            # not cancelled: a cancelled await leaves its worker thread running.
            await processor  # returns once the queue is empty (or the store gave up)
            for session in self.lanes.sessions.values():
                session.resume()  # read again (PUBACKs) if a full queue had paused it
            stats.cancel()
            retry.cancel()
            with contextlib.suppress(StoreError):
                await asyncio.to_thread(self._commit_pending)
                await asyncio.to_thread(self._snapshot)
            await self.outbox.settle(2.0)
            await self.outbox.flush(timeout=2.0)
            await self.checkpoints.settle(2.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.checkpoints.publish(), 2.0)
            receiver.cancel()
            if urgent is not None:
                urgent.cancel()
        log.info("engine stopped: %s", self.stats_line())

    def stop(self) -> None:
        self.stopping.set()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)

    def request_reload(self) -> None:  # SIGHUP: re-read the files before the next batch
        self._reload_wanted = True

    # -- receiving ---------------------------------------------------------------------
    async def _on_connect(self) -> None:
        self.counters.connects += 1
        self.checkpoints.sent = None  # a broker that lost its retained messages gets it again
        await self.outbox.flush()
        await self.checkpoints.publish()

    def _on_message(self, item: Incoming) -> bool:
        """A session's sink (paho's on_message): queue it; True when the lane is full."""
        if self.stopping.is_set():
            return False  # not acknowledged: the broker gives it to the next run
        self.counters.received += 1
        return self.lanes.put(item)

    def _ack(self, items: list[Incoming]) -> None:
        self.counters.acked += self.lanes.ack(items)

    # -- processing ----------------------------------------------------------------------
    def _decide(self, items: list[Incoming]) -> tuple[Step, BatchResult, list[DeadLetter]]:
        """Decode and run the pipeline (a worker thread: kernels drop the GIL): the step,
        what it decided and its dead letters, for `_take` (on the loop's thread)."""
        recs = FixLines()  # a gateway's plain fixes stay columns or lines (no object a fix)
        dead: list[DeadLetter] = []
        for it in items:
            d = decode_into(recs, it.topic, it.payload, self.limits, self.pipeline.gateways)
            if d and self.shard is not None and not self.routing.speaks_for(it.topic):
                continue  # a gateway's bad batch: the shard that owns the gateway keeps it
            dead.extend(d)
        step = Step("batch", self.clock(), recs.batch())
        res = recovery.apply(self.pipeline, step)
        # Records refused leaving no trace (over the rate limit...) are dead letters only:
        # the step replays the same without them, and a flood costs no ledger row each
        step = step.without(res.traceless)
        dead.extend(res.dead)
        self.counters.decided(res, len(dead))
        for letter in dead[:_LOG_DEAD_MAX]:
            log.info("dead letter from %s: %s", letter.origin, letter.reason)
        if len(dead) > _LOG_DEAD_MAX:  # a flood of garbage must not flood the log either
            log.info("... and %d more dead letters in this batch", len(dead) - _LOG_DEAD_MAX)
        return step, res, dead

    def _tick(self) -> tuple[Step, BatchResult, list[DeadLetter]]:
        """Let time pass: give up seq gaps held too long, open silences that fell due."""
        step = Step("tick", self.clock())
        return step, recovery.apply(self.pipeline, step), []

    def _take(self, step: Step, res: BatchResult, dead: list[DeadLetter]) -> BatchResult:
        """Keep a decided step until committed (the loop's thread only: pending.py)."""
        p = self._pending
        p.steps.append(step)
        p.alerts.extend(res.alerts)
        p.dead.extend(dead)
        self.commands.extend(res.commands)
        self.counters.alerts += len(res.alerts)
        return res

    def _commit_pending(self) -> list[OutboxItem]:
        """Commit every decided step and what it produced in one transaction (on failure all
        stays pending); nothing once a commit was given up (that would leave a gap)."""
        p = self._pending
        if not p or self._state_ahead:
            return []
        out = self.store.commit(p.alerts, p.dead, self._now, steps=p.steps)
        self._pending = Pending()
        return out

    async def _commit(self) -> list[OutboxItem] | None:
        """Commit, retrying until it works. While it doesn't, nothing new is decided and
        nothing acknowledged: the broker holds the messages. Said loudly, every retry.
        None when asked to stop before it worked (the next run gets the messages again)."""
        delay = 0.5
        while True:
            p, self._pending = self._pending, Pending()  # what is decided meanwhile waits
            try:
                out = await asyncio.to_thread(self.store.commit, p.alerts, p.dead, self._now,
                                              steps=p.steps) if p else []  # fmt: skip
            except StoreError as e:
                self._pending = p.then(self._pending)
                if isinstance(e, LockLost):  # nothing was written: stop, a restart recovers
                    self.fatal = str(e)
                    self.stopping.set()
                if self.stopping.is_set():
                    log.error(
                        "stopping with %d steps not committed (%s): their messages were not"
                        " acknowledged, so the broker delivers them to the next run, which decides"
                        " them again (no snapshot is taken of a pipeline ahead of the ledger)",
                        len(self._pending.steps), e,
                    )  # fmt: skip
                    self._pending = Pending()
                    # The pipeline has now run ahead of the ledger: a snapshot of it would
                    # hold steps never written, and the next run, restored from it, would
                    # drop the redelivered messages as duplicates (their alerts lost).
                    self._state_ahead = True
                    return None
                self.counters.store_errors += 1
                pending = self._pending
                log.error(
                    "STORE FAILING, not acknowledging input: %s (%d steps, %d alert records,"
                    " %d dead letters waiting); retrying in %.1fs",
                    e, len(pending.steps), len(pending.alerts), len(pending.dead), delay,
                )  # fmt: skip
                if self.session.problem("store") is None:
                    await self.session.set_status(f"alert store cannot be written: {e}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if self.session.problem("store") is not None:
                log.warning("store writable again; resuming")
                await self.session.set_status(None)
            return out

    async def _processor(self) -> None:
        st = self.settings
        while not (self.stopping.is_set() and self.lanes.empty()):
            if self._reload_wanted and not (await self._inflight.landed() and await self._reload()):
                return
            items = await self.lanes.next_batch(st.live_batch_max, st.batch_wait_s)
            if not items or self._now - self._last_snapshot >= st.snapshot_every_s:
                if not await self._inflight.landed():  # nothing decided ahead of the ledger
                    return
                await asyncio.to_thread(self._snapshot)  # (unless ticks are pending)
            if not items:
                res = self._take(*await asyncio.to_thread(self._tick))
                if res.alerts or res.commands or len(self._pending.steps) >= 60:
                    fresh = await self._commit()
                    if fresh is None:
                        return
                    await self._after_commit(fresh, [])
                await self._send_commands()
                continue
            decided: list[Incoming] = []
            while items:  # a main batch in chunks: a priority item waits for one at most
                chunk, items = items[: st.live_chunk], items[st.live_chunk :]
                self._take(*await asyncio.to_thread(self._decide, chunk))
                decided += chunk
                if items and not self.lanes.urgent_waiting():
                    continue  # committed with the rest of the batch
                if not await self._inflight.landed():
                    break
                if not items and self.lanes.full:  # a backlog: committed while the next
                    self._inflight.start(self._settle(decided))  # batch is decided
                    decided = []
                    break
                if items:  # decided now, committed with the chunks before it; no more than
                    # a chunk of them, so a flood of events halves the main pace at worst
                    urgent = self.lanes.take_urgent(st.live_chunk)
                    self._take(*await asyncio.to_thread(self._decide, urgent))
                    decided += urgent
                if not await self._settle(decided):
                    break
                decided = []
            self.lanes.done()
            if decided:  # a commit failed while stopping
                return
            await self._send_commands()
        await self._inflight.landed()

    async def _settle(self, decided: list[Incoming]) -> bool:
        """Commit what was decided, then acknowledge it; False when asked to stop first."""
        fresh = await self._commit()
        if fresh is None:
            return False
        await self._after_commit(fresh, decided)
        self.counters.processed += len(decided)
        self.counters.batches += 1
        if decided[0].lane == MAIN:
            await self._lag(time.monotonic() - decided[0].received)
        return True

    async def _after_commit(self, fresh: list[OutboxItem], items: list[Incoming]) -> None:
        """Acknowledge, publish, prune when due (snapshots are the processor's: pending.py)."""
        self._ack(items)
        if fresh:
            self.outbox.spawn(fresh)
        self.checkpoints.kick()
        now = self._now
        if now - self._last_prune >= 3600.0:
            self._last_prune = now
            st = self.settings
            await asyncio.to_thread(retention.prune_due, self.store, st.evidence_retention_days,
                                    st.dead_letter_retention_days, self.hostclock.retention())  # fmt: skip

    async def _lag(self, lag_s: float) -> None:
        """How long the main lane's input waited: the status says the engine lags while it
        is over lag_status_s, and online again once it is under half of that."""
        self.counters.lag_s = lag_s
        limit, lagging = self.settings.lag_status_s, self.session.problem("lag") is not None
        if limit > 0 and lag_s > limit and not lagging:
            log.warning("engine lags: input waited %.1f s before it was decided", lag_s)
            await self.session.set_status(f"lagging: input waits {lag_s:.0f} s", cause="lag")
        elif lagging and lag_s < limit / 2:
            log.info("engine caught up: input waits %.1f s", lag_s)
            await self.session.set_status(None, cause="lag")

    # -- configuration reload -----------------------------------------------------------
    def _switch(self, files: ConfigFiles, new: Pipeline) -> None:
        """Carry the live state across by ids and record the change as a config step."""
        step = Step("config", self.clock(), config=files.data())
        new.import_state(self.pipeline.export_state())
        self.pipeline, self.config = new, files
        self._fingerprint = recovery.fingerprint(new)
        self._take(step, BatchResult(), [])

    async def _reload(self) -> bool:
        """SIGHUP: take the files if they are valid, else change nothing and say why.
        False when the engine is stopping and the change could not be committed."""
        self._reload_wanted = False
        if self.config is None:
            log.warning("SIGHUP ignored: started without configuration files to re-read")
            return True
        t0, old = time.time(), self.config
        try:
            files, new = await asyncio.to_thread(reload.prepare, old, self.pipeline.settings)
        except ConfigError as e:
            log.error("configuration reload REFUSED, nothing changed (the old zones and"
                      " subjects stay in force): %s", e)  # fmt: skip
            await self.session.set_config_status(reload.status("refused", old, t0, str(e)))
            return True
        if files.hashes != old.hashes:
            await asyncio.to_thread(self._switch, files, new)
            fresh = await self._commit()
            if fresh is None:
                return False
            await self._after_commit(fresh, [])
            await asyncio.to_thread(self._snapshot)
            if self.shard is not None:  # its subjects may have changed: so do its topics
                rt = self.routing = Routing.of(self.shard, new.zoneset)
                await self.session.refilter(rt.filters)
                self.lanes.lane_event = rt.lane_event  # (the lane hears every tag's events)
        log.info("%s", reload.line(files, old, new, time.time() - t0))
        outcome = "unchanged" if files.hashes == old.hashes else "reloaded"
        await self.session.set_config_status(reload.status(outcome, files, t0))
        return True

    def _snapshot(self) -> None:
        """Pipeline state as of the last commit (nothing may be pending, nothing dropped:
        a snapshot is never ahead of the ledger)."""
        if self._pending or self._state_ahead:
            return
        self._last_snapshot = self._now
        try:
            config = None if self.config is None else self.config.hashes
            data = recovery.snapshot(self.pipeline, config)
            self.store.save_snapshot(self._fingerprint, self._now, data)
        except StoreError as e:
            log.warning("%s; a restart replays more of the ledger", e)

    # -- commands and stats ----------------------------------------------------------------
    async def _send_commands(self) -> None:
        """Ask tags to report faster (or relax) on .../cmd, QoS 1, watching them on the
        priority lane (subscribed in a task of its own: the processor does not wait for
        the broker). Not stored: a lost command is superseded by the next state change,
        and the tag falls back to its own rate."""
        if not self.commands:
            return
        self.lanes.watch_soon(self.pipeline.fast, self.pipeline.zoneset.subjects)
        if self.session.client is None:
            return
        cmds, self.commands = self.commands, []
        for tag, rate_s in cmds:
            if self.session.send(topics.cmd(tag), encode_rate_command(rate_s)):
                self.counters.commands += 1
            else:
                log.warning("command to %s not sent: the broker connection is down", tag)

    async def _stats(self) -> None:
        while True:
            await asyncio.sleep(self.stats_every_s)
            log.info("%s", self.stats_line())

    def stats_line(self) -> str:
        c = self.counters
        return (
            f"received {c.received} processed {c.processed} (fixes {c.fixes}, "
            f"events {c.events}, dup {c.duplicates}, dead {c.dead}) "
            f"alerts {c.alerts} published {self.outbox.published} refused "
            f"{self.outbox.refused} acked {c.acked} queue {self.lanes.qsize()} lag "
            f"{c.lag_s * 1000:.0f} ms connects {c.connects} ahead {self._inflight.started}"
        )
