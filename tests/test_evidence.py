"""Evidence that holds (issue 13, item 5): `tagwatch audit verify` fails on a deleted,
inserted or altered alert_log row (the last one too), on a forged chain anchor, and on a
deleted newest step when checked against a checkpoint kept elsewhere; the store's files
are private (0600) and `alerts` / `audit` cannot write to it."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from engine.cli.main import main
from engine.core.pipeline import Pipeline
from engine.store import recovery
from engine.store.sqlite import SqliteStore
from engine.wire.records import DeadLetter
from tests.test_recovery import _live_steps, _records
from zones.load import load

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("sim")
    rc = main(
        ["simulate", "--seed", "11", "--subjects", "12", "--duration", "2h", "--quick", "4",
         "--out-dir", str(d)]
    )  # fmt: skip
    assert rc == 0
    return d


@pytest.fixture(scope="module")
def history(world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with alerts, a snapshot half way and retention applied up to it."""
    db = tmp_path_factory.mktemp("hist") / "h.db"
    zs = load(world / "zones.geojson", world / "subjects.toml")
    p = Pipeline(zs)
    steps = _live_steps(_records(world), 4)
    with SqliteStore(db) as store:
        for i, step in enumerate(steps):
            res = recovery.apply(p, step)
            store.commit(res.alerts, res.dead, step.now, steps=[step])
            if i == len(steps) // 3:
                store.save_snapshot(recovery.fingerprint(p), step.now, recovery.snapshot(p))
            if i == 2 * len(steps) // 3:
                assert store.prune(before=steps[len(steps) // 4].now) > 0
        n_alerts = store._db.execute("SELECT COUNT(*) FROM alert_log").fetchone()[0]
        assert n_alerts >= 4, n_alerts
    return db


def _copy(src: Path, dst: Path) -> Path:
    s, d = sqlite3.connect(src), sqlite3.connect(dst)
    s.backup(d)
    s.close()
    d.close()
    return dst


def _verify(db: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    rc = main(["audit", "verify", "--db", str(db), *extra])
    cap = capsys.readouterr()
    return rc, cap.out + cap.err


def _tamper(db: Path, *sql: str) -> None:
    con = sqlite3.connect(db)
    for s in sql:
        assert con.execute(s).rowcount >= 1, s
    con.commit()
    con.close()


@pytest.mark.parametrize(
    "change",
    [
        "DELETE FROM alert_log WHERE seq = (SELECT MAX(seq) FROM alert_log)",
        "DELETE FROM alert_log WHERE seq = (SELECT MAX(seq) FROM alert_log) - 2",
        "INSERT INTO alert_log(alert_id, state, subject, record, written_at)"
        " SELECT alert_id, state, subject, record, written_at FROM alert_log"
        " WHERE seq = (SELECT MAX(seq) FROM alert_log)",
        "UPDATE alert_log SET record = CAST(replace(CAST(record AS TEXT), '\"confidence\":',"
        " '\"confidence\":0') AS BLOB) WHERE seq = (SELECT MAX(seq) FROM alert_log)",
    ],
    ids=["delete-last", "delete-middle", "insert-copy", "alter-last"],
)
def test_verify_finds_a_deleted_inserted_or_altered_alert_log_row(
    history: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], change: str
) -> None:
    db = _copy(history, tmp_path / "t.db")
    rc, text = _verify(db, capsys)
    assert rc == 0 and text.startswith("ok: "), text
    _tamper(db, change)
    rc, text = _verify(db, capsys)
    assert rc == 1 and "BROKEN" in text and "alert_log" in text, text


def test_verify_finds_a_forged_anchor(
    history: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rows deleted from the front past the anchor, the anchor rewritten to match: the
    chain still verifies from the new anchor, but the anchor is not the one retention set."""
    db = _copy(history, tmp_path / "t.db")
    con = sqlite3.connect(db)
    first = con.execute("SELECT MIN(n) FROM ledger").fetchone()[0]
    cut = first + 40
    n, step, h = con.execute("SELECT n, step, hash FROM ledger WHERE n = ?", (cut,)).fetchone()
    con.close()
    _tamper(
        db,
        f"DELETE FROM ledger WHERE n <= {cut}",
        f"UPDATE meta SET value = '{n}' WHERE key = 'anchor_n'",
        f"UPDATE meta SET value = '{step}' WHERE key = 'anchor_step'",
        f"UPDATE meta SET value = '{bytes(h).hex()}' WHERE key = 'anchor_hash'",
    )
    rc, text = _verify(db, capsys)
    assert rc == 1 and "BROKEN" in text and "anchor" in text, text


def _checkpoint_of(text: str) -> dict[str, object]:
    line = next(x for x in text.splitlines() if x.startswith("checkpoint: "))
    return dict(json.loads(line.removeprefix("checkpoint: ")))


def test_verify_against_a_checkpoint_finds_a_deleted_newest_step(
    history: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = _copy(history, tmp_path / "t.db")
    rc, text = _verify(db, capsys)
    assert rc == 0, text
    kept = tmp_path / "elsewhere.json"
    kept.write_text(json.dumps(_checkpoint_of(text)))
    rc, text = _verify(db, capsys, "--checkpoint", str(kept))
    assert rc == 0 and "matches the checkpoint" in text, text
    _tamper(
        db,
        "DELETE FROM ledger WHERE n >= (SELECT MAX(n) FROM ledger WHERE kind = 'step')",
    )
    rc, text = _verify(db, capsys)
    assert rc == 0, text  # without the checkpoint a clean cut at the end cannot be seen
    rc, text = _verify(db, capsys, "--checkpoint", str(kept))
    assert rc == 1 and "BROKEN" in text and "checkpoint" in text, text


def test_the_store_and_its_wal_files_are_created_private(tmp_path: Path) -> None:
    """The store holds victims' phone positions: 0600 whatever the umask lets through."""
    old = os.umask(0o022)
    try:
        db = tmp_path / "new" / "p.db"
        with SqliteStore(db) as store:
            store.commit([], [DeadLetter("t/x", b"{", "bad")], 1.0)
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in db.parent.iterdir()}
    finally:
        os.umask(old)
    assert set(modes) == {"p.db", "p.db-wal", "p.db-shm"}, modes
    assert modes == dict.fromkeys(modes, 0o600), {k: oct(v) for k, v in modes.items()}


def test_alerts_and_audit_write_nothing_to_the_store(
    history: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A store as a backup tool or an older tagwatch left it (rollback journal, schema 1):
    reading it with `tagwatch alerts` and `tagwatch audit` leaves every byte as it was
    and creates no -wal (a read-write open would switch it to WAL and upgrade it)."""
    db = _copy(history, tmp_path / "r.db")
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=DELETE")
    con.execute("UPDATE meta SET value = '1' WHERE key = 'schema'")
    con.commit()
    con.close()
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    alert_id = (
        sqlite3.connect(db).execute("SELECT device FROM ledger WHERE kind = 'alert'").fetchone()[0]
    )
    for cmd in (
        ["alerts", "--db", str(db)],
        ["alerts", "--db", str(db), "--log", "--dead-letters"],
        ["audit", "verify", "--db", str(db)],
        ["audit", "alert", alert_id, "--db", str(db)],
        ["audit", "export", "--db", str(db), "--out", str(tmp_path / "e.jsonl")],
    ):
        assert main(cmd) == 0, cmd
        assert hashlib.sha256(db.read_bytes()).hexdigest() == before, cmd
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("r.db")) == [
            "r.db"
        ], cmd
    assert "zone_breach" in capsys.readouterr().out
