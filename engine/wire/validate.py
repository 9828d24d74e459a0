"""The slow path: generic JSON checked field by field, one precise dead-letter reason per
rejected record. It is the authority on what is accepted; the typed fast path
(`fastpath.py`) may only accept what this accepts, identically."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec

from engine.wire.bounds import ACC_MAX_M, OWNTRACKS_DEFAULT_ACC_M, SEQ_MAX
from engine.wire.reasons import NonFinite, Rejected, kind, show
from engine.wire.records import EVENT_NAMES, SOURCES, EventRecord, FixRecord
from engine.wire.rfc3339 import parse_rfc3339, time_range

_DEC_ANY = msgspec.json.Decoder()
_MISSING: Any = object()
_FAILED: Any = object()


def required(obj: dict[str, Any], key: str, where: str) -> Any:
    v = obj.get(key, _MISSING)
    if v is _MISSING:
        raise Rejected(f"{where}: missing field '{key}'")
    return v


def _int(v: Any, where: str, lo: int, hi: int, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise Rejected(f"{where} must be {what}, got {show(v)}")
    if not lo <= v <= hi:
        raise Rejected(f"{where}: {show(v)} is outside [{lo}, {hi}]")
    return v


def _seq(obj: dict[str, Any], where: str) -> int:
    # Floats are rejected even when integral (3.0): a tag that sends them has a broken encoder.
    v = required(obj, "seq", where)
    if isinstance(v, NonFinite) and v.text.endswith("-digit integer"):
        raise Rejected(f"{where}.seq: {v.text} exceeds 2^63-1")
    if isinstance(v, bool) or not isinstance(v, int):
        raise Rejected(f"{where}.seq must be an integer >= 0, got {show(v)}")
    if v < 0:
        raise Rejected(f"{where}.seq must be >= 0, got {show(v)}")
    if v > SEQ_MAX:
        raise Rejected(f"{where}.seq: {show(v)} exceeds 2^63-1")
    return v


def _number(v: Any, where: str) -> int | float:
    if isinstance(v, NonFinite):
        raise Rejected(f"{where} must be a finite number, got {v.text}")
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise Rejected(f"{where} must be a number, got {show(v)}")
    if isinstance(v, float) and not math.isfinite(v):
        raise Rejected(f"{where} must be a finite number, got {show(v)}")
    return v


def _ranged(v: Any, where: str, lo: float, hi: float) -> float:
    x = _number(v, where)
    if not lo <= x <= hi:
        raise Rejected(f"{where}: {show(v)} is outside [{lo:g}, {hi:g}]")
    return float(x)


def _acc(v: Any, where: str) -> float:
    x = _number(v, where)
    if not x > 0:
        raise Rejected(f"{where} must be > 0, got {show(v)}")
    if x > ACC_MAX_M:
        raise Rejected(f"{where}: {show(v)} exceeds the {ACC_MAX_M:g} m limit")
    return float(x)


def _batt(obj: dict[str, Any], where: str) -> int | None:
    v = obj.get("batt")
    if v is None:  # absent or null
        return None
    return _int(v, f"{where}.batt", 0, 100, "an integer 0-100")


def _boot(obj: dict[str, Any], where: str) -> int | None:
    v = obj.get("boot")
    if v is None:  # absent or null: a device without a boot counter
        return None
    return _int(v, f"{where}.boot", 0, SEQ_MAX, "an integer >= 0")


def _time(v: Any, where: str) -> float:
    if isinstance(v, str):
        return parse_rfc3339(v, where)
    if isinstance(v, NonFinite) or (
        isinstance(v, int | float) and not isinstance(v, bool) and not math.isfinite(v)
    ):
        raise Rejected(f"{where} must be a finite number, got {show(v)}")
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise Rejected(
            f"{where} must be a number (Unix seconds) or an RFC 3339 string, got {show(v)}"
        )
    return time_range(v, where, show(v))


def _check_tag(obj: dict[str, Any], device: str, where: str) -> None:
    v = obj.get("tag")
    if v is not None and v != device:
        raise Rejected(f"{where}.tag {show(v)} does not match the topic's tag {show(device)}")


def _src(obj: dict[str, Any], where: str) -> str | None:
    v = obj.get("src")
    if v is None:
        return None
    if v not in SOURCES:
        raise Rejected(f"{where}.src: unknown source {show(v)} (expected gps, wifi or cell)")
    return v  # type: ignore[no-any-return]


def _no_nonfinite(v: Any, where: str) -> None:
    """Reject NaN/Infinity literals anywhere in an otherwise accepted (lenient) object."""
    if isinstance(v, NonFinite):
        raise Rejected(f"{where}: {v.text} is not valid JSON (numbers must be finite)")
    if isinstance(v, dict):
        for k, x in v.items():
            _no_nonfinite(x, f"{where}.{k}")
    elif isinstance(v, list):
        for i, x in enumerate(v):
            _no_nonfinite(x, f"{where}[{i}]")


def _seq_t(obj: Any, device: str, where: str) -> tuple[int, float]:
    """What fixes and events check first, in this order: an object, its tag, seq, t."""
    if not isinstance(obj, dict):
        raise Rejected(f"{where} must be a JSON object, got {kind(obj)}")
    _check_tag(obj, device, where)
    seq = _seq(obj, where)
    return seq, _time(required(obj, "t", where), f"{where}.t")


def validate_fix(obj: Any, device: str, where: str) -> FixRecord:
    """A fix object of `device` (`where` names it in reasons: "fix", ...), or Rejected."""
    seq, t = _seq_t(obj, device, where)
    lat = _ranged(required(obj, "lat", where), f"{where}.lat", -90.0, 90.0)
    lon = _ranged(required(obj, "lon", where), f"{where}.lon", -180.0, 180.0)
    acc = _acc(required(obj, "acc", where), f"{where}.acc")
    batt = _batt(obj, where)
    src = _src(obj, where)
    boot = _boot(obj, where)
    _no_nonfinite(obj, where)
    return FixRecord(device, seq, t, lat, lon, acc, batt, src, boot)  # type: ignore[arg-type]


def validate_event(obj: Any, device: str, where: str) -> EventRecord:
    """An event object of `device`, or Rejected."""
    seq, t = _seq_t(obj, device, where)
    name = required(obj, "event", where)
    if not isinstance(name, str):
        raise Rejected(f"{where}.event must be a string, got {show(name)}")
    if name not in EVENT_NAMES:
        raise Rejected(f"{where}: unknown event {show(name)}")
    batt = _batt(obj, where)
    if name == "battery" and batt is None:
        raise Rejected(f"{where}: event 'battery' requires batt")
    boot = _boot(obj, where)
    _no_nonfinite(obj, where)
    return EventRecord(device, seq, t, name, batt, boot)


def validate_owntracks(obj: Any, device: str) -> FixRecord | None:
    """An OwnTracks payload: a fix (seq = t = tst) for `_type: location`, None for the
    `_type`s that are ignored, Rejected otherwise (`encrypted` may hide a location)."""
    where = "owntracks"
    if not isinstance(obj, dict):
        raise Rejected(f"owntracks payload must be a JSON object, got {kind(obj)}")
    ty = required(obj, "_type", where)
    if not isinstance(ty, str):
        raise Rejected(f"{where}._type must be a string, got {show(ty)}")
    if ty == "encrypted":
        raise Rejected("owntracks: encrypted payloads are not supported (turn off encryption)")
    if ty != "location":
        return None
    tst = required(obj, "tst", where)
    if isinstance(tst, bool) or not isinstance(tst, int):
        raise Rejected(f"{where}.tst must be an integer (Unix seconds), got {show(tst)}")
    t = time_range(tst, f"{where}.tst", show(tst))
    lat = _ranged(required(obj, "lat", where), f"{where}.lat", -90.0, 90.0)
    lon = _ranged(required(obj, "lon", where), f"{where}.lon", -180.0, 180.0)
    acc_v = obj.get("acc")
    acc = OWNTRACKS_DEFAULT_ACC_M if acc_v is None else _acc(acc_v, f"{where}.acc")
    batt = _batt(obj, where)
    _no_nonfinite(obj, where)
    return FixRecord(device, tst, t, lat, lon, acc, batt, None)


# -- generic JSON ---------------------------------------------------------------------------


def _lenient_json(payload: bytes) -> Any:
    """Stdlib parse used only after msgspec failed, to name NaN/Infinity/overflow precisely."""
    try:
        text = payload.decode("utf-8")
        return json.loads(
            text, parse_constant=NonFinite, parse_float=_parse_float, parse_int=_parse_int
        )
    except (ValueError, RecursionError):
        return _FAILED


def _parse_float(s: str) -> float | NonFinite:
    x = float(s)
    return x if math.isfinite(x) else NonFinite(s)


def _parse_int(s: str) -> int | NonFinite:
    # Python refuses int() of > 4300 digits; such a number is no coordinate, time or seq.
    return int(s) if len(s) <= 1000 else NonFinite(f"a {len(s.lstrip('-'))}-digit integer")


def _json_error(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"invalid UTF-8 at byte {exc.start}"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    msg = str(exc)
    return msg.removeprefix("JSON is malformed: ")


T = TypeVar("T")


def slow_decode(payload: bytes, validate: Callable[[Any], T]) -> T:
    """Generic-decode `payload` and validate it; raise Rejected with the most precise reason."""
    if not payload.strip():
        raise Rejected("not valid JSON: empty payload")
    try:
        obj = _DEC_ANY.decode(payload)
    except Exception as exc:  # msgspec raises DecodeError, UnicodeDecodeError, RecursionError
        why = _json_error(exc)
        lenient = _lenient_json(payload)
        if lenient is _FAILED:
            raise Rejected(f"not valid JSON: {why}") from None
        return validate(lenient)
    return validate(obj)
