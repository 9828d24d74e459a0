"""Subscribing, and reading what the broker granted.

- A broker answers every SUBSCRIBE with a reason code per filter, and may refuse some (MQTT
  5 0x87 "not authorized" from an ACL, 0x97 quota exceeded, 0x9E no shared subscriptions;
  3.1.1 0x80). A refused filter is input the engine never sees, so each code is read: a
  refused filter that has narrower ones (`topics.narrower`: a tag's `tags/{tag}/+` ->
  its fix, fixes and event topics) is subscribed as those instead; one that is still
  refused is reported, and the main session's status says so (engine/mqtt/session.py).
- A shard subscribes to one filter per device (`topics.device_filters`): mosquitto 2.0
  adds a client's subscriptions in time that grows with how many it holds already (n²: a
  200,000-filter session cost it 10 s of CPU, docs/deployment.md), and paho about 37 µs a
  filter. Over MQTT 5 every filter is subscribed with No Local, so the engine's own rate
  commands (`tags/{tag}/cmd`) do not come back to it; over 3.1.1 they do, and the
  decoder ignores them (`topics.parse_input`).
- Many filters go in one SUBSCRIBE (`PER_PACKET`), not one packet each."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

from engine.wire import topics

log = logging.getLogger("tagwatch.serve")
PER_PACKET = 500
IN_FLIGHT = 4  # (each waits for those ahead of it within the client's 10 s timeout)


@dataclass
class Granted:
    """What a broker made of the filters asked for."""

    # filters subscribed as their narrower ones (the broker refused the filter itself)
    narrowed: dict[str, tuple[str, ...]] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)  # not subscribed: reason code

    def merge(self, other: Granted) -> None:
        self.narrowed.update(other.narrowed)
        self.refused.update(other.refused)

    def forget(self, filters: Iterable[str]) -> None:
        for f in filters:
            self.narrowed.pop(f, None)
            self.refused.pop(f, None)

    def problem(self) -> str | None:
        """Why input is missing, for the engine's status; None when nothing was refused."""
        if not self.refused:
            return None
        first = sorted(self.refused)[0]
        return (
            f"the broker refused {len(self.refused)} subscription(s), e.g. {first}"
            f" (reason 0x{self.refused[first]:02X}): their input does not reach this"
            " engine; check the broker's ACL for the engine's user"
        )


async def subscribe(client: aiomqtt.Client, filters: Iterable[str], mqtt5: bool) -> Granted:
    """Subscribe QoS 1 to `filters`; a refused filter as its narrower ones if it has any."""
    granted = Granted()
    retry: dict[str, tuple[str, ...]] = {}
    for f, code in await _send(client, tuple(filters), mqtt5):
        if code < 0x80:
            continue
        narrower = topics.narrower(f)
        if narrower:
            retry[f] = narrower
        else:
            granted.refused[f] = code
    if retry:
        log.info(
            "the broker refused %d wildcard subscription(s) (e.g. %s): subscribing to each"
            " of their topics instead", len(retry), next(iter(retry)),
        )  # fmt: skip
        codes = dict(await _send(client, tuple(n for ns in retry.values() for n in ns), mqtt5))
        for f, narrower in retry.items():
            bad = [codes[n] for n in narrower if codes[n] >= 0x80]
            if bad:
                granted.refused[f] = bad[0]
            granted.narrowed[f] = narrower
    if granted.refused:
        log.error("%s", granted.problem())
    return granted


async def unsubscribe(client: aiomqtt.Client, filters: Iterable[str], granted: Granted) -> None:
    """Drop `filters` (as what they were subscribed as) and forget them."""
    gone = sorted(filters)
    actual = [n for f in gone for n in granted.narrowed.get(f, (f,))]
    for i in range(0, len(actual), PER_PACKET):
        await client.unsubscribe(actual[i : i + PER_PACKET])
    granted.forget(gone)


async def _send(
    client: aiomqtt.Client, filters: tuple[str, ...], mqtt5: bool
) -> list[tuple[str, int]]:
    """(filter, SUBACK reason code) for each filter, sent PER_PACKET to a SUBSCRIBE, and
    IN_FLIGHT SUBSCRIBEs at a time: the engine builds the next packets while the broker
    adds the last ones' filters (one core each)."""
    opts: Any = SubscribeOptions(qos=1, noLocal=True) if mqtt5 else 1
    chunks = [filters[i : i + PER_PACKET] for i in range(0, len(filters), PER_PACKET)]
    room = asyncio.Semaphore(IN_FLIGHT)

    async def one(chunk: tuple[str, ...]) -> list[tuple[str, int]]:
        async with room:
            codes = [_value(c) for c in await client.subscribe([(f, opts) for f in chunk])]
        codes += [0x80] * (len(chunk) - len(codes))  # a broker answering short: refused
        return list(zip(chunk, codes, strict=False))

    tasks = [asyncio.ensure_future(one(c)) for c in chunks]
    try:
        parts = await asyncio.gather(*tasks)
    except Exception:  # (the connection broke): the other packets' waits go with it
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return [x for part in parts for x in part]


def _value(code: Any) -> int:
    """A SUBACK reason code's number (paho gives ReasonCode objects; 3.1.1 granted QoS)."""
    return int(getattr(code, "value", code))
