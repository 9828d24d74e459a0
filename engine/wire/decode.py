"""Decode MQTT payloads and replay lines into fix/event records or dead letters, never raising.

The two entry points, `decode_message` and `decode_replay_line`, and the routing of a
message by its topic. The parts live beside it: `topics.parse_input` (which topic is what),
`fastpath.py` (typed msgspec decoding of wholly valid payloads, the hot path),
`validate.py` (the slow path: field checks and their dead-letter reasons), `rfc3339.py`
(string times), `replayline.py` (replay lines), `bounds.py` (field bounds and `Limits`)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, cast

import msgspec

from engine.wire.bounds import (
    ACC_MAX_M,
    DEFAULT_LIMITS,
    OWNTRACKS_DEFAULT_ACC_M,
    T_MAX,
    T_MIN,
    Limits,
)
from engine.wire.columnar import SKIP, TagLookup, scan
from engine.wire.fastpath import (
    DEC_FIX_LINES,
    DEC_FIX_LINES_MSGPACK,
    DEC_MANY,
    DEC_ONE,
    DEC_OT,
    FixColumns,
    FixLines,
    TagTable,
    _FixLine,
    _In,
    fast_event,
    fast_fix,
    fast_unsafe,
    new_fix,
    plain_tag,
)
from engine.wire.reasons import (
    NonFinite,
    Rejected,
    Result,
    as_bytes,
    dead,
    kind,
    show,
    show_topic,
    too_big,
)
from engine.wire.records import DeadLetter, Record
from engine.wire.replayline import fast_line, read_replay_line, validate_line
from engine.wire.topics import parse_input
from engine.wire.validate import slow_decode, validate_event, validate_fix, validate_owntracks

__all__ = [
    "GatewayBook",
    "GatewayTags",
    "Limits",
    "Result",
    "decode_into",
    "decode_message",
    "decode_replay_line",
    "event_name",
]


Gateways = Mapping[str, Collection[str]]  # gateway id -> the tags it may speak for


class GatewayTags(frozenset[str]):
    """The tags a gateway may speak for, and which of them pass the id checks (`plain_tag`)
    kept once per id length limit: a batch of plain fixes then checks its tags in one set
    comparison. Checked tag by tag, it cost a tenth of a shard's time on a gateway backlog."""

    __slots__ = ("_plain",)

    def plain(self, max_id_len: int) -> frozenset[str]:
        """These tags that pass `plain_tag` under `max_id_len`."""
        got = getattr(self, "_plain", None)
        if got is None or got[0] != max_id_len:
            got = (max_id_len, frozenset(t for t in self if plain_tag(t, max_id_len)))
            self._plain = got
        return got[1]


class GatewayBook(dict[str, GatewayTags]):
    """The gateways by id, and what their msgpack batches are decoded against
    (engine/wire/columnar.py): one `TagTable` of the tags any of them may speak for, and
    per gateway a `TagLookup` of its own that pass the id checks, each made when first
    needed (per id length limit). A shard's book leaves out the other shards' tags
    (`elsewhere`): their elements are checked and skipped, not decoded."""

    def __init__(
        self, gateways: Mapping[str, Collection[str]], elsewhere: Collection[str] = ()
    ) -> None:
        super().__init__((g, GatewayTags(tags)) for g, tags in gateways.items())
        self.elsewhere = frozenset(elsewhere)  # a shard's: the others' tags, left out (SKIP)
        self.table = TagTable()
        self._codes: dict[str, int] = {}
        self._lookups: dict[tuple[str, int], TagLookup] = {}

    def lookup(self, gw: str, max_id_len: int) -> TagLookup:
        got = self._lookups.get((gw, max_id_len))
        if got is None:
            tags = sorted(self[gw].plain(max_id_len))
            for t in tags:
                if t not in self._codes and t not in self.elsewhere:
                    self._codes[t] = len(self.table.names)
                    self.table.names.append(t)
            codes = [SKIP if t in self.elsewhere else self._codes[t] for t in tags]
            got = self._lookups[gw, max_id_len] = TagLookup(tags, codes)
        return got


def decode_message(
    topic: str, payload: bytes, limits: Limits = DEFAULT_LIMITS, gateways: Gateways | None = None
) -> Result:
    """Decode one MQTT message into records and dead letters (origin = topic); never raises.

    Topics: ``tagwatch/v1/tags/{tag}/fix|fixes|event``, ``owntracks/{user}/{device}`` and
    ``tagwatch/v1/gateway/{gw}/fixes`` (a gateway not in `gateways`, or an element for a
    tag the gateway is not assigned, is dead-lettered).
    Returns ``([], [])`` only for traffic that is deliberately ignored: OwnTracks sub-topics
    (``owntracks/u/d/...``), OwnTracks ``_type``s other than ``location`` (and ``encrypted``,
    which is dead-lettered because it may hide a location), and an empty ``/fixes`` array.

    Field rules beyond the contract: ``seq`` must be a JSON integer (``3.0`` is rejected, as
    are booleans everywhere a number is due); ``null`` for ``batt``/``src``/``tag`` means
    absent; NaN/Infinity literals and numbers overflowing a double are rejected wherever they
    appear; an OwnTracks fix has ``seq = t = tst`` (integer seconds) and no ``src``.
    """
    recs, dead_ = _guarded(topic, payload, limits, gateways)
    return (
        list(recs) if isinstance(recs, FixLines | FixColumns) else cast("list[Record]", recs)
    ), dead_


def decode_into(
    batch: FixLines,
    topic: str,
    payload: bytes,
    limits: Limits = DEFAULT_LIMITS,
    gateways: Gateways | None = None,
) -> list[DeadLetter]:
    """`decode_message`, adding the records to `batch` and returning the dead letters: a
    gateway batch of plain fixes stays as decoded, without a record object per fix (the
    live engine's batches; the pipeline takes their columns)."""
    recs, dead_ = _guarded(topic, payload, limits, gateways)
    batch.extend(recs)
    return dead_


def _guarded(
    topic: str, payload: bytes, limits: Limits, gateways: Gateways | None
) -> tuple[Sequence[Record], list[DeadLetter]]:
    try:
        return _decode_message(topic, payload, limits, gateways)
    except Exception as exc:  # a bug, not bad input; still never raise into the engine
        reason = f"internal decode error: {type(exc).__name__}: {exc}"
        return [], [DeadLetter(str(topic), as_bytes(payload), reason)]


def event_name(payload: bytes) -> str | None:
    """A peek: the `event` field of an event payload, or None (not one, or not valid JSON).
    What the priority lane takes is chosen by it; decoding proper comes later."""
    try:
        name = DEC_ONE.decode(payload).event
    except Exception:
        return None
    return name if isinstance(name, str) else None


def decode_replay_line(line: bytes, origin: str, limits: Limits = DEFAULT_LIMITS) -> Result:
    """Decode one replay JSON Lines line (origin e.g. ``file.jsonl:12``); never raises.

    A line is a fix object plus ``"tag"`` (optionally ``"type": "fix"``) or an event object
    plus ``"tag"`` and ``"type": "event"``. Blank lines give ``([], [])``.
    """
    try:
        return read_replay_line(line, origin, limits)
    except Exception as exc:  # a bug, not bad input; still never raise into the engine
        reason = f"internal decode error: {type(exc).__name__}: {exc}"
        return [], [DeadLetter(str(origin), as_bytes(line), reason)]


_TOPICS: dict[str, tuple[str, str]] = {}  # cache of good topics; cleared when it grows large
_TOPICS_MAX = 65_536


def _decode_message(
    topic: str, payload: bytes, limits: Limits, gateways: Gateways | None
) -> tuple[Sequence[Record], list[DeadLetter]]:
    if payload.__class__ is not bytes:
        payload = as_bytes(payload)
    hit = _TOPICS.get(topic)
    if hit is None:
        parsed = parse_input(topic)
        if isinstance(parsed, str):
            return dead(topic, payload, parsed)
        if len(_TOPICS) >= _TOPICS_MAX:
            _TOPICS.clear()
        _TOPICS[topic] = hit = parsed
    kind_, device = hit
    if kind_ == "ignore":
        return [], []
    if len(device) > limits.max_id_len:
        what = {"owntracks": "device", "gateway": "gateway"}.get(kind_, "tag")
        reason = f"{len(device)} characters long, over the {limits.max_id_len}-character limit"
        return dead(
            topic, payload, f"topic {show_topic(topic)}: {what} id {show(device)} is {reason}"
        )
    if len(payload) > limits.max_payload_bytes:
        return dead(topic, payload, too_big("payload", payload, limits.max_payload_bytes))
    if kind_ == "fix":
        try:
            rec: Record | None = fast_fix(DEC_ONE.decode(payload), device)
        except Exception:
            rec = None
        if rec is not None:
            return [rec], []
        return _one_slow(topic, payload, device, validate_fix, "fix")
    if kind_ == "event":
        try:
            rec = fast_event(DEC_ONE.decode(payload), device)
        except Exception:
            rec = None
        if rec is not None:
            return [rec], []
        return _one_slow(topic, payload, device, validate_event, "event")
    if kind_ == "fixes":
        return _fixes(topic, payload, device, limits)
    if kind_ == "gateway":
        return _gateway(topic, payload, device, limits, gateways)
    return _owntracks(topic, payload, device)


def _one_slow(
    origin: str, payload: bytes, device: str, slow: Callable[[Any, str, str], Record], where: str
) -> Result:
    try:
        return [slow_decode(payload, lambda obj: slow(obj, device, where))], []
    except Rejected as bad:
        return dead(origin, payload, bad.reason)


def _fixes(topic: str, payload: bytes, tag: str, limits: Limits) -> Result:
    try:
        items = DEC_MANY.decode(payload)
    except Exception:
        items = None
    if items is not None:
        if len(items) > limits.max_batch:
            return dead(topic, payload, _batch_too_long(len(items), limits))
        recs = _all_fast(items, lambda s: fast_fix(s, tag))
        if recs is not None:
            return recs, []

    def validate(obj: Any) -> Result:
        if not isinstance(obj, list):
            raise Rejected(f"fixes payload must be a JSON array, got {kind(obj)}")
        if len(obj) > limits.max_batch:
            raise Rejected(_batch_too_long(len(obj), limits))
        good: list[Record] = []
        dead_: list[DeadLetter] = []
        for i, el in enumerate(obj):
            try:
                good.append(validate_fix(el, tag, "fix"))
            except Rejected as bad:
                reason = f"fixes[{i}]: {bad.reason}"
                dead_.append(DeadLetter(topic, _element_json(el), reason, device=tag))
        return good, dead_

    try:
        return slow_decode(payload, validate)
    except Rejected as bad:
        return dead(topic, payload, bad.reason)


_MSGPACK_ARRAY = frozenset([*range(0x90, 0xA0), 0xDC, 0xDD])  # fixarray, array 16, array 32
GW_MSGPACK = msgspec.msgpack.Decoder(list[_In])  # the JSON form decodes with DEC_MANY


def _gateway(
    topic: str, payload: bytes, gw: str, limits: Limits, gateways: Gateways | None
) -> tuple[Sequence[Record], list[DeadLetter]]:
    """A gateway's batch: a JSON array, or a msgpack array, of replay-line objects (a fix
    or an event, each with its tag). Bounded by the payload limit, not an element count
    (msgpack is the compact form: ~4,000 fixes fit the 256 KiB a JSON batch holds 2,500 of).
    Elements for tags the gateway is not assigned are dead letters; the rest go on."""
    allowed = None if gateways is None else gateways.get(gw)
    if allowed is None:
        reason = f"gateway {show(gw)} is not in the subjects file's [[gateways]]"
        return dead(topic, payload, reason)
    if payload[:1] and payload[0] in _MSGPACK_ARRAY:
        dec: Any = GW_MSGPACK
        if isinstance(gateways, GatewayBook):  # the usual batch: straight into columns
            cols = scan(payload, gateways.lookup(gw, limits.max_id_len), gateways.table)
            if cols is not None:
                return cols, []
    elif payload.lstrip()[:1] == b"[":
        dec = DEC_MANY
    else:
        why = "gateway payload must be a JSON array or a msgpack array of fixes and events"
        return dead(topic, payload, f"{why}, each with its tag; got {show(payload[:16])}")
    # A batch of plain fixes (the usual one) is kept as decoded, like a replay's lines: its
    # typed decoder forbids unknown fields and rejects bad UTF-8 and numbers out of range
    # itself, so `fast_unsafe` (a scan costing ~10 times the decode) is not needed there
    try:
        lines = (DEC_FIX_LINES if dec is DEC_MANY else DEC_FIX_LINES_MSGPACK).decode(payload)
    except Exception:
        lines = None
    if lines is not None and _plain_tags(lines, limits, allowed):
        return FixLines.of_lines(lines), []
    try:
        items = None if dec is DEC_MANY and fast_unsafe(payload) else dec.decode(payload)
    except Exception:
        items = None
    if items is not None:
        recs = _all_fast(items, lambda s: _allowed(fast_line(s, limits), allowed))
        if recs is not None:
            return recs, []

    def validate(obj: Any) -> Result:
        if not isinstance(obj, list):
            raise Rejected(f"gateway payload must be an array, got {kind(obj)}")
        good: list[Record] = []
        dead_: list[DeadLetter] = []
        for i, el in enumerate(obj):
            where = f"gateway[{i}]"
            try:
                rec = validate_line(el, limits, where)
                if rec.device not in allowed:
                    raise Rejected(
                        f"{where}: gateway {show(gw)} may not speak for tag {show(rec.device)}"
                    )
                good.append(rec)
            except Rejected as bad:  # budgeted as the gateway's (it sent it)
                why = bad.reason if bad.reason.startswith(where) else f"{where}: {bad.reason}"
                dead_.append(DeadLetter(topic, _element_json(el), why, device=gw))
        return good, dead_

    try:
        if dec is GW_MSGPACK:
            try:
                obj = msgspec.msgpack.decode(payload)
            except Exception as exc:
                raise Rejected(f"not valid msgpack: {exc}") from None
            return validate(obj)
        return slow_decode(payload, validate)
    except Rejected as bad:
        return dead(topic, payload, bad.reason)


def _all_fast(items: list[_In], fast: Callable[[_In], Record | None]) -> list[Record] | None:
    """Every element through the fast path, or None as soon as one needs the slow one."""
    recs: list[Record] = []
    for s in items:
        rec = fast(s)
        if rec is None:
            return None
        recs.append(rec)
    return recs


def _plain_tags(lines: list[_FixLine], limits: Limits, allowed: Collection[str]) -> bool:
    """Whether every line's tag passes the id checks and is one the gateway may speak for."""
    tags = {s.tag for s in lines}
    if isinstance(allowed, GatewayTags):
        return tags <= allowed.plain(limits.max_id_len)
    return all(plain_tag(t, limits.max_id_len) and t in allowed for t in tags)


def _allowed(rec: Record | None, tags: Collection[str]) -> Record | None:
    return rec if rec is not None and rec.device in tags else None


def _batch_too_long(n: int, limits: Limits) -> str:
    return f"batch of {n} fixes exceeds the {limits.max_batch}-fix limit"


def _element_json(el: Any) -> bytes:
    """The batch element's own JSON for its dead letter (never the whole payload: a batch of
    2,000 bad elements stored it 2,000 times). Non-finite numbers are written as they came."""
    try:
        return msgspec.json.encode(el, enc_hook=_raw_nonfinite)
    except Exception:
        return show(el).encode("utf-8", "backslashreplace")


def _raw_nonfinite(v: Any) -> Any:
    if isinstance(v, NonFinite):
        return msgspec.Raw(v.text.encode("utf-8", "backslashreplace"))
    raise TypeError(f"cannot encode {type(v).__name__}")


def _owntracks(topic: str, payload: bytes, device: str) -> Result:
    try:
        s = None if fast_unsafe(payload) else DEC_OT.decode(payload)
    except Exception:
        s = None
    if s is not None:  # the fast path: a typed location that is wholly valid
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
                return [new_fix(device, tst, float(tst), lat, lon, acc, batt, None)], []
    try:
        rec = slow_decode(payload, lambda obj: validate_owntracks(obj, device))
    except Rejected as bad:
        return dead(topic, payload, bad.reason)
    return ([rec], []) if rec is not None else ([], [])
