"""`tagwatch watch`: subscribe to the alerts topic and print rows as records arrive."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiomqtt

from engine.cli.console import AlertPrinter
from engine.mqtt.serve import BrokerAddress
from engine.wire.alerts import decode_alert


async def watch(
    broker: str,
    subject: str = "+",
    count: int = 0,
    timeout: float = 0.0,
    client_kwargs: dict[str, Any] | None = None,
) -> int:
    """Print alert records until `count` were seen or `timeout` seconds passed (0: never)."""
    addr = BrokerAddress.parse(broker)
    printer = AlertPrinter()
    seen = 0

    async def loop() -> None:
        nonlocal seen
        async with aiomqtt.Client(addr.host, addr.port, **(client_kwargs or {})) as client:
            await client.subscribe(f"tagwatch/v1/alerts/{subject}", qos=1)
            async for msg in client.messages:
                if isinstance(msg.payload, bytes):
                    try:
                        printer.print(decode_alert(msg.payload))
                    except ValueError:
                        continue
                    seen += 1
                    if count and seen >= count:
                        return

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(loop(), timeout or None)
    return seen
