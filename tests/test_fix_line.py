"""`fastpath.fix_line` (the replay reader's first try at a line: a plain fix, checked by
the decoder) against the fast and slow paths it stands in front of: whenever it gives a
record, `read_replay_line` gives that same record and nothing else."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from engine.wire.bounds import ACC_MAX_M, SEQ_MAX, T_MAX, T_MIN, Limits
from engine.wire.fastpath import DEC_ONE, fix_line
from engine.wire.replayline import fast_line, read_replay_line

LIMITS = Limits()
EDGE_FLOATS = [0.0, -0.0, 90.0, -90.0, 90.000001, 180.0, -180.0, 180.5, ACC_MAX_M,
               ACC_MAX_M + 0.5, T_MIN, T_MIN - 1.0, T_MAX, T_MAX - 0.5, 1e300]  # fmt: skip
EDGE_INTS = [0, -1, 1, 100, 101, SEQ_MAX, SEQ_MAX + 1, 2**64, 1774719000]
VALUE = st.one_of(
    st.none(), st.booleans(), st.sampled_from(EDGE_INTS), st.sampled_from(EDGE_FLOATS),
    st.integers(-10, 200), st.floats(-200.0, 200.0, allow_nan=False),
    st.floats(T_MIN - 10.0, T_MAX + 10.0), st.text(max_size=6),
    st.sampled_from(["gps", "wifi", "cell", "GPS", "fix", "event", "2026-03-28T15:00:00Z"]),
)  # fmt: skip
TAGS = st.one_of(
    st.sampled_from(["T1", "victim1/phone", "", "a+b", "a#b", "x" * 129, "\ud800x", "é"]),
    st.text(max_size=8), st.integers(0, 3), st.none(),
)  # fmt: skip
PLAIN = {"tag": "T1", "seq": 5, "t": 1774719000.0, "lat": 51.5, "lon": -0.1, "acc": 9.0}


@st.composite
def lines(draw: st.DrawFn) -> bytes:
    obj: dict[str, Any] = dict(PLAIN) if draw(st.booleans()) else {}
    for key in draw(st.lists(st.sampled_from(
        ["tag", "seq", "t", "lat", "lon", "acc", "batt", "src", "type", "boot", "event", "x"]
    ), max_size=5)):  # fmt: skip
        obj[key] = draw(TAGS if key == "tag" else VALUE)
    if obj:
        for key in draw(st.lists(st.sampled_from(sorted(obj)), max_size=2, unique=True)):
            del obj[key]
    text = json.dumps(obj, ensure_ascii=draw(st.booleans()), allow_nan=False)
    return text.encode("utf-8", "surrogatepass")


def _via_fast_line(line: bytes) -> Any:
    try:
        return fast_line(DEC_ONE.decode(line), LIMITS)
    except Exception:
        return None


@settings(max_examples=3000, deadline=None)
@example(json.dumps(PLAIN).encode())
@example(json.dumps({**PLAIN, "t": 1774719000, "lat": 51, "batt": 100, "boot": 0}).encode())
@example(json.dumps({**PLAIN, "src": "cell", "type": "fix", "batt": None}).encode())
@given(lines())
def test_fix_line_is_what_the_replay_reader_makes(line: bytes) -> None:
    try:
        got = fix_line(line, LIMITS.max_id_len)
    except Exception:
        got = None
    if got is None:
        return  # the reader decides as before
    assert got == _via_fast_line(line)
    recs, dead = read_replay_line(line + b"\n", "x:1", LIMITS)
    assert recs == [got] and dead == []
    assert [type(v) for v in (got.seq, got.t, got.lat, got.lon, got.acc)] == [
        int, float, float, float, float
    ]  # fmt: skip
    assert math.isfinite(got.t)


# every bound of the fast path, just in and just out
BOUNDS: list[dict[str, Any]] = [
    {"t": T_MIN}, {"t": T_MIN - 0.001}, {"t": T_MAX}, {"t": T_MAX - 0.001}, {"t": "2026-03-28T15:00:00Z"},
    {"lat": 90.0}, {"lat": 90.000001}, {"lat": -90.000001}, {"lon": 180.0}, {"lon": -180.0001},
    {"acc": 0.0}, {"acc": 1e-9}, {"acc": ACC_MAX_M}, {"acc": ACC_MAX_M + 1e-6},
    {"seq": 0}, {"seq": -1}, {"seq": SEQ_MAX}, {"seq": SEQ_MAX + 1}, {"boot": -1}, {"boot": SEQ_MAX + 1},
    {"batt": 0}, {"batt": 100}, {"batt": 101}, {"batt": -1}, {"batt": True}, {"src": "GPS"},
    {"type": "event"}, {"tag": "a#b"}, {"tag": "a+b"}, {"tag": ""}, {"tag": "x" * 129},
    {"tag": "x" * 128}, {"tag": "\ud800"}, {"event": "charging_on"}, {"extra": 1},
]  # fmt: skip


def test_fix_line_at_every_bound() -> None:
    for change in BOUNDS:
        line = json.dumps({**PLAIN, **change}).encode()
        try:
            got = fix_line(line, LIMITS.max_id_len)
        except Exception:
            got = None
        assert got == _via_fast_line(line) or got is None, change
        if got is not None:
            assert read_replay_line(line + b"\n", "x:1", LIMITS) == ([got], []), change


def test_fix_line_takes_the_plain_fix() -> None:
    assert fix_line(json.dumps(PLAIN).encode(), LIMITS.max_id_len) is not None
