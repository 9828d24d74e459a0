"""Following the engine from a broker, as a monitor does: alert records and engine status.

`tagwatch watch` and `tagwatch demo` read the broker through these two; printing the
records is the command line's job."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import aiomqtt

from engine.mqtt.session import BrokerAddress
from engine.wire import topics
from engine.wire.alerts import Alert, decode_alert


async def alert_records(
    broker: str,
    subject: str = "+",
    *,
    client_kwargs: dict[str, Any] | None = None,
    reconnect_s: float | None = None,
) -> AsyncGenerator[Alert, None]:
    """Alert records as the broker delivers them (QoS 1), for one subject or all ("+").

    A payload that is not an alert record is skipped. When the connection fails the
    MqttError is raised, or with `reconnect_s` the stream reconnects after that many
    seconds. Close it (contextlib.aclosing) to disconnect before its end.
    """
    addr = BrokerAddress.parse(broker)
    while True:
        try:
            async with aiomqtt.Client(addr.host, addr.port, **(client_kwargs or {})) as client:
                await client.subscribe(topics.alerts(subject), qos=1)
                async for msg in client.messages:
                    if not isinstance(msg.payload, bytes):
                        continue
                    try:
                        alert = decode_alert(msg.payload)
                    except ValueError:
                        continue
                    yield alert
        except aiomqtt.MqttError:
            if reconnect_s is None:
                raise
            await asyncio.sleep(reconnect_s)


async def wait_online(broker: str, timeout: float) -> None:
    """Return once the engine's retained status says online; TimeoutError after `timeout` s."""
    addr = BrokerAddress.parse(broker)

    async def wait() -> None:
        async with aiomqtt.Client(addr.host, addr.port) as client:
            await client.subscribe(topics.STATUS, qos=1)
            async for msg in client.messages:
                if isinstance(msg.payload, bytes) and b'"online"' in msg.payload:
                    return

    await asyncio.wait_for(wait(), timeout)
