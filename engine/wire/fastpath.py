"""The fast path: typed msgspec decoding straight into records, for payloads that are
wholly valid. Anything it does not accept goes to the slow path (`validate.py`), which
has the last word and the precise reason; this is the hot path, so no extra work here."""

from __future__ import annotations

import dataclasses
import re
import types
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Annotated, Any, Literal, TypeGuard, cast, overload

import msgspec
import numpy as np

from engine.wire.bounds import ACC_MAX_M, SEQ_MAX, T_MAX, T_MIN
from engine.wire.reasons import SURROGATE, Rejected
from engine.wire.records import EVENT_NAMES, SOURCES, SRC_CODE, EventRecord, FixRecord, Record
from engine.wire.rfc3339 import parse_rfc3339

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
    boot: int | None = None


class _OwnTracks(msgspec.Struct, gc=False):
    type_: str | None = msgspec.field(default=None, name="_type")
    tst: int | None = None
    lat: float | None = None
    lon: float | None = None
    acc: float | None = None
    batt: int | None = None


DEC_ONE = msgspec.json.Decoder(_In)  # a fix, an event or a replay line
# A typed decoder skips unknown fields unread, so a number no double holds (1e400, a
# 400-digit integer) or bytes that are not UTF-8 in one would pass the fast path while the
# slow path (the authority) rejects them. (A fuzzing find: one /fixes element was kept or
# dead-lettered depending on its neighbours.) `_In` therefore forbids unknown fields:
# a payload with extra fields takes the slow path. OwnTracks payloads always carry extra
# fields (phones, a message a minute), so there the payload itself is checked instead.
_big_number = re.compile(rb"[eE][+-]?\d{3}|\d{309}").search


def fast_unsafe(payload: bytes) -> bool:
    """True when a lenient typed fast path must not decide this payload (see above)."""
    if not payload.isascii():
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError:
            return True
    return _big_number(payload) is not None


_Seq = Annotated[int, msgspec.Meta(ge=0, le=SEQ_MAX)]


class _FixLine(msgspec.Struct, gc=False, forbid_unknown_fields=True, omit_defaults=True):
    """A replay line that is a plain fix, every check `fast_fix` makes on one made by the
    decoder (a line it refuses is not necessarily bad: `fast_line` has the last word).
    Encoded (omitting what is absent), one without `type` is the replay line
    `encode_record` makes of its record: the same fields in the same order."""

    tag: str
    seq: _Seq
    t: Annotated[float, msgspec.Meta(ge=T_MIN, lt=T_MAX)]
    lat: Annotated[float, msgspec.Meta(ge=-90.0, le=90.0)]
    lon: Annotated[float, msgspec.Meta(ge=-180.0, le=180.0)]
    acc: Annotated[float, msgspec.Meta(gt=0.0, le=ACC_MAX_M)]
    batt: Annotated[int, msgspec.Meta(ge=0, le=100)] | None = None
    src: Literal["gps", "wifi", "cell"] | None = None  # SOURCES
    type: Literal["fix"] | None = None
    boot: _Seq | None = None


DEC_FIX_LINE = msgspec.json.Decoder(_FixLine)
# A gateway batch that is all plain fixes (engine/wire/decode.py `_gateway`)
DEC_FIX_LINES = msgspec.json.Decoder(list[_FixLine])
DEC_FIX_LINES_MSGPACK = msgspec.msgpack.Decoder(list[_FixLine])
assert SOURCES == ("gps", "wifi", "cell")  # _FixLine.src spells them out


def plain_tag(tag: str | None, max_id_len: int) -> TypeGuard[str]:
    """Whether a line's tag passes every id check (the fast paths' test; a tag that does
    not is judged, with its reason, by the slow path)."""
    return bool(
        tag
        and len(tag) <= max_id_len
        and "+" not in tag
        and "#" not in tag
        and (tag.isascii() or not SURROGATE.search(tag))
    )


def fix_line(line: bytes, max_id_len: int) -> FixRecord | None:
    """The fix of a replay line (no line break) when the line is a plain, wholly valid
    fix: the record `fast_line` makes of it. None: ask `fast_line` (it may raise)."""
    s = DEC_FIX_LINE.decode(line)
    return _fix_of(s) if plain_tag(s.tag, max_id_len) else None


class _Batch(Sequence[Record]):
    """A batch of records that makes each record when asked for it (`at`)."""

    __slots__ = ()

    def at(self, i: int) -> Record:
        raise NotImplementedError

    @overload
    def __getitem__(self, i: int) -> Record: ...
    @overload
    def __getitem__(self, i: slice) -> list[Record]: ...
    def __getitem__(self, i: int | slice) -> Record | list[Record]:
        if isinstance(i, slice):
            return [self.at(k) for k in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        return self.at(i)


class FixLines(_Batch):
    """A batch of records in order, where a plain fix line stays as the decoder made it
    (`_FixLine`, no record object per fix): the pipeline takes the columns of an all-plain
    batch straight from them (engine/core/intake/columns.py); indexing gives the record,
    as `fix_line` would. A gateway's msgpack batches come as columns (`FixColumns`,
    engine/wire/columnar.py): while the batch holds nothing else they stay columns, and
    `batch()` gives them as one; anything else added turns them into lines first."""

    __slots__ = ("chunks", "items", "plain")

    def __init__(self) -> None:
        self.items: list[_FixLine | Record] = []
        self.plain = True  # every item a _FixLine
        self.chunks: list[FixColumns] = []  # columns not yet lines (only while no items)

    def _lines(self) -> None:
        """The columns held so far, as lines (something else is being added)."""
        chunks, self.chunks = self.chunks, []
        for c in chunks:
            self.items.extend(c.lines())

    def add_line(self, s: _FixLine) -> None:
        """A decoded line that `plain_tag` passed (what `fix_line` takes)."""
        if self.chunks:
            self._lines()
        self.items.append(s)

    def add(self, r: Record) -> None:
        if self.chunks:
            self._lines()
        self.items.append(r)
        self.plain = False

    def extend(self, rs: Sequence[Record]) -> None:
        """Add records; another FixLines' plain lines stay lines, and columns stay columns
        while there is nothing else."""
        if isinstance(rs, FixColumns):
            if not self.items and (not self.chunks or self.chunks[0].table is rs.table):
                self.chunks.append(rs)
                return
            rs = FixLines.of_lines(rs.lines())
        if self.chunks:
            self._lines()
        if isinstance(rs, FixLines):
            rs._lines()
            self.items.extend(rs.items)
            self.plain = self.plain and rs.plain
        elif rs:
            self.items.extend(rs)
            self.plain = False

    def batch(self) -> FixLines | FixColumns:
        """What was added: one `FixColumns` when it was columns only."""
        if not self.chunks:
            return self
        return self.chunks[0] if len(self.chunks) == 1 else FixColumns.concat(self.chunks)

    def without(self, drop: Collection[int]) -> FixLines:
        """This batch minus the items at the indices in `drop` (plain lines stay lines)."""
        self._lines()
        out = FixLines()
        items = self.items
        if len(drop) < 64:
            out.items = [x for i, x in enumerate(items) if i not in drop]
        else:  # a shard's share of gateway batches: half of thousands dropped
            keep = np.ones(len(items), dtype=np.bool_)
            keep[np.fromiter(drop, dtype=np.int64, count=len(drop))] = False
            out.items = list(map(items.__getitem__, np.flatnonzero(keep).tolist()))
        out.plain = self.plain
        return out

    @classmethod
    def of_lines(cls, items: list[_FixLine]) -> FixLines:
        """A batch of decoded lines that `plain_tag` passed, every one."""
        out = cls()
        out.items = cast("list[_FixLine | Record]", items)
        return out

    def __len__(self) -> int:
        return len(self.items) + sum(len(c) for c in self.chunks)

    def at(self, i: int) -> Record:
        self._lines()
        return _record(self.items[i])


class TagTable:
    """Tag ids by code, as a replay reader process sends them (each the first time it
    appears), and each code's slot in the registry last asked (`slots`)."""

    __slots__ = ("_names", "_of", "_slots", "names")

    def __init__(self) -> None:
        self.names: list[str] = []
        self._slots = np.zeros(0, dtype=np.int32)
        self._of: object = None
        self._names = np.zeros(0, dtype=object)

    def name_array(self) -> np.ndarray:
        """`names` as a numpy array of str (indexed by a column of codes), kept."""
        if self._names.shape[0] != len(self.names):
            self._names = np.array(self.names, dtype=object)
        return self._names

    def slots(self, slot_of: Mapping[str, int]) -> np.ndarray:
        """Each code's slot (-1: unknown). The answer is kept for the mapping it was
        worked out from (a replay's registry, which does not change), and extended."""
        if self._of is not slot_of:
            self._of, self._slots = slot_of, np.zeros(0, dtype=np.int32)
        n = self._slots.shape[0]
        if n < len(self.names):
            more = np.array([slot_of.get(t, -1) for t in self.names[n:]], dtype=np.int32)
            self._slots = np.concatenate([self._slots, more])
        return self._slots


_SRC_NAME = {code: name for name, code in SRC_CODE.items()}


class FixColumns(_Batch):
    """A batch of plain fixes as columns (a replay reader process's, engine/replayfile.py):
    the records `FixLines` of the same lines holds, without an object per fix. `batt`,
    `boot` -1 and `src` 255: absent. Indexing gives the record."""

    __slots__ = ("acc", "batt", "boot", "code", "lat", "lon", "seq", "skipped", "src", "t", "table")

    def __init__(self, table: TagTable, cols: Sequence[np.ndarray], skipped: int = 0) -> None:
        self.table = table
        self.skipped = skipped  # other shards' elements left out (engine/wire/columnar.py)
        (
            self.code,
            self.seq,
            self.t,
            self.lat,
            self.lon,
            self.acc,
            self.batt,
            self.src,
            self.boot,
        ) = cols

    @staticmethod
    def of(lines: FixLines, code_of: Callable[[str], int]) -> list[np.ndarray]:
        """The columns of an all-plain `lines`, tags coded by `code_of`."""
        items = cast("list[_FixLine]", lines.items)
        codes = np.array([code_of(s.tag) for s in items], dtype=np.int32)
        return [
            codes,
            *(np.array(c, dtype=d) for c, d in zip(fix_fields(items), _DTYPES, strict=True)),
        ]

    def columns(self) -> list[np.ndarray]:
        return [self.code, self.seq, self.t, self.lat, self.lon, self.acc, self.batt,
                self.src, self.boot]  # fmt: skip

    @classmethod
    def concat(cls, parts: Sequence[FixColumns]) -> FixColumns:
        """One batch of `parts` in order (their tags coded in one table)."""
        cols = zip(*(p.columns() for p in parts), strict=True)
        return cls(parts[0].table, [np.concatenate(c) for c in cols], sum(p.skipped for p in parts))

    def without(self, drop: Collection[int]) -> FixColumns:
        """This batch minus the rows at the indices in `drop`."""
        keep = np.ones(len(self), dtype=np.bool_)
        keep[np.fromiter(drop, dtype=np.int64, count=len(drop))] = False
        return FixColumns(self.table, [c[keep] for c in self.columns()])

    def lines(self) -> list[_FixLine]:
        """The rows as the plain fix lines they were (no `type`): encoded, each is the
        replay line `encode_record` makes of its record."""
        tags = self.table.name_array()[self.code].tolist()
        main = (tags, self.seq.tolist(), self.t.tolist(), self.lat.tolist(),
                self.lon.tolist(), self.acc.tolist())  # fmt: skip
        batt, src, boot = self.batt, self.src, self.boot
        if not ((batt >= 0).any() or (src != 255).any() or (boot >= 0).any()):
            return list(map(_FixLine, *main))
        return [
            _FixLine(
                tag,
                seq,
                t,
                lat,
                lon,
                acc,
                None if b < 0 else b,
                cast("Any", _SRC_NAME[s]),
                None,
                None if bo < 0 else bo,
            )
            for tag, seq, t, lat, lon, acc, b, s, bo in zip(
                *main, batt.tolist(), src.tolist(), boot.tolist(), strict=True
            )
        ]

    def __len__(self) -> int:
        return int(self.code.shape[0])

    def at(self, i: int) -> Record:
        batt, boot = int(self.batt[i]), int(self.boot[i])
        return new_fix(
            self.table.names[int(self.code[i])], int(self.seq[i]), float(self.t[i]),
            float(self.lat[i]), float(self.lon[i]), float(self.acc[i]),
            None if batt < 0 else batt, _SRC_NAME[int(self.src[i])], None if boot < 0 else boot,
        )  # fmt: skip


# The dtypes of fix_fields' columns in FixColumns
_DTYPES = (np.int64, np.float64, np.float64, np.float64, np.float64, np.int16, np.uint8, np.int64)


def fix_fields(items: Sequence[Any]) -> tuple[list[Any], ...]:
    """(seq, t, lat, lon, acc, batt, src, boot) column by column of plain fix lines or fix
    records (they name these fields alike): batt and boot -1 when absent, src its SRC_CODE
    (255: absent)."""
    return (
        [x.seq for x in items], [x.t for x in items], [x.lat for x in items],
        [x.lon for x in items], [x.acc for x in items],
        [-1 if x.batt is None else x.batt for x in items],
        [SRC_CODE.get(x.src, 255) for x in items],
        [-1 if x.boot is None else x.boot for x in items],
    )  # fmt: skip


def _fix_of(s: _FixLine) -> FixRecord:
    return new_fix(s.tag, s.seq, s.t, s.lat, s.lon, s.acc, s.batt, s.src, s.boot)


def _record(x: _FixLine | Record) -> Record:
    return _fix_of(cast("_FixLine", x)) if x.__class__ is _FixLine else cast("Record", x)


DEC_MANY = msgspec.json.Decoder(list[_In])  # a /fixes batch
DEC_OT = msgspec.json.Decoder(_OwnTracks)  # an OwnTracks payload (extra fields skipped)


# Frozen slotted dataclasses build slowly (object.__setattr__ per field): ~1 µs of a ~4 µs
# decode. When the record classes are plain (expected fields, slots, no __post_init__), build
# them by writing the slots directly; otherwise fall back to the normal constructor.
_FIX_FIELDS = ("device", "seq", "t", "lat", "lon", "acc", "batt", "src", "boot")
_EVENT_FIELDS = ("device", "seq", "t", "event", "batt", "boot")


def _plain(cls: type, names: tuple[str, ...]) -> bool:
    return (
        tuple(f.name for f in dataclasses.fields(cls)) == names
        and not hasattr(cls, "__post_init__")
        and all(isinstance(vars(cls).get(n), types.MemberDescriptorType) for n in names)
    )


if _plain(FixRecord, _FIX_FIELDS) and _plain(EventRecord, _EVENT_FIELDS):
    _new = object.__new__
    _fd, _fs, _ft, _fa, _fo, _fc, _fb, _fr, _fx = (vars(FixRecord)[n].__set__ for n in _FIX_FIELDS)
    _ed, _es, _et, _ee, _eb, _ex = (vars(EventRecord)[n].__set__ for n in _EVENT_FIELDS)

    def new_fix(
        device: str,
        seq: int,
        t: float,
        lat: float,
        lon: float,
        acc: float,
        batt: int | None,
        src: str | None,
        boot: int | None = None,
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
        _fx(r, boot)
        return r  # type: ignore[no-any-return]

    def new_event(
        device: str, seq: int, t: float, event: str, batt: int | None, boot: int | None = None
    ) -> EventRecord:
        r = _new(EventRecord)
        _ed(r, device)
        _es(r, seq)
        _et(r, t)
        _ee(r, event)
        _eb(r, batt)
        _ex(r, boot)
        return r  # type: ignore[no-any-return]

else:  # pragma: no cover - records.py changed shape; stay correct, just slower
    new_fix = FixRecord  # type: ignore[assignment]
    new_event = EventRecord  # type: ignore[assignment]


def _fast_seq_t(s: _In) -> tuple[int, float] | None:
    """The fast path's seq and event-time checks, shared by fixes and events."""
    seq, t = s.seq, s.t
    if seq is None or not 0 <= seq <= SEQ_MAX:
        return None
    boot = s.boot
    if boot is not None and not 0 <= boot <= SEQ_MAX:
        return None
    if t.__class__ is str:
        try:
            t = parse_rfc3339(t, "")  # type: ignore[arg-type]
        except Rejected:
            return None
    elif t is None or not T_MIN <= t < T_MAX:  # type: ignore[operator]
        return None
    return seq, t  # type: ignore[return-value]


def fast_fix(s: _In, device: str) -> FixRecord | None:
    """The fix, when `s` is a wholly valid fix of `device`; else None (take the slow path)."""
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
    return new_fix(device, seq, t, lat, lon, acc, batt, src, s.boot)  # type: ignore[arg-type]


def fast_event(s: _In, device: str) -> EventRecord | None:
    """The event, when `s` is a wholly valid event of `device`; else None."""
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
    return new_event(device, seq, t, event, batt, s.boot)  # type: ignore[arg-type]
