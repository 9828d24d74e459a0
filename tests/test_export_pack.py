"""The evidence pack (issue 14, item 8): `tagwatch audit export --alert ID --out DIR` on a
store `tagwatch serve` wrote over a real mosquitto (a walk-in through a zone with a hole)
writes a PDF that parses and says the alert, its depth and its ledger rows; GeoJSON with
the zone and the track, the evidence fixes marked; a manifest whose rows' hashes are the
ledger's and recompute from their bodies. Export twice: the same bytes. An unknown alert,
a missing store and an unwritable folder are clear errors (exit 2)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import sqlite3
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from engine.broker.process import MosquittoProcess
from engine.cli.main import main
from engine.evidence import build_pack
from engine.store.ledger import row_hash, shown_hash
from engine.store.signing import default_key_path, load_or_create_key
from engine.wire.alerts import Alert
from tests.conftest import _require_mosquitto
from tests.helpers import AlertCollector, EngineProcess, fix, publish, square, wait_online
from tests.helpers import write_world as _write_world
from tests.test_evidence import _history

pytestmark = pytest.mark.timeout(180)

HOLE = square(25.0, 0.0, 55.0)  # a hole in the zone, north of the walk's line


def _zone() -> dict[str, Any]:
    return {
        "type": "Feature",
        "properties": {"id": "Z1", "subject": "S1", "kind": "exclusion"},
        "geometry": {"type": "Polygon", "coordinates": [square(100.0), HOLE[::-1]]},
    }


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Alert], Any]:
    """A store written by `tagwatch serve` (config step, signed checkpoint, fix rows) for a
    walk-in by T1, with T2 (another subject's tag) about the same time."""
    d = tmp_path_factory.mktemp("served")
    t0 = float(int(time.time()) - 3600)
    pts = [(-600.0, 0.0), (-400.0, 0.0), (-250.0, 0.0), (-40.0, 10.0), (20.0, -5.0),
           (300.0, 0.0), (450.0, 0.0), (600.0, 0.0), (750.0, 0.0)]  # fmt: skip
    fixes = [fix(i, t0 + 60 * i, dx, dy, acc=8.0) for i, (dx, dy) in enumerate(pts)]
    other = [fix(i, t0 + 60 * i + 5, 2000.0, 0.0) for i in range(4)]
    subjects = '[[subjects]]\nid = "S1"\ntags = ["T1"]\n\n[[subjects]]\nid = "S2"\ntags = ["T2"]\n'
    zones, subj = _write_world(d, [_zone()], subjects)

    async def scenario(host: str, port: int) -> list[Alert]:
        async with AlertCollector(host, port) as col:
            await wait_online(host, port)
            msgs = [("tagwatch/v1/tags/T1/fix", json.dumps(f).encode()) for f in fixes]
            msgs += [("tagwatch/v1/tags/T2/fix", json.dumps(f).encode()) for f in other]
            await publish(host, port, msgs)
            return await col.wait_for(
                lambda al: any(a.kind == "zone_breach" and a.state == "closed" for a in al)
            )

    broker = MosquittoProcess(workdir=d / "mosquitto", executable=_require_mosquitto())
    with broker, EngineProcess(broker.host, broker.port, zones, subj, d / "tw.db") as eng:
        alerts = asyncio.run(scenario(broker.host, broker.port))
        assert eng.stop() == 0, eng.log_text()
    return d / "tw.db", [a for a in alerts if a.kind == "zone_breach"], fixes


def _export(db: Path, alert: str, out: Path, *extra: str) -> int:
    return main(["audit", "export", "--db", str(db), "--alert", alert, "--out", str(out), *extra])


def _ledger(db: Path) -> dict[int, tuple[Any, ...]]:
    con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT n, kind, step, device, seq, t, body, hash FROM ledger")
        return {int(r[0]): tuple(r) for r in rows}
    finally:
        con.close()


@pytest.mark.mqtt
def test_the_pack_has_a_pdf_geojson_and_manifest_that_match_the_ledger(
    served: tuple[Path, list[Alert], Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, breach, fixes = served
    aid = breach[0].id
    assert _export(db, aid, tmp_path / "pack") == 0
    said = capsys.readouterr().out
    names = [f"alert-{aid}.{x}" for x in ("pdf", "geojson", "json")]
    for n in names:
        assert f"wrote {tmp_path / 'pack' / n}" in said, said
    pdf_b, gj_b, man_b = ((tmp_path / "pack" / n).read_bytes() for n in names)
    ledger = _ledger(db)
    man = json.loads(man_b)

    # the manifest: every cited row's hash is the ledger's, and recomputes from the row,
    # or for a record of a records row, from its body and Merkle path
    alert_rows = [n for n, r in ledger.items() if r[1] == "alert" and r[3] == aid]
    cited = {(r["n"], r.get("records_row", {}).get("i")): r for r in man["rows"]}
    assert [n for (n, _), r in cited.items() if r["cited"] == "alert"] == alert_rows
    proven = 0
    for (n, i), r in cited.items():
        assert r["hash"] == bytes(ledger[n][7]).hex(), r
        prev = bytes.fromhex(r["prev"])
        if i is not None:
            assert ledger[n][1] == "records" and r["kind"] == "fix", r
            path = [bytes.fromhex(h) for h in r["records_row"]["path"]]
            of, body = r["records_row"]["of"], r["body"].encode()
            assert shown_hash(prev, n, r["step"], body, i, of, path) == bytes(ledger[n][7])
            assert shown_hash(prev, n, r["step"], body + b" ", i, of, path) != bytes(ledger[n][7])
            assert bytes(ledger[n][6]).split(b"\n")[i] == body
            proven += 1
        elif "body" in r:
            recomputed = row_hash(prev, n, r["kind"], r["step"],
                                  r["device"], r["seq"], r["t"], r["body"].encode())  # fmt: skip
            assert recomputed.hex() == r["hash"], r
    assert proven >= len(fixes)  # the track's fixes, each proven alone
    config = [r for r in cited.values() if r["cited"] == "config"]
    assert len(config) == 1 and "body" not in config[0], config  # not every subject's files
    assert man["checkpoint_signed"] is True and man["checkpoint"]["sig"], man["checkpoint"]
    ev_rows = {(e["n"], e["i"]) for e in man["evidence"]}
    assert len(ev_rows) == len(breach[-1].evidence), man["evidence"]
    assert all(n is not None and cited[(n, i)]["device"] == "T1" for n, i in ev_rows)

    # the GeoJSON: the zone with its hole, the track of T1 only, the evidence marked
    gj = json.loads(gj_b)
    roles = [f["properties"]["role"] for f in gj["features"]]
    zone = gj["features"][roles.index("zone")]
    assert zone["properties"]["id"] == "Z1" and len(zone["geometry"]["coordinates"]) == 2
    pts = [f for f in gj["features"] if f["geometry"]["type"] == "Point"]
    assert {p["properties"]["tag"] for p in pts} == {"T1"}
    assert sorted(p["properties"]["seq"] for p in pts) == list(range(len(fixes)))
    marked = {
        (p["properties"]["ledger_n"], p["properties"].get("ledger_i"))
        for p in pts
        if p["properties"]["evidence"]
    }
    assert marked == ev_rows
    for p in pts:
        assert p["properties"]["ledger_hash"] == bytes(ledger[p["properties"]["ledger_n"]][7]).hex()
    (line,) = [f for f in gj["features"] if f["properties"]["role"] == "track"]
    assert len(line["geometry"]["coordinates"]) == len(fixes)

    # the PDF: parses, and says the alert, the depth, the ledger rows and the signature
    assert pdf_b.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(pdf_b))
    assert len(reader.pages) >= 2
    text = "\n".join(p.extract_text() for p in reader.pages)
    depth = breach[-1].detail["depth_m"]  # type: ignore[index]
    assert aid in text and f"{depth:.1f} m inside the zone" in text, text
    for n in alert_rows:
        assert f"row {n}:" in text, (n, text)
    assert "signature valid" in text, text
    assert f"({aid})".encode() in pdf_b or aid.encode() in pdf_b  # uncompressed: greppable
    assert man["files"][names[0]] == hashlib.sha256(pdf_b).hexdigest()


@pytest.mark.mqtt
def test_a_second_export_is_byte_for_byte_the_same(
    served: tuple[Path, list[Alert], Any], tmp_path: Path
) -> None:
    db, breach, _ = served
    aid = breach[0].id
    assert _export(db, aid, tmp_path / "a") == 0
    time.sleep(1.1)  # a creation date taken from the clock would differ now
    assert _export(db, aid, tmp_path / "b") == 0
    for x in ("pdf", "geojson", "json"):
        a = (tmp_path / "a" / f"alert-{aid}.{x}").read_bytes()
        assert a == (tmp_path / "b" / f"alert-{aid}.{x}").read_bytes(), x
    p1, p2 = build_pack(str(db), aid), build_pack(str(db), aid)
    assert p1.pdf == (tmp_path / "a" / f"alert-{aid}.pdf").read_bytes()
    assert p1.manifest == (tmp_path / "a" / f"alert-{aid}.json").read_bytes()
    assert p1.zip() == p2.zip()
    with zipfile.ZipFile(io.BytesIO(p1.zip())) as z:
        assert sorted(z.namelist()) == sorted(f"alert-{aid}/{n}" for n in p1.files())
        assert z.read(f"alert-{aid}/alert-{aid}.pdf") == p1.pdf


@pytest.mark.mqtt
def test_bad_requests_are_clear_errors(
    served: tuple[Path, list[Alert], Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, breach, _ = served
    assert _export(db, "0123456789abcdef0123", tmp_path / "x") == 2
    assert "no alert 0123456789abcdef0123" in capsys.readouterr().err
    assert _export(tmp_path / "none.db", breach[0].id, tmp_path / "x") == 2
    assert "no alert store" in capsys.readouterr().err
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0o500)
    try:
        if os.access(locked, os.W_OK):  # root writes anywhere: use a path under a file
            target = tmp_path / "afile"
            target.write_text("")
            out = target / "pack"
        else:
            out = locked / "pack"
        assert _export(db, breach[0].id, out) == 2
        assert "cannot write the evidence pack" in capsys.readouterr().err
    finally:
        os.chmod(locked, 0o700)
    assert _export(db, breach[0].id, tmp_path / "y", "--zones", str(tmp_path / "no.geojson")) == 2
    assert "cannot read zones file" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_a_replay_store_without_fixes_still_makes_a_pack_with_the_zone_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tagwatch replay --db` keeps alerts only: the pack says the evidence is not in the
    ledger, is unsigned, and draws the zone from --zones."""
    zones, subj = _write_world(tmp_path, [_zone()])
    lines = [{"tag": "T1", **fix(i, 1_790_000_000.0 + 60 * i, x, 0.0)}
             for i, x in enumerate([600.0, 300.0, 30.0, 10.0, -30.0, 300.0, 600.0, 900.0])]  # fmt: skip
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(x) + "\n" for x in lines))
    db, out = tmp_path / "r.db", tmp_path / "alerts.jsonl"
    assert main(["replay", str(src), "--zones", str(zones), "--subjects", str(subj),
                 "--out", str(out), "--db", str(db), "-q"]) == 0  # fmt: skip
    aid = json.loads(out.read_text().splitlines()[0])["id"]
    assert _export(db, aid, tmp_path / "p") == 0  # no config step: no zone, still a pack
    assert _export(db, aid, tmp_path / "p", "--zones", str(zones)) == 0
    man = json.loads((tmp_path / "p" / f"alert-{aid}.json").read_text())
    assert man["checkpoint_signed"] is False and "not in the ledger" in man["notes"][0]
    gj = json.loads((tmp_path / "p" / f"alert-{aid}.geojson").read_text())
    assert [f["properties"]["role"] for f in gj["features"]] == ["zone"]
    text = PdfReader(tmp_path / "p" / f"alert-{aid}.pdf").pages[1].extract_text()
    assert "not in the ledger" in text and "unsigned" in text, text


@pytest.mark.mqtt
def test_a_zones_file_whose_zone_cannot_be_drawn_is_a_clear_error(
    served: tuple[Path, list[Alert], Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, breach, _ = served
    bad = tmp_path / "bad.geojson"
    for geometry in ({"type": "Polygon", "coordinates": [[["a", 1]]]}, None,
                     {"type": "Point", "coordinates": [0.1, 51.5]}):  # fmt: skip
        feat = {"type": "Feature", "properties": {"id": "Z1"}, "geometry": geometry}
        bad.write_text(json.dumps({"type": "FeatureCollection", "features": [feat]}))
        assert _export(db, breach[0].id, tmp_path / "p", "--zones", str(bad)) == 2
        assert "no geometry the map can draw" in capsys.readouterr().err
    bad.write_text("{not json")
    assert _export(db, breach[0].id, tmp_path / "p", "--zones", str(bad)) == 2
    assert "has no zone 'Z1'" in capsys.readouterr().err


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A simulated fleet's world and a signed store of it with a snapshot and a retention
    cut (tests/test_evidence.py's history)."""
    world = tmp_path_factory.mktemp("sim")
    rc = main(["simulate", "--seed", "11", "--subjects", "12", "--duration", "2h",
               "--quick", "4", "--out-dir", str(world)])  # fmt: skip
    assert rc == 0
    db = tmp_path_factory.mktemp("fleet") / "f.db"
    return world, _history(world, db, load_or_create_key(default_key_path(db)))


def test_every_alert_of_a_simulated_signed_pruned_store_exports(
    fleet: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Health alerts (no zone, no position), circles, evidence cut by retention: each
    alert of a simulated fleet's store gives a pack whose PDF parses."""
    world, signed = fleet
    ledger = _ledger(signed)
    ids = sorted({r[3] for r in ledger.values() if r[1] == "alert"})
    assert len(ids) >= 4, ids
    zones = str(world / "zones.geojson")
    for aid in ids:
        assert _export(signed, aid, tmp_path / "p", "--zones", zones) == 0, capsys.readouterr()
        pdf = (tmp_path / "p" / f"alert-{aid}.pdf").read_bytes()
        assert aid in PdfReader(io.BytesIO(pdf)).pages[0].extract_text()
        man = json.loads((tmp_path / "p" / f"alert-{aid}.json").read_text())
        assert man["checkpoint_signed"] is True
        for r in man["rows"]:
            if r["n"] in ledger:
                assert r["hash"] == bytes(ledger[r["n"]][7]).hex()
