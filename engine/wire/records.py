"""Records that cross module borders: decoded fixes and events, dead letters, alerts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import msgspec
import numpy as np

Source = Literal["gps", "wifi", "cell"]
SOURCES: tuple[str, ...] = ("gps", "wifi", "cell")
SRC_CODE = {"gps": 0, "wifi": 1, "cell": 2, None: 255}

EVENT_NAMES: frozenset[str] = frozenset(
    {
        "strap_open",
        "strap_closed",
        "case_open",
        "body_lost",
        "body_restored",
        "charging_on",
        "charging_off",
        "no_gps",
        "battery",
        "power_off",
        # additive: the restores the contract's list lacks
        "case_closed",
        "power_on",
    }
)


@dataclass(frozen=True, slots=True)
class FixRecord:
    """One position report from a tag or protected device (contract: Fix)."""

    device: str  # tag id, or "user/device" for OwnTracks
    seq: int
    t: float  # event time, Unix seconds UTC
    lat: float
    lon: float
    acc: float  # 68% horizontal radius, metres
    batt: int | None = None
    src: Source | None = None
    boot: int | None = None  # the device's boot counter, when it sends one


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One device event (contract: Event)."""

    device: str
    seq: int
    t: float
    event: str
    batt: int | None = None
    boot: int | None = None


Record = FixRecord | EventRecord


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Input that could not be accepted, kept with the reason so nothing disappears."""

    origin: str  # MQTT topic, or "FILE:LINE" for replay
    payload: bytes
    reason: str


EVENT_CODE = {name: i + 1 for i, name in enumerate(sorted(EVENT_NAMES))}

# The record batch the core works on: one row per accepted fix or event, device resolved to
# a slot. Fixes and events share a tag's seq space, so they travel (and are ordered) together.
FIX_DTYPE = np.dtype(
    [
        ("slot", np.int32),  # device slot in the pipeline's registry
        ("seq", np.int64),
        ("t", np.float64),
        ("lat", np.float64),  # NaN for events
        ("lon", np.float64),
        ("acc", np.float32),
        ("batt", np.int8),  # -1 when absent
        ("src", np.uint8),  # SRC_CODE
        ("event", np.uint8),  # 0 for a fix, else EVENT_CODE
    ]
)


def record_json(r: Record) -> bytes:
    """A decoded record as JSON, field for field: the dead letter's payload for a record
    refused after decoding (unknown device, outside the time or rate limits). `boot` (the
    last field) only when the device sent one."""
    b = msgspec.json.encode(r)
    return b[: -len(_NO_BOOT)] + b"}" if r.boot is None else b


_NO_BOOT = b',"boot":null}'
