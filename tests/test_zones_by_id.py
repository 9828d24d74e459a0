"""The console's zones by id (engine/mqtt/consoleview.ZonesById): the same answers as a
dict of every Zone, without making one Zone per zone (the dict was gigabytes at 500,000
subjects), on zone rows read from a file and on a plain list of zones."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.mqtt.consoleview import ZonesById
from tests.helpers import square, write_world
from zones.load import load
from zones.rows import ZoneRows


def _world(tmp_path: Path) -> list:  # type: ignore[type-arg]
    feats = []
    for i in range(30):
        geom = (
            {"type": "Point", "coordinates": [0.001 * i, 0.0]}
            if i % 3
            else {"type": "Polygon", "coordinates": [square(100.0, 10.0 * i)]}
        )
        props = {"id": f"Z{i}", "subject": f"S{i % 7}", "kind": "exclusion"}
        if i % 3:
            props["radius_m"] = 50 + i
        feats.append({"type": "Feature", "properties": props, "geometry": geom})
    subjects = "".join(f'[[subjects]]\nid = "S{k}"\ntags = ["T{k}"]\n' for k in range(8))
    zones, subj = write_world(tmp_path, feats, subjects)
    return load(str(zones), str(subj)).zones  # type: ignore[return-value]


@pytest.mark.parametrize("form", ["rows", "list"])
def test_zones_by_id_answers_as_a_dict_would(tmp_path: Path, form: str) -> None:
    rows = _world(tmp_path)
    assert isinstance(rows, ZoneRows)
    zones = rows if form == "rows" else list(rows)
    oracle = {z.id: z for z in zones}
    by_id = ZonesById(zones)
    assert len(by_id) == len(oracle) == 30
    assert list(by_id) == list(oracle)
    for zid, z in oracle.items():
        assert by_id[zid] == z
        assert by_id.get(zid) == z
    assert by_id.get("nope") is None
    with pytest.raises(KeyError):
        by_id["nope"]
    for k in range(8):  # S7 has no zone
        want = [z for z in zones if z.subject == f"S{k}"]
        assert by_id.of_subject(f"S{k}") == want
        assert len(want) == (0 if k == 7 else len(range(k, 30, 7)))
    assert by_id.of_subject("S99") == []
