"""Fuzzing (hypothesis): bad input never crashes the engine and never disappears.

Targets: `decode_message` (every topic kind, and unknown topics), the replay-line decoder,
the zones/subjects loader, and `Pipeline.process` on whatever decode accepts. Each input is
classified: accepted records satisfy the format contract, everything else is a dead letter
(or a ZoneError) with a non-empty reason, and nothing is dropped silently: per message or
line, records out + dead letters out = records in.

`make test` runs a short, derandomized (reproducible) pass of every target; `make fuzz`
(bench/fuzz_long.py) sets TAGWATCH_FUZZ_EXAMPLES for a long random run. Every crash found
is fixed where it was and pinned here with `@example`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import re
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from engine.cli.main import main
from engine.core.pipeline import Pipeline
from engine.errors import ZoneError
from engine.replayfile import batches as _batches
from engine.settings import Settings
from engine.store.sqlite import SqliteStore
from engine.wire.alerts import encode_alert
from engine.wire.bounds import ACC_MAX_M, SEQ_MAX, T_MAX, T_MIN
from engine.wire.decode import Limits, decode_message, decode_replay_line
from engine.wire.records import (
    EVENT_NAMES,
    EXCERPT_BYTES,
    SOURCES,
    DeadLetter,
    EventRecord,
    FixRecord,
    Record,
)
from tests.helpers import offset, square, write_world
from zones.compile import compile_zones
from zones.geofence import signed_distance_by_subject
from zones.load import check, load

# -- profiles --------------------------------------------------------------------------------

LONG = int(os.environ.get("TAGWATCH_FUZZ_EXAMPLES", "0") or 0)
pytestmark = pytest.mark.timeout(0 if LONG else 300)  # no limit on a long run
settings.register_profile(
    "tagwatch-fuzz-ci",
    derandomize=True,  # CI is reproducible: the same examples on every run
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
settings.register_profile(
    "tagwatch-fuzz-long",
    derandomize=False,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)
PROFILE = settings.get_profile("tagwatch-fuzz-long" if LONG else "tagwatch-fuzz-ci")


def fuzz(n: int) -> settings:
    """n examples in `make test`; TAGWATCH_FUZZ_EXAMPLES of them in `make fuzz`."""
    return settings(PROFILE, max_examples=LONG or n)


T0 = 1_790_000_000.0  # 2026-09-21
FIX_T = "tagwatch/v1/tags/T1/fix"
FIXES_T = "tagwatch/v1/tags/T1/fixes"
EVENT_T = "tagwatch/v1/tags/T1/event"
OT_T = "owntracks/alice/phone"
BAD_TOPIC = "tagwatch/v1/tags/\ud800/fix"  # a lone surrogate: once accepted as a tag id
TAG_KINDS = ("fix", "fixes", "event")
DEFAULT = Limits()

# -- JSON text, including what strict JSON forbids -------------------------------------------
# Payloads are built as text so they can hold NaN/Infinity tokens, duplicate keys, numbers
# no double holds, lone surrogate escapes and nesting deeper than any parser allows.

ODD_NUMBERS = [
    "NaN", "-NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e-400", "-0", "0.0", "3.0",
    "1E2", "9223372036854775807", "9223372036854775808", "-9223372036854775809",
    "1" + "0" * 400, "1" + "0" * 5000, "0." + "1" * 500, "4102444800", "4102444799.999",
    "946684800", "946684799.9", "1774719000", "1774719000.5", "90", "90.0000001", "-180",
    "180.0000001", "100000", "100000.0001", "1e-320", "101", "-1",
]  # fmt: skip
ODD_STRINGS = [
    "", "T1", "T2", "alice/phone", "gps", "wifi", "cell", "GPS", "fix", "event", "location",
    "encrypted", "card", "battery", "strap_open", "no_gps", "power_on", "\u0000", "T+1",
    "T#", "/", "é", "🙂", "\ud800", "\udc00x", "x" * 200, "2026-03-29T01:30:00Z",
    "2026-03-29T01:30:00", "2026-03-29T01:30:00.123456789+01:00", "2026-02-30T00:00:00Z",
    "2026-03-29T24:00:00Z", "2026-03-29T23:59:60Z", "1999-12-31T23:59:59Z",
    "2100-01-01T00:00:00Z", "2099-12-31T23:59:59.9999999999Z", "0000-01-01T00:00:00Z",
    "2026-03-29T01:30:00+24:00", "2026-03-29 01:30:00z", "2026-03-29T01:30:00." + "9" * 3000 + "Z",
]  # fmt: skip
FIELDS = [
    "seq", "t", "lat", "lon", "acc", "batt", "src", "tag", "event", "type", "_type", "tst",
    "note", "", "SEQ",
]  # fmt: skip


def _jstr(s: str) -> str:
    # json.dumps escapes lone surrogates as \ud800: valid JSON, invalid Unicode
    return json.dumps(s)


def _jfloat(x: float) -> str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return repr(x)


scalar_text = st.one_of(
    st.sampled_from(["null", "true", "false"]),
    st.sampled_from(ODD_NUMBERS),
    st.integers().map(str),
    st.integers(-(2**70), 2**70).map(str),
    st.floats().map(_jfloat),
    st.floats(-200, 200).map(_jfloat),
    st.floats(T_MIN - 1e6, T_MAX + 1e6).map(_jfloat),
    st.sampled_from(ODD_STRINGS).map(_jstr),
    st.text(max_size=12).map(_jstr),
)


def _obj(pairs: list[tuple[str, str]]) -> str:
    return "{" + ",".join(f"{_jstr(k)}:{v}" for k, v in pairs) + "}"


json_text = st.recursive(
    scalar_text,
    lambda kids: st.one_of(
        st.lists(kids, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]"),
        st.lists(st.tuples(st.sampled_from(FIELDS) | st.text(max_size=6), kids), max_size=5).map(
            _obj
        ),
    ),
    max_leaves=12,
)

GOOD_FIX: dict[str, str] = {
    "seq": "41", "t": "1774719000.0", "lat": "51.5074", "lon": "-0.1278", "acc": "8.5",
    "batt": "87", "src": '"gps"',
}  # fmt: skip
GOOD_EVENT: dict[str, str] = {"seq": "42", "t": "1774719060.0", "event": '"battery"', "batt": "5"}
GOOD_OT: dict[str, str] = {
    "_type": '"location"', "tst": "1774719000", "lat": "51.5", "lon": "-0.1", "acc": "12",
    "batt": "50",
}  # fmt: skip


rfc3339 = st.builds(
    lambda d, z: d.isoformat().replace("+00:00", "Z") if z else d.isoformat(),
    st.datetimes(
        min_value=dt.datetime(1999, 12, 31), max_value=dt.datetime(2100, 1, 2),
        timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=1)),
                                   dt.timezone(dt.timedelta(hours=-9, minutes=-30))]),
    ),
    st.booleans(),
)  # fmt: skip
PLAUSIBLE: dict[str, st.SearchStrategy[str]] = {
    "seq": st.integers(-2, 2**64).map(str),
    "t": st.floats(T_MIN - 1e3, T_MAX + 1e3).map(_jfloat) | rfc3339.map(_jstr),
    "tst": st.integers(int(T_MIN) - 1000, int(T_MAX) + 1000).map(str),
    "lat": st.floats(-91, 91).map(_jfloat),
    "lon": st.floats(-181, 181).map(_jfloat),
    "acc": st.floats(-1, 1.1e5).map(_jfloat) | st.sampled_from(["0", "1e-300", "100000"]),
    "batt": st.integers(-5, 105).map(str) | st.just("null") | st.just("50.0"),
    "src": st.sampled_from([*SOURCES, "GPS", "", "null"]).map(
        lambda x: x if x == "null" else _jstr(x)
    ),
    "event": st.sampled_from([*sorted(EVENT_NAMES), "strap", ""]).map(_jstr),
    "_type": st.sampled_from(["location", "encrypted", "card", "transition", ""]).map(_jstr),
    "tag": st.sampled_from(["T1", "T2", "", "null"]).map(lambda x: x if x == "null" else _jstr(x)),
}


@st.composite
def mutated_object(draw: st.DrawFn, base: dict[str, str] | None = None) -> str:
    """A valid record with some fields replaced (mostly by plausible values: wrong by a
    little), dropped, duplicated or added."""
    if base is None:
        base = draw(st.sampled_from([GOOD_FIX, GOOD_EVENT, GOOD_OT]))
    pairs = list(base.items())
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 1, 2, 3]))):
        op = draw(st.sampled_from(["set", "set", "drop", "dup", "add"]))
        if op == "set" and pairs:
            i = draw(st.integers(0, len(pairs) - 1))
            k = pairs[i][0]
            plausible = PLAUSIBLE.get(k)
            v = draw(plausible) if plausible is not None and draw(st.integers(0, 3)) else None
            pairs[i] = (k, v if v is not None else draw(json_text))
        elif op == "drop" and pairs:
            pairs.pop(draw(st.integers(0, len(pairs) - 1)))
        elif op == "dup" and pairs:
            k = draw(st.sampled_from([k for k, _ in pairs]))
            pairs.insert(draw(st.integers(0, len(pairs))), (k, draw(PLAUSIBLE.get(k, json_text))))
        else:
            k = draw(st.sampled_from(FIELDS) | st.text(max_size=6))
            pairs.append((k, draw(PLAUSIBLE.get(k, json_text))))
    return _obj(pairs)


@st.composite
def matched_message(draw: st.DrawFn) -> tuple[str, bytes]:
    """A topic and a payload of its own kind, nearly valid."""
    kind = draw(st.sampled_from(["fix", "fixes", "event", "owntracks"]))
    if kind == "fix":
        topic, text = FIX_T, draw(mutated_object(GOOD_FIX))
    elif kind == "event":
        ev = dict(GOOD_EVENT, event=draw(PLAUSIBLE["event"]))
        topic, text = EVENT_T, draw(mutated_object(ev))
    elif kind == "owntracks":
        topic, text = OT_T, draw(mutated_object(GOOD_OT))
    else:
        items = draw(st.lists(mutated_object(GOOD_FIX), max_size=6))
        topic, text = FIXES_T, "[" + ",".join(items) + "]"
    return topic, text.encode("utf-8", "surrogatepass")


def _deep(depth: int, open_: str = "[", close: str = "]") -> str:
    return open_ * depth + close * depth


structured_payload = st.one_of(
    mutated_object(),
    json_text,
    st.lists(mutated_object(GOOD_FIX) | json_text, max_size=6).map(
        lambda xs: "[" + ",".join(xs) + "]"
    ),
    st.integers(1, 200_000).map(_deep),
    st.integers(1, 50_000).map(lambda n: '{"a":' * n + "1" + "}" * n),
)


@st.composite
def raw_bytes(draw: st.DrawFn) -> bytes:
    """Bytes that are not JSON, or nearly: truncated, bit-flipped, invalid UTF-8."""
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(st.binary(max_size=300))
    text = draw(structured_payload).encode("utf-8", "surrogatepass")
    if kind == 1 and text:  # truncated
        return text[: draw(st.integers(0, len(text) - 1))]
    if kind == 2 and text:  # a byte replaced with one that breaks UTF-8
        i = draw(st.integers(0, len(text) - 1))
        bad = draw(
            st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x00"])
        )
        return text[:i] + bad + text[i + 1 :]
    pad = draw(st.sampled_from([b" ", b"\t", b"\n", b"\xef\xbb\xbf", b"\r\n"]))
    return pad * draw(st.integers(0, 3)) + text + pad * draw(st.integers(0, 3))


tag_ids = st.one_of(
    st.sampled_from(["T1", "T2", "", "T+1", "T#1", "\ud800", "é", "x" * 129, "x" * 128, "\x00"]),
    st.text(min_size=1, max_size=10).filter(lambda s: "/" not in s),
)


@st.composite
def topics(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 4))
    if kind <= 1:
        k = draw(st.sampled_from([*TAG_KINDS, "cmd", "Fix", ""]))
        return f"tagwatch/v1/tags/{draw(tag_ids)}/{k}"
    if kind == 2:
        parts = draw(
            st.lists(st.sampled_from(["alice", "phone", "", "+", "event", "é"]), max_size=4)
        )
        return "/".join(["owntracks", *parts])
    if kind == 3:
        return draw(st.sampled_from([FIX_T, FIXES_T, EVENT_T, OT_T, "owntracks/a/b/info"]))
    return draw(st.text(max_size=40))


limits_st = st.one_of(
    st.just(Limits()),
    st.just(Limits()),
    st.just(Limits()),
    st.builds(
        Limits,
        max_payload_bytes=st.integers(0, 2_000),
        max_batch=st.integers(0, 6),
        max_id_len=st.integers(1, 12),
    ),
)

# -- invariants --------------------------------------------------------------------------


def _utf8(s: str) -> None:
    s.encode("utf-8")  # raises for lone surrogates: such text could never be stored


def check_record(r: Record, device: str, limits: Limits) -> None:
    """The contract's invariants for an accepted record."""
    assert r.device == device and device and len(device) <= limits.max_id_len
    assert "+" not in device and "#" not in device
    _utf8(device)
    assert type(r.seq) is int and 0 <= r.seq <= SEQ_MAX
    assert type(r.t) is float and math.isfinite(r.t) and T_MIN <= r.t < T_MAX
    assert r.batt is None or (type(r.batt) is int and 0 <= r.batt <= 100)
    if isinstance(r, FixRecord):
        assert type(r.lat) is float and -90.0 <= r.lat <= 90.0
        assert type(r.lon) is float and -180.0 <= r.lon <= 180.0
        assert type(r.acc) is float and 0.0 < r.acc <= ACC_MAX_M
        assert r.src is None or r.src in SOURCES
    else:
        assert isinstance(r, EventRecord) and r.event in EVENT_NAMES
        assert r.event != "battery" or r.batt is not None
    msgspec.json.encode(r)  # a pipeline dead letter re-encodes it


def check_dead(d: DeadLetter, origin: str) -> None:
    assert d.origin == origin
    assert type(d.payload) is bytes
    assert isinstance(d.reason, str) and d.reason.strip()
    assert "internal decode error" not in d.reason, d.reason
    _utf8(d.reason)


def _topic_kind(topic: str, limits: Limits) -> tuple[str, str]:
    """What decode_message must do with a topic: (kind, device), kind one of fix, fixes,
    event, owntracks, ignore (an OwnTracks sub-topic, a tag's cmd) or dead (one dead letter)."""
    if topic.startswith("tagwatch/v1/tags/"):
        parts = topic[len("tagwatch/v1/tags/") :].split("/")
        if len(parts) == 2 and parts[1] == "cmd":  # the engine's own commands, back on a
            return "ignore", ""  # shard's tags/{tag}/+ over MQTT 3.1.1
        if len(parts) == 2 and parts[1] in TAG_KINDS and parts[0]:
            tag = parts[0]
            ok = "+" not in tag and "#" not in tag and not re.search("[\ud800-\udfff]", tag)
            return (parts[1], tag) if ok and len(tag) <= limits.max_id_len else ("dead", "")
        return "dead", ""
    if topic.startswith("owntracks/"):
        parts = topic.split("/")
        if len(parts) > 3:
            return "ignore", ""
        if len(parts) == 3 and parts[1] and parts[2]:
            dev = f"{parts[1]}/{parts[2]}"
            ok = "+" not in dev and "#" not in dev and not re.search("[\ud800-\udfff]", dev)
            return ("owntracks", dev) if ok and len(dev) <= limits.max_id_len else ("dead", "")
    return "dead", ""


def _lenient(payload: bytes) -> Any:
    """Python's own parse (NaN/Infinity allowed, any integer size), or a sentinel."""
    try:
        return json.loads(payload.decode("utf-8"), parse_int=_int)
    except (ValueError, RecursionError):
        return _INVALID


_INVALID = object()


def _int(s: str) -> float:
    return int(s) if len(s) <= 4000 else math.inf  # Python refuses longer ones


def check_message(topic: str, payload: bytes, limits: Limits = DEFAULT) -> None:
    recs, dead = decode_message(topic, payload, limits)
    kind, device = _topic_kind(topic, limits)
    event(
        f"{kind}: {'records' if recs else ''}{' + ' if recs and dead else ''}"
        f"{'dead letters' if dead else ''}{'nothing' if not recs and not dead else ''}"
    )
    for d in dead:
        check_dead(d, topic)
    for r in recs:
        check_record(r, device, limits)
    if kind == "ignore":
        assert (recs, dead) == ([], [])
    elif kind == "dead":
        assert recs == [] and len(dead) == 1
    elif kind in ("fix", "event"):
        assert len(recs) + len(dead) == 1
        assert all(isinstance(r, FixRecord if kind == "fix" else EventRecord) for r in recs)
    elif kind == "owntracks":
        assert len(recs) + len(dead) <= 1
        if not recs and not dead:  # deliberately ignored: another _type
            obj = _lenient(payload)
            assert isinstance(obj, dict) and isinstance(obj.get("_type"), str)
            assert obj["_type"] not in ("location", "encrypted")
        for r in recs:
            assert r.seq == int(r.t)
    else:  # fixes: the whole payload is one dead letter, or one outcome per element
        per_element = [d for d in dead if d.reason.startswith("fixes[")]
        if len(per_element) != len(dead) or (not recs and not dead):
            assert recs == [] and (len(dead) == 1 or _lenient(payload) == [])
            return
        arr = _lenient(payload)
        assert isinstance(arr, list) and len(arr) <= limits.max_batch
        idx = [int(d.reason[len("fixes[") : d.reason.index("]")]) for d in per_element]
        assert len(set(idx)) == len(idx) and all(0 <= i < len(arr) for i in idx)
        assert len(recs) + len(dead) == len(arr)  # nothing dropped
        good = [el for i, el in enumerate(arr) if i not in set(idx)]
        alone = f"tagwatch/v1/tags/{device}/fix"
        roomy = dataclasses.replace(limits, max_payload_bytes=2**31)  # re-encoding may grow
        for i in idx:  # an element's outcome never depends on its neighbours
            assert decode_message(alone, json.dumps(arr[i]).encode(), roomy)[0] == []
        for el, r in zip(good, recs, strict=True):  # each accepted element decodes alone
            assert decode_message(alone, json.dumps(el).encode(), roomy) == ([r], [])


def check_line(line: bytes, limits: Limits = DEFAULT) -> list[Record]:
    recs, dead = decode_replay_line(line, "f.jsonl:7", limits)
    for d in dead:
        check_dead(d, "f.jsonl:7")
    body = line.rstrip(b"\r\n").removeprefix(b"\xef\xbb\xbf")
    if not body.strip():
        assert (recs, dead) == ([], [])
        return []
    assert len(recs) + len(dead) == 1  # one line, one outcome
    event("replay line: record" if recs else "replay line: dead letter")
    for r in recs:
        obj = _lenient(line)
        assert isinstance(obj, dict)
        check_record(r, obj["tag"], limits)
        assert isinstance(r, EventRecord) == (obj.get("type") == "event")
    return recs


# -- decode: MQTT messages -------------------------------------------------------------------


@fuzz(500)
@given(
    matched_message()
    | st.tuples(topics(), structured_payload.map(lambda s: s.encode("utf-8", "surrogatepass"))),
    limits_st,
)
@example((FIX_T, b'{"seq":1,"seq":-1,"t":1774719000,"lat":1,"lon":1,"acc":3}'), Limits())
@example((FIXES_T, b'[{"seq":1,"t":1774719000,"lat":1,"lon":1,"acc":3},{"t":NaN}]'), Limits())
@example((BAD_TOPIC, b'{"seq":1,"t":1774719000,"lat":1,"lon":1,"acc":3}'), Limits())
@example((OT_T, b'{"_type":"card","_type":"location","tst":1774719000,"lat":1,"lon":1}'), Limits())
def test_decode_message_structured(message: tuple[str, bytes], limits: Limits) -> None:
    check_message(*message, limits)


@fuzz(400)
@given(
    st.sampled_from([FIX_T, FIXES_T, EVENT_T, OT_T, "owntracks/a/b/event", "x/y"]) | topics(),
    raw_bytes(),
    limits_st,
)
@example(
    FIXES_T,
    b'[{"\xffeq":null,"seq":41,"t":1774719000.0,"lat":51.5,"lon":-0.12,"acc":8.5}]',
    DEFAULT,
)  # not UTF-8, yet the typed fast path took it: it skips unknown keys unread
def test_decode_message_raw_bytes(topic: str, payload: bytes, limits: Limits) -> None:
    check_message(topic, payload, limits)


@fuzz(60)
@given(st.sampled_from([FIX_T, FIXES_T, EVENT_T, OT_T]), st.integers(0, 3), structured_payload)
def test_oversized_payloads_are_one_dead_letter(topic: str, extra: int, body: str) -> None:
    limits = Limits()
    payload = body.encode("utf-8", "surrogatepass")
    payload += b" " * (limits.max_payload_bytes + extra - len(payload) + 1)
    recs, dead = decode_message(topic, payload, limits)
    assert recs == [] and len(dead) == 1 and "-byte limit" in dead[0].reason
    assert dead[0].payload == payload[:EXCERPT_BYTES] and dead[0].size == len(payload)


@fuzz(60)
@given(st.lists(mutated_object(GOOD_FIX), min_size=1, max_size=3), st.integers(0, 4))
@example(
    ['{"seq":41,"t":1774719000.0,"lat":51.5,"lon":-0.12,"acc":8.5,"note":[1e400]}'], 1
)  # kept in a clean batch, dead-lettered beside a bad one: the fast path skipped "note"
def test_fix_batches_at_and_over_the_limit(items: list[str], over: int) -> None:
    limits = Limits(max_batch=len(items) * 3 + over - 1)
    payload = ("[" + ",".join(items * 3) + "]").encode("utf-8", "surrogatepass")
    check_message(FIXES_T, payload, limits)
    recs, dead = decode_message(FIXES_T, payload, limits)
    if _lenient(payload) is _INVALID:  # e.g. a -NaN token: not even lenient JSON
        assert recs == [] and len(dead) == 1
    elif over == 0:
        assert recs == [] and dead[0].reason.startswith("batch of")
    else:
        assert len(recs) + len(dead) == len(items) * 3


# -- decode: replay lines --------------------------------------------------------------------


def _as_line(obj_text: str, tag: str | None, kind: str | None) -> bytes:
    """Put "tag" (and "type") in front of an object, as replay lines have them."""
    head = ""
    if tag is not None:
        head += f'"tag":{_jstr(tag)},'
    if kind is not None:
        head += f'"type":{_jstr(kind)},'
    if obj_text.startswith("{") and head:
        obj_text = (
            "{" + head + obj_text[1:].lstrip(",") if obj_text != "{}" else "{" + head[:-1] + "}"
        )
    return obj_text.encode("utf-8", "surrogatepass")


matched_line = st.builds(
    _as_line,
    mutated_object(GOOD_FIX),
    st.sampled_from(["T1", "T2", "alice/phone"]) | tag_ids,
    st.sampled_from([None, None, "fix"]),
)
replay_lines = st.one_of(
    matched_line,
    matched_line,
    st.builds(
        _as_line,
        st.builds(lambda e: dict(GOOD_EVENT, event=e), PLAUSIBLE["event"]).flatmap(mutated_object),
        st.sampled_from(["T1", "T2"]) | tag_ids,
        st.just("event"),
    ),
    st.builds(
        _as_line,
        mutated_object(),
        st.none() | tag_ids,
        st.sampled_from([None, "fix", "event", "Event", "x"]),
    ),
    structured_payload.map(lambda s: s.encode("utf-8", "surrogatepass")),
    raw_bytes(),
)


@fuzz(400)
@given(replay_lines, limits_st)
@example(b'{"tag":"\\ud800","seq":1,"t":1790000000,"lat":1,"lon":1,"acc":3}', Limits())
@example(b'{"tag":"T1","tag":"","seq":1,"t":1774719000,"lat":1,"lon":1,"acc":3}', Limits())
@example(b"\xef\xbb\xbf \r\n", Limits())
def test_replay_lines(line: bytes, limits: Limits) -> None:
    check_line(line, limits)


@pytest.mark.parametrize("sep", [b"\n", b"\r\n"])
def test_a_giant_replay_line_is_one_dead_letter_and_not_read_whole(
    tmp_path: Path, sep: bytes
) -> None:
    """A line far over the limit (no newline for 20 MB) is cut at the limit: one dead letter
    with the true size, and the lines after it still count."""
    good = b'{"tag":"T1","seq":1,"t":1790000000,"lat":1,"lon":1,"acc":3}'
    f = tmp_path / "big.jsonl"
    with f.open("wb") as fh:
        fh.write(good + sep)
        fh.write(b'{"tag":"T1","note":"' + b"x" * 20_000_000 + b'"}' + sep)
        fh.write(good.replace(b'"seq":1', b'"seq":2') + sep)
    with f.open("rb") as fh:
        out = list(_batches(fh, "big.jsonl", 5000, Limits()))
    recs = [r for b in out for r in b[0]]
    dead = [d for b in out for d in b[1]]
    assert [r.seq for r in recs] == [1, 2] and sum(b[2] for b in out) == 3
    (d,) = dead
    size = len(b'{"tag":"T1","note":"') + 20_000_000 + 2
    assert d.origin == "big.jsonl:2" and d.reason.startswith(f"line of {size} bytes exceeds")
    assert len(d.payload) <= EXCERPT_BYTES  # an excerpt of the cut line, not 20 MB


def test_replay_with_a_store_survives_what_is_not_unicode(tmp_path: Path) -> None:
    """Regressions through `tagwatch replay --db`: a tag id that is a lone surrogate escape
    (valid JSON) crashed the pipeline re-encoding it for its dead letter; a file name that
    is not UTF-8 crashed the store writing it as the origin."""
    zones, subjects = write_world(tmp_path)
    src = Path(os.fsdecode(bytes(tmp_path / "bad") + b"\xff.jsonl"))
    src.write_bytes(
        b'{"tag":"\\ud800","seq":1,"t":1790000000,"lat":1,"lon":1,"acc":3}\n'
        b'{"tag":"T1","seq":1,"t":1790000000,"lat":1,"lon":1,"acc":3}\n'
    )
    db = tmp_path / "x.db"
    args = ["replay", str(src), "--zones", str(zones), "--subjects", str(subjects)]
    assert main([*args, "--out", str(tmp_path / "o.jsonl"), "--db", str(db), "-q"]) == 0
    with SqliteStore(db) as st:
        (d,) = st.dead_letters()
    assert d.origin == "bad\\xff.jsonl:1" and "lone UTF-16 surrogate" in d.reason


# -- zones and subjects ----------------------------------------------------------------------

ODD_COORDS = [
    0.0, -0.0, 180.0, -180.0, 90.0, -90.0, 180.0000001, 1e308, -1e308, 1e-308, math.nan,
    math.inf, -math.inf, 5e-324, 179.9999999, 89.9999999,
]  # fmt: skip
coord = st.one_of(
    st.sampled_from(ODD_COORDS),
    st.floats(),
    st.integers(-(10**30), 10**30),
    st.sampled_from([None, True, "1.0", [], {}]),
)
junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=5),
    st.just([]),
    st.just({}),
)


@st.composite
def ring(draw: st.DrawFn) -> list[Any]:
    """Points round a centre (any order: often self-intersecting), closed or not; or junk."""
    if draw(st.integers(0, 5)) == 0:
        return draw(st.lists(st.lists(coord, max_size=4) | coord, max_size=6))
    lat = draw(st.floats(-90, 90) | st.sampled_from([51.5, 89.99, -89.99, 0.0]))
    lon = draw(st.floats(-180, 180) | st.sampled_from([-0.12, 179.999, -179.999]))
    r = draw(st.sampled_from([1e-9, 1e-6, 1e-3, 0.01, 1.0, 30.0, 200.0]) | st.floats(0, 300))
    n = draw(st.integers(0, 9))
    angles = draw(st.lists(st.floats(0, 2 * math.pi), min_size=n, max_size=n))
    if draw(st.booleans()):
        angles.sort()
    pts = [[lon + r * math.cos(a), lat + r * math.sin(a)] for a in angles]
    if pts and draw(st.booleans()):
        pts.append(list(pts[0]))
    if pts and draw(st.integers(0, 4)) == 0:
        pts.insert(draw(st.integers(0, len(pts))), list(pts[0]))  # a repeated corner
    if pts and draw(st.integers(0, 4)) == 0:
        pts[draw(st.integers(0, len(pts) - 1))].append(draw(coord))  # altitude or junk
    return pts


polygon = st.lists(ring(), max_size=3)
geometry = st.one_of(
    st.fixed_dictionaries({"type": st.just("Polygon"), "coordinates": polygon}),
    st.fixed_dictionaries(
        {"type": st.just("MultiPolygon"), "coordinates": st.lists(polygon, max_size=3)}
    ),
    st.fixed_dictionaries(
        {"type": st.just("Point"), "coordinates": st.lists(coord, max_size=3) | coord}
    ),
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["LineString", "GeometryCollection", "polygon", 3]) | junk,
            "coordinates": polygon | junk,
        }
    ),
    junk,
)
times = (
    st.sampled_from(
        [
            "19:00",
            "07:00",
            "00:00",
            "24:00",
            "23:59",
            "25:00",
            "7:00",
            "19:60",
            "",
            "19:00:00",
            "-1:00",
            "１９:００",
        ]
    )
    | junk
)
window = st.fixed_dictionaries(
    {},
    optional={
        "days": st.sampled_from(
            ["Mon-Fri", "Sat,Sun", "Mon-Sun", "Fri-Mon", "monday", "Mon-", "", "Mon,,Tue", "Xyz"]
        )
        | junk,
        "start": times,
        "end": times,
        "tz": st.sampled_from(
            [
                "Europe/London",
                "UTC",
                "America/New_York",
                "Europe",
                "../etc/passwd",
                "",
                "Nope/No",
                "\x00",
                "\ud800",
            ]
        )
        | junk,
        "extra": junk,
    },
)
hhmm = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.integers(0, 59))
good_window = st.fixed_dictionaries(
    {
        "days": st.sampled_from(["Mon-Fri", "Sat,Sun", "Mon-Sun", "Fri-Mon", "Tue", "sunday"]),
        "start": hhmm,
        "end": hhmm | st.just("24:00"),
        "tz": st.sampled_from(
            ["Europe/London", "UTC", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu"]
        ),
    }
)
metres = st.one_of(
    st.floats(), st.integers(-(10**400), 10**400), st.sampled_from([0, 1, 150.0, 1e308]), junk
)
properties = st.fixed_dictionaries(
    {},
    optional={
        "id": st.sampled_from(["Z1", "Z2", "", " ", "\ud800", "é"]) | st.text(max_size=6) | junk,
        "subject": st.sampled_from(["S1", "S2", "S9", ""]) | junk,
        "kind": st.sampled_from(["exclusion", "inclusion", "Exclusion"]) | junk,
        "name": st.text(max_size=6) | st.just("\udc00") | junk,
        "radius_m": metres,
        "warn_m": metres,
        "schedule": st.none() | st.lists(window | junk, max_size=3) | junk,
    },
)
feature = st.fixed_dictionaries(
    {
        "type": st.just("Feature") | junk,
        "properties": properties | junk,
        "geometry": geometry,
    }
)


def _good_ring(lat: float, lon: float, r: float, n: int, phase: float) -> list[list[float]]:
    """A convex ring round (lat, lon), closed; longitudes past ±180 wrap (so a ring may
    straddle the antimeridian, as RFC 7946 says it should not)."""
    pts = []
    for k in range(n):
        a = phase + 2 * math.pi * k / n
        x = lon + r * math.cos(a)
        pts.append([x - 360.0 if x > 180 else x + 360.0 if x < -180 else x, lat + r * math.sin(a)])
    return [*pts, list(pts[0])]


@st.composite
def plausible_feature(draw: st.DrawFn, i: int) -> dict[str, Any]:
    """A valid zone (polygon with a hole, two-part multipolygon, circle; anywhere on Earth,
    1 m to 50 km), then sometimes one thing in it made wrong."""
    lat = draw(st.floats(-85, 85) | st.sampled_from([51.5, 0.0, 84.9, -84.9]))
    lon = draw(st.floats(-180, 180) | st.sampled_from([-0.12, 179.9999, -179.9999, 180.0]))
    r = draw(st.sampled_from([1e-5, 1e-3, 0.01, 0.5]) | st.floats(1e-5, 0.5))
    n = draw(st.integers(3, 9))
    phase = draw(st.floats(0, 1))
    kind = draw(st.integers(0, 2))
    if kind == 0:
        rings = [_good_ring(lat, lon, r, n, phase)]
        if draw(st.booleans()):
            rings.append(_good_ring(lat, lon, r / 3, n, phase)[::-1])  # a permitted hole
        geom: dict[str, Any] = {"type": "Polygon", "coordinates": rings}
    elif kind == 1:
        parts = [[_good_ring(lat, lon, r, n, phase)], [_good_ring(lat + 3 * r, lon, r, n, phase)]]
        geom = {"type": "MultiPolygon", "coordinates": parts}
    else:
        geom = {"type": "Point", "coordinates": [lon, lat]}
    props: dict[str, Any] = {
        "id": f"Z{i}",
        "subject": draw(st.sampled_from(["S1", "S2"])),
        "kind": draw(st.sampled_from(["exclusion", "inclusion"])),
    }
    if kind == 2:
        props["radius_m"] = draw(st.floats(0.5, 50_000))
    if draw(st.booleans()):
        props["warn_m"] = draw(st.floats(0, 5000))
    if draw(st.booleans()):
        props["name"] = draw(st.text(max_size=8))
    if draw(st.booleans()):
        props["schedule"] = draw(st.lists(good_window, min_size=1, max_size=2))
    feat = {"type": "Feature", "properties": props, "geometry": geom}
    what = draw(st.integers(0, 9))
    if what == 0:
        feat["geometry"] = draw(geometry)
    elif what == 1:
        key = draw(st.sampled_from(["id", "subject", "kind", "name", "radius_m", "warn_m"]))
        props[key] = draw(junk)
    return feat


plausible_doc = (
    st.integers(1, 4)
    .flatmap(lambda n: st.tuples(*(plausible_feature(i) for i in range(n))))
    .map(lambda fs: {"type": "FeatureCollection", "features": list(fs)})
)

zones_doc = st.one_of(
    plausible_doc,
    plausible_doc,
    st.fixed_dictionaries(
        {"type": st.just("FeatureCollection"), "features": st.lists(feature, max_size=4)}
    ),
    st.fixed_dictionaries({"type": junk | st.just("Feature"), "features": junk}),
    junk,
)


def _toml_value(v: Any) -> str:
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, float):
        return (
            "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
        )
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string, but for \ud800 escapes (invalid TOML)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    return '"?"'


toml_scalar = st.one_of(
    st.text(max_size=6), st.integers(-(2**63), 2**63 - 1), st.floats(), st.booleans()
)
protected = st.fixed_dictionaries(
    {},
    optional={
        "device": st.sampled_from(["P1", "alice/phone", "T1", "", "a+b", "x#"]) | toml_scalar,
        "radius_m": st.floats() | st.integers(-1, 10**400) | st.just(500) | st.text(max_size=3),
        "warn_m": st.sampled_from([0, 1000, -1]) | toml_scalar,
    },
)
subject = st.fixed_dictionaries(
    {},
    optional={
        "id": st.sampled_from(["S1", "S2", "", "S/1", "S+"]) | toml_scalar,
        "tags": st.lists(st.sampled_from(["T1", "T2", "", "T/1", "T+"]) | toml_scalar, max_size=3)
        | toml_scalar,
        "risk": st.sampled_from([1, 3, 0, -1]) | toml_scalar,
        "protected": st.lists(protected, max_size=2),
    },
)


def _subjects_toml(subjects: list[dict[str, Any]]) -> str:
    out = []
    for s in subjects:
        out.append("[[subjects]]")
        for k, v in s.items():
            if k != "protected":
                out.append(f"{k} = {_toml_value(v)}")
        for p in s.get("protected", []):
            out.append("[[subjects.protected]]")
            out += [f"{k} = {_toml_value(v)}" for k, v in p.items()]
    return "\n".join(out) + "\n"


GOOD_SUBJECTS = (
    '[[subjects]]\nid = "S1"\ntags = ["T1"]\n[[subjects]]\nid = "S2"\ntags = ["T2"]\n'
    '[[subjects.protected]]\ndevice = "alice/phone"\nradius_m = 500\nwarn_m = 1000\n'
)
subjects_text = st.one_of(
    st.lists(subject, max_size=3).map(_subjects_toml),
    st.just(GOOD_SUBJECTS),
    st.just(GOOD_SUBJECTS),
    st.just(GOOD_SUBJECTS),
    st.text(max_size=40),
    st.integers(1, 100_000).map(lambda n: "a = " + _deep(n)),
)


def check_zone_files(tmp: Path, zones_text: bytes, subjects_text: bytes) -> None:
    zp, sp = tmp / "zones.geojson", tmp / "subjects.toml"
    zp.write_bytes(zones_text)
    sp.write_bytes(subjects_text)
    problems = check(zp, sp)
    assert all(isinstance(p, str) and p.strip() for p in problems)
    try:
        zs = load(zp, sp)
    except ZoneError as e:
        event("zones: ZoneError")
        assert problems and str(e).strip() and e.problems == problems
        for p in e.problems:
            _utf8(p)
        return
    assert problems == []
    event(f"zones: loaded, {min(len(zs.zones), 2)}{'+' if len(zs.zones) > 1 else ''} zones")
    for z in zs.zones:
        for text in (z.id, z.subject, z.name or "", *(w.tz for w in z.schedule)):
            _utf8(text)
    for s in zs.subjects:
        for text in (s.id, *s.tags, *(p.device for p in s.protected)):
            _utf8(text)
    table = compile_zones(zs)  # whatever loads must compile and be measurable
    if zs.zones:
        lat = [z.center[1] if z.center else 0.0 for z in zs.zones] + [0.0, 89.9, -45.0]
        lon = [z.center[0] if z.center else 0.0 for z in zs.zones] + [179.9, 0.0, -179.9]
        subj = [0] * len(lat)
        signed_distance_by_subject(
            table, np.array(lat), np.array(lon), np.array(subj, dtype=np.int32)
        )


def _zones_bytes(doc: Any) -> bytes:
    return json.dumps(doc).encode("utf-8", "surrogatepass")  # NaN/Infinity tokens included


@fuzz(250)
@given(
    zones_doc.map(_zones_bytes) | plausible_doc.map(_zones_bytes),
    subjects_text.map(lambda s: s.encode("utf-8", "surrogatepass"))
    | st.just(GOOD_SUBJECTS.encode()),
)
@example(
    b'{"type":"FeatureCollection","features":[],"x":' + _deep(100_000).encode() + b"}",
    b'[[subjects]]\nid = "S1"\ntags = ["T1"]\n',
)
@example(b"{}", b"a = " + _deep(100_000).encode())
@example(
    _zones_bytes(
        {
            "type": "FeatureCollection",
            "features": [
                {
                    "type": "Feature",
                    "properties": {"id": "Z\ud800", "subject": "S1", "kind": "exclusion"},
                    "geometry": {"type": "Polygon", "coordinates": [square(100.0)]},
                }
            ],
        }
    ),
    b'[[subjects]]\nid = "S1"\ntags = ["T1"]\n',
)
@example(
    _zones_bytes(
        {
            "type": "FeatureCollection",
            "features": [
                {
                    "type": "Feature",
                    "properties": {"id": "Z1", "subject": "S1", "kind": "exclusion"},
                    "geometry": {"type": "Polygon", "coordinates": _deep(900)},
                }
            ],
        }
    ).replace(b'"[[[[', b"[[[["),
    b'[[subjects]]\nid = "S1"\ntags = ["T1"]\n',
)
def test_zone_files_load_or_explain(
    tmp_path_factory: pytest.TempPathFactory, zones_text: bytes, subjects_text: bytes
) -> None:
    check_zone_files(tmp_path_factory.mktemp("z", numbered=True), zones_text, subjects_text)


@fuzz(150)
@given(raw_bytes(), raw_bytes())
def test_zone_files_from_raw_bytes(
    tmp_path_factory: pytest.TempPathFactory, zones_text: bytes, subjects_text: bytes
) -> None:
    check_zone_files(tmp_path_factory.mktemp("zr", numbered=True), zones_text, subjects_text)


# -- the pipeline on whatever decode accepts -------------------------------------------------

_WORLD: dict[str, Any] = {}
SUBJECTS = """
[[subjects]]
id = "S1"
tags = ["T1"]
risk = 3
[[subjects.protected]]
device = "alice/phone"
radius_m = 300
warn_m = 500

[[subjects]]
id = "S2"
tags = ["T2", "T3"]
[[subjects.protected]]
device = "P1"
radius_m = 200
"""


def _world(tmp: Path) -> Any:
    if "zs" not in _WORLD:
        lat, lon = offset(0.0, 0.0)
        feats = [
            {
                "type": "Feature",
                "properties": {"id": "Z1", "subject": "S1", "kind": "exclusion", "warn_m": 200},
                "geometry": {"type": "Polygon", "coordinates": [square(300.0), square(50.0)]},
            },
            {
                "type": "Feature",
                "properties": {"id": "C1", "subject": "S2", "kind": "exclusion", "radius_m": 150},
                "geometry": {"type": "Point", "coordinates": [lon, lat]},
            },
            {
                "type": "Feature",
                "properties": {
                    "id": "H2",
                    "subject": "S2",
                    "kind": "inclusion",
                    "radius_m": 400,
                    "schedule": [
                        {"days": "Mon-Sun", "start": "19:00", "end": "07:00", "tz": "Europe/London"}
                    ],
                },
                "geometry": {"type": "Point", "coordinates": [lon, lat]},
            },
        ]
        tmp.mkdir(parents=True, exist_ok=True)
        (tmp / "zones.geojson").write_text(
            json.dumps({"type": "FeatureCollection", "features": feats})
        )
        (tmp / "subjects.toml").write_text(SUBJECTS)
        _WORLD["zs"] = load(tmp / "zones.geojson", tmp / "subjects.toml")
    return _WORLD["zs"]


KNOWN = {"T1", "T2", "T3", "alice/phone", "P1"}


_DEV = st.sampled_from([*sorted(KNOWN), "GHOST", "t1"]) | tag_ids
_STEP = st.sampled_from([0.0, 1.0, 15.0, 60.0, 600.0, -300.0]) | st.floats(-1e5, 1e5)
_WHEN = st.sampled_from(["now", "now", "now", "any", "ahead", "behind"])
_ANY_T = st.floats(T_MIN, T_MAX, exclude_max=True)
_SEQ = st.integers(0, 30) | st.integers(0, SEQ_MAX)
_EVENT = st.sampled_from(sorted(EVENT_NAMES))
_METRES = st.floats(-2000, 2000)
_ACC = st.sampled_from([3.0, 8.0, 50.0, 600.0]) | st.floats(1e-9, ACC_MAX_M)
_ANY_LAT, _ANY_LON = st.floats(-90, 90), st.floats(-180, 180)
_WILD = {"ahead": 4e8, "behind": -7e8}


@st.composite
def fleet_lines(draw: st.DrawFn) -> list[bytes]:
    """Replay lines for known and unknown devices near the zones, at clustered and wild
    times, with events; some broken. (Strategies are built once, outside: building them
    per draw was most of the cost.)"""
    n = draw(st.integers(1, 25))
    out = []
    t = T0 + draw(st.floats(0, 86400))
    for _ in range(n):
        dev = draw(_DEV)
        t += draw(_STEP)
        mode = draw(_WHEN)
        when = draw(_ANY_T) if mode == "any" else t + _WILD.get(mode, 0.0)
        seq = draw(_SEQ)
        kind = draw(st.integers(0, 11))
        if kind < 2:
            obj: dict[str, Any] = {
                "tag": dev, "type": "event", "seq": seq, "t": when, "event": draw(_EVENT),
                "batt": draw(st.integers(0, 100)),
            }  # fmt: skip
        else:
            lat, lon = offset(draw(_METRES), draw(_METRES))
            if kind == 2:
                lat, lon = draw(_ANY_LAT), draw(_ANY_LON)
            obj = {"tag": dev, "seq": seq, "t": when, "lat": lat, "lon": lon, "acc": draw(_ACC)}
        line = json.dumps(obj).encode("utf-8", "surrogatepass")
        if kind == 3:
            line = draw(replay_lines)
        out.append(line)
    return out


@fuzz(120)
@given(
    fleet_lines(),
    st.sampled_from([1, 3, 1000]),
    st.none() | st.sampled_from([T0, T0 + 86400 * 30]),
    st.sampled_from([Settings(), Settings(rate_burst=5, rate_max_per_s=0.1, max_future_s=60.0)]),
)
@example(
    [
        b'{"tag":"T1","seq":5,"t":1790000000.0,"lat":51.5,"lon":-0.12,"acc":3.0}',
        b'{"tag":"T1","seq":9223372036854775807,"t":1790000060.0,"lat":51.5,"lon":-0.12,"acc":3}',
    ],
    1,
    None,
    Settings(),
)  # seq 2^63-1 has no successor: it crashed the seq ordering (OverflowError)
def test_pipeline_takes_whatever_decode_accepts(
    tmp_path_factory: pytest.TempPathFactory,
    lines: list[bytes],
    batch: int,
    wall: float | None,
    st_: Settings,
) -> None:
    zs = _world(tmp_path_factory.getbasetemp() / "fuzz-world")
    p = Pipeline(zs, st_)
    recs: list[Record] = []
    for line in lines:
        recs += check_line(line)
    unknown = [r for r in recs if r.device not in KNOWN]
    dead: list[DeadLetter] = []
    alerts = []
    for i in range(0, len(recs), batch):
        w = None if wall is None else wall + i
        res = p.process(recs[i : i + batch], origin="fuzz", wall=w)
        dead += res.dead
        alerts += res.alerts
        if w is not None:
            alerts += p.tick(float(i), wall=w).alerts
    alerts += p.finish()
    for d in dead:
        check_dead(d, "fuzz")
    ghosts = [d for d in dead if d.reason.startswith("unknown device")]
    assert len(ghosts) == len(unknown)  # every unknown device is a dead letter
    for a in alerts:
        encode_alert(a)
        assert a.subject in ("S1", "S2")
    event(f"pipeline: {'alerts' if alerts else 'no alerts'}")
    event(
        f"pipeline: {'time or rate dead letters' if len(dead) > len(ghosts) else 'no limits hit'}"
    )
