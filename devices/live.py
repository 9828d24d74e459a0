"""Live output: a run's messages published to MQTT in (warped) real time at QoS 1.

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

from devices.output import encode, write_truth
from devices.sim import Message, SimRun, Simulation

log = logging.getLogger("tagwatch.devices.live")
MAX_INFLIGHT = 20  # unacknowledged QoS 1 publishes (mosquitto's default window)
BACKOFF_S = (0.5, 10.0)  # first and longest wait between reconnect attempts


@dataclass
class LiveStats:
    """What a live run did."""

    sent: int = 0
    total: int = 0
    reconnects: int = 0
    elapsed_s: float = 0.0


ProgressFn = Callable[[int, int, Message], None]  # (sent, total, last message)


async def _publish_from(
    client: aiomqtt.Client,
    messages: tuple[Message, ...],
    start: int,
    pace: Callable[[Message], float],
    stats: LiveStats,
    progress: ProgressFn | None,
    progress_every: int,
) -> None:
    """Publish messages[start:] in order with a bounded window of unacknowledged ones;
    stats.sent only counts acknowledged (in order), so a reconnect resumes from there."""
    inflight: deque[asyncio.Task[None]] = deque()
    loop = asyncio.get_running_loop()
    try:
        for i in range(start, len(messages)):
            m = messages[i]
            delay = pace(m) - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            while inflight and (len(inflight) >= MAX_INFLIGHT or inflight[0].done()):
                await inflight.popleft()  # raises if the broker went away
                stats.sent += 1
            # tasks start in creation order, so paho sends in message order
            inflight.append(
                asyncio.ensure_future(client.publish(m.topic, encode(m.payload), qos=1))
            )
            if progress and (i + 1) % progress_every == 0:
                progress(i + 1, len(messages), m)
        while inflight:
            await inflight.popleft()
            stats.sent += 1
    finally:
        for task in inflight:
            task.cancel()
        for task in inflight:
            with contextlib.suppress(BaseException):
                await task


async def _until_disconnected(client: aiomqtt.Client) -> None:
    """Raise MqttError as soon as the connection drops. Pending QoS 1 publishes are not
    failed by a disconnect (they wait out their timeout), so the publisher needs this."""
    async for _ in client.messages:  # nothing is subscribed: this only waits
        pass


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
) -> LiveStats:
    """Publish a run live: tag fixes on tagwatch/v1/tags/{tag}/fix, victim phones on
    owntracks/{user}/{device}, each at its sim time (sim seconds pass `warp` times faster
    than wall seconds). A Simulation is planned here with start_t (default: now), so event
    times are "now"; a SimRun is sent as it is. Returns when everything was acknowledged.
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
    messages = run.messages
    stats = LiveStats(total=len(messages))
    loop = asyncio.get_running_loop()
    mono0 = loop.time()
    sim0 = run.start_t

    def pace(m: Message) -> float:
        return mono0 + (m.t - sim0) / warp

    backoff = BACKOFF_S[0]
    while stats.sent < len(messages):
        error: BaseException | None = None
        try:
            async with aiomqtt.Client(host, port, identifier=client_id) as client:
                if stats.reconnects:
                    log.info("reconnected to %s:%d; resuming at message %d", host, port, stats.sent)
                backoff = BACKOFF_S[0]
                async with asyncio.TaskGroup() as tg:
                    watcher = tg.create_task(_until_disconnected(client))
                    await _publish_from(
                        client, messages, stats.sent, pace, stats, progress, progress_every
                    )
                    watcher.cancel()
        except* aiomqtt.MqttError as group:
            error = group.exceptions[0]
        if error is not None:
            stats.reconnects += 1
            log.warning("broker %s:%d: %s; retrying in %.1f s", host, port, error, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_S[1])
    stats.elapsed_s = loop.time() - mono0
    return stats
