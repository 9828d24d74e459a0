"""A gateway batch of plain fixes stays as decoded (engine/wire/decode.py `_gateway`,
`decode_into`): no record object per fix, and no `fast_unsafe` scan. Held here to what
each element means on its own as a replay line (`decode_replay_line`, the other path), and
the evidence ledger to the same rows and hashes as from the records themselves."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.store.ledger import Head, LedgerWriter, Step
from engine.store.records.index import Pending
from engine.wire.decode import (
    GatewayBook,
    GatewayTags,
    decode_into,
    decode_message,
    decode_replay_line,
)
from engine.wire.fastpath import FixColumns, FixLines
from engine.wire.records import FixRecord, Record

TOPIC = "tagwatch/v1/gateway/GW1/fixes"
# As the pipeline has them (GatewayTags: "T+" is allowed and no plain id), and as any set
ALLOWED = {"GW1": GatewayTags({"T1", "T2", "T+", "T},{", 'T"type":'})}
ANY_SET = {"GW1": frozenset(ALLOWED["GW1"])}
# As the pipeline has them: its msgpack batches decoded straight into columns (columnar.py)
BOOK = GatewayBook({"GW1": ALLOWED["GW1"]})

_fix = st.fixed_dictionaries(
    {
        "tag": st.sampled_from(["T1", "T2", "T3", "T+", "T},{", 'T"type":']),
        "seq": st.integers(0, 2**40),
        "t": st.one_of(st.floats(1.0e9, 4.0e9), st.integers(1_000_000_000, 4_000_000_000)),
        "lat": st.one_of(st.floats(-90, 90), st.integers(-90, 90), st.just(91.0)),
        "lon": st.floats(-180, 180),
        "acc": st.one_of(st.floats(0.5, 5000), st.just(0.0)),
    },
    optional={
        "batt": st.one_of(st.integers(0, 100), st.just(101), st.none()),
        "src": st.sampled_from(["gps", "wifi", "cell", "radio"]),
        "boot": st.integers(0, 2**20),
        "type": st.sampled_from(["fix", "fixx"]),
        "extra": st.just(1),
    },
)
_event = st.fixed_dictionaries(
    {
        "tag": st.sampled_from(["T1", "T3"]),
        "type": st.just("event"),
        "seq": st.integers(0, 100),
        "t": st.floats(1.0e9, 4.0e9),
        "event": st.sampled_from(["strap_open", "bogus"]),
    }
)
_string_t = st.builds(
    lambda d: {**d, "t": "2026-12-05T06:00:00Z"}, _fix
)  # a time the typed decoder does not take
_batches = st.lists(st.one_of(_fix, _fix, _fix, _event, _string_t), max_size=12)


def _encode(batch: list[dict[str, Any]], form: str) -> bytes:
    return json.dumps(batch).encode() if form == "json" else msgspec.msgpack.encode(batch)


def _alone(el: dict[str, Any]) -> list[Record]:
    """What the element is as a replay line, and kept only for a tag the gateway has."""
    recs, _ = decode_replay_line(json.dumps(el).encode(), "x")
    return [r for r in recs if r.device in ALLOWED["GW1"]]


@settings(max_examples=300, deadline=None)
@given(_batches, st.sampled_from(["json", "msgpack"]))
def test_a_batch_decodes_to_what_each_element_is_alone(
    batch: list[dict[str, Any]], form: str
) -> None:
    want = [r for el in batch for r in _alone(el)]
    recs, dead = decode_message(TOPIC, _encode(batch, form), gateways=ALLOWED)
    assert recs == want
    assert decode_message(TOPIC, _encode(batch, form), gateways=ANY_SET) == (recs, dead)
    assert decode_message(TOPIC, _encode(batch, form), gateways=BOOK) == (recs, dead)
    assert len(recs) + len(dead) == len(batch)
    for gateways in (ALLOWED, BOOK):
        into = FixLines()
        reasons = [
            d.reason for d in decode_into(into, TOPIC, _encode(batch, form), gateways=gateways)
        ]
        assert reasons == [d.reason for d in dead]
        assert list(into) == want
        assert list(into.batch()) == want


@settings(max_examples=100, deadline=None)
@given(st.lists(_fix, max_size=12), st.sampled_from(["json", "msgpack"]))
def test_a_batch_of_plain_fixes_stays_as_decoded(batch: list[dict[str, Any]], form: str) -> None:
    plain = [
        el for el in batch if el["tag"] in ("T1", "T2", "T},{", 'T"type":') and _alone(el) and "extra" not in el
    ]  # fmt: skip
    into = FixLines()
    assert decode_into(into, TOPIC, _encode(plain, form), gateways=ALLOWED) == []
    assert into.plain and not any(isinstance(x, FixRecord) for x in into.items)
    assert list(into) == [r for el in plain for r in _alone(el)]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(_batches, st.sampled_from(["json", "msgpack"])), max_size=4),
    st.sampled_from([ALLOWED, BOOK]),
)
def test_the_ledger_rows_of_decoded_lines_are_those_of_their_records(
    msgs: list[tuple[list[dict[str, Any]], str]], gateways: dict[str, GatewayTags]
) -> None:
    """Decoded lines, columns (a msgpack batch through the gateway book), and both in one
    batch (the columns become lines then)."""
    into = FixLines()
    for batch, form in msgs:
        decode_into(into, TOPIC, _encode(batch, form), gateways=gateways)
    got = into.batch()
    head = Head(7, 3, b"\x01" * 32)
    a = LedgerWriter(head).rows([Step("batch", 1.7e9, got)], [])
    b = LedgerWriter(head).rows([Step("batch", 1.7e9, list(got))], [])
    assert a == b
    assert len(a) == 1 + len(got)
    _same_records_rows(got)


def _same_records_rows(into: Sequence[Record]) -> None:
    """A records row (and where it placed each device's records) of decoded lines is the
    one of their records."""
    head = Head(7, 3, b"\x01" * 32)
    wa, wb = LedgerWriter(head, per_step=True), LedgerWriter(head, per_step=True)
    a = wa.rows([Step("batch", 1.7e9, into)], [])
    b = wb.rows([Step("batch", 1.7e9, list(into))], [])
    assert a == b
    assert len(a) == 1 + (1 if len(into) else 0)
    assert [[list(c) for c in p[1:]] for p in wa.placed] == [
        [list(c) for c in p[1:]] for p in wb.placed
    ]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(_fix, min_size=1, max_size=12),
    st.sampled_from(["json", "msgpack"]),
    st.sampled_from([ALLOWED, BOOK]),
)
def test_a_records_row_of_plain_fixes_is_that_of_their_records(
    batch: list[dict[str, Any]], form: str, gateways: dict[str, GatewayTags]
) -> None:
    """Plain lines (with or without "type": "fix", coordinates given as integers) are
    written as decoded, and so are columns; the bytes are encode_record's."""
    plain = [
        el
        for el in batch
        if el["tag"] in ("T1", "T2", "T},{", 'T"type":') and _alone(el) and "extra" not in el
    ]
    into = FixLines()
    decode_into(into, TOPIC, _encode(plain, form), gateways=gateways)
    assert into.plain
    got = into.batch()
    if plain and form == "msgpack" and gateways is BOOK:
        assert isinstance(got, FixColumns)  # (the point of the book)
    _same_records_rows(got)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 300), st.data())
def test_a_batch_without_some_items_keeps_the_rest_in_order(n: int, data: st.DataObject) -> None:
    """`FixLines.without`, small drops and a shard's half of a batch alike."""
    batch = FixLines()
    batch.items = [FixRecord(f"T{i}", i, 1.7e9 + i, 51.0, 0.0, 5.0, None, None) for i in range(n)]
    drop = data.draw(st.sets(st.integers(0, max(n - 1, 0)), max_size=n)) if n else set()
    assert batch.without(drop).items == [x for i, x in enumerate(batch.items) if i not in drop]


# Plain fixes of two gateways with tags of their own and one in common: a book's table
# grows when the second one's first batch comes, after the first one's rows were placed.
_TWO = {"GW1": {"T1", "T2", "T},{"}, "GW2": {"T1", "T5", "T6"}}


def _plain_batch(gw: str) -> st.SearchStrategy[tuple[str, list[dict[str, Any]]]]:
    fix = st.fixed_dictionaries(
        {
            "tag": st.sampled_from(sorted(_TWO[gw])),
            "seq": st.integers(0, 2**40),
            "t": st.floats(1.0e9, 4.0e9),
            "lat": st.floats(-90, 90),
            "lon": st.floats(-180, 180),
            "acc": st.floats(0.5, 5000),
        }
    )
    return st.tuples(st.just(gw), st.lists(fix, min_size=1, max_size=8))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.one_of(_plain_batch("GW1"), _plain_batch("GW2")), min_size=1, max_size=6),
    st.lists(st.booleans(), min_size=6, max_size=6),
)
def test_the_index_files_columns_as_their_records(
    msgs: list[tuple[str, list[dict[str, Any]]]], as_records: list[bool]
) -> None:
    """Steps of columns (devices as codes into the book's table, which grows between them)
    and of records, filed in one flush: each device's index row is the one the same steps
    given as records make, and the rows come in the same order."""
    book = GatewayBook(_TWO)
    head_a = head_b = Head(7, 3, b"\x01" * 32)
    placed_a, placed_b = [], []
    for (gw, batch), rec in zip(msgs, as_records, strict=False):
        into = FixLines()
        topic = f"tagwatch/v1/gateway/{gw}/fixes"
        assert decode_into(into, topic, msgspec.msgpack.encode(batch), gateways=book) == []
        got = into.batch()
        assert isinstance(got, FixColumns)
        # each written as it comes, as the engine does: later batches grow the table
        wa, wb = LedgerWriter(head_a, per_step=True), LedgerWriter(head_b, per_step=True)
        a = wa.rows([Step("batch", 1.7e9, list(got) if rec else got)], [])
        b = wb.rows([Step("batch", 1.7e9, list(got))], [])
        assert a == b
        placed_a += wa.placed
        placed_b += wb.placed
        head_a = head_b = Head(a[-1][0], a[-1][2], a[-1][7])
    assert Pending().rows(placed_a) == Pending().rows(placed_b)
