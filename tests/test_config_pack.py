"""A config step with a national zones file (engine/store/config.py): texts over PACK_OVER
characters are recorded compressed, read back whole by recovery and the evidence pack, and
their recorded sha256 is the file's own."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.store.config import _CHUNK, PACK_OVER, ConfigFiles, _pack, section_text
from engine.store.ledger import Step
from engine.store.sql.open import open_store
from tests.helpers import square


def _big_world(d: Path, subjects: int) -> tuple[Path, Path]:
    feats = [{"type": "Feature",
              "properties": {"id": f"Z{i}", "subject": f"S{i}", "kind": "exclusion",
                             "name": f"Zone {i} — ünïcode"},
              "geometry": {"type": "Polygon", "coordinates": [square(100.0, cx=300.0 * i)]}}
             for i in range(subjects)]  # fmt: skip
    zones, subj = d / "zones.geojson", d / "subjects.toml"
    zones.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    subj.write_text(
        "".join(f'[[subjects]]\nid = "S{i}"\ntags = ["T{i}"]\n' for i in range(subjects))
    )
    return zones, subj


def test_a_large_zones_file_is_recorded_packed_and_read_back_whole(tmp_path: Path) -> None:
    zones, subjects = _big_world(tmp_path, 3000)
    files = ConfigFiles.read(zones, subjects)
    assert len(files.zones) > PACK_OVER > len(files.subjects)
    data = files.data()
    assert "zlib" in data["zones"] and "text" not in data["zones"]
    assert data["subjects"]["text"] == subjects.read_text()  # small: readable as it is
    assert len(data["zones"]["zlib"]) < len(files.zones) / 3
    assert data["zones"]["sha256"] == hashlib.sha256(zones.read_bytes()).hexdigest()
    store = open_store(str(tmp_path / "tw.db"))
    try:
        store.commit([], [], 1.0, steps=[Step("config", 1.0, config=data)])
        (_, cfg), *_ = store.config_steps()
    finally:
        store.close()
    back = ConfigFiles.from_data(cfg)
    assert back == files and back.hashes == files.hashes
    assert len(back.zoneset().zones) == 3000


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=3000))
def test_pack_round_trips_any_text(text: str) -> None:
    assert section_text({"zlib": _pack(text)}) == text
    assert section_text({"text": text}) == text


def test_hashes_are_the_sha256_of_the_whole_utf8_text() -> None:
    """Hashed a chunk at a time (no whole UTF-8 copy of a 300 MB text), worked out once."""
    text = "é" * (_CHUNK - 1) + "\U0001f600" * 3 + "z" * (_CHUNK + 5)  # chunks end mid-text
    files = ConfigFiles("z.geojson", text, "s.toml", "")
    want = (hashlib.sha256(text.encode()).hexdigest(), hashlib.sha256(b"").hexdigest())
    assert files.hashes == want and files.hashes is files.hashes
