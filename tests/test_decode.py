"""Tests for engine.wire.decode: valid forms, dead-letter reasons, and never-raise properties."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from fractions import Fraction
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.wire import fastpath, topics
from engine.wire.bounds import OWNTRACKS_DEFAULT_ACC_M, T_MAX, T_MIN
from engine.wire.decode import Limits, decode_message, decode_replay_line
from engine.wire.reasons import Rejected
from engine.wire.records import EVENT_NAMES, EXCERPT_BYTES, DeadLetter, EventRecord, FixRecord
from engine.wire.validate import slow_decode, validate_event, validate_fix, validate_owntracks

T1 = "tagwatch/v1/tags/T1/"
FIX_T = T1 + "fix"
FIXES_T = T1 + "fixes"
EVENT_T = T1 + "event"
OT_T = "owntracks/alice/phone"
TOPICS = [FIX_T, FIXES_T, EVENT_T, OT_T]
T0 = 1774719000.0
GOOD = {"seq": 41, "t": T0, "lat": 51.5074, "lon": -0.1278, "acc": 8.5, "batt": 87, "src": "gps"}


def enc(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def fix(**kw: Any) -> bytes:
    d = dict(GOOD)
    for k, v in kw.items():
        if v is ...:
            d.pop(k, None)
        else:
            d[k] = v
    return enc(d)


def assert_kept(d: DeadLetter, payload: bytes) -> None:
    """A dead letter keeps an excerpt of what it rejected, with its full size and hash."""
    assert d.payload == payload[:EXCERPT_BYTES]
    assert d.size == len(payload) and d.sha256 == hashlib.sha256(payload).hexdigest()


def one_dead(topic: str, payload: bytes) -> DeadLetter:
    recs, dead = decode_message(topic, payload)
    assert recs == [], recs
    assert len(dead) == 1, dead
    assert dead[0].origin == topic
    return dead[0]


# -- valid forms ----------------------------------------------------------------------------


def test_fix() -> None:
    recs, dead = decode_message(FIX_T, fix())
    assert dead == []
    assert recs == [FixRecord("T1", 41, T0, 51.5074, -0.1278, 8.5, 87, "gps")]


def test_fix_minimal_and_int_values_extra_fields_and_matching_tag() -> None:
    p = enc({"seq": 0, "t": 1774719000, "lat": 51, "lon": 0, "acc": 3, "tag": "T1", "x": [1]})
    recs, dead = decode_message(FIX_T, p)
    assert dead == []
    assert recs == [FixRecord("T1", 0, T0, 51.0, 0.0, 3.0, None, None)]
    assert all(type(v) is float for v in (recs[0].t, recs[0].lat, recs[0].lon, recs[0].acc))


def test_null_optionals_are_absent() -> None:
    recs, _ = decode_message(FIX_T, fix(batt=None, src=None, tag=None))
    assert recs[0].batt is None and recs[0].src is None


def test_fixes_batch() -> None:
    items = [dict(GOOD, seq=i, src=s) for i, s in enumerate(["gps", "wifi", "cell"])]
    recs, dead = decode_message(FIXES_T, enc(items))
    assert dead == []
    assert [(r.seq, r.src) for r in recs] == [(0, "gps"), (1, "wifi"), (2, "cell")]


def test_empty_batch_is_nothing() -> None:
    assert decode_message(FIXES_T, b"[]") == ([], [])


def test_event() -> None:
    recs, dead = decode_message(EVENT_T, enc({"seq": 42, "t": T0, "event": "strap_open"}))
    assert dead == []
    assert recs == [EventRecord("T1", 42, T0, "strap_open", None)]


@pytest.mark.parametrize("name", sorted(EVENT_NAMES - {"battery"}))
def test_every_event_name(name: str) -> None:
    recs, dead = decode_message(EVENT_T, enc({"seq": 1, "t": T0, "event": name, "batt": 50}))
    assert dead == [] and recs == [EventRecord("T1", 1, T0, name, 50)]


def test_battery_event() -> None:
    p = enc({"seq": 43, "t": T0, "event": "battery", "batt": 9})
    recs, dead = decode_message(EVENT_T, p)
    assert dead == []
    assert recs == [EventRecord("T1", 43, T0, "battery", 9)]


def test_owntracks_location() -> None:
    p = enc(
        {
            "_type": "location",
            "tst": 1774719000,
            "lat": 51.5,
            "lon": -0.12,
            "acc": 12,
            "batt": 55,
            "t": "u",  # OwnTracks' trigger, not a time
            "tid": "ph",
        }
    )
    recs, dead = decode_message(OT_T, p)
    assert dead == []
    assert recs == [FixRecord("alice/phone", 1774719000, T0, 51.5, -0.12, 12.0, 55, None)]


def test_owntracks_location_without_acc_uses_default() -> None:
    p = enc({"_type": "location", "tst": 1774719000, "lat": 51.5, "lon": -0.12})
    recs, dead = decode_message(OT_T, p)
    assert dead == []
    assert recs[0].acc == OWNTRACKS_DEFAULT_ACC_M == 65.0
    assert recs[0].batt is None and recs[0].src is None


@pytest.mark.parametrize(
    "payload",
    [
        {"_type": "transition", "event": "enter", "lat": 1, "lon": 2, "tst": 1774719000},
        {"_type": "lwt", "tst": 1774719000},
        {"_type": "waypoint", "desc": "home", "lat": 1, "lon": 2, "rad": "x"},
        {"_type": "card", "name": "Alice"},
        {"_type": "status"},
        {"_type": "cmd", "action": "reportLocation"},
    ],
)
def test_owntracks_other_types_ignored(payload: dict[str, Any]) -> None:
    assert decode_message(OT_T, enc(payload)) == ([], [])


@pytest.mark.parametrize("sub", ["event", "cmd", "info", "waypoints", "dump", "a/b"])
def test_owntracks_subtopics_ignored(sub: str) -> None:
    assert decode_message(f"{OT_T}/{sub}", b"not even json") == ([], [])


def test_replay_fix_and_event_lines() -> None:
    line = enc(dict(GOOD, tag="T7")) + b"\n"
    assert decode_replay_line(line, "f.jsonl:1") == (
        [FixRecord("T7", 41, T0, 51.5074, -0.1278, 8.5, 87, "gps")],
        [],
    )
    line = enc(dict(GOOD, tag="alice/phone", type="fix")) + b"\r\n"
    recs, dead = decode_replay_line(line, "f.jsonl:2")
    assert dead == [] and recs[0].device == "alice/phone"
    line = enc({"tag": "T7", "type": "event", "seq": 5, "t": T0, "event": "battery", "batt": 3})
    assert decode_replay_line(line, "f.jsonl:3") == ([EventRecord("T7", 5, T0, "battery", 3)], [])


def test_boot_counter_on_fixes_events_and_replay_lines() -> None:
    """The contract's optional `boot` (int >= 0): decoded on both paths, kept in records,
    written back by the ledger's replay-line encoder and in a refused record's JSON."""
    from engine.wire.records import record_json
    from engine.wire.replayline import encode_record

    want = FixRecord("T1", 41, T0, 51.5074, -0.1278, 8.5, 87, "gps", 3)
    assert decode_message(FIX_T, fix(boot=3)) == ([want], [])
    assert decode_message(FIXES_T, b"[" + fix(boot=3) + b"]") == ([want], [])
    assert slow_decode(fix(boot=3), lambda o: validate_fix(o, "T1", "fix")) == want
    ev = enc({"seq": 5, "t": T0, "event": "power_on", "boot": 0})
    assert decode_message(EVENT_T, ev) == ([EventRecord("T1", 5, T0, "power_on", None, 0)], [])
    for r in (want, EventRecord("T1", 5, T0, "power_on", None, 0)):
        assert decode_replay_line(encode_record(r), "x") == ([r], [])
    assert json.loads(record_json(want))["boot"] == 3
    plain = FixRecord("T1", 41, T0, 51.5074, -0.1278, 8.5)
    assert b"boot" not in encode_record(plain) and b"boot" not in record_json(plain)
    assert json.loads(record_json(plain))["acc"] == 8.5
    for bad in (-1, 1.5, "2", True):
        d = one_dead(FIX_T, fix(boot=bad))
        assert "fix.boot" in d.reason, d.reason


@pytest.mark.parametrize("line", [b"", b"\n", b"   \r\n", b"\t \n"])
def test_replay_blank_lines(line: bytes) -> None:
    assert decode_replay_line(line, "f:1") == ([], [])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-28T17:30:00Z", 1774719000.0),
        ("2026-03-28T17:30:00z", 1774719000.0),
        ("2026-03-28t17:30:00+00:00", 1774719000.0),
        ("2026-03-28T17:30:00-00:00", 1774719000.0),
        ("2026-03-28 18:30:00+01:00", 1774719000.0),
        ("2026-03-28T12:30:00-05:30", 1774719000.0 + 1800),
        ("2026-03-29T01:30:00Z", 1774747800.0),
        ("2026-03-28T17:30:00.5Z", 1774719000.5),
        ("2026-03-28T18:30:00.1+01:00", 1774719000.1),
        ("2026-03-28T17:30:00.123456789Z", 1774719000.123456789),
        ("2026-03-28T17:30:00.000000000000000000001Z", 1774719000.0),
        ("2016-12-31T23:59:60Z", 1483228800.0),  # leap second, as POSIX counts it
        ("2000-01-01T00:00:00Z", 946684800.0),
    ],
)
def test_rfc3339_exact(text: str, expected: float) -> None:
    recs, dead = decode_message(FIX_T, fix(t=text))
    assert dead == []
    assert recs[0].t == expected


# -- bad forms: exactly one dead letter with a specific reason ------------------------------

BAD_FIXES: list[tuple[bytes, str]] = [
    (b"not json", "not valid JSON"),
    (b'{"seq": 1,', "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
    (b"", "not valid JSON"),
    (b"[]", "fix must be a JSON object, got an array"),
    (b"42", "fix must be a JSON object, got a number"),
    (fix(seq=...), "missing field 'seq'"),
    (fix(t=...), "missing field 't'"),
    (fix(lat=...), "missing field 'lat'"),
    (fix(lon=...), "missing field 'lon'"),
    (fix(acc=...), "missing field 'acc'"),
    (fix(seq=-1), "fix.seq must be >= 0, got -1"),
    (fix(seq=3.0), "fix.seq must be an integer >= 0, got 3.0"),
    (fix(seq="3"), "fix.seq must be an integer >= 0, got '3'"),
    (fix(seq=True), "fix.seq must be an integer >= 0, got true"),
    (fix(seq=2**63), "fix.seq: 9223372036854775808 exceeds 2^63-1"),
    (fix(lat=91.2), "fix.lat: 91.2 is outside [-90, 90]"),
    (fix(lat=-90.5), "fix.lat: -90.5 is outside [-90, 90]"),
    (fix(lon=180.01), "fix.lon: 180.01 is outside [-180, 180]"),
    (fix(lat=10**40), "fix.lat: a 40-digit integer is outside [-90, 90]"),
    (fix(lat=True), "fix.lat must be a number, got true"),
    (fix(seq=1).replace(b"1", b"9" * 5000, 1), "fix.seq: a 5000-digit integer exceeds 2^63-1"),
    (
        fix(lat=-1).replace(b"-1", b"-" + b"9" * 5000, 1),
        "fix.lat must be a finite number, got a 5000-digit integer",
    ),
    (fix(lon=False), "fix.lon must be a number, got false"),
    (fix(acc=True), "fix.acc must be a number, got true"),
    (fix(lat="51.5"), "fix.lat must be a number, got '51.5'"),
    (fix(lat=None), "fix.lat must be a number, got null"),
    (fix(acc=0), "fix.acc must be > 0, got 0"),
    (fix(acc=-3.5), "fix.acc must be > 0, got -3.5"),
    (fix(acc=100001), "fix.acc: 100001 exceeds the 100000 m limit"),
    (fix(batt=101), "fix.batt: 101 is outside [0, 100]"),
    (fix(batt=50.5), "fix.batt must be an integer 0-100, got 50.5"),
    (fix(batt=True), "fix.batt must be an integer 0-100, got true"),
    (fix(src="bluetooth"), "fix.src: unknown source 'bluetooth'"),
    (fix(src=1), "fix.src: unknown source 1"),
    (fix(t=True), "fix.t must be a number (Unix seconds) or an RFC 3339 string, got true"),
    (fix(t=None), "fix.t must be a number"),
    (fix(t=946684799.9), "fix.t: 946684799.9 is outside [2000-01-01, 2100-01-01)"),
    (fix(t=4102444800), "fix.t: 4102444800 is outside [2000-01-01, 2100-01-01)"),
    (fix(t=0), "is outside [2000-01-01, 2100-01-01)"),
    (fix(t="2026-03-29T01:30:00"), "needs a UTC offset"),
    (fix(t="2026-03-29T01:30:00.5"), "needs a UTC offset"),
    (fix(t="2026-03-29"), "is not an RFC 3339 date-time"),
    (fix(t="20260329T013000Z"), "is not an RFC 3339 date-time"),
    (fix(t="2026-03-29T01:30Z"), "is not an RFC 3339 date-time"),
    (fix(t="2026-03-29T01:30:00.Z"), "is not an RFC 3339 date-time"),
    (fix(t="2026-03-29T01:30:00+0100"), "is not an RFC 3339 date-time"),
    (fix(t="２０２６-03-29T01:30:00Z"), "is not an RFC 3339 date-time"),
    (fix(t="2026-02-30T01:30:00Z"), "is not a valid date"),
    (fix(t="2026-03-29T24:00:00Z"), "is not a valid time of day"),
    (fix(t="2026-03-29T01:30:00+24:00"), "has an invalid UTC offset"),
    (fix(t="2100-01-01T00:00:00Z"), "is outside [2000-01-01, 2100-01-01)"),
    (fix(t="1999-12-31T23:59:59.999Z"), "is outside [2000-01-01, 2100-01-01)"),
    (fix(tag="T2"), "fix.tag 'T2' does not match the topic's tag 'T1'"),
    (fix(tag=1), "fix.tag 1 does not match"),
    (
        b'{"seq":1,"t":1774719000,"lat":NaN,"lon":0,"acc":1}',
        "fix.lat must be a finite number, got NaN",
    ),
    (
        b'{"seq":1,"t":1774719000,"lat":0,"lon":-Infinity,"acc":1}',
        "fix.lon must be a finite number, got -Infinity",
    ),
    (
        b'{"seq":1,"t":1774719000,"lat":0,"lon":0,"acc":Infinity}',
        "fix.acc must be a finite number, got Infinity",
    ),
    (b'{"seq":1,"t":NaN,"lat":0,"lon":0,"acc":1}', "fix.t must be a finite number, got NaN"),
    (b'{"seq":1,"t":1774719000,"lat":1e400,"lon":0,"acc":1}', "fix.lat must be a finite number"),
    (
        b'{"seq":1,"t":1774719000,"lat":0,"lon":0,"acc":1,"extra":{"x":[NaN]}}',
        "fix.extra.x[0]: NaN is not valid JSON",
    ),
]


@pytest.mark.parametrize(("payload", "reason"), BAD_FIXES)
def test_bad_fix(payload: bytes, reason: str) -> None:
    d = one_dead(FIX_T, payload)
    assert reason in d.reason
    assert_kept(d, payload)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [(p, r) for p, r in BAD_FIXES if p.startswith(b"{") and b'"tag"' not in p],
)
def test_bad_fix_in_replay(payload: bytes, reason: str) -> None:
    line = b'{"tag":"T1",' + payload[1:]
    recs, dead = decode_replay_line(line + b"\n", "f.jsonl:12")
    assert recs == []
    assert dead == [DeadLetter("f.jsonl:12", line, dead[0].reason)]
    assert reason in dead[0].reason


BAD_EVENTS: list[tuple[Any, str]] = [
    ({"seq": 1, "t": T0, "event": "strap_cut"}, "unknown event 'strap_cut'"),
    ({"seq": 1, "t": T0, "event": 3}, "event.event must be a string, got 3"),
    ({"seq": 1, "t": T0}, "missing field 'event'"),
    ({"t": T0, "event": "no_gps"}, "missing field 'seq'"),
    ({"seq": 1, "event": "no_gps"}, "missing field 't'"),
    ({"seq": 1, "t": T0, "event": "battery"}, "event 'battery' requires batt"),
    ({"seq": 1, "t": T0, "event": "battery", "batt": None}, "event 'battery' requires batt"),
    ({"seq": 1, "t": T0, "event": "battery", "batt": 150}, "event.batt: 150 is outside [0, 100]"),
    ({"seq": 1, "t": T0, "event": "no_gps", "batt": "x"}, "event.batt must be an integer 0-100"),
    ({"seq": 1, "t": T0, "event": "no_gps", "tag": "T9"}, "event.tag 'T9' does not match"),
    ({"seq": 1.5, "t": T0, "event": "no_gps"}, "event.seq must be an integer >= 0, got 1.5"),
    ({"seq": 1, "t": "yesterday", "event": "no_gps"}, "'yesterday' is not an RFC 3339"),
    ([1], "event must be a JSON object, got an array"),
]


@pytest.mark.parametrize(("obj", "reason"), BAD_EVENTS)
def test_bad_event(obj: Any, reason: str) -> None:
    assert reason in one_dead(EVENT_T, enc(obj)).reason


BAD_OWNTRACKS: list[tuple[bytes, str]] = [
    (b"not json", "not valid JSON"),
    (b"[1, 2]", "owntracks payload must be a JSON object, got an array"),
    (b'"location"', "owntracks payload must be a JSON object, got a string"),
    (enc({"lat": 1, "lon": 2, "tst": 1774719000}), "owntracks: missing field '_type'"),
    (enc({"_type": 5}), "owntracks._type must be a string, got 5"),
    (enc({"_type": "encrypted", "data": "abc"}), "encrypted payloads are not supported"),
    (enc({"_type": "location", "lat": 1, "lon": 2}), "owntracks: missing field 'tst'"),
    (enc({"_type": "location", "tst": 1774719000, "lon": 2}), "missing field 'lat'"),
    (
        enc({"_type": "location", "tst": 1774719000.5, "lat": 1, "lon": 2}),
        "owntracks.tst must be an integer (Unix seconds), got 1774719000.5",
    ),
    (enc({"_type": "location", "tst": 5, "lat": 1, "lon": 2}), "owntracks.tst: 5 is outside"),
    (enc({"_type": "location", "tst": 1774719000, "lat": 91, "lon": 2}), "owntracks.lat: 91"),
    (
        enc({"_type": "location", "tst": 1774719000, "lat": 1, "lon": 2, "acc": 0}),
        "owntracks.acc must be > 0, got 0",
    ),
    (
        enc({"_type": "location", "tst": 1774719000, "lat": 1, "lon": 2, "acc": -5}),
        "owntracks.acc must be > 0, got -5",
    ),
    (
        enc({"_type": "location", "tst": 1774719000, "lat": 1, "lon": 2, "batt": 101}),
        "owntracks.batt: 101 is outside [0, 100]",
    ),
    (
        b'{"_type":"location","tst":1774719000,"lat":NaN,"lon":2}',
        "owntracks.lat must be a finite number, got NaN",
    ),
]


@pytest.mark.parametrize(("payload", "reason"), BAD_OWNTRACKS)
def test_bad_owntracks(payload: bytes, reason: str) -> None:
    assert reason in one_dead(OT_T, payload).reason


BAD_TOPICS: list[tuple[str, str]] = [
    ("tagwatch/v1/tags//fix", "topic 'tagwatch/v1/tags//fix' has an empty tag id"),
    ("tagwatch/v1/tags/T+1/fix", "contains '+'"),
    ("tagwatch/v1/tags/T#/event", "contains '#'"),
    ("tagwatch/v1/tags/" + "x" * 129 + "/fix", "129 characters long, over the 128-character"),
    ("tagwatch/v1/tags/T1/status", "unknown topic"),
    ("tagwatch/v1/tags/T1/fix/extra", "unknown topic"),
    ("tagwatch/v1/tags/T1", "unknown topic"),
    ("tagwatch/v1/alerts/S1", "unknown topic"),
    ("tagwatch/v2/tags/T1/fix", "unknown topic"),
    ("something/else", "unknown topic 'something/else'"),
    ("", "unknown topic"),
    ("owntracks/alice", "unknown topic"),
    ("owntracks//phone", "has an empty user or device"),
    ("owntracks/alice/", "has an empty user or device"),
    ("owntracks/a+b/phone", "contains '+'"),
    ("owntracks/" + "u" * 100 + "/" + "d" * 100, "device id"),
]


@pytest.mark.parametrize(("topic", "reason"), BAD_TOPICS)
def test_bad_topic(topic: str, reason: str) -> None:
    assert reason in one_dead(topic, fix()).reason


def test_a_tags_cmd_is_the_engines_own_traffic_and_a_tags_filter_narrows_to_its_inputs() -> None:
    """A shard's one filter per tag (`tags/{tag}/+`) brings the engine's own rate commands
    back over MQTT 3.1.1 (no No Local there): ignored, neither decoded nor dead-lettered.
    Any other sub-topic still is a dead letter. A broker refusing the filter gets the tag's
    three input topics, which decode as the tag's."""
    assert decode_message("tagwatch/v1/tags/T1/cmd", b'{"rate_s": 15}') == ([], [])
    assert "unknown topic" in one_dead("tagwatch/v1/tags/T1/cmdx", fix()).reason
    narrow = topics.narrower("tagwatch/v1/tags/T1/+")
    assert [topics.parse_input(t) for t in narrow] == [
        ("fix", "T1"),
        ("fixes", "T1"),
        ("event", "T1"),
    ]
    for wide in ("tagwatch/v1/tags/+/fix", "tagwatch/v1/gateway/+/fixes", "owntracks/+/+",
                 "tagwatch/v1/tags/a/b/+", "tagwatch/v1/tags/+/+"):  # fmt: skip
        assert topics.narrower(wide) == ()
    assert topics.device_filters(["T1"], ["alice/phone", "U1"]) == (
        "tagwatch/v1/tags/T1/+", "owntracks/alice/phone", "tagwatch/v1/tags/U1/+",
        "tagwatch/v1/gateway/+/fixes",
    )  # fmt: skip


def test_topic_cache_respects_each_callers_limit() -> None:
    topic = "tagwatch/v1/tags/" + "x" * 20 + "/fix"
    assert decode_message(topic, fix())[0]
    assert "over the 10-character limit" in one_dead_l(topic, fix(), Limits(max_id_len=10))


def one_dead_l(topic: str, payload: bytes, limits: Limits) -> str:
    recs, dead = decode_message(topic, payload, limits)
    assert recs == [] and len(dead) == 1
    return dead[0].reason


BAD_REPLAY: list[tuple[bytes, str]] = [
    (b"nope", "not valid JSON"),
    (b"[1]", "replay line must be a JSON object, got an array"),
    (fix(), "line: missing field 'tag'"),
    (enc(dict(GOOD, tag=5)), "line.tag must be a string, got 5"),
    (enc(dict(GOOD, tag="")), "line.tag is empty"),
    (enc(dict(GOOD, tag="a+b")), "contains '+'"),
    (enc(dict(GOOD, tag="x" * 129)), "over the 128-character limit"),
    (enc(dict(GOOD, tag="T1", type="alert")), "unknown type 'alert'"),
    (enc(dict(GOOD, tag="T1", type=None, lat=100)), "fix.lat: 100 is outside"),
    (enc({"tag": "T1", "seq": 1, "t": T0, "event": "no_gps"}), '"type": "event"'),
    (enc({"tag": "T1", "type": "event", "seq": 1, "t": T0, "event": "x"}), "unknown event 'x'"),
]


@pytest.mark.parametrize(("line", "reason"), BAD_REPLAY)
def test_bad_replay_line(line: bytes, reason: str) -> None:
    recs, dead = decode_replay_line(line + b"\n", "file.jsonl:12")
    assert recs == []
    assert len(dead) == 1
    assert dead[0] == DeadLetter("file.jsonl:12", line, dead[0].reason)
    assert reason in dead[0].reason


def test_batch_with_bad_elements_keeps_good_ones() -> None:
    items: list[Any] = [dict(GOOD, seq=i) for i in range(6)]
    items[3] = dict(GOOD, seq=3, lat=91.2)
    items[5] = "junk"
    payload = enc(items)
    recs, dead = decode_message(FIXES_T, payload)
    assert [r.seq for r in recs] == [0, 1, 2, 4]
    assert [d.reason for d in dead] == [
        "fixes[3]: fix.lat: 91.2 is outside [-90, 90]",
        "fixes[5]: fix must be a JSON object, got a string",
    ]
    assert all(d.origin == FIXES_T for d in dead)
    assert json.loads(dead[0].payload) == items[3]
    assert json.loads(dead[1].payload) == "junk"


def test_batch_with_nan_element_keeps_good_ones() -> None:
    payload = b"[" + fix(seq=1) + b',{"seq":2,"t":1774719000,"lat":NaN,"lon":0,"acc":1}]'
    recs, dead = decode_message(FIXES_T, payload)
    assert [r.seq for r in recs] == [1]
    assert len(dead) == 1
    assert dead[0].reason == "fixes[1]: fix.lat must be a finite number, got NaN"
    # its own element, written as it came (the whole payload was kept once per element)
    assert dead[0].payload == b'{"seq":2,"t":1774719000,"lat":NaN,"lon":0,"acc":1}'


def test_batch_not_an_array() -> None:
    assert "fixes payload must be a JSON array, got an object" in one_dead(FIXES_T, fix()).reason


def test_batch_too_long() -> None:
    payload = enc([GOOD] * 3)
    reason = one_dead_l(FIXES_T, payload, Limits(max_batch=2))
    assert reason == "batch of 3 fixes exceeds the 2-fix limit"
    bad = enc([GOOD, GOOD, dict(GOOD, lat=100)])
    assert one_dead_l(FIXES_T, bad, Limits(max_batch=2)) == reason


def test_oversized_payload() -> None:
    payload = b" " * 400_000 + fix()
    d = one_dead(FIX_T, payload)
    assert d.reason == f"payload of {len(payload)} bytes exceeds the 262144-byte limit"
    assert_kept(d, payload)
    assert decode_message(FIX_T, payload, Limits(max_payload_bytes=10**6))[0]
    line = b" " * 300_000 + fix(tag="T1")
    recs, dead = decode_replay_line(line, "f:1")
    assert recs == [] and dead[0].reason.startswith(f"line of {len(line)} bytes exceeds")


def test_payload_types_are_tolerated() -> None:
    assert decode_message(FIX_T, bytearray(fix()))[0]  # type: ignore[arg-type]
    assert decode_message(FIX_T, memoryview(fix()))[0]  # type: ignore[arg-type]
    d = one_dead(FIX_T, None)  # type: ignore[arg-type]
    assert d.payload == b"" and "not valid JSON" in d.reason


def test_deep_nesting_does_not_raise() -> None:
    payload = b"[" * 100_000 + b"]" * 100_000
    for topic in TOPICS:
        assert "not valid JSON" in one_dead(topic, payload).reason


def test_fast_record_constructor_matches_dataclass() -> None:
    args = ("T1", 1, T0, 1.0, 2.0, 3.0, None, "gps")
    r = fastpath.new_fix(*args)
    assert r == FixRecord(*args) and hash(r) == hash(FixRecord(*args))
    assert type(r) is FixRecord
    with pytest.raises(AttributeError):
        r.lat = 5.0  # type: ignore[misc]
    e = fastpath.new_event("T1", 1, T0, "battery", 5)
    assert e == EventRecord("T1", 1, T0, "battery", 5) and type(e) is EventRecord


# -- properties ----------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
field_names = st.sampled_from(
    ["seq", "t", "lat", "lon", "acc", "batt", "src", "tag", "event", "type", "_type", "tst"]
)
mutated = st.builds(
    lambda base, changes: {**base, **changes},
    st.sampled_from(
        [
            GOOD,
            {"seq": 1, "t": T0, "event": "battery", "batt": 3},
            {"_type": "location", "tst": 1774719000, "lat": 1.0, "lon": 2.0},
            dict(GOOD, tag="T1"),
            dict(GOOD, tag="T1", type="fix"),
            {"tag": "T1", "type": "event", "seq": 1, "t": T0, "event": "no_gps"},
        ]
    ),
    st.dictionaries(field_names, json_values, max_size=3),
)


def ignorable(topic: str, payload: bytes) -> bool:
    """The documented cases that yield neither records nor dead letters."""
    try:
        obj = json.loads(payload)
    except Exception:
        return False
    if topic == FIXES_T:
        return obj == []
    if topic == OT_T:
        ty = obj.get("_type") if isinstance(obj, dict) else None
        return isinstance(ty, str) and ty not in ("location", "encrypted")
    return False


def check_outcome(topic: str, payload: bytes) -> None:
    recs, dead = decode_message(topic, payload)
    assert all(d.origin == topic and isinstance(d.reason, str) and d.reason for d in dead)
    assert all(isinstance(d.payload, bytes) for d in dead)
    if not ignorable(topic, payload):
        assert recs or dead
    if topic != FIXES_T:
        assert len(recs) + len(dead) <= 1
    assert not any("internal decode error" in d.reason for d in dead)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(TOPICS), st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(topic: str, payload: bytes) -> None:
    check_outcome(topic, payload)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(TOPICS), json_values | mutated | st.lists(mutated, max_size=4))
def test_arbitrary_json_never_raises(topic: str, value: Any) -> None:
    check_outcome(topic, enc(value))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(json_values | mutated)
def test_arbitrary_replay_lines_never_raise(value: Any) -> None:
    line = enc(value)
    recs, dead = decode_replay_line(line, "f:1")
    assert len(recs) + len(dead) == 1
    assert not any("internal decode error" in d.reason for d in dead)


@settings(max_examples=300)
@given(st.sampled_from([FIX_T, EVENT_T, OT_T]), mutated)
def test_fast_path_agrees_with_slow_path(topic: str, value: dict[str, Any]) -> None:
    """The typed fast path may only accept what the generic validator accepts, identically."""
    payload = enc(value)
    recs, dead = decode_message(topic, payload)
    if topic == OT_T:
        validate: Any = lambda obj: validate_owntracks(obj, "alice/phone")  # noqa: E731
    else:
        check = validate_fix if topic == FIX_T else validate_event
        validate = lambda obj: check(obj, "T1", topic.rsplit("/", 1)[1])  # noqa: E731
    try:
        slow = slow_decode(payload, validate)
    except Rejected as bad:
        assert recs == [] and [d.reason for d in dead] == [bad.reason]
    else:
        assert dead == []
        assert recs == ([] if slow is None else [slow])


finite = st.floats(allow_nan=False, allow_infinity=False)
valid_fix = st.fixed_dictionaries(
    {
        "seq": st.integers(0, 2**63 - 1),
        "t": st.floats(T_MIN, T_MAX, exclude_max=True),
        "lat": st.floats(-90, 90),
        "lon": st.floats(-180, 180),
        "acc": st.floats(0, 100_000, exclude_min=True),
    },
    optional={
        "batt": st.integers(0, 100) | st.none(),
        "src": st.sampled_from(["gps", "wifi", "cell"]) | st.none(),
        "tag": st.just("T1"),
        "note": st.text(max_size=5),
    },
)


@settings(max_examples=300)
@given(valid_fix)
def test_round_trip(d: dict[str, Any]) -> None:
    for payload in (enc(d), msgspec.json.encode(d)):
        recs, dead = decode_message(FIX_T, payload)
        assert dead == []
        (r,) = recs
        assert (r.device, r.seq, r.t, r.lat, r.lon, r.acc, r.batt, r.src) == (
            "T1",
            d["seq"],
            d["t"],
            d["lat"],
            d["lon"],
            d["acc"],
            d.get("batt"),
            d.get("src"),
        )
    recs, dead = decode_message(FIXES_T, enc([d, d]))
    assert dead == [] and len(recs) == 2
    recs, dead = decode_replay_line(enc(dict(d, tag="T1")), "f:1")
    assert dead == [] and recs[0].t == d["t"]


@settings(max_examples=200)
@given(
    st.datetimes(
        min_value=dt.datetime(2000, 1, 2),
        max_value=dt.datetime(2099, 12, 30),
    ),
    st.integers(-23 * 60 - 59, 23 * 60 + 59),
    st.integers(0, 999_999),
)
def test_rfc3339_matches_datetime(naive: Any, offset_min: int, micros: int) -> None:
    tz = dt.timezone(dt.timedelta(minutes=offset_min))
    aware = naive.replace(microsecond=micros, tzinfo=tz)
    text = aware.isoformat()
    recs, dead = decode_message(FIX_T, fix(t=text))
    if not T_MIN <= aware.timestamp() < T_MAX:
        assert dead
        return
    assert dead == []
    exact = (aware - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) / dt.timedelta(microseconds=1)
    assert recs[0].t == float(Fraction(int(exact), 10**6))
    assert math.isclose(recs[0].t, aware.timestamp(), abs_tol=1e-6)


def test_replay_line_with_byte_order_mark() -> None:
    recs, dead = decode_replay_line(b"\xef\xbb\xbf" + enc(dict(GOOD, tag="T1")) + b"\n", "f:1")
    assert dead == [] and recs[0].seq == 41


def test_empty_payload_reason() -> None:
    for topic in TOPICS:
        assert one_dead(topic, b"").reason == "not valid JSON: empty payload"


def test_long_topic_is_shortened_in_reason() -> None:
    topic = "x/" * 5000
    reason = one_dead(topic, b"{}").reason
    assert reason.startswith("unknown topic 'x/x/") and len(reason) < 200
