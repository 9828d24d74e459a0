"""Fetching the engine's retained ledger checkpoint from a broker (`tagwatch checkpoint`):
the copy `tagwatch audit verify --checkpoint FILE` checks a store against."""

from __future__ import annotations

import asyncio
from typing import Any

import aiomqtt

from engine.errors import TagwatchError
from engine.mqtt.session import BrokerAddress
from engine.wire import topics
from engine.wire.checkpoint import decode_checkpoint


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
