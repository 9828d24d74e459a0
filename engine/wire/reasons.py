"""How a rejected input is told: the `Rejected` exception carrying a dead letter's reason,
dead letters themselves, and the short renderings of values, kinds and topics that reasons
are written with."""

from __future__ import annotations

import re
from typing import Any

from engine.wire.records import DeadLetter, Record

# What decoding gives: accepted records and dead letters, either list possibly empty.
Result = tuple[list[Record], list[DeadLetter]]

# A lone UTF-16 surrogate ("\ud800" is valid JSON) is no Unicode text: as an id it could
# never be encoded again (dead letters, the store, alert topics) and crashed the pipeline.
SURROGATE = re.compile("[\ud800-\udfff]")


class Rejected(Exception):
    """A record is rejected; `reason` is the dead letter's reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NonFinite:
    """A NaN/Infinity literal or an overflowing number, which strict JSON does not allow."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def show(v: Any) -> str:
    """A short JSON-ish rendering of a value for reasons."""
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, NonFinite):
        return v.text
    if isinstance(v, int):
        if abs(v) < 10**30:
            return str(v)
        return f"{'-' if v < 0 else ''}a {v.bit_length() * 30103 // 100000}-digit integer"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return repr(v) if len(v) <= 40 else repr(v[:40]) + "…"
    if isinstance(v, dict):
        return "an object"
    if isinstance(v, list):
        return "an array"
    return type(v).__name__


def show_topic(topic: str) -> str:
    return repr(topic) if len(topic) <= 120 else repr(topic[:120]) + "…"


def kind(v: Any) -> str:
    """What sort of JSON value `v` is, for "must be ..., got {kind}" reasons."""
    if isinstance(v, dict):
        return "an object"
    if isinstance(v, list):
        return "an array"
    if isinstance(v, str):
        return "a string"
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    return "a number"


def dead(origin: str, payload: bytes, reason: str) -> Result:
    return [], [DeadLetter(origin, payload, reason)]


def too_big(what: str, payload: bytes, max_bytes: int) -> str:
    return f"{what} of {len(payload)} bytes exceeds the {max_bytes}-byte limit"


def as_bytes(payload: Any) -> bytes:
    """The payload as a dead letter keeps it, whatever type it arrived as."""
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, bytearray | memoryview):
        return bytes(payload)
    if payload is None:
        return b""
    return str(payload).encode("utf-8", "surrogatepass")
