"""`fastpath.fix_line` (the replay reader's first try at a line: a plain fix, checked by
the decoder) against the fast and slow paths it stands in front of: whenever it gives a
record, `read_replay_line` gives that same record and nothing else."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from engine.core.pipeline import Pipeline
from engine.replayfile import batches as _batches
from engine.settings import Settings
from engine.wire.bounds import ACC_MAX_M, SEQ_MAX, T_MAX, T_MIN, Limits
from engine.wire.decode import decode_replay_line
from engine.wire.fastpath import DEC_ONE, FixLines, fix_line
from engine.wire.records import EventRecord, FixRecord
from engine.wire.replayline import fast_line, read_replay_line
from tests.helpers import fix, write_world
from zones.load import load

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


# -- the replay reader's batches (`FixLines`): what it yields, and what the pipeline makes of it


def _file_lines(draw: st.DrawFn) -> list[bytes]:
    """Lines of a replay file: mostly plain fixes of T1 (inside and outside Z1), some
    hypothesis lines, events, a byte order mark, CRLF and blank lines."""
    out = []
    for i in range(draw(st.integers(0, 40))):
        kind = draw(st.sampled_from(["fix", "fix", "fix", "line", "event", "bom", "crlf", ""]))
        dx, dy = draw(st.floats(-300, 300)), draw(st.floats(-300, 300))
        obj = {
            "tag": draw(st.sampled_from(["T1", "T1", "T9"])),
            **fix(i, 1774719000.0 + 30 * i, dx, dy),
        }
        if kind == "line":
            out.append(draw(lines()))
        elif kind == "event":
            out.append(json.dumps({"tag": "T1", "seq": i, "t": obj["t"], "type": "event",
                                   "event": draw(st.sampled_from(["strap_open", "charging_on"]))}).encode())  # fmt: skip
        elif kind == "bom":
            out.append(b"\xef\xbb\xbf" + json.dumps(obj).encode())
        elif kind == "crlf":
            out.append(json.dumps(obj).encode() + b"\r")
        elif kind == "":
            out.append(b"")
        else:
            out.append(json.dumps(obj).encode())
    return out


@settings(max_examples=300, deadline=None)
@given(data=st.data(), batch=st.integers(1, 12))
def test_replay_batches_are_the_lines_records_and_decide_alike(
    data: st.DataObject, batch: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`_batches` yields, in order, exactly the records and dead letters `decode_replay_line`
    makes of each line; and a pipeline fed those batches (plain lines read as columns, no
    record objects) decides exactly as one fed the same records as a list."""
    ls = _file_lines(data.draw)
    d = tmp_path_factory.mktemp("fl")
    f = d / "t.jsonl"
    f.write_bytes(b"".join(line + b"\n" for line in ls))
    with f.open("rb") as fh:
        out = list(_batches(fh, "t.jsonl", batch, LIMITS))
    want_r: list[Any] = []
    want_d: list[Any] = []
    for i, line in enumerate(ls, 1):
        r, dl = decode_replay_line(line + b"\n", f"t.jsonl:{i}", LIMITS)
        want_r += r
        want_d += dl
    assert [r for b in out for r in b[0]] == want_r
    assert [x for b in out for x in b[1]] == want_d
    assert sum(b[2] for b in out) == len(ls)
    zones, subjects = write_world(d)
    a, b = Pipeline(load(zones, subjects), Settings()), Pipeline(load(zones, subjects), Settings())
    for recs, _, _, _ in out:
        ra, rb = a.process(recs, origin="t"), b.process(list(recs), origin="t")
        assert (ra.alerts, ra.dead, ra.fixes, ra.events, ra.duplicates, ra.traceless) == (
            rb.alerts, rb.dead, rb.fixes, rb.events, rb.duplicates, rb.traceless
        )  # fmt: skip
    assert a.finish() == b.finish()


def test_plain_lines_stay_as_decoded() -> None:
    """A batch of plain fix lines holds no record objects (the pipeline takes its columns);
    one other record in it and the pipeline reads records (it is not `plain`)."""
    import io

    body = b"".join(json.dumps({**PLAIN, "seq": i}).encode() + b"\n" for i in range(5))
    ((recs, dead, n, _),) = list(_batches(io.BytesIO(body), "x", 10, LIMITS))
    assert isinstance(recs, FixLines) and n == 5 and dead == []
    assert not any(isinstance(x, FixRecord) for x in recs.items)
    assert recs.plain and [s.seq for s in recs.items] == [0, 1, 2, 3, 4]
    assert [s.tag for s in recs.items] == ["T1"] * 5
    assert recs[4] == fix_line(json.dumps({**PLAIN, "seq": 4}).encode(), LIMITS.max_id_len)
    ev = b'{"tag":"T1","seq":9,"t":1774719000.0,"type":"event","event":"strap_open"}\n'
    ((recs, _, _, _),) = list(_batches(io.BytesIO(body + ev), "x", 10, LIMITS))
    assert not recs.plain and isinstance(recs[5], EventRecord)
