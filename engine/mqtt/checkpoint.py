"""The engine's signed ledger checkpoint on the broker: published retained by the serve
loop after each commit and on every reconnect (`CheckpointPublisher`), and fetched from
the broker (`tagwatch checkpoint`): the copy `tagwatch audit verify --checkpoint FILE`
checks a store against."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiomqtt

from engine.errors import TagwatchError
from engine.mqtt.session import BrokerAddress, MqttSession
from engine.store.base import Store
from engine.wire import topics
from engine.wire.checkpoint import decode_checkpoint

log = logging.getLogger("tagwatch.serve")


class CheckpointPublisher:
    """Publishes the store's newest signed checkpoint, retained (QoS 1), once each."""

    def __init__(self, store: Store, session: MqttSession, topic: str = topics.CHECKPOINT) -> None:
        self.store = store
        self.session = session
        self.topic = topic  # a shard's is its own (topics.checkpoint)
        self.sent: bytes | None = None  # the last one the broker confirmed
        self._wanted = False
        self._task: asyncio.Task[None] | None = None

    def kick(self) -> None:
        """Publish the newest checkpoint in the background: the processor does not wait for
        the broker's PUBACK (under a backlog that round trip is slow). One at a time; the
        newest when it is done wins."""
        self._wanted = True
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name="checkpoint")

    async def _drain(self) -> None:
        while self._wanted:
            self._wanted = False
            await self.publish()

    async def settle(self, timeout: float) -> None:
        """Wait (at most `timeout` s) for a background publish still on its way."""
        if self._task is not None and not self._task.done():
            await asyncio.wait({self._task}, timeout=timeout)

    async def publish(self) -> None:
        """A lost one is superseded by the next commit's, and sent again on reconnect."""
        client = self.session.client
        cp = await asyncio.to_thread(self.store.signed_checkpoint)
        if client is None or cp is None or cp == self.sent:
            return
        try:
            await client.publish(self.topic, cp, qos=1, retain=True)
        except aiomqtt.MqttError as e:
            log.warning("ledger checkpoint publish failed (sent again later): %s", e)
            return
        self.sent = cp


async def retained_checkpoint(
    broker: str,
    timeout: float = 10.0,
    *,
    client_kwargs: dict[str, Any] | None = None,
    topic: str = topics.CHECKPOINT,
) -> bytes:
    """The payload retained on tagwatch/v1/engine/checkpoint (a shard's: below it), checked
    to be a checkpoint. TagwatchError when the broker holds none within `timeout` seconds or
    cannot be reached."""
    addr = BrokerAddress.parse(broker)

    async def fetch() -> bytes:
        async with aiomqtt.Client(addr.host, addr.port, **(client_kwargs or {})) as client:
            await client.subscribe(topic, qos=1)
            async for msg in client.messages:
                if isinstance(msg.payload, bytes):
                    decode_checkpoint(msg.payload)  # DecodeError: not one
                    return msg.payload
        raise TagwatchError("the broker closed the connection")  # pragma: no cover

    try:
        return await asyncio.wait_for(fetch(), timeout)
    except TimeoutError:
        raise TagwatchError(
            f"no checkpoint retained on {topic} at {broker} within {timeout:g} s"
            " (is the engine signing: tagwatch serve --key?)"
        ) from None
    except aiomqtt.MqttError as e:
        raise TagwatchError(f"broker {broker}: {e}") from None
