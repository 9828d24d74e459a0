"""Live output: a run's messages published to MQTT in (warped) real time at QoS 1, obeying
the engine's reporting-rate commands (extra fixes, seqs renumbered in send order).

Reconnects with backoff when the broker goes away; cancel the task to stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiomqtt

from devices.sim.fleet import Message, SimRun, Simulation
from devices.sim.output import write_truth
from devices.sim.ratecontrol import Outgoing, RateControl
from engine.wire import topics
from engine.wire.commands import CommandError, parse_rate_command
from engine.wire.payloads import encode

log = logging.getLogger("tagwatch.devices.live")
MAX_INFLIGHT = 20  # unacknowledged QoS 1 publishes (mosquitto's default window)
BACKOFF_S = (0.5, 10.0)  # first and longest wait between reconnect attempts


@dataclass
class LiveStats:
    """What a live run did: planned messages acknowledged (`sent` of `total`), extra fixes
    acknowledged, rate commands obeyed and ignored, reconnects, wall time."""

    sent: int = 0
    total: int = 0
    reconnects: int = 0
    elapsed_s: float = 0.0
    extra: int = 0  # extra fixes sent (acknowledged) because a tag was asked to report faster
    commands: int = 0  # rate commands accepted
    ignored: int = 0  # cmd publications ignored: garbage, unknown tag, bad rate


ProgressFn = Callable[[int, int, Message], None]  # (planned sent, total, last message)


def _acked(o: Outgoing, stats: LiveStats) -> None:
    if o.extra:
        stats.extra += 1
    else:
        stats.sent += 1


async def _publish_from(
    client: aiomqtt.Client,
    ctl: RateControl,
    unacked: deque[Outgoing],
    pace: Callable[[float], float],
    wake: asyncio.Event,
    stats: LiveStats,
    progress: ProgressFn | None,
    progress_every: int,
) -> None:
    """Resend `unacked` (what a lost connection left unacknowledged: same payloads, same
    seqs), then publish ctl's stream at its paced times, with a bounded window of
    unacknowledged publishes. `unacked` holds everything sent and not yet acknowledged,
    in order, so a reconnect resumes exactly there; `wake` is set when a command may have
    made something due earlier."""
    inflight: deque[asyncio.Task[None]] = deque()  # inflight[k] carries unacked[k]
    loop = asyncio.get_running_loop()

    async def make_room() -> None:
        while inflight and (len(inflight) >= MAX_INFLIGHT or inflight[0].done()):
            await inflight.popleft()  # raises if the broker went away
            _acked(unacked.popleft(), stats)

    def send(o: Outgoing) -> None:
        # tasks start in creation order, so paho sends in this order
        m = o.message
        inflight.append(asyncio.ensure_future(client.publish(m.topic, encode(m.payload), qos=1)))

    try:
        for o in list(unacked):
            await make_room()
            send(o)
        while True:
            await make_room()
            t = ctl.next_t()  # no await from here to pop(): a command cannot slip between
            if t is None:
                break
            delay = pace(t) - loop.time()
            if delay > 0:
                wake.clear()
                # asyncio.timeout, not wait_for: 3.11's wait_for swallows a cancel that
                # lands as the event is set, and the run would never stop
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await wake.wait()
                continue  # a command may have changed what is next
            o = ctl.pop()
            unacked.append(o)
            send(o)
            if progress and not o.extra and ctl.popped_planned % progress_every == 0:
                progress(ctl.popped_planned, len(ctl.run.messages), o.message)
        while inflight:
            await inflight.popleft()
            _acked(unacked.popleft(), stats)
    finally:
        for task in inflight:
            task.cancel()
        for task in inflight:
            with contextlib.suppress(BaseException):
                await task


async def _listen(
    client: aiomqtt.Client,
    ctl: RateControl | None,
    sim_now: Callable[[], float],
    wake: asyncio.Event,
    stats: LiveStats,
) -> None:
    """Obey rate commands (ctl None: nothing is subscribed) until the connection drops,
    then raise MqttError: pending QoS 1 publishes are not failed by a disconnect (they
    wait out their timeout), so the publisher needs this."""
    async for msg in client.messages:
        if ctl is None:
            continue
        topic = str(msg.topic)
        try:
            payload = msg.payload if isinstance(msg.payload, bytes | str) else b""
            tag, rate = parse_rate_command(topic, payload)
            before, now = ctl.rate(tag), sim_now()
            ctl.command(tag, rate, now)
        except CommandError as e:
            stats.ignored += 1
            log.warning("ignoring %s: %s", topic, e)
            continue
        stats.commands += 1
        if before != rate:
            log.debug("%s: report every %g s from sim time %.1f", tag, rate, now)
        wake.set()


async def run_live(
    source: Simulation | SimRun,
    host: str,
    port: int,
    *,
    warp: float = 1.0,
    start_t: float | None = None,
    client_id: str | None = None,
    progress: ProgressFn | None = None,
    progress_every: int = 1000,
    truth_path: str | Path | None = None,
    obey_commands: bool = True,
) -> LiveStats:
    """Publish a run live: tag records on tagwatch/v1/tags/{tag}/fix (/fixes, /event),
    victim phones on owntracks/{user}/{device}, each at its sim time (sim seconds pass
    `warp` times faster than wall seconds). A Simulation is planned here with start_t
    (default: now), so event times are "now"; a SimRun is sent as it is.

    With `obey_commands`, rate commands on tagwatch/v1/tags/{tag}/cmd are obeyed: while a
    tag is asked to report faster than planned it also sends extra fixes (`ratecontrol.py`),
    and every tag record is renumbered in send order (seq 0, 1, 2, ... per tag). Without
    it, the planned messages go out unchanged. Returns when everything planned was
    acknowledged; reconnects resend what was unacknowledged with the same seqs.
    """
    if warp <= 0:
        raise ValueError("warp must be > 0")
    if isinstance(source, Simulation):
        t0 = time.time() if start_t is None else start_t
        run = await asyncio.to_thread(source.run, t0, truth_path is not None)
    else:
        run = source
    if truth_path is not None:
        write_truth(run, truth_path)
    ctl = RateControl(run, renumber=obey_commands)
    stats = LiveStats(total=len(run.messages))
    unacked: deque[Outgoing] = deque()
    wake = asyncio.Event()
    loop = asyncio.get_running_loop()
    mono0 = loop.time()
    sim0 = run.start_t

    def pace(t: float) -> float:
        return mono0 + (t - sim0) / warp

    def sim_now() -> float:
        return sim0 + (loop.time() - mono0) * warp

    backoff = BACKOFF_S[0]
    while not (ctl.done and not unacked):
        error: BaseException | None = None
        try:
            async with aiomqtt.Client(host, port, identifier=client_id) as client:
                if stats.reconnects:
                    log.info(
                        "reconnected to %s:%d; resuming at planned message %d (%d unacknowledged)",
                        host, port, stats.sent, len(unacked),
                    )  # fmt: skip
                backoff = BACKOFF_S[0]
                if obey_commands:
                    await client.subscribe(topics.CMD_FILTER, qos=1)
                async with asyncio.TaskGroup() as tg:
                    listener = tg.create_task(
                        _listen(client, ctl if obey_commands else None, sim_now, wake, stats)
                    )
                    await _publish_from(
                        client, ctl, unacked, pace, wake, stats, progress, progress_every
                    )
                    listener.cancel()
        except* aiomqtt.MqttError as group:
            error = group.exceptions[0]
        if error is not None:
            stats.reconnects += 1
            log.warning("broker %s:%d: %s; retrying in %.1f s", host, port, error, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_S[1])
    stats.elapsed_s = loop.time() - mono0
    return stats
