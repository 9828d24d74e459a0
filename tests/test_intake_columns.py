"""A shard's intake of a gateway batch (engine/core/intake/columns.py): the fixes of its
own tags go column by column and other shards' are counted and left without a trace, with
no record object made for either. Held to the record path (every record, one by one)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.intake.columns import usual_columns
from engine.core.pipeline import Pipeline
from engine.settings import Settings
from engine.store.config import ConfigFiles
from engine.wire.decode import decode_into
from engine.wire.fastpath import DEC_FIX_LINE, FixLines
from engine.wire.records import EventRecord, FixRecord
from tests.helpers import offset, square, write_world
from zones.shard import Shard

N = 6  # subjects S0..S5, one tag each, zone Zi 2 km east of the one before
TOPIC = "tagwatch/v1/gateway/GW/fixes"


def _world(d: Path) -> tuple[Path, Path]:
    features = [
        {
            "type": "Feature",
            "properties": {"id": f"Z{i}", "subject": f"S{i}", "kind": "exclusion"},
            "geometry": {"type": "Polygon", "coordinates": [square(100.0, cx=2000.0 * i)]},
        }
        for i in range(N)
    ]
    subjects = "".join(f'[[subjects]]\nid = "S{i}"\ntags = ["T{i}"]\n\n' for i in range(N))
    tags = ", ".join(f'"T{i}"' for i in range(N))
    subjects += f'[[gateways]]\nid = "GW"\ntags = [{tags}]\n'
    return write_world(d, features, subjects)


_step = st.tuples(
    st.sampled_from([f"T{i}" for i in range(N)] * 4 + ["TX"]),  # TX: in no subject
    st.floats(-300.0, 300.0),  # metres east of the tag's zone centre
    st.floats(-300.0, 300.0),
    st.integers(0, 2),  # seq step (0: a duplicate)
)


@settings(max_examples=60, deadline=None)
@given(batches=st.lists(st.lists(_step, min_size=1, max_size=10), min_size=1, max_size=8))
def test_a_shard_decides_gateway_batches_as_the_record_path_does(
    batches: list[list[tuple[str, float, float, int]]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    zones, subjects = _world(tmp_path_factory.mktemp("cols"))
    a, b = (
        Pipeline(ConfigFiles.read(zones, subjects, Shard(0, 2)).zoneset(), Settings())
        for _ in range(2)
    )
    assert a.zoneset.elsewhere and a.registry.n_tags  # both sides hold some tags
    seq: dict[str, int] = {}
    t = 1.7e9
    for batch in batches:
        els: list[dict[str, Any]] = []
        for tag, dx, dy, ds in batch:
            t += 20.0
            seq[tag] = seq.get(tag, 0) + ds
            lat, lon = offset(2000.0 * int(tag[1:] if tag != "TX" else 0) + dx, dy)
            els.append({"tag": tag, "seq": seq[tag], "t": t, "lat": lat, "lon": lon, "acc": 8.0})
        lines = FixLines()  # as a gateway's batch decodes, with tags it may not have
        for el in els:
            lines.add_line(DEC_FIX_LINE.decode(json.dumps(el).encode()))
        ra = a.process(lines, origin="gw")
        with mock.patch("engine.core.pipeline.usual_columns", return_value=None):
            rb = b.process(list(lines), origin="gw")
        assert (ra.alerts, ra.dead, ra.fixes, ra.duplicates, ra.elsewhere) == (
            rb.alerts, rb.dead, rb.fixes, rb.duplicates, rb.elsewhere
        )  # fmt: skip
        assert sorted(ra.traceless) == sorted(rb.traceless)
    assert a.finish() == b.finish()


def test_other_shards_fixes_make_no_record_object(tmp_path: Path) -> None:
    """A batch of own and other shards' fixes is taken as columns: asking a FixLines for a
    record (what the record path does) is never needed."""
    zones, subjects = _world(tmp_path)
    p = Pipeline(ConfigFiles.read(zones, subjects, Shard(0, 2)).zoneset(), Settings())
    own = [f"T{i}" for i in range(N) if p.registry.slot(f"T{i}") >= 0]
    away = [f"T{i}" for i in range(N) if f"T{i}" in p.zoneset.elsewhere]
    assert own and away
    els = [
        {"tag": tag, "seq": k, "t": 1.7e9 + 10 * k, "lat": 51.5, "lon": -0.1, "acc": 5.0}
        for k in range(3)
        for tag in own + away
    ]
    lines = FixLines()
    decode_into(lines, TOPIC, json.dumps(els).encode(), gateways=p.gateways)
    with mock.patch.object(FixLines, "at", side_effect=AssertionError("a record was made")):
        res = p.process(lines, origin="gw")
    assert res.elsewhere == 3 * len(away) and res.fixes == 3 * len(own)
    assert sorted(res.traceless) == [i for i, el in enumerate(els) if el["tag"] in away]
    assert not any(isinstance(x, FixRecord) for x in lines.items)


def test_a_live_batch_of_lines_and_fix_records_is_taken_as_columns(tmp_path: Path) -> None:
    """A live batch mixes a gateway's decoded lines with single-fix messages' records: it is
    still taken column by column (an event in it sends it the record path), with the
    columns the records themselves give."""
    zones, subjects = _world(tmp_path)
    p = Pipeline(ConfigFiles.read(zones, subjects).zoneset(), Settings())
    slot_of = p.registry.slot_of
    els = [
        {"tag": f"T{k % N}", "seq": k, "t": 1.7e9 + 10 * k, "lat": 51.5, "lon": -0.1,
         "acc": 5.0 + k, **({"batt": 50} if k % 2 else {"src": "wifi", "boot": 3})}
        for k in range(8)
    ]  # fmt: skip
    lines = FixLines()
    for k, el in enumerate(els):
        line = DEC_FIX_LINE.decode(json.dumps(el).encode())
        if k % 3:
            lines.add_line(line)
        else:
            lines.add(FixLines.of_lines([line])[0])  # a record, as a single-fix message's
    assert not lines.plain
    got = usual_columns(lines, slot_of)
    want = usual_columns(list(lines), slot_of)
    assert got is not None and want is not None
    assert got[0] == want[0] and got[3] == want[3] == []
    assert [list(c) for c in got[1]] == [list(c) for c in want[1]] and got[2] == want[2]
    lines.add(EventRecord("T1", 99, 1.7e9 + 500, "strap_open", None))
    assert usual_columns(lines, slot_of) is None
