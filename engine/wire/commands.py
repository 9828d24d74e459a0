"""Messages the engine sends that are not alerts: reporting-rate commands to tags on
`tagwatch/v1/tags/{tag}/cmd`, its own retained status on `tagwatch/v1/engine/status`, and
opt-in warnings to protected devices (`encode_warning`, docs/notifications.md).

Encoded here and parsed here, so the engine, the simulator and real tags read one contract:
a command is `{"rate_s": seconds}` (other keys may be added; readers ignore them), a status
is `{"state": "online" | "degraded" | "offline"}` with `"reason"` when degraded."""

from __future__ import annotations

import math

import msgspec

from engine.errors import DecodeError
from engine.wire import topics

# A tag asked for a rate outside this range takes the nearest end: no command can make a
# tag report every millisecond or fall silent for a day.
RATE_LIMITS_S = (1.0, 3600.0)


class CommandError(DecodeError):
    """A cmd publication that is ignored: why, in words a log reader can act on."""


def encode_rate_command(rate_s: float) -> bytes:
    """The cmd payload asking a tag to report every `rate_s` seconds."""
    return msgspec.json.encode({"rate_s": rate_s})


def clamp_rate(rate_s: float) -> float:
    return min(max(float(rate_s), RATE_LIMITS_S[0]), RATE_LIMITS_S[1])


def parse_rate_command(topic: str, payload: bytes | str) -> tuple[str, float]:
    """(tag, rate_s) from a publication on tagwatch/v1/tags/{tag}/cmd. rate_s must be a
    positive finite number (seconds); it is clamped into RATE_LIMITS_S. Other keys are
    ignored (the contract only grows)."""
    parts = topic.split("/")
    want = topics.TAGS.split("/")
    if len(parts) != len(want) + 2 or parts[: len(want)] != want or parts[-1] != "cmd":
        raise CommandError(f"not a cmd topic: {topic!r}")
    tag = parts[len(want)]
    try:
        obj = msgspec.json.decode(payload)
    except (msgspec.DecodeError, UnicodeDecodeError) as e:
        raise CommandError(f"payload is not JSON ({e})") from None
    if not isinstance(obj, dict) or "rate_s" not in obj:
        raise CommandError('payload is not a JSON object with "rate_s"')
    rate = obj["rate_s"]
    if isinstance(rate, bool) or not isinstance(rate, int | float):
        raise CommandError(f"rate_s must be a number of seconds, not {rate!r}")
    try:
        rate = float(rate)
    except OverflowError:  # an integer with hundreds of digits: no double holds it
        raise CommandError(
            "rate_s must be positive and finite, not an integer that large"
        ) from None
    if not math.isfinite(rate) or rate <= 0:
        raise CommandError(f"rate_s must be positive and finite, not {rate!r}")
    return tag, clamp_rate(rate)


OFFLINE_STATUS = b'{"state":"offline"}'  # the engine's will: the broker says it when we die


def encode_status(degraded: str | None = None, config: dict[str, str] | None = None) -> bytes:
    """The retained status: online, or degraded with the reason. After a configuration
    reload (SIGHUP) also `config` ("reloaded" or "refused"), `config_reason` (why it was
    refused: the old configuration stays in force), `config_at` (Unix time) and the
    sha256 of the files in force (`config_zones_sha256`, `config_subjects_sha256`)."""
    d = {"state": "online"} if degraded is None else {"state": "degraded", "reason": degraded}
    return msgspec.json.encode({**d, **(config or {})})


def decode_status(payload: bytes) -> dict[str, str]:
    obj = msgspec.json.decode(payload)
    if not isinstance(obj, dict) or not isinstance(obj.get("state"), str):
        raise DecodeError(f"not an engine status: {payload[:80]!r}")
    return {str(k): str(v) for k, v in obj.items()}


# The words a protected person reads (docs/notifications.md): what happened, never where the
# subject is (only how far, when the engine measured it against this device).
_WARNING_TEXT = {
    "proximity": "WARNING: the person you are protected from is about {d} from you."
    " The monitoring centre has been alerted.",
    "proximity_approach": "Caution: the person you are protected from is about {d} from"
    " you. The monitoring centre has been alerted.",
    "zone_breach": "WARNING: the person you are protected from has entered a zone they are"
    " banned from. The monitoring centre has been alerted.",
    "zone_approach": "Caution: the person you are protected from is near a zone they are"
    " banned from. The monitoring centre has been alerted.",
}
WARNING_KINDS = frozenset(_WARNING_TEXT)


def warning_text(kind: str, distance_m: float | None) -> str:
    d = "an unknown distance" if distance_m is None else f"{distance_m:.0f} m"
    return _WARNING_TEXT[kind].format(d=d)


def encode_warning(
    device: str, alert_id: str, kind: str, severity: str, t: float, distance_m: float | None
) -> tuple[str, bytes]:
    """(topic, payload) of a warning to protected `device` about alert `alert_id`.

    An OwnTracks phone ('user/device') gets the app's `action` cmd on
    owntracks/{user}/{device}/cmd: `notification` (shown by the iOS app) and `content`
    (its Featured Content tab). Any other device (a dedicated unit) gets
    tagwatch/v1/protected/{device}/warning: {"alert", "kind", "severity", "t", "text",
    "distance_m" when measured against this device}."""
    text = warning_text(kind, distance_m)
    if "/" in device:
        cmd = {"_type": "cmd", "action": "action", "notification": text, "content": text}
        return topics.owntracks_cmd(device), msgspec.json.encode(cmd)
    body: dict[str, object] = {
        "alert": alert_id, "kind": kind, "severity": severity, "t": t, "text": text,
    }  # fmt: skip
    if distance_m is not None:
        body["distance_m"] = distance_m
    return topics.warning(device), msgspec.json.encode(body)
