"""Decode MQTT payloads and replay lines into fix/event records or dead letters, never raising."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import re
import types
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

import msgspec

from engine.wire.records import EVENT_NAMES, SOURCES, DeadLetter, EventRecord, FixRecord, Record

__all__ = [
    "ACC_MAX_M",
    "OWNTRACKS_DEFAULT_ACC_M",
    "SEQ_MAX",
    "T_MAX",
    "T_MIN",
    "Limits",
    "decode_message",
    "decode_replay_line",
]

# Accuracy assumed for an OwnTracks location without `acc`: a deliberately pessimistic
# figure (roughly a coarse wifi/cell fix), so a phone that omits it never looks precise.
OWNTRACKS_DEFAULT_ACC_M = 65.0
ACC_MAX_M = 100_000.0  # a fix vaguer than 100 km is not a position
T_MIN = 946_684_800.0  # 2000-01-01T00:00:00Z, inclusive
T_MAX = 4_102_444_800.0  # 2100-01-01T00:00:00Z, exclusive
SEQ_MAX = 2**63 - 1  # seq is stored as int64

_TAG_PREFIX = "tagwatch/v1/tags/"
_TAG_KINDS = ("fix", "fixes", "event")


@dataclass(frozen=True)
class Limits:
    """Input bounds; anything beyond them is dead-lettered, not processed."""

    max_payload_bytes: int = 262_144
    max_batch: int = 2000
    max_id_len: int = 128


_DEFAULT_LIMITS = Limits()

# -- fast path: typed msgspec decoding -----------------------------------------------------
# Every field is optional here so one Struct serves fixes, events and replay lines; the
# fast checks below accept only fully valid records and hand anything else to the slow path,
# which is the authority on what is accepted and produces the precise reason.


class _In(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    seq: int | None = None
    t: float | str | None = None
    lat: float | None = None
    lon: float | None = None
    acc: float | None = None
    batt: int | None = None
    src: str | None = None
    event: str | None = None
    tag: str | None = None
    type: str | None = None


class _OwnTracks(msgspec.Struct, gc=False):
    type_: str | None = msgspec.field(default=None, name="_type")
    tst: int | None = None
    lat: float | None = None
    lon: float | None = None
    acc: float | None = None
    batt: int | None = None


_DEC_ONE = msgspec.json.Decoder(_In)
# A typed decoder skips unknown fields unread, so a number no double holds (1e400, a
# 400-digit integer) or bytes that are not UTF-8 in one would pass the fast path while the
# slow path (the authority) rejects them. (A fuzzing find: one /fixes element was kept or
# dead-lettered depending on its neighbours.) `_In` therefore forbids unknown fields:
# a payload with extra fields takes the slow path. OwnTracks payloads always carry extra
# fields (phones, a message a minute), so there the payload itself is checked instead.
_big_number = re.compile(rb"[eE][+-]?\d{3}|\d{309}").search


def _fast_unsafe(payload: bytes) -> bool:
    """True when a lenient typed fast path must not decide this payload (see above)."""
    if not payload.isascii():
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError:
            return True
    return _big_number(payload) is not None


_DEC_MANY = msgspec.json.Decoder(list[_In])
_DEC_OT = msgspec.json.Decoder(_OwnTracks)
_DEC_ANY = msgspec.json.Decoder()


# Frozen slotted dataclasses build slowly (object.__setattr__ per field): ~1 µs of a ~4 µs
# decode. When the record classes are plain (expected fields, slots, no __post_init__), build
# them by writing the slots directly; otherwise fall back to the normal constructor.
_FIX_FIELDS = ("device", "seq", "t", "lat", "lon", "acc", "batt", "src")
_EVENT_FIELDS = ("device", "seq", "t", "event", "batt")


def _plain(cls: type, names: tuple[str, ...]) -> bool:
    return (
        tuple(f.name for f in dataclasses.fields(cls)) == names
        and not hasattr(cls, "__post_init__")
        and all(isinstance(vars(cls).get(n), types.MemberDescriptorType) for n in names)
    )


if _plain(FixRecord, _FIX_FIELDS) and _plain(EventRecord, _EVENT_FIELDS):
    _new = object.__new__
    _fd, _fs, _ft, _fa, _fo, _fc, _fb, _fr = (vars(FixRecord)[n].__set__ for n in _FIX_FIELDS)
    _ed, _es, _et, _ee, _eb = (vars(EventRecord)[n].__set__ for n in _EVENT_FIELDS)

    def _new_fix(
        device: str,
        seq: int,
        t: float,
        lat: float,
        lon: float,
        acc: float,
        batt: int | None,
        src: str | None,
    ) -> FixRecord:
        r = _new(FixRecord)
        _fd(r, device)
        _fs(r, seq)
        _ft(r, t)
        _fa(r, lat)
        _fo(r, lon)
        _fc(r, acc)
        _fb(r, batt)
        _fr(r, src)
        return r  # type: ignore[no-any-return]

    def _new_event(device: str, seq: int, t: float, event: str, batt: int | None) -> EventRecord:
        r = _new(EventRecord)
        _ed(r, device)
        _es(r, seq)
        _et(r, t)
        _ee(r, event)
        _eb(r, batt)
        return r  # type: ignore[no-any-return]

else:  # pragma: no cover - records.py changed shape; stay correct, just slower
    _new_fix = FixRecord  # type: ignore[assignment]
    _new_event = EventRecord  # type: ignore[assignment]


def _fast_seq_t(s: _In) -> tuple[int, float] | None:
    """The fast path's seq and event-time checks, shared by fixes and events."""
    seq, t = s.seq, s.t
    if seq is None or not 0 <= seq <= SEQ_MAX:
        return None
    if t.__class__ is str:
        try:
            t = _parse_rfc3339(t, "")  # type: ignore[arg-type]
        except _Bad:
            return None
    elif t is None or not T_MIN <= t < T_MAX:  # type: ignore[operator]
        return None
    return seq, t  # type: ignore[return-value]


def _fast_fix(s: _In, device: str) -> FixRecord | None:
    lat, lon, acc, batt, src = s.lat, s.lon, s.acc, s.batt, s.src
    seq_t = _fast_seq_t(s)
    if seq_t is None:
        return None
    seq, t = seq_t
    if lat is None or not -90.0 <= lat <= 90.0:
        return None
    if lon is None or not -180.0 <= lon <= 180.0:
        return None
    if acc is None or not 0.0 < acc <= ACC_MAX_M:
        return None
    if batt is not None and not 0 <= batt <= 100:
        return None
    if src is not None and src not in SOURCES:
        return None
    if s.tag is not None and s.tag != device:
        return None
    return _new_fix(device, seq, t, lat, lon, acc, batt, src)  # type: ignore[arg-type]


def _fast_event(s: _In, device: str) -> EventRecord | None:
    event, batt = s.event, s.batt
    seq_t = _fast_seq_t(s)
    if seq_t is None:
        return None
    seq, t = seq_t
    if event is None or event not in EVENT_NAMES:
        return None
    if batt is None:
        if event == "battery":
            return None
    elif not 0 <= batt <= 100:
        return None
    if s.tag is not None and s.tag != device:
        return None
    return _new_event(device, seq, t, event, batt)  # type: ignore[arg-type]


# -- slow path: generic JSON, one precise reason per rejected record -----------------------


class _Bad(Exception):
    """A record is rejected; `reason` is the dead letter's reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _NonFinite:
    """A NaN/Infinity literal or an overflowing number, which strict JSON does not allow."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


_MISSING: Any = object()
_FAILED: Any = object()


def _show(v: Any) -> str:
    """A short JSON-ish rendering of a value for reasons."""
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, _NonFinite):
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


def _topic(topic: str) -> str:
    return repr(topic) if len(topic) <= 120 else repr(topic[:120]) + "…"


def _kind(v: Any) -> str:
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


def _get(obj: dict[str, Any], key: str, where: str) -> Any:
    v = obj.get(key, _MISSING)
    if v is _MISSING:
        raise _Bad(f"{where}: missing field '{key}'")
    return v


def _int(v: Any, where: str, lo: int, hi: int, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise _Bad(f"{where} must be {what}, got {_show(v)}")
    if not lo <= v <= hi:
        raise _Bad(f"{where}: {_show(v)} is outside [{lo}, {hi}]")
    return v


def _seq(obj: dict[str, Any], where: str) -> int:
    # Floats are rejected even when integral (3.0): a tag that sends them has a broken encoder.
    v = _get(obj, "seq", where)
    if isinstance(v, _NonFinite) and v.text.endswith("-digit integer"):
        raise _Bad(f"{where}.seq: {v.text} exceeds 2^63-1")
    if isinstance(v, bool) or not isinstance(v, int):
        raise _Bad(f"{where}.seq must be an integer >= 0, got {_show(v)}")
    if v < 0:
        raise _Bad(f"{where}.seq must be >= 0, got {_show(v)}")
    if v > SEQ_MAX:
        raise _Bad(f"{where}.seq: {_show(v)} exceeds 2^63-1")
    return v


def _number(v: Any, where: str) -> int | float:
    if isinstance(v, _NonFinite):
        raise _Bad(f"{where} must be a finite number, got {v.text}")
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise _Bad(f"{where} must be a number, got {_show(v)}")
    if isinstance(v, float) and not math.isfinite(v):
        raise _Bad(f"{where} must be a finite number, got {_show(v)}")
    return v


def _ranged(v: Any, where: str, lo: float, hi: float) -> float:
    x = _number(v, where)
    if not lo <= x <= hi:
        raise _Bad(f"{where}: {_show(v)} is outside [{lo:g}, {hi:g}]")
    return float(x)


def _acc(v: Any, where: str) -> float:
    x = _number(v, where)
    if not x > 0:
        raise _Bad(f"{where} must be > 0, got {_show(v)}")
    if x > ACC_MAX_M:
        raise _Bad(f"{where}: {_show(v)} exceeds the {ACC_MAX_M:g} m limit")
    return float(x)


def _batt(obj: dict[str, Any], where: str) -> int | None:
    v = obj.get("batt")
    if v is None:  # absent or null
        return None
    return _int(v, f"{where}.batt", 0, 100, "an integer 0-100")


def _time_range(x: float | int, where: str, shown: str) -> float:
    if not T_MIN <= x < T_MAX:
        raise _Bad(f"{where}: {shown} is outside [2000-01-01, 2100-01-01)")
    return float(x)


def _time(v: Any, where: str) -> float:
    if isinstance(v, str):
        return _parse_rfc3339(v, where)
    if isinstance(v, _NonFinite) or (
        isinstance(v, int | float) and not isinstance(v, bool) and not math.isfinite(v)
    ):
        raise _Bad(f"{where} must be a finite number, got {_show(v)}")
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise _Bad(f"{where} must be a number (Unix seconds) or an RFC 3339 string, got {_show(v)}")
    return _time_range(v, where, _show(v))


_RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?([Zz]|[+-]\d\d:\d\d)?",
    re.ASCII,
)
_EPOCH_ORDINAL = _dt.date(1970, 1, 1).toordinal()


def _parse_rfc3339(s: str, where: str) -> float:
    """RFC 3339 date-time → Unix seconds, the float nearest the exact (fractional) value."""
    m = _RFC3339.fullmatch(s)
    if m is None:
        raise _Bad(f"{where}: {_show(s)} is not an RFC 3339 date-time (e.g. 2026-03-29T01:30:00Z)")
    y, mo, d, hh, mi, ss, frac, off = m.groups()
    if off is None:
        raise _Bad(f"{where}: {_show(s)} needs a UTC offset ('Z' or e.g. '+01:00')")
    try:
        days = _dt.date(int(y), int(mo), int(d)).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        raise _Bad(f"{where}: {_show(s)} is not a valid date") from None
    h, mn, sec = int(hh), int(mi), int(ss)
    if h > 23 or mn > 59 or sec > 60:  # 60: a leap second, counted as POSIX time does
        raise _Bad(f"{where}: {_show(s)} is not a valid time of day")
    offset = 0
    if off not in "Zz":
        oh, om = int(off[1:3]), int(off[4:6])
        if oh > 23 or om > 59:
            raise _Bad(f"{where}: {_show(s)} has an invalid UTC offset")
        offset = (oh * 3600 + om * 60) * (1 if off[0] == "+" else -1)
    secs = days * 86400 + h * 3600 + mn * 60 + sec - offset
    _time_range(secs, where, _show(s))
    t = float(Decimal(f"{secs}.{frac}")) if frac else float(secs)
    return _time_range(t, where, _show(s))


def _check_tag(obj: dict[str, Any], device: str, where: str) -> None:
    v = obj.get("tag")
    if v is not None and v != device:
        raise _Bad(f"{where}.tag {_show(v)} does not match the topic's tag {_show(device)}")


def _src(obj: dict[str, Any], where: str) -> str | None:
    v = obj.get("src")
    if v is None:
        return None
    if v not in SOURCES:
        raise _Bad(f"{where}.src: unknown source {_show(v)} (expected gps, wifi or cell)")
    return v  # type: ignore[no-any-return]


def _no_nonfinite(v: Any, where: str) -> None:
    """Reject NaN/Infinity literals anywhere in an otherwise accepted (lenient) object."""
    if isinstance(v, _NonFinite):
        raise _Bad(f"{where}: {v.text} is not valid JSON (numbers must be finite)")
    if isinstance(v, dict):
        for k, x in v.items():
            _no_nonfinite(x, f"{where}.{k}")
    elif isinstance(v, list):
        for i, x in enumerate(v):
            _no_nonfinite(x, f"{where}[{i}]")


def _fix(obj: Any, device: str, where: str) -> FixRecord:
    if not isinstance(obj, dict):
        raise _Bad(f"{where} must be a JSON object, got {_kind(obj)}")
    _check_tag(obj, device, where)
    seq = _seq(obj, where)
    t = _time(_get(obj, "t", where), f"{where}.t")
    lat = _ranged(_get(obj, "lat", where), f"{where}.lat", -90.0, 90.0)
    lon = _ranged(_get(obj, "lon", where), f"{where}.lon", -180.0, 180.0)
    acc = _acc(_get(obj, "acc", where), f"{where}.acc")
    batt = _batt(obj, where)
    src = _src(obj, where)
    _no_nonfinite(obj, where)
    return FixRecord(device, seq, t, lat, lon, acc, batt, src)  # type: ignore[arg-type]


def _event(obj: Any, device: str, where: str) -> EventRecord:
    if not isinstance(obj, dict):
        raise _Bad(f"{where} must be a JSON object, got {_kind(obj)}")
    _check_tag(obj, device, where)
    seq = _seq(obj, where)
    t = _time(_get(obj, "t", where), f"{where}.t")
    name = _get(obj, "event", where)
    if not isinstance(name, str):
        raise _Bad(f"{where}.event must be a string, got {_show(name)}")
    if name not in EVENT_NAMES:
        raise _Bad(f"{where}: unknown event {_show(name)}")
    batt = _batt(obj, where)
    if name == "battery" and batt is None:
        raise _Bad(f"{where}: event 'battery' requires batt")
    _no_nonfinite(obj, where)
    return EventRecord(device, seq, t, name, batt)


def _lenient_json(payload: bytes) -> Any:
    """Stdlib parse used only after msgspec failed, to name NaN/Infinity/overflow precisely."""
    try:
        text = payload.decode("utf-8")
        return json.loads(
            text, parse_constant=_NonFinite, parse_float=_parse_float, parse_int=_parse_int
        )
    except (ValueError, RecursionError):
        return _FAILED


def _parse_float(s: str) -> float | _NonFinite:
    x = float(s)
    return x if math.isfinite(x) else _NonFinite(s)


def _parse_int(s: str) -> int | _NonFinite:
    # Python refuses int() of > 4300 digits; such a number is no coordinate, time or seq.
    return int(s) if len(s) <= 1000 else _NonFinite(f"a {len(s.lstrip('-'))}-digit integer")


def _json_error(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"invalid UTF-8 at byte {exc.start}"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    msg = str(exc)
    return msg.removeprefix("JSON is malformed: ")


T = TypeVar("T")


def _slow(payload: bytes, validate: Callable[[Any], T]) -> T:
    """Generic-decode `payload` and validate it; raise _Bad with the most precise reason."""
    if not payload.strip():
        raise _Bad("not valid JSON: empty payload")
    try:
        obj = _DEC_ANY.decode(payload)
    except Exception as exc:  # msgspec raises DecodeError, UnicodeDecodeError, RecursionError
        why = _json_error(exc)
        lenient = _lenient_json(payload)
        if lenient is _FAILED:
            raise _Bad(f"not valid JSON: {why}") from None
        return validate(lenient)
    return validate(obj)


# -- public API ---------------------------------------------------------------------------

Result = tuple[list[Record], list[DeadLetter]]


# A lone UTF-16 surrogate ("\ud800" is valid JSON) is no Unicode text: as an id it could
# never be encoded again (dead letters, the store, alert topics) and crashed the pipeline.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _id_problem(tag: str, limits: Limits) -> str | None:
    """What is wrong with a tag/device id (after `tag id {tag!r}`), or None."""
    if len(tag) > limits.max_id_len:
        return f"is {len(tag)} characters long, over the {limits.max_id_len}-character limit"
    if "+" in tag:
        return "contains '+'"
    if "#" in tag:
        return "contains '#'"
    if _SURROGATE.search(tag):
        return "contains a lone UTF-16 surrogate (not Unicode text)"
    return None


def _as_bytes(payload: Any) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, bytearray | memoryview):
        return bytes(payload)
    if payload is None:
        return b""
    return str(payload).encode("utf-8", "surrogatepass")


def decode_message(topic: str, payload: bytes, limits: Limits = _DEFAULT_LIMITS) -> Result:
    """Decode one MQTT message into records and dead letters (origin = topic); never raises.

    Topics: ``tagwatch/v1/tags/{tag}/fix|fixes|event`` and ``owntracks/{user}/{device}``.
    Returns ``([], [])`` only for traffic that is deliberately ignored: OwnTracks sub-topics
    (``owntracks/u/d/...``), OwnTracks ``_type``s other than ``location`` (and ``encrypted``,
    which is dead-lettered because it may hide a location), and an empty ``/fixes`` array.

    Field rules beyond the contract: ``seq`` must be a JSON integer (``3.0`` is rejected, as
    are booleans everywhere a number is due); ``null`` for ``batt``/``src``/``tag`` means
    absent; NaN/Infinity literals and numbers overflowing a double are rejected wherever they
    appear; an OwnTracks fix has ``seq = t = tst`` (integer seconds) and no ``src``.
    """
    try:
        return _decode_message(topic, payload, limits)
    except Exception as exc:  # a bug, not bad input; still never raise into the engine
        reason = f"internal decode error: {type(exc).__name__}: {exc}"
        return [], [DeadLetter(str(topic), _as_bytes(payload), reason)]


def _parse_topic(topic: str) -> tuple[str, str] | str:
    """(kind, device id) for an input topic, kind one of fix/fixes/event/owntracks/ignore;
    or the dead-letter reason. Length limits are checked by the caller (they vary)."""
    if topic.startswith(_TAG_PREFIX):
        parts = topic[len(_TAG_PREFIX) :].split("/")
        if len(parts) != 2 or parts[1] not in _TAG_KINDS:
            return f"unknown topic {_topic(topic)}"
        tag, kind = parts
        if not tag:
            return f"topic {_topic(topic)} has an empty tag id"
        for c in "+#":
            if c in tag:
                return f"topic {_topic(topic)}: tag id {_show(tag)} contains {c!r}"
        if _SURROGATE.search(tag):
            return f"topic {_topic(topic)}: tag id {_show(tag)} contains a lone surrogate"
        return kind, tag
    if topic.startswith("owntracks/"):
        parts = topic.split("/")
        if len(parts) > 3:  # owntracks/u/d/event, /cmd, /info, /waypoints, /dump, ...
            return "ignore", ""
        if len(parts) < 3:
            return f"unknown topic {_topic(topic)}"
        _, user, dev = parts
        if not user or not dev:
            return f"topic {_topic(topic)} has an empty user or device"
        device = f"{user}/{dev}"
        for c in "+#":
            if c in device:
                return f"topic {_topic(topic)}: device id {_show(device)} contains {c!r}"
        if _SURROGATE.search(device):
            return f"topic {_topic(topic)}: device id {_show(device)} contains a lone surrogate"
        return "owntracks", device
    return f"unknown topic {_topic(topic)}"


_TOPICS: dict[str, tuple[str, str]] = {}  # cache of good topics; cleared when it grows large
_TOPICS_MAX = 65_536


def _decode_message(topic: str, payload: bytes, limits: Limits) -> Result:
    if payload.__class__ is not bytes:
        payload = _as_bytes(payload)
    hit = _TOPICS.get(topic)
    if hit is None:
        parsed = _parse_topic(topic)
        if isinstance(parsed, str):
            return _dead(topic, payload, parsed)
        if len(_TOPICS) >= _TOPICS_MAX:
            _TOPICS.clear()
        _TOPICS[topic] = hit = parsed
    kind, device = hit
    if kind == "ignore":
        return [], []
    if len(device) > limits.max_id_len:
        what = "device" if kind == "owntracks" else "tag"
        reason = f"{len(device)} characters long, over the {limits.max_id_len}-character limit"
        return _dead(
            topic, payload, f"topic {_topic(topic)}: {what} id {_show(device)} is {reason}"
        )
    if len(payload) > limits.max_payload_bytes:
        return _dead(topic, payload, _too_big("payload", payload, limits))
    if kind == "fix":
        try:
            rec: Record | None = _fast_fix(_DEC_ONE.decode(payload), device)
        except Exception:
            rec = None
        if rec is not None:
            return [rec], []
        return _one_slow(topic, payload, device, _fix, "fix")
    if kind == "event":
        try:
            rec = _fast_event(_DEC_ONE.decode(payload), device)
        except Exception:
            rec = None
        if rec is not None:
            return [rec], []
        return _one_slow(topic, payload, device, _event, "event")
    if kind == "fixes":
        return _fixes(topic, payload, device, limits)
    return _owntracks(topic, payload, device)


def _dead(origin: str, payload: bytes, reason: str) -> Result:
    return [], [DeadLetter(origin, payload, reason)]


def _too_big(what: str, payload: bytes, limits: Limits) -> str:
    return f"{what} of {len(payload)} bytes exceeds the {limits.max_payload_bytes}-byte limit"


def _one_slow(
    origin: str, payload: bytes, device: str, slow: Callable[[Any, str, str], Record], where: str
) -> Result:
    try:
        return [_slow(payload, lambda obj: slow(obj, device, where))], []
    except _Bad as bad:
        return _dead(origin, payload, bad.reason)


def _fixes(topic: str, payload: bytes, tag: str, limits: Limits) -> Result:
    try:
        items = _DEC_MANY.decode(payload)
    except Exception:
        items = None
    if items is not None:
        if len(items) > limits.max_batch:
            return _dead(topic, payload, _batch_too_long(len(items), limits))
        recs: list[Record] = []
        for s in items:
            rec = _fast_fix(s, tag)
            if rec is None:
                break
            recs.append(rec)
        else:
            return recs, []

    def validate(obj: Any) -> Result:
        if not isinstance(obj, list):
            raise _Bad(f"fixes payload must be a JSON array, got {_kind(obj)}")
        if len(obj) > limits.max_batch:
            raise _Bad(_batch_too_long(len(obj), limits))
        good: list[Record] = []
        dead: list[DeadLetter] = []
        for i, el in enumerate(obj):
            try:
                good.append(_fix(el, tag, "fix"))
            except _Bad as bad:
                dead.append(
                    DeadLetter(topic, _element_json(el, payload), f"fixes[{i}]: {bad.reason}")
                )
        return good, dead

    try:
        return _slow(payload, validate)
    except _Bad as bad:
        return _dead(topic, payload, bad.reason)


def _batch_too_long(n: int, limits: Limits) -> str:
    return f"batch of {n} fixes exceeds the {limits.max_batch}-fix limit"


def _element_json(el: Any, payload: bytes) -> bytes:
    """The batch element's own JSON for its dead letter, or the whole payload if not encodable."""
    try:
        return msgspec.json.encode(el)
    except Exception:
        return payload


def _owntracks(topic: str, payload: bytes, device: str) -> Result:
    try:
        s = None if _fast_unsafe(payload) else _DEC_OT.decode(payload)
    except Exception:
        s = None
    if s is not None:
        if s.type_ is not None and s.type_ not in ("location", "encrypted"):
            return [], []
        if s.type_ == "location":
            tst, lat, lon, acc, batt = s.tst, s.lat, s.lon, s.acc, s.batt
            if acc is None:
                acc = OWNTRACKS_DEFAULT_ACC_M
            if (
                tst is not None
                and T_MIN <= tst < T_MAX
                and lat is not None
                and -90.0 <= lat <= 90.0
                and lon is not None
                and -180.0 <= lon <= 180.0
                and 0.0 < acc <= ACC_MAX_M
                and (batt is None or 0 <= batt <= 100)
            ):
                return [_new_fix(device, tst, float(tst), lat, lon, acc, batt, None)], []
    try:
        rec = _slow(payload, lambda obj: _owntracks_slow(obj, device))
    except _Bad as bad:
        return _dead(topic, payload, bad.reason)
    return ([rec], []) if rec is not None else ([], [])


def _owntracks_slow(obj: Any, device: str) -> FixRecord | None:
    where = "owntracks"
    if not isinstance(obj, dict):
        raise _Bad(f"owntracks payload must be a JSON object, got {_kind(obj)}")
    ty = _get(obj, "_type", where)
    if not isinstance(ty, str):
        raise _Bad(f"{where}._type must be a string, got {_show(ty)}")
    if ty == "encrypted":
        raise _Bad("owntracks: encrypted payloads are not supported (turn off encryption)")
    if ty != "location":
        return None
    tst = _get(obj, "tst", where)
    if isinstance(tst, bool) or not isinstance(tst, int):
        raise _Bad(f"{where}.tst must be an integer (Unix seconds), got {_show(tst)}")
    t = _time_range(tst, f"{where}.tst", _show(tst))
    lat = _ranged(_get(obj, "lat", where), f"{where}.lat", -90.0, 90.0)
    lon = _ranged(_get(obj, "lon", where), f"{where}.lon", -180.0, 180.0)
    acc_v = obj.get("acc")
    acc = OWNTRACKS_DEFAULT_ACC_M if acc_v is None else _acc(acc_v, f"{where}.acc")
    batt = _batt(obj, where)
    _no_nonfinite(obj, where)
    return FixRecord(device, tst, t, lat, lon, acc, batt, None)


def decode_replay_line(line: bytes, origin: str, limits: Limits = _DEFAULT_LIMITS) -> Result:
    """Decode one replay JSON Lines line (origin e.g. ``file.jsonl:12``); never raises.

    A line is a fix object plus ``"tag"`` (optionally ``"type": "fix"``) or an event object
    plus ``"tag"`` and ``"type": "event"``. Blank lines give ``([], [])``.
    """
    try:
        return _decode_replay_line(line, origin, limits)
    except Exception as exc:  # a bug, not bad input; still never raise into the engine
        reason = f"internal decode error: {type(exc).__name__}: {exc}"
        return [], [DeadLetter(str(origin), _as_bytes(line), reason)]


def _decode_replay_line(line: bytes, origin: str, limits: Limits) -> Result:
    if line.__class__ is not bytes:
        line = _as_bytes(line)
    line = line.rstrip(b"\r\n")
    if line.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte order mark from some editors
        line = line[3:]
    if not line.strip():
        return [], []
    if len(line) > limits.max_payload_bytes:
        return _dead(origin, line, _too_big("line", line, limits))
    try:
        s = _DEC_ONE.decode(line)
    except Exception:
        s = None
    if s is not None:
        tag = s.tag
        if (
            tag
            and len(tag) <= limits.max_id_len
            and "+" not in tag
            and "#" not in tag
            and (tag.isascii() or not _SURROGATE.search(tag))
        ):
            rec: Record | None = None
            if s.type is None or s.type == "fix":
                rec = _fast_fix(s, tag)
            elif s.type == "event":
                rec = _fast_event(s, tag)
            if rec is not None:
                return [rec], []
    try:
        return [_slow(line, lambda obj: _replay_slow(obj, limits))], []
    except _Bad as bad:
        return _dead(origin, line, bad.reason)


def _replay_slow(obj: Any, limits: Limits) -> Record:
    if not isinstance(obj, dict):
        raise _Bad(f"replay line must be a JSON object, got {_kind(obj)}")
    tag = _get(obj, "tag", "line")
    if not isinstance(tag, str):
        raise _Bad(f"line.tag must be a string, got {_show(tag)}")
    if not tag:
        raise _Bad("line.tag is empty")
    problem = _id_problem(tag, limits)
    if problem is not None:
        raise _Bad(f"line.tag {_show(tag)} {problem}")
    kind = obj.get("type")
    if kind is None or kind == "fix":
        try:
            return _fix(obj, tag, "fix")
        except _Bad as bad:
            if kind is None and "event" in obj and "lat" not in obj:
                raise _Bad(f'{bad.reason} (event lines need "type": "event")') from None
            raise
    if kind == "event":
        return _event(obj, tag, "event")
    raise _Bad(f"line: unknown type {_show(kind)} (expected 'fix' or 'event')")
