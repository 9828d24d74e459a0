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

    def __init__(self, store: Store, session: MqttSession) -> None:
        self.store = store
        self.session = session
        self.sent: bytes | None = None  # the last one the broker confirmed

    async def publish(self) -> None:
        """A lost one is superseded by the next commit's, and sent again on reconnect."""
        client = self.session.client
        cp = self.store.signed_checkpoint()
        if client is None or cp is None or cp == self.sent:
            return
        try:
            await client.publish(topics.CHECKPOINT, cp, qos=1, retain=True)
        except aiomqtt.MqttError as e:
            log.warning("ledger checkpoint publish failed (sent again later): %s", e)
            return
        self.sent = cp


async def retained_checkpoint(
    broker: str, timeout: float = 10.0, *, client_kwargs: dict[str, Any] | None = None
) -> bytes:
    """The payload retained on tagwatch/v1/engine/checkpoint, checked to be a checkpoint.
    TagwatchError when the broker holds none within `timeout` seconds or cannot be reached."""
    addr = BrokerAddress.parse(broker)

    async def fetch() -> bytes:
        async with aiomqtt.Client(addr.host, addr.port, **(client_kwargs or {})) as client:
            await client.subscribe(topics.CHECKPOINT, qos=1)
            async for msg in client.messages:
                if isinstance(msg.payload, bytes):
                    decode_checkpoint(msg.payload)  # DecodeError: not one
                    return msg.payload
        raise TagwatchError("the broker closed the connection")  # pragma: no cover

    try:
        return await asyncio.wait_for(fetch(), timeout)
    except TimeoutError:
        raise TagwatchError(
            f"no checkpoint retained on {topics.CHECKPOINT} at {broker} within {timeout:g} s"
            " (is the engine signing: tagwatch serve --key?)"
        ) from None
    except aiomqtt.MqttError as e:
        raise TagwatchError(f"broker {broker}: {e}") from None
