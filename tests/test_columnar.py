"""A gateway's msgpack batch straight into columns (engine/wire/columnar.py), held to the
typed decoder it stands in for: whatever the kernel takes, `list[_FixLine]` takes too, with
the same values, every tag plain and the gateway's; what msgspec itself writes, the kernel
takes whenever the typed decoder does. Every msgpack form of a value (an int in any width,
a float32, a str16, a map32...) is tried, and broken payloads (cut, trailing bytes, a key
twice) never crash it. Columns give back the lines they were, byte for byte."""

from __future__ import annotations

import random
import struct
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine.wire.columnar as columnar
from engine.wire.columnar import SKIP, TagLookup, scan
from engine.wire.decode import GatewayBook, decode_message
from engine.wire.fastpath import DEC_FIX_LINES_MSGPACK, FixColumns, FixLines, TagTable, fix_fields
from engine.wire.replayline import encode_record
from zones.jit import JIT_OPTIONS

pytestmark = pytest.mark.kernel

ALLOWED = ["T1", "T2", "é3", "T" * 40]  # (a plain id may be any UTF-8)
NOT_PLAIN = ["T+", "T#", ""]
TABLE = TagTable()
TABLE.names = ["X0", *ALLOWED]  # codes in a shared table start anywhere
LOOKUP = TagLookup(ALLOWED, [1, 2, 3, 4])
# A shard's: T2 and the long tag are another shard's, their elements left out
SHARD = TagLookup(ALLOWED, [1, SKIP, 3, SKIP])


def _oracle(payload: bytes) -> list[Any] | None:
    """The typed decoder's columns (tag codes first), or None when it or the tag check
    refuses the batch."""
    try:
        lines = DEC_FIX_LINES_MSGPACK.decode(payload)
    except msgspec.DecodeError:
        return None
    if not lines or any(s.tag not in ALLOWED for s in lines):
        return None
    return [[TABLE.names.index(s.tag) for s in lines], *fix_fields(lines)]


def _same(cols: FixColumns, want: list[Any]) -> None:
    for got, w in zip(cols.columns(), want, strict=True):
        assert got.tolist() == list(w)


def _pack(obj: Any, rnd: random.Random) -> bytes:
    """msgpack of `obj`, each value in a form picked at random among those that hold it."""
    if obj is None:
        return b"\xc0"
    if isinstance(obj, bool):
        return b"\xc3" if obj else b"\xc2"
    if isinstance(obj, int):
        forms = []
        if 0 <= obj < 128:
            forms.append(bytes([obj]))
        if -32 <= obj < 0:
            forms.append(bytes([obj & 0xFF]))
        for code, fmt, lo, hi in ((0xCC, ">B", 0, 255), (0xCD, ">H", 0, 65535),
                                  (0xCE, ">I", 0, 2**32 - 1), (0xCF, ">Q", 0, 2**64 - 1),
                                  (0xD0, ">b", -128, 127), (0xD1, ">h", -(2**15), 2**15 - 1),
                                  (0xD2, ">i", -(2**31), 2**31 - 1),
                                  (0xD3, ">q", -(2**63), 2**63 - 1)):  # fmt: skip
            if lo <= obj <= hi:
                forms.append(bytes([code]) + struct.pack(fmt, obj))
        return rnd.choice(forms)
    if isinstance(obj, float):
        forms = [b"\xcb" + struct.pack(">d", obj)]
        try:
            if obj != obj or struct.unpack(">f", struct.pack(">f", obj))[0] == obj:
                forms.append(b"\xca" + struct.pack(">f", obj))
        except OverflowError:  # no float32 holds it
            pass
        return rnd.choice(forms)
    if isinstance(obj, str):
        raw = obj.encode("utf-8", "surrogatepass")
        n = len(raw)
        forms = [b"\xd9" + bytes([n])] if n < 256 else []
        forms += [b"\xda" + struct.pack(">H", n), b"\xdb" + struct.pack(">I", n)]
        if n < 32:
            forms.append(bytes([0xA0 | n]))
        return rnd.choice(forms) + raw
    if isinstance(obj, list | tuple) and obj and isinstance(obj[0], tuple):  # map items
        return _header(len(obj), 0x80, 0xDE, 0xDF, rnd) + b"".join(
            _pack(k, rnd) + _pack(v, rnd) for k, v in obj
        )
    if isinstance(obj, dict):
        return _pack(list(obj.items()) or [], rnd) if obj else _header(0, 0x80, 0xDE, 0xDF, rnd)
    if isinstance(obj, list):
        return _header(len(obj), 0x90, 0xDC, 0xDD, rnd) + b"".join(_pack(x, rnd) for x in obj)
    if isinstance(obj, bytes):
        return b"\xc4" + bytes([len(obj)]) + obj
    raise TypeError(obj)


def _header(n: int, fix: int, h16: int, h32: int, rnd: random.Random) -> bytes:
    forms = [bytes([h16]) + struct.pack(">H", n), bytes([h32]) + struct.pack(">I", n)]
    if n < 16:
        forms.append(bytes([fix | n]))
    return rnd.choice(forms)


_num = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**63), 2**64 - 1), st.booleans()
)
_good = st.fixed_dictionaries(
    {
        "tag": st.sampled_from(ALLOWED),
        "seq": st.one_of(st.integers(0, 1000), st.integers(0, 2**63 - 1)),
        "t": st.one_of(st.floats(9.5e8, 4.1e9), st.integers(946_684_800, 4_102_444_799)),
        "lat": st.one_of(st.floats(-90, 90), st.integers(-90, 90)),
        "lon": st.one_of(st.floats(-180, 180), st.integers(-180, 180)),
        "acc": st.one_of(st.floats(1e-6, 1e5), st.integers(1, 5)),
    },
    optional={
        "batt": st.one_of(st.integers(0, 100), st.none()),
        "src": st.one_of(st.sampled_from(["gps", "wifi", "cell"]), st.none()),
        "type": st.one_of(st.just("fix"), st.none()),
        "boot": st.one_of(st.integers(0, 2**63 - 1), st.none()),
    },
)
# One field of a good element made anything at all (or a field dropped, or one added)
_field_values: dict[str, Any] = {
    "tag": st.one_of(st.sampled_from(["T9", *NOT_PLAIN]), st.binary(max_size=3), _num),
    "seq": _num,
    "t": st.one_of(_num, st.sampled_from([946_684_799.99, 4_102_444_800.0])),
    "lat": st.one_of(_num, st.sampled_from([90.000001, -90.5, "1"])),
    "lon": st.one_of(_num, st.sampled_from([180.5, -181])),
    "acc": st.one_of(_num, st.sampled_from([0.0, 0, -1, 100_000.5])),
    "batt": st.one_of(_num, st.sampled_from([-1, 101, 50.0, "50"])),
    "src": st.one_of(st.sampled_from(["radio", "gpsx", "GPS", ""]), _num),
    "type": st.one_of(st.sampled_from(["event", "fi", "fixx"]), _num),
    "boot": st.one_of(_num, st.just(-1)),
    "extra": st.just(1),
}


@st.composite
def _spoilt(draw: st.DrawFn) -> dict[str, Any]:
    el = draw(_good)
    key = draw(st.sampled_from(sorted(_field_values)))
    if draw(st.booleans()) and key in el:
        del el[key]
    else:
        el[key] = draw(_field_values[key])
    return el


_batch = st.lists(st.one_of(_good, _good, _good, _good, _spoilt()), max_size=8)


@settings(max_examples=400, deadline=None)
@given(_batch)
def test_what_msgspec_writes_the_kernel_takes_as_the_typed_decoder_does(
    batch: list[dict[str, Any]],
) -> None:
    payload = msgspec.msgpack.encode(batch)
    want = _oracle(payload)
    got = scan(payload, LOOKUP, TABLE)
    assert (got is None) == (want is None), (batch, want)
    if got is not None:
        assert want is not None
        _same(got, want)


@settings(max_examples=300, deadline=None)
@given(_batch)
def test_a_shards_kernel_leaves_the_other_shards_elements_out(
    batch: list[dict[str, Any]],
) -> None:
    """The same batch with T2 and the long tag SKIP: the rest, in order, each with its
    own optional fields (never those of a skipped element before it), and a count."""
    payload = msgspec.msgpack.encode(batch)
    want = _oracle(payload)
    got = scan(payload, SHARD, TABLE)
    assert (got is None) == (want is None)
    if got is not None and want is not None:
        skip = {TABLE.names.index("T2"), TABLE.names.index("T" * 40)}
        keep = [i for i, c in enumerate(want[0]) if c not in skip]
        _same(got, [[col[i] for i in keep] for col in want])
        assert got.skipped == len(want[0]) - len(keep)


@settings(max_examples=400, deadline=None)
@given(_batch, st.integers(0, 2**32), st.sampled_from(["whole", "cut", "more", "twice"]))
def test_any_msgpack_form_the_kernel_takes_the_typed_decoder_takes_alike(
    batch: list[dict[str, Any]], seed: int, how: str
) -> None:
    rnd = random.Random(seed)
    if how == "twice" and batch:  # a key twice (the typed decoder keeps the last)
        el = batch[0]
        k = rnd.choice(list(el))
        batch[0] = [*el.items(), (k, el[k])]  # type: ignore[call-overload]
    payload = _pack(batch, rnd)
    if how == "cut":
        payload = payload[: rnd.randrange(len(payload) + 1)]
    elif how == "more":
        payload += bytes([rnd.randrange(256)])
    got = scan(payload, LOOKUP, TABLE)
    if got is not None:
        want = _oracle(payload)
        assert want is not None, (batch, how)
        _same(got, want)
    elif how == "whole" and not any(isinstance(v, bool) for el in batch for v in el.values()):
        # the kernel is stricter only where it says so: a negative int64 (a float field)
        forms = payload.count(b"\xd3")
        if _oracle(payload) is not None and not forms:
            raise AssertionError(f"refused what the typed decoder takes: {batch}")


_BASE = {"tag": "T1", "seq": 7, "t": 1.7e9, "lat": 51.5, "lon": -0.12, "acc": 5.0}
_EDGES: list[tuple[str, Any]] = [
    ("t", 946_684_800.0), ("t", 946_684_799.9999999), ("t", 4_102_444_800.0),
    ("t", 4_102_444_799.999999), ("t", 946_684_800), ("lat", 90.0), ("lat", -90), ("lat", 90.00000001),
    ("lon", 180), ("lon", -180.0000001), ("acc", 0.0), ("acc", 5e-324), ("acc", 100_000),
    ("acc", 100_000.00000001), ("batt", 100), ("batt", 101), ("batt", 0), ("batt", -1),
    ("seq", 2**63 - 1), ("seq", 2**63), ("seq", 0), ("seq", -1), ("boot", 2**63 - 1),
    ("boot", -1), ("src", "cell"), ("src", "cell\x00"), ("src", "gps\x00"), ("type", "fix"),
    ("type", "fix\x00"), ("type", "fi"), ("t\x00", 1.0), ("tag\x00", "T1"), ("lat", "51"),
    ("tag", "T1\x00"), ("tag", "T"), ("tag", "é3"), ("tag", "T" * 40), ("tag", "T" * 41),
]  # fmt: skip


@pytest.mark.parametrize(("key", "value"), _EDGES)
def test_each_bound_is_the_typed_decoders(key: str, value: Any) -> None:
    """Every bound and spelling a field has, alone in a batch and beside a good element:
    the kernel takes exactly what the typed decoder takes (msgspec's own encoding)."""
    for batch in ([{**_BASE, key: value}], [_BASE, {**_BASE, key: value}]):
        payload = msgspec.msgpack.encode(batch)
        want, got = _oracle(payload), scan(payload, LOOKUP, TABLE)
        assert (got is None) == (want is None), (key, value)
        if got is not None and want is not None:
            _same(got, want)


@pytest.mark.parametrize("key", ["tag", "seq", "t", "lat", "lon", "acc"])
@pytest.mark.parametrize("spelt", ["{}\x00", "{}\x00\x00", "{}s", "_{}", "upper"])
def test_a_key_is_its_own_spelling_only(key: str, spelt: str) -> None:
    """A required key spelt otherwise (a NUL after it packs to the same word) is an
    unknown field, and the batch goes the usual way."""
    other = key.upper() if spelt == "upper" else spelt.format(key)
    el = {(other if k == key else k): v for k, v in _BASE.items()}
    payload = msgspec.msgpack.encode([el])
    assert _oracle(payload) is None
    assert scan(payload, LOOKUP, TABLE) is None


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_garbage_never_crashes_the_kernel(raw: bytes) -> None:
    for payload in (raw, b"\x91" + raw, b"\xdd\xff\xff\xff\xff" + raw, b"\x9f\x86" + raw):
        got = scan(payload, LOOKUP, TABLE)
        if got is not None:
            want = _oracle(payload)
            assert want is not None
            _same(got, want)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(ALLOWED),
            st.integers(0, 2**63 - 1),
            st.floats(9.5e8, 4.0e9),
            st.floats(-90, 90),
            st.floats(-180, 180),
            st.floats(1e-3, 1e5),
            st.integers(-1, 100),
            st.sampled_from([0, 1, 2, 255]),
            st.integers(-1, 2**63 - 1),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_columns_give_back_the_lines_encode_record_makes(rows: list[tuple[Any, ...]]) -> None:
    cols = [np.array([TABLE.names.index(r[0]) for r in rows], dtype=np.int32)]
    for k, dt in enumerate((np.int64, np.float64, np.float64, np.float64, np.float64, np.int16,
                            np.uint8, np.int64)):  # fmt: skip
        cols.append(np.array([r[k + 1] for r in rows], dtype=dt))
    batch = FixColumns(TABLE, cols)
    enc = msgspec.json.Encoder()
    lines = batch.lines()
    assert [enc.encode(s) for s in lines] == [encode_record(r) for r in batch]
    # and a batch without some rows is those rows
    drop = set(range(0, len(rows), 3))
    kept = batch.without(drop)
    assert list(kept) == [r for i, r in enumerate(batch) if i not in drop]
    assert list(FixColumns.concat([kept, batch])) == [*kept, *batch]


def test_columns_then_other_records_keep_their_order() -> None:
    """A msgpack batch (columns), a single fix, another msgpack batch: one batch in order,
    the columns turned into lines once something else is in it."""
    book = GatewayBook({"GW": ["T1", "T2"]})
    gw = "tagwatch/v1/gateway/GW/fixes"
    el = {"tag": "T1", "seq": 1, "t": 1.7e9, "lat": 51.5, "lon": -0.1, "acc": 5.0}
    msgs = [
        (gw, msgspec.msgpack.encode([el, {**el, "tag": "T2", "batt": 40, "src": "cell"}])),
        ("tagwatch/v1/tags/T1/fix", msgspec.json.encode({**el, "seq": 2})),
        (gw, msgspec.msgpack.encode([{**el, "seq": 3, "boot": 2}])),
    ]
    want = [r for topic, body in msgs for r in decode_message(topic, body, gateways=book)[0]]
    from engine.wire.decode import decode_into

    only = FixLines()
    decode_into(only, *msgs[0], gateways=book)
    assert isinstance(only.batch(), FixColumns)
    mixed = FixLines()
    for topic, body in msgs:
        decode_into(mixed, topic, body, gateways=book)
    assert not mixed.chunks
    assert list(mixed.batch()) == want == list(mixed)
    assert [r.seq for r in want] == [1, 1, 2, 3]


def test_a_count_no_payload_of_fixes_could_hold_is_refused_at_once() -> None:
    """An array header claiming more elements than the bytes could hold: not plain fixes
    (the usual way dead-letters it), and no columns that size are made."""
    good = msgspec.msgpack.encode([_BASE])
    for count in (2, 1000, 2**32 - 1):
        payload = b"\xdd" + struct.pack(">I", count) + good[1:] * 3
        assert scan(payload, LOOKUP, TABLE) is None
        assert _oracle(payload) is None
    assert scan(b"\xdd" + struct.pack(">I", 3) + good[1:] * 3, LOOKUP, TABLE) is not None


def test_the_kernels_compile_with_the_projects_numba_options() -> None:
    assert columnar.JIT_OPTIONS == JIT_OPTIONS
