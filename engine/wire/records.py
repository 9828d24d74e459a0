"""Records that cross module borders: decoded fixes and events, dead letters, alerts."""

from __future__ import annotations

import hashlib
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


# A dead letter keeps at most this much of what it rejected, with the full size and hash:
# a hostile payload stored whole (once per bad element of a /fixes batch) filled the disk.
EXCERPT_BYTES = 512


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Input that could not be accepted, kept with the reason so nothing disappears.

    Built from the whole rejected input, it keeps a bounded excerpt (the first
    EXCERPT_BYTES bytes) with the input's full `size` and SHA-256 (hex); built with a
    `size` (a summary, a stored row) it is taken as given."""

    origin: str  # MQTT topic, or "FILE:LINE" for replay
    payload: bytes  # the first EXCERPT_BYTES bytes of what was rejected
    reason: str
    size: int = -1  # bytes rejected; -1 when built: computed from `payload`
    sha256: str = ""  # hex SHA-256 of everything rejected
    device: str | None = None  # the device it came from, when known
    count: int = 1  # dead letters this one stands for (> 1: a summary)

    def __post_init__(self) -> None:
        if self.size < 0:
            whole = self.payload
            object.__setattr__(self, "size", len(whole))
            object.__setattr__(self, "sha256", hashlib.sha256(whole).hexdigest())
            object.__setattr__(self, "payload", whole[:EXCERPT_BYTES])


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
# Where each field of a fix row stands in its `.item()` tuple: the hot steps read a row
# once that way (reading fields by name costs about as much per field as all at once)
ROW_SLOT, ROW_SEQ, ROW_T, ROW_LAT, ROW_LON, ROW_ACC = (
    (FIX_DTYPE.names or ()).index(n) for n in ("slot", "seq", "t", "lat", "lon", "acc")
)


def record_json(r: Record) -> bytes:
    """A decoded record as JSON, field for field: the dead letter's payload for a record
    refused after decoding (unknown device, outside the time or rate limits). `boot` (the
    last field) only when the device sent one."""
    b = msgspec.json.encode(r)
    return b[: -len(_NO_BOOT)] + b"}" if r.boot is None else b


_NO_BOOT = b',"boot":null}'
