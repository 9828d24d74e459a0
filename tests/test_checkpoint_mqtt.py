"""The signed ledger checkpoint published as a retained MQTT message (issue 13, item 5):
`tagwatch serve` publishes each new one on tagwatch/v1/engine/checkpoint, `tagwatch
checkpoint` saves it, and `tagwatch audit verify --checkpoint FILE` checks a store against
it. Through `tagwatch serve` and a real mosquitto: the untouched store passes; with the
newest step deleted, or the store rolled back to an older state together with that
state's (valid) signed checkpoint, it fails against the retained copy."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from engine.cli.main import main
from engine.wire import topics
from engine.wire.checkpoint import decode_checkpoint
from tests.helpers import AlertCollector, EngineProcess, fix, publish, wait_online, write_world

pytestmark = pytest.mark.mqtt


def walk_in(t0: float) -> list[dict]:  # type: ignore[type-arg]
    pts = [-400, -250, 0, 10, -10, 5, 0, 0]
    return [fix(1 + i, t0 + 60 * i, dx, 0.0) for i, dx in enumerate(pts)]


def fetch(broker: str, out: Path) -> dict:  # type: ignore[type-arg]
    assert main(["checkpoint", "--broker", broker, "--out", str(out), "--timeout", "20"]) == 0
    return json.loads(out.read_text())


def verify(db: Path, *extra: str) -> int:
    return main(["audit", "verify", "--db", str(db), *extra])


def copy_store(db: Path, to: Path) -> Path:
    """A consistent copy (the WAL's pages included), with the key beside it."""
    src, dst = sqlite3.connect(db), sqlite3.connect(to)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    for suffix in (".key", ".key.pub"):
        shutil.copy(f"{db}{suffix}", f"{to}{suffix}")
    return to


@pytest.mark.timeout(180)
def test_retained_checkpoint_catches_a_deleted_step_and_a_roll_back(
    mosquitto, tmp_path: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    zones, subjects = write_world(tmp_path)
    db = tmp_path / "tw.db"
    broker = f"{mosquitto.host}:{mosquitto.port}"
    track = walk_in(float(int(time.time()) - 1200))
    msgs = [("tagwatch/v1/tags/T1/fix", json.dumps(f)) for f in track]

    async def scenario() -> dict:  # type: ignore[type-arg]
        async with AlertCollector(mosquitto.host, mosquitto.port) as col:
            await wait_online(mosquitto.host, mosquitto.port)
            await publish(mosquitto.host, mosquitto.port, msgs[:2])
            deadline = time.monotonic() + 30
            while True:  # the resume step and two fixes' batch(es) committed, published
                early = await asyncio.to_thread(fetch, broker, tmp_path / "early.cp")
                if early["n"] >= 3 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.3)
            await publish(mosquitto.host, mosquitto.port, msgs[2:])
            await col.wait_for(lambda al: any(a.kind == "zone_breach" for a in al), 60.0)
            return early

    with EngineProcess(mosquitto.host, mosquitto.port, zones, subjects, db) as eng:
        early = asyncio.run(scenario())
        assert eng.stop() == 0, eng.log_text()
    final = fetch(broker, tmp_path / "final.cp")  # retained: still there with the engine gone
    assert final["n"] > early["n"] and final["alert_seq"] > early["alert_seq"]
    assert final["sig"] and final["key"]
    assert decode_checkpoint((tmp_path / "final.cp").read_bytes()).n == final["n"]

    # untouched: passes against the retained copy, and prints the store's checkpoint in full
    capsys.readouterr()
    assert verify(db, "--checkpoint", str(tmp_path / "final.cp")) == 0
    out = capsys.readouterr().out
    assert f"checkpoint: {(tmp_path / 'final.cp').read_text().strip()}" in out, out
    assert f"matches the checkpoint at row {final['n']}" in out

    # the newest step deleted (its step row and everything after it)
    cut = copy_store(db, tmp_path / "cut.db")
    con = sqlite3.connect(cut)
    (last_step,) = con.execute("SELECT MAX(n) FROM ledger WHERE kind = 'step'").fetchone()
    con.execute("DELETE FROM ledger WHERE n >= ?", (last_step,))
    con.commit()
    con.close()
    capsys.readouterr()
    assert verify(cut, "--checkpoint", str(tmp_path / "final.cp")) == 1
    err = capsys.readouterr().err
    assert "BROKEN" in err and "against checkpoint" in err, err

    # rolled back to the early state with the early (validly signed) checkpoint: the store
    # alone cannot tell, the retained checkpoint can
    back = copy_store(db, tmp_path / "back.db")
    con = sqlite3.connect(back)
    con.execute("DELETE FROM ledger WHERE n > ?", (early["n"],))
    con.execute("DELETE FROM alert_log WHERE seq > ?", (early["alert_seq"],))
    con.execute(
        "UPDATE meta SET value = ? WHERE key = 'checkpoint'",
        ((tmp_path / "early.cp").read_text().strip(),),
    )
    con.commit()
    con.close()
    assert verify(back) == 0
    capsys.readouterr()
    assert verify(back, "--checkpoint", str(tmp_path / "final.cp")) == 1
    err = capsys.readouterr().err
    assert f"names row {final['n']} but the ledger ends at row {early['n']}" in err, err
    print(f"early checkpoint row {early['n']}, retained final row {final['n']}")


def test_the_checkpoint_topic_is_the_engines_own() -> None:
    assert topics.CHECKPOINT.startswith("tagwatch/v1/engine/")
    assert decode_checkpoint(b'checkpoint: {"n":3,"step":2,"hash":"ab"}\n').n == 3
