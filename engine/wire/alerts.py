"""Alert records: the contract's fields, stable ids, and canonical JSON bytes."""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import msgspec

AlertState = Literal["open", "acknowledged", "closed"]
Severity = Literal["critical", "high", "medium", "low"]
SEVERITY_RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3}


# One piece of evidence: (tag, seq), or (tag, seq, boot) where the tag sends a boot counter
# or has restarted (see engine/core/intake/seqspace.py)
Evidence = tuple[str | int, ...]


class Alert(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One lifecycle record of an alert. Field order is the wire order (contract table).

    `detail` is an additive extension: what a monitor needs to act on a health alert
    (battery level and predicted empty time, where a silent tag was last seen, what a
    late batch told about a silence). Absent from the JSON when there is none.

    `workflow` and `actions` (additive) are carried only by the records a monitor's action
    writes (engine/store/casework/workflow.py): the human side of the alert, `new`,
    `acknowledged` or `resolved`, and every action so far. A lifecycle record the engine
    decides has neither, so live and replay decide the same bytes; the workflow of an
    alert is that of its latest record that has one."""

    id: str
    kind: str
    state: AlertState
    subject: str
    tag: str | None
    zone: str | None
    severity: Severity
    confidence: float
    opened_t: float
    raised_t: float
    closed_t: float | None
    evidence: list[Evidence]
    detail: dict[str, Any] | None = None
    workflow: str | None = None
    actions: list[dict[str, Any]] | None = None


def alert_id(subject: str, zone: str | None, kind: str, first: Evidence) -> str:
    """Stable id from what the episode is: subject, zone, kind and its first evidence.

    Live, replay and a restarted engine see the same first (tag, seq) for an episode,
    so they all give it the same id. The boot, where evidence has one, is part of the key:
    the same seq in another seq space is another record."""
    key = f"{subject}\x1f{zone or ''}\x1f{kind}" + "".join(f"\x1f{x}" for x in first)
    return hashlib.blake2b(key.encode(), digest_size=10).hexdigest()


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Alert)


def encode_alert(alert: Alert) -> bytes:
    """Canonical JSON: contract field order, no whitespace, shortest float repr."""
    return _encoder.encode(alert)


def decode_alert(data: bytes | str) -> Alert:
    return _decoder.decode(data)


def alert_topic(prefix: str, subject: str) -> str:
    return f"{prefix}/{subject}"
