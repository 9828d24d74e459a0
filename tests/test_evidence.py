"""Evidence that holds (issue 13, item 5): `tagwatch audit verify` fails on a deleted,
inserted or altered alert_log row (the last one too), on a forged chain anchor, and on a
deleted newest step when checked against a checkpoint kept elsewhere; the store's files
are private (0600) and `alerts` / `audit` cannot write to it."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import sqlite3
import stat
from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from engine.cli.main import main
from engine.core.pipeline import Pipeline
from engine.store import recovery
from engine.store.ledger import row_hash
from engine.store.signing import (
    Checkpoint,
    default_key_path,
    key_candidates,
    load_or_create_key,
    sign,
)
from engine.store.sqlite import SqliteStore
from engine.wire.records import DeadLetter
from tests.helpers import AlertCollector, EngineProcess, publish, wait_online, write_world
from tests.test_recovery import _live_steps, _records
from tests.test_serve_mqtt import _episode_done, track_in_and_out
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


def _history(world: Path, db: Path, key: Ed25519PrivateKey | None = None) -> Path:
    """A store with alerts, a snapshot a third of the way, retention applied up to it at
    two thirds, then more steps."""
    zs = load(world / "zones.geojson", world / "subjects.toml")
    p = Pipeline(zs)
    steps = _live_steps(_records(world), 4)
    with SqliteStore(db, signing_key=key) as store:
        for i, step in enumerate(steps):
            res = recovery.apply(p, step)
            store.commit(res.alerts, res.dead, step.now, steps=[step])
            if i == len(steps) // 3:
                store.save_snapshot(recovery.fingerprint(p), step.now, recovery.snapshot(p))
            if i == 2 * len(steps) // 3:
                assert store.prune(before=steps[len(steps) // 4].now) > 0
        n_alerts = len(store.alert_log())
        assert n_alerts >= 4, n_alerts
    return db


@pytest.fixture(scope="module")
def history(world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _history(world, tmp_path_factory.mktemp("hist") / "h.db")


@pytest.fixture(scope="module")
def signed(world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same history, signed by the engine's key beside the store (DB.key)."""
    db = tmp_path_factory.mktemp("signed") / "s.db"
    old = os.umask(0o022)
    try:
        key = load_or_create_key(default_key_path(db))
    finally:
        os.umask(old)
    return _history(world, db, key)


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


def _copy_signed(signed: Path, tmp_path: Path) -> Path:
    db = _copy(signed, tmp_path / "s.db")
    for suffix in (".key", ".key.pub"):
        (tmp_path / f"s.db{suffix}").write_bytes(Path(f"{signed}{suffix}").read_bytes())
    (tmp_path / "s.db.key").chmod(0o600)
    return db


def test_the_signing_key_is_private_and_a_signed_store_verifies(
    signed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert stat.S_IMODE(Path(f"{signed}.key").stat().st_mode) == 0o600
    rc, text = _verify(signed, capsys)
    assert rc == 0 and "signed by the trusted key" in text, text
    cp = _checkpoint_of(text)
    assert cp["sig"] and cp["key"] and cp["anchor_n"], cp
    rc, text = _verify(signed, capsys, "--key", f"{signed}.key.pub")
    assert rc == 0 and "signed by the trusted key" in text, text


def test_a_shard_file_finds_the_key_beside_its_base(
    signed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`serve --shard 1/2 --db D/tw.db` keeps its store in D/tw.shard1.db and signs with
    D/tw.db.key: `audit verify --db D/tw.shard1.db` finds that key by itself."""
    shard = tmp_path / "tw.shard1.db"
    shutil.copyfile(signed, shard)
    rc, text = _verify(shard, capsys)
    assert "signed by the trusted key" not in text, text  # no key beside it yet
    shutil.copyfile(f"{signed}.key.pub", tmp_path / "tw.db.key.pub")
    rc, text = _verify(shard, capsys)
    assert rc == 0 and "signed by the trusted key" in text, text
    assert key_candidates(shard)[:2] == [
        tmp_path / "tw.shard1.db.key.pub",
        tmp_path / "tw.shard1.db.key",
    ]
    assert key_candidates("postgresql://h/d") == [Path("tagwatch.key.pub"), Path("tagwatch.key")]


def _forge_row(db: Path) -> str:
    """Append a step row chained correctly: anyone can, without the key."""
    con = sqlite3.connect(db)
    n, step, h = con.execute("SELECT n, step, hash FROM ledger ORDER BY n DESC LIMIT 1").fetchone()
    body = b'{"step":"tick","now":1.0}'
    new = row_hash(bytes(h), n + 1, "step", step + 1, None, None, 1.0, body)
    con.close()
    return (
        "INSERT INTO ledger(n, kind, step, device, seq, t, body, hash) VALUES"
        f" ({n + 1}, 'step', {step + 1}, NULL, NULL, 1.0, X'{body.hex()}', X'{new.hex()}')"
    )


@pytest.mark.parametrize(
    ("attack", "says"),
    [
        ("cut-end", "newest rows were deleted"),
        ("append", "without the key"),
        ("drop-checkpoint", "no signed checkpoint"),
        ("edit-checkpoint", "signature is not valid"),
        ("resign", "another key"),
    ],
)
def test_a_signed_store_shows_a_cut_appended_or_resigned_end(
    signed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], attack: str, says: str
) -> None:
    db = _copy_signed(signed, tmp_path)
    con = sqlite3.connect(db)
    raw = con.execute("SELECT value FROM meta WHERE key = 'checkpoint'").fetchone()[0]
    con.close()
    cp = msgspec.json.decode(raw)
    last_step = "(SELECT MAX(n) FROM ledger WHERE kind = 'step')"
    if attack == "cut-end":
        _tamper(db, f"DELETE FROM ledger WHERE n >= {last_step}")
    elif attack == "append":
        _tamper(db, _forge_row(db))
    elif attack == "drop-checkpoint":
        _tamper(
            db,
            f"DELETE FROM ledger WHERE n >= {last_step}",
            "DELETE FROM meta WHERE key = 'checkpoint'",
        )
    elif attack == "edit-checkpoint":
        _tamper(db, f"DELETE FROM ledger WHERE n >= {last_step}")
        con = sqlite3.connect(db)
        n, step, h = con.execute(
            "SELECT n, step, hash FROM ledger ORDER BY n DESC LIMIT 1"
        ).fetchone()
        con.close()
        cp.update(n=n, step=step, hash=bytes(h).hex())
        _tamper(db, f"UPDATE meta SET value = '{json.dumps(cp)}' WHERE key = 'checkpoint'")
    else:  # rewrite the end and sign it with a key of one's own
        _tamper(db, _forge_row(db))
        con = sqlite3.connect(db)
        n, step, h = con.execute(
            "SELECT n, step, hash FROM ledger ORDER BY n DESC LIMIT 1"
        ).fetchone()
        con.close()
        mine = sign(
            msgspec.structs.replace(
                msgspec.json.decode(raw, type=Checkpoint), n=n, step=step, hash=bytes(h).hex()
            ),
            Ed25519PrivateKey.generate(),
        )
        _tamper(db, f"UPDATE meta SET value = '{mine.encode().decode()}' WHERE key = 'checkpoint'")
    rc, text = _verify(db, capsys)
    assert rc == 1 and "BROKEN" in text and says in text, text


def test_a_checkpoint_kept_elsewhere_shows_a_store_rolled_back(
    signed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The store's own checkpoint can be rolled back with the rows (an old signed one put
    back); the newer one kept elsewhere cannot."""
    db = _copy_signed(signed, tmp_path)
    con = sqlite3.connect(db)
    newest = con.execute("SELECT MAX(n) FROM ledger WHERE kind = 'step'").fetchone()[0]
    con.close()
    rc, text = _verify(db, capsys)
    kept = tmp_path / "published.txt"
    kept.write_text(next(x for x in text.splitlines() if x.startswith("checkpoint: ")))
    # An older signed checkpoint, as a copy of the store taken earlier would hold.
    con = sqlite3.connect(db)
    n, step, h = con.execute(
        "SELECT n, step, hash FROM ledger WHERE n < ? ORDER BY n DESC LIMIT 1", (newest,)
    ).fetchone()
    con.close()
    old = msgspec.json.decode(Path(kept).read_text().removeprefix("checkpoint: "), type=Checkpoint)
    key = load_or_create_key(f"{db}.key")
    rolled = sign(msgspec.structs.replace(old, n=n, step=step, hash=bytes(h).hex()), key)
    _tamper(
        db,
        f"DELETE FROM ledger WHERE n >= {newest}",
        f"UPDATE meta SET value = '{rolled.encode().decode()}' WHERE key = 'checkpoint'",
    )
    rc, text = _verify(db, capsys)
    assert rc == 0, text  # consistent in itself
    rc, text = _verify(db, capsys, "--checkpoint", str(kept))
    assert rc == 1 and "newest rows were deleted" in text, text


@pytest.mark.mqtt
def test_serve_signs_its_ledger_with_a_private_key_beside_the_store(
    mosquitto, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    zones, subjects = write_world(tmp_path)
    db = tmp_path / "tw.db"

    async def scenario() -> list:  # type: ignore[type-arg]
        async with AlertCollector(mosquitto.host, mosquitto.port) as col:
            await wait_online(mosquitto.host, mosquitto.port)
            await publish(mosquitto.host, mosquitto.port, track_in_and_out())
            return await col.wait_for(_episode_done)

    with EngineProcess(mosquitto.host, mosquitto.port, zones, subjects, db) as eng:
        asyncio.run(scenario())
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.glob("tw.db*")}
        assert eng.stop() == 0, eng.log_text()
    assert {"tw.db", "tw.db-wal", "tw.db-shm", "tw.db.key"} <= set(modes), modes
    private = {k: oct(v) for k, v in modes.items() if not k.endswith(".pub")}
    assert private == dict.fromkeys(private, oct(0o600)), private
    rc, text = _verify(db, capsys)
    assert rc == 0 and "signed by the trusted key" in text, text
    assert _checkpoint_of(text)["sig"]
