"""Snapshots are data, not code, and keyed by ids (through `tagwatch serve` and a real
mosquitto): a crafted snapshot row runs nothing, a tampered one is refused (its sha256 is
in the evidence ledger), and a restart with a subject added maps the snapshot onto the new
configuration instead of rebuilding the retained ledger."""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import sqlite3
import time
from pathlib import Path

import pytest

from engine.core.pipeline import Pipeline
from engine.store import recovery
from tests.helpers import AlertCollector, EngineProcess, fix, publish, wait_online, write_world
from tests.test_reload import _world
from zones.load import load

pytestmark = [pytest.mark.mqtt, pytest.mark.timeout(180)]


class _Exploit:
    """Unpickling this creates a file: what a crafted snapshot row could make the engine do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


def _track(
    tag: str, seq0: int, pts: list[tuple[float, float]], t0: float
) -> list[tuple[str, bytes]]:
    return [
        (f"tagwatch/v1/tags/{tag}/fix", json.dumps(fix(seq0 + i, t0 + 30 * i, dx, dy)).encode())
        for i, (dx, dy) in enumerate(pts)
    ]


def _run_once(mosquitto, zones: Path, subjects: Path, db: Path, msgs: list) -> str:  # type: ignore[no-untyped-def,type-arg]
    async def go(eng: EngineProcess, before: int) -> None:
        # the retained status of a previous run may still say online: wait for this one
        while eng.log_text().count("connected to") <= before:
            await asyncio.sleep(0.1)
        await wait_online(mosquitto.host, mosquitto.port)
        await publish(mosquitto.host, mosquitto.port, msgs)
        await asyncio.sleep(1.5)

    log = db.with_suffix(".log")
    before = log.read_text().count("connected to") if log.exists() else 0
    with EngineProcess(mosquitto.host, mosquitto.port, zones, subjects, db) as eng:
        asyncio.run(go(eng, before))
        assert eng.stop() == 0, eng.log_text()
    return eng.log_text()


def test_a_crafted_snapshot_row_runs_no_code(mosquitto, tmp_path: Path) -> None:
    zones, subjects = write_world(tmp_path)
    db = tmp_path / "tw.db"
    t0 = time.time() - 600
    _run_once(mosquitto, zones, subjects, db, _track("T1", 0, [(-400, 0), (-300, 0)], t0))
    marker = tmp_path / "pwned"
    fp = recovery.fingerprint(Pipeline(load(zones, subjects)))
    con = sqlite3.connect(db)
    (n, step) = con.execute("SELECT n, step FROM ledger ORDER BY n DESC LIMIT 1").fetchone()
    con.execute(
        "INSERT OR REPLACE INTO snapshots(n, step, now, fingerprint, created_at, state)"
        " VALUES (?,?,?,?,?,?)",
        (n, step, time.time(), fp, time.time(), pickle.dumps({"x": _Exploit(marker)})),
    )
    con.commit()
    con.close()
    log = _run_once(mosquitto, zones, subjects, db, _track("T1", 2, [(-200, 0)], t0 + 60))
    assert not marker.exists(), "the crafted snapshot ran code"
    assert "refused" in log, log


def test_a_tampered_snapshot_is_refused_and_state_rebuilt(mosquitto, tmp_path: Path) -> None:
    zones, subjects = write_world(tmp_path)
    db = tmp_path / "tw.db"
    t0 = time.time() - 900
    _run_once(mosquitto, zones, subjects, db, _track("T1", 0, [(-400, 0), (-40, 0), (20, 0)], t0))
    from engine.store.snapshot import SnapshotError, decode

    con = sqlite3.connect(db)
    n, state = con.execute("SELECT n, state FROM snapshots ORDER BY n DESC LIMIT 1").fetchone()
    decode(bytes(state))  # a data snapshot: decodes without running anything
    bad = bytearray(state)
    bad[-3] ^= 0x01  # one bit of an array (a seq frontier, a time...) changed
    con.execute("UPDATE snapshots SET state = ? WHERE n = ?", (bytes(bad), n))
    con.commit()
    con.close()
    log = _run_once(mosquitto, zones, subjects, db, [])
    assert "refused" in log and "is not the" in log, log
    assert "full rebuild" in log, log
    with pytest.raises(SnapshotError):
        decode(b"\x80\x04" + bytes(state)[2:])  # not ours: refused before anything is read


def test_a_restart_with_a_subject_added_maps_state_without_rebuilding(
    mosquitto, tmp_path: Path
) -> None:
    """S1's tag is inside its zone when the engine stops; it restarts with S2 added: the
    snapshot is mapped by ids (no replay of the ledger), S1's episode goes on under the same
    id and closes, and S2's tag is alerted on its first fixes."""
    host, port = mosquitto.host, mosquitto.port
    zones, subjects = _world(tmp_path, ["S1"])
    db = tmp_path / "tw.db"
    t0 = time.time() - 1800
    log1 = _run_once(mosquitto, zones, subjects, db,
                     _track("TS1", 0, [(-400, 0), (-40, 10), (20, -5)], t0))  # fmt: skip
    zones, subjects = _world(tmp_path, ["S1", "S2"])

    async def go(eng: EngineProcess) -> list:  # type: ignore[type-arg]
        async with AlertCollector(host, port) as col:
            while eng.log_text().count("connected to") < 2:
                await asyncio.sleep(0.1)
            out = _track("TS1", 3, [(300, 0), (450, 0), (600, 0), (750, 0), (900, 0)], t0 + 90)
            await publish(host, port, out + _track("TS2", 0, [(0, 10), (5, 5)], t0 + 300))
            return await col.wait_for(
                lambda a: (
                    {(x.subject, x.state) for x in a if x.kind == "zone_breach"}
                    >= {("S1", "closed"), ("S2", "open")}
                )
            )

    with EngineProcess(host, port, zones, subjects, db) as eng:
        alerts = asyncio.run(go(eng))
        assert eng.stop() == 0, eng.log_text()
    log = eng.log_text()[len(log1) :]
    assert "carried across by ids" in log and "rebuilding" not in log, log
    assert "full rebuild" not in log, log
    s1 = [a for a in alerts if a.kind == "zone_breach" and a.subject == "S1"]
    con = sqlite3.connect(db)
    opened = [r[0] for r in con.execute("SELECT alert_id FROM alert_log WHERE state='open'")]
    assert s1[-1].id in opened  # the episode opened before the restart, closed after it


def test_snapshots_are_written_compressed_and_earlier_plain_ones_still_read(tmp_path: Path) -> None:
    """A pipeline's state, compressed as written (a 500,000-subject state is ~250 MB and
    mostly empty); a plain TWSNAP1 blob of an earlier version decodes to the same state;
    damage to the compressed stream is a SnapshotError, not an exception from zlib."""
    import zlib

    from engine.store import snapshot as snapfmt

    zones, subjects = _world(tmp_path, ["S1", "S2", "S3"])
    p = Pipeline(load(zones, subjects))
    blob = recovery.snapshot(p, None)
    assert blob.startswith(snapfmt.ZMAGIC)
    plain = zlib.decompress(blob[len(snapfmt.ZMAGIC) :])
    assert plain.startswith(snapfmt.MAGIC) and len(blob) < len(plain)
    state, meta = snapfmt.decode(blob)
    state_plain, meta_plain = snapfmt.decode(plain)
    assert meta == meta_plain
    assert Pipeline(load(zones, subjects)).import_state(state).identity
    assert snapfmt.encode(state_plain, meta_plain) == blob  # same state, same bytes
    with pytest.raises(snapfmt.SnapshotError, match="damaged"):
        snapfmt.decode(blob[:-20] + bytes(20))
