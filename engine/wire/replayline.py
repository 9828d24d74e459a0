"""The replay-line reader: one JSON Lines line of a replay file (a fix object plus "tag",
or an event object plus "tag" and "type": "event") into a record or a dead letter.
`engine.wire.decode.decode_replay_line` is the entry point; `payloads.replay_line` writes
what this reads for the simulator, `encode_record` for the engine's evidence ledger."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, cast

import msgspec
import numpy as np

from engine.wire.bounds import Limits
from engine.wire.fastpath import (
    DEC_ONE,
    FixColumns,
    FixLines,
    TagTable,
    _In,
    fast_event,
    fast_fix,
    plain_tag,
)
from engine.wire.fastpath import _FixLine as FixLine
from engine.wire.reasons import SURROGATE, Rejected, Result, as_bytes, dead, kind, show, too_big
from engine.wire.records import FixRecord, Record
from engine.wire.validate import required, slow_decode, validate_event, validate_fix


def _id_problem(tag: str, limits: Limits) -> str | None:
    """What is wrong with a tag/device id (after `tag id {tag!r}`), or None."""
    if len(tag) > limits.max_id_len:
        return f"is {len(tag)} characters long, over the {limits.max_id_len}-character limit"
    if "+" in tag:
        return "contains '+'"
    if "#" in tag:
        return "contains '#'"
    if SURROGATE.search(tag):
        return "contains a lone UTF-16 surrogate (not Unicode text)"
    return None


def read_replay_line(line: bytes, origin: str, limits: Limits) -> Result:
    """`decode_replay_line` without its guard against bugs (it may raise on one)."""
    if line.__class__ is not bytes:
        line = as_bytes(line)
    line = line.rstrip(b"\r\n")
    if line.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte order mark from some editors
        line = line[3:]
    if not line.strip():
        return [], []
    if len(line) > limits.max_payload_bytes:
        return dead(origin, line, too_big("line", line, limits.max_payload_bytes))
    try:
        s = DEC_ONE.decode(line)
    except Exception:
        s = None
    if s is not None:
        rec = fast_line(s, limits)
        if rec is not None:
            return [rec], []
    try:
        return [slow_decode(line, lambda obj: validate_line(obj, limits))], []
    except Rejected as bad:
        return dead(origin, line, bad.reason)


def fast_line(s: _In, limits: Limits) -> Record | None:
    """The record, when `s` (a replay line or a gateway batch's element) is wholly valid."""
    tag = s.tag
    if plain_tag(tag, limits.max_id_len):
        if s.type is None or s.type == "fix":
            return fast_fix(s, tag)
        if s.type == "event":
            return fast_event(s, tag)
    return None


def validate_line(obj: Any, limits: Limits, what: str = "line") -> Record:
    """A replay line's object (or a gateway batch's element, `what` its name in reasons)
    as a record; Rejected with the reason if it is not one."""
    if not isinstance(obj, dict):
        whole = "replay line" if what == "line" else what
        raise Rejected(f"{whole} must be a JSON object, got {kind(obj)}")
    tag = required(obj, "tag", what)
    if not isinstance(tag, str):
        raise Rejected(f"{what}.tag must be a string, got {show(tag)}")
    if not tag:
        raise Rejected(f"{what}.tag is empty")
    problem = _id_problem(tag, limits)
    if problem is not None:
        raise Rejected(f"{what}.tag {show(tag)} {problem}")
    kind_ = obj.get("type")
    if kind_ is None or kind_ == "fix":
        try:
            return validate_fix(obj, tag, "fix")
        except Rejected as bad:
            if kind_ is None and "event" in obj and "lat" not in obj:
                raise Rejected(f'{bad.reason} (event lines need "type": "event")') from None
            raise
    if kind_ == "event":
        return validate_event(obj, tag, "event")
    raise Rejected(f"{what}: unknown type {show(kind_)} (expected 'fix' or 'event')")


class _FixLine(msgspec.Struct, omit_defaults=True):
    tag: str
    seq: int
    t: float
    lat: float
    lon: float
    acc: float
    batt: int | None = None
    src: str | None = None
    boot: int | None = None


class _EventLine(msgspec.Struct, omit_defaults=True):
    tag: str
    type: str
    seq: int
    t: float
    event: str
    batt: int | None = None
    boot: int | None = None


_enc = msgspec.json.Encoder()


def encoded(records: Sequence[Record]) -> Iterator[tuple[bool, str, int, float, bytes]]:
    """(is a fix, device, seq, t, `encode_record` bytes) of each record, in order. A
    `FixLines`' plain line is encoded as it was decoded, without a record object."""
    items: Sequence[Record | FixLine] = records.items if isinstance(records, FixLines) else records
    enc, line = _enc.encode, _FixLine
    for x in items:
        if x.__class__ is FixLine:
            s = cast("FixLine", x)
            body = enc(line(s.tag, s.seq, s.t, s.lat, s.lon, s.acc, s.batt, s.src, s.boot))
            yield True, s.tag, s.seq, s.t, body
        else:
            r = cast("Record", x)
            yield r.__class__ is FixRecord, r.device, r.seq, r.t, encode_record(r)


class DeviceCodes:
    """A column of devices as codes into a `TagTable` (`table`), and its names when the
    column was made (`names`: the table only grows, so they stay right). Iterates as
    the device ids."""

    __slots__ = ("codes", "names", "table")

    def __init__(self, codes: np.ndarray, table: TagTable) -> None:
        self.codes, self.table, self.names = codes, table, table.name_array()

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    def __iter__(self) -> Iterator[str]:
        return iter(self.names[self.codes].tolist())


Column = Sequence[Any] | np.ndarray


def encoded_columns(
    records: Sequence[Record],
) -> tuple[Column, Sequence[str] | DeviceCodes, Column, Column, bytes]:
    """`encoded`'s columns (is a fix, device, seq, t) and its lines joined by newlines (a
    records row's body) at once. `FixColumns`, and a plain `FixLines` whose lines came
    without "type", are encoded in one call (newline-delimited JSON); columns stay numpy
    arrays, and their devices codes (`DeviceCodes`)."""
    if isinstance(records, FixLines):
        records = records.batch()
    if isinstance(records, FixColumns) and len(records):  # lines made without "type"
        body = _enc.encode_lines(records.lines())[:-1]
        coded = DeviceCodes(records.code, records.table)
        return np.ones(len(records), dtype=np.bool_), coded, records.seq, records.t, body
    if isinstance(records, FixLines) and records.plain and records.items:
        items = cast("list[FixLine]", records.items)
        body = _enc.encode_lines(items)[:-1]  # each line ends in a newline
        if b'"type":' not in body:  # (a key: quotes in a tag or src are escaped)
            return (
                [True] * len(items), [s.tag for s in items], [s.seq for s in items],
                [s.t for s in items], body,
            )  # fmt: skip
    if not records:
        return (), (), (), (), b""
    fixes, devices, seqs, ts, lines = zip(*encoded(records), strict=True)
    return fixes, devices, seqs, ts, b"\n".join(lines)


class _Place(msgspec.Struct):
    tag: str
    seq: int
    t: float
    type: str = "fix"


_place = msgspec.json.Decoder(_Place)


def line_place(line: bytes) -> tuple[str, int, float, bool] | None:
    """(device, seq, t, is an event) of a line `encode_record` made (the ledger's own);
    None for anything else (a line changed after writing: `audit verify` names it)."""
    try:
        p = _place.decode(line)
    except msgspec.DecodeError:
        return None
    return p.tag, p.seq, p.t, p.type == "event"


def line_is_event(line: bytes) -> bool:
    """Whether a line `encode_record` made is an event's (only those carry "type")."""
    return b'"type":"event"' in line


def line_prefix(device: str) -> bytes:
    """How every line `encode_record` makes of `device`'s records begins ("tag" first)."""
    return b'{"tag":' + _enc.encode(device) + b","


def encode_record(r: Record) -> bytes:
    """A record as a replay line (contract format): decode_replay_line gives it back."""
    if isinstance(r, FixRecord):
        return _enc.encode(
            _FixLine(r.device, r.seq, r.t, r.lat, r.lon, r.acc, r.batt, r.src, r.boot)
        )
    return _enc.encode(_EventLine(r.device, "event", r.seq, r.t, r.event, r.batt, r.boot))
