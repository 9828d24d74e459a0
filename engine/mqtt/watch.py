"""Following the engine from a broker, as a monitor does: alert records and engine status.

`tagwatch watch` and `tagwatch demo` read the broker through these two; printing the
records (a line each, or the live board) is the command line's job.

With a `client_id` the stream holds a persistent session, as the engine does (MQTT v5, no
clean start, a session expiry): while the console is away (its broker restarted, its
network gone, the console itself stopped and started again with the same id) the broker
queues the alert records for it and delivers them when it is back. Without one it is a
clean session that sees only what is published while it is connected (the demo)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from engine.errors import DecodeError
from engine.mqtt.session import BrokerAddress
from engine.wire import topics
from engine.wire.alerts import Alert, decode_alert
from engine.wire.commands import decode_status


async def alert_records(
    broker: str,
    subject: str = "+",
    *,
    client_kwargs: dict[str, Any] | None = None,
    reconnect_s: float | None = None,
    client_id: str | None = None,
    session_expiry_s: int = 86_400,
    said: Callable[[bool, str], None] | None = None,
    on_status: Callable[[str | None, dict[str, str]], None] | None = None,
) -> AsyncGenerator[Alert, None]:
    """Alert records as the broker delivers them (QoS 1), for one subject or all ("+").

    A payload that is not an alert record is skipped. When the connection fails the
    MqttError is raised, or with `reconnect_s` the stream reconnects, backing off from
    that many seconds to 10. `client_id`: a persistent session under that id (see above).
    `said` hears each connect (True, the address) and disconnect (False, why), for a
    console to show. `on_status`: also follow the engine's retained status topics and hear
    each status (the shard's label or None, and the status decoded; one that does not
    decode is skipped). Close the stream
    (contextlib.aclosing) to disconnect before its end.
    """
    addr = BrokerAddress.parse(broker)
    kwargs: dict[str, Any] = dict(client_kwargs or {})
    if client_id is not None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = int(session_expiry_s)
        kwargs.update(
            identifier=client_id, protocol=aiomqtt.ProtocolVersion.V5, clean_start=False,
            properties=props,
        )  # fmt: skip
    backoff = reconnect_s
    while True:
        try:
            async with aiomqtt.Client(addr.host, addr.port, **kwargs) as client:
                await client.subscribe(topics.alerts(subject), qos=1)
                if on_status is not None:  # the engine's, and each shard's below it
                    await client.subscribe([(f, 1) for f in topics.STATUS_FILTERS])
                if said is not None:
                    said(True, f"connected to {addr.host}:{addr.port}")
                backoff = reconnect_s
                async for msg in client.messages:
                    if not isinstance(msg.payload, bytes):
                        continue
                    source = topics.status_source(msg.topic.value)
                    if source is not None:
                        if on_status is not None:
                            with contextlib.suppress(DecodeError, ValueError):
                                on_status(source or None, decode_status(msg.payload))
                        continue
                    try:
                        alert = decode_alert(msg.payload)
                    except ValueError:
                        continue
                    yield alert
        except aiomqtt.MqttError as e:
            if reconnect_s is None or backoff is None:
                raise
            if said is not None:
                said(False, f"broker {addr.host}:{addr.port}: {e}; reconnecting in {backoff:.1f} s")
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max(10.0, reconnect_s))


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
