"""The typed read of a zones file (zones/typed.py) against the checked read (zones/geojson.py):
on any file, the same zones and the same problems; on a plainly valid file, the typed read
is the one taken, and the compiled table is the one Zone objects compile to."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import ZoneError
from tests.test_fuzz import good_window, plausible_doc, zones_doc
from zones import geojson
from zones.compile import ZoneTable, compile_zones
from zones.geojson import SubjectRef
from zones.load import load
from zones.model import Subject, ZoneSet
from zones.rows import ZoneRows
from zones.typed import read_typed, read_zones

SUBJECTS = (Subject("S1", ("T1",)), Subject("S2", ("T2",), valid_until=4.0e9))
REF = SubjectRef("subjects.toml", {"S1", "S2"})
FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _write(tmp: Path, doc: Any) -> Path:
    p = tmp / "zones.geojson"
    p.write_text(json.dumps(doc, allow_nan=True), encoding="utf-8", errors="surrogatepass")
    return p


def _same_table(a: ZoneTable, b: ZoneTable) -> None:
    assert a.zone_ids == b.zone_ids and a.subject_ids == b.subject_ids
    pairs = [(a.kind, b.kind), (a.subject, b.subject), (a.warn_m, b.warn_m)]
    pairs += [(a.valid_from, b.valid_from), (a.valid_until, b.valid_until)]
    pairs += [(x, y) for x, y in zip(a.arrays, b.arrays, strict=True) if isinstance(x, np.ndarray)]
    pairs += list(zip(a.arrays.rings, b.arrays.rings, strict=True))
    for x, y in pairs:
        assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=True)


@st.composite
def timed_doc(draw: st.DrawFn) -> dict[str, Any]:
    """A plausible file, some zones with a validity interval or a schedule."""
    doc = draw(plausible_doc)
    for f in doc["features"]:
        props = f.get("properties")
        if isinstance(props, dict) and draw(st.booleans()):
            props["valid_from"] = draw(st.sampled_from(["2026-01-01T00:00:00Z", 1.8e9, None]))
            props["valid_until"] = draw(st.sampled_from(["2030-01-01T00:00+01:00", 2.0e9]))
        if isinstance(props, dict) and draw(st.integers(0, 3)) == 0:
            props["schedule"] = draw(st.lists(good_window, min_size=1, max_size=2))
    return doc


@FUZZ
@given(doc=zones_doc | timed_doc())
def test_typed_read_gives_what_the_checked_read_gives(tmp_path: Path, doc: Any) -> None:
    path = _write(tmp_path, doc)
    rows, problems = read_zones(path, REF)
    zones, expected = geojson.read_zones(path, REF)
    assert problems == expected
    assert isinstance(rows, ZoneRows) and rows == zones
    assert [z.index for z in rows] == [z.index for z in zones]
    typed = read_typed(path, REF)
    assert typed is None or (not expected and typed == zones)
    shard = {"S2"}  # one shard's subjects: the same zones, in file order, made or not
    assert rows.only(shard) == tuple(z for z in zones if z.subject in shard)
    if expected:
        return
    try:
        by_objects = compile_zones(zones, SUBJECTS)
    except ZoneError as e:  # the rows fail in the same words
        with pytest.raises(ZoneError) as again:
            compile_zones(rows, SUBJECTS)
        assert again.value.problems == e.problems
        return
    _same_table(compile_zones(rows, SUBJECTS), by_objects)


@FUZZ
@given(doc=timed_doc())
def test_a_plainly_valid_file_takes_the_typed_read(tmp_path: Path, doc: Any) -> None:
    path = _write(tmp_path, doc)
    _, expected = geojson.read_zones(path, REF)
    if not expected:
        assert read_typed(path, REF) is not None


def _feature(i: int, **props: Any) -> dict[str, Any]:
    base = {"id": f"Z{i}", "subject": "S1", "kind": "exclusion", "radius_m": 100}
    geom = {"type": "Point", "coordinates": [-0.12 + i * 1e-3, 51.5]}
    return {"type": "Feature", "geometry": geom, "properties": {**base, **props}}


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ({"radius_m": 0}, "feature 1 (id 'Z1'): radius_m must be > 0, got 0"),
        ({"kind": "Exclusion"}, "feature 1 (id 'Z1'): kind 'Exclusion' is not"),
        ({"subject": "S9"}, "feature 1 (id 'Z1'): subject 'S9' is not in subjects.toml"),
        ({"id": "Z0"}, "feature 1 (id 'Z0'): duplicate zone id (also feature 0)"),
        ({"warn_m": math.inf}, "feature 1 (id 'Z1'): warn_m must be a finite number"),
        ({"schedule": []}, "feature 1 (id 'Z1'): schedule is an empty list"),
        ({"valid_from": "2026-13-01T00:00:00Z"}, "feature 1 (id 'Z1'): valid_from"),
    ],
)
def test_errors_still_name_the_feature(tmp_path: Path, bad: dict[str, Any], words: str) -> None:
    doc = {"type": "FeatureCollection", "features": [_feature(0), _feature(1, **bad)]}
    path = _write(tmp_path, doc)
    assert read_typed(path, REF) is None
    rows, problems = read_zones(path, REF)
    assert len(problems) == 1 and words in problems[0], problems
    assert [z.id for z in rows] == ["Z0"] if bad != {"id": "Z0"} else ["Z0", "Z0"]


def test_many_circles_load_as_rows_and_compile(tmp_path: Path) -> None:
    """The scale path end to end: subjects and zones files -> rows -> the table."""
    n = 300
    (tmp_path / "s.toml").write_text(
        "".join(f'[[subjects]]\nid = "S{i}"\ntags = ["T{i}"]\n' for i in range(n))
    )
    feats = [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [i * 1e-3, 51.0]},
         "properties": {"id": f"Z{i}-{k}", "subject": f"S{i}", "kind": "exclusion",
                        "radius_m": 200, **({"name": "home"} if k == 0 else {})}}
        for i in range(n) for k in range(3)
    ]  # fmt: skip
    path = _write(tmp_path, {"type": "FeatureCollection", "features": feats})
    zs = load(path, tmp_path / "s.toml")
    assert isinstance(zs.zones, ZoneRows) and len(zs.zones) == 3 * n
    assert zs.zones[4].name is None and zs.zones[3].name == "home"
    objects = ZoneSet(tuple(zs.zones), zs.subjects)
    _same_table(compile_zones(zs), compile_zones(objects))
    mine = zs.subjects[1::7]
    shard = zs.zones.only({s.id for s in mine})
    assert len(shard) == 3 * len(mine) and shard[0].index == 3
    wanted = tuple(z for z in zs.zones if z.subject in {s.id for s in mine})
    _same_table(compile_zones(shard, mine), compile_zones(wanted, mine))


@pytest.mark.parametrize(
    "text",
    [
        '{"type": "FeatureCollection", "features": [' + "[" * 100_000 + "]" * 100_000 + "]}",
        '\ufeff{"type": "FeatureCollection", "features": [{"type": "Feature"}]}',
        '{"type": "FeatureCollection", "features": [{"geometry": null}]}',
    ],
)
def test_odd_files_read_as_the_checked_read_reads_them(tmp_path: Path, text: str) -> None:
    path = tmp_path / "zones.geojson"
    path.write_text(text, encoding="utf-8")
    assert read_typed(path, REF) is None
    assert read_zones(path, REF)[1] == geojson.read_zones(path, REF)[1] != []
