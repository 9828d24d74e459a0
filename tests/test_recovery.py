"""Restart recovery and the evidence ledger, without a broker: a pipeline driven step by
step as the live engine drives it, committed to a store; a crash at any step; a fresh
pipeline recovered from the store must then decide exactly what the uninterrupted one does.
And the ledger's hash chain: intact it verifies, changed anywhere it says where."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.cli.main import main
from engine.core.pipeline import Pipeline
from engine.settings import Settings
from engine.store import recovery
from engine.store.ledger import Step, decode_record
from engine.store.sql.conn import dialect
from engine.store.sql.open import connect, open_store
from engine.store.sql.store import SqlStore
from engine.wire.alerts import encode_alert
from engine.wire.decode import decode_replay_line
from engine.wire.records import EVENT_NAMES, EventRecord, FixRecord, Record
from engine.wire.replayline import encode_record
from tests.helpers import ledger_records
from zones.load import load

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("sim")
    rc = main(
        ["simulate", "--seed", "11", "--subjects", "25", "--duration", "3h", "--health",
         "--quick", "4", "--out-dir", str(d)]
    )  # fmt: skip
    assert rc == 0
    return d


def _records(d: Path) -> list[Record]:
    out: list[Record] = []
    with (d / "replay.jsonl").open("rb") as fh:
        for i, line in enumerate(fh):
            r, _ = decode_replay_line(line, f"replay:{i}")
            out.extend(r)
    return out


def _live_steps(recs: list[Record], seed: int) -> list[Step]:
    """Steps as the live engine makes them: batches of what arrived, on an engine clock a
    little after the records' times, and ticks (sometimes long: a quiet spell) between."""
    rng = random.Random(seed)
    steps: list[Step] = []
    now = 0.0
    i = 0
    while i < len(recs):
        n = rng.choice([1, 3, 20, 150])
        batch = recs[i : i + n]
        i += n
        now = max(now, max(r.t for r in batch) + rng.uniform(0.5, 3.0))
        steps.append(Step("batch", now, batch))
        if rng.random() < 0.2:
            now += rng.choice([1.0, 1.0, 15.0, 400.0])
            steps.append(Step("tick", now))
    return steps


def _drive(
    p: Pipeline, store: SqlStore | None, steps: list[Step], rng: random.Random
) -> list[bytes]:
    out: list[bytes] = []
    for step in steps:
        res = recovery.apply(p, step)
        out += [encode_alert(a) for a in res.alerts]
        if store is not None:
            store.commit(res.alerts, res.dead, step.now, steps=[step])
            if rng.random() < 0.05:
                store.save_snapshot(recovery.fingerprint(p), step.now, recovery.snapshot(p))
    return out


def _assert_same_future(a: Pipeline, b: Pipeline, future: list[Step]) -> None:
    rng = random.Random(0)
    fa = _drive(a, None, future, rng) + [encode_alert(x) for x in a.finish()]
    fb = _drive(b, None, future, rng) + [encode_alert(x) for x in b.finish()]
    assert fa, "the future steps should decide something"
    assert fb == fa


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_recovered_pipeline_decides_exactly_as_the_uninterrupted_one(
    world: Path, store_target: str, seed: int
) -> None:
    zs = load(world / "zones.geojson", world / "subjects.toml")
    steps = _live_steps(_records(world), seed)
    rng = random.Random(seed)
    crash = rng.randrange(len(steps) // 4, 3 * len(steps) // 4)
    db = store_target
    a = Pipeline(zs, Settings())
    with open_store(db) as store:
        before = _drive(a, store, steps[:crash], rng)
    assert before, "the stream should raise alerts before the crash"

    b = Pipeline(zs, Settings())
    with open_store(db) as store:
        rec = recovery.recover(b, store)
        assert rec.alerts == []  # everything re-decided was already stored, byte for byte
        assert (rec.steps > 0 or rec.from_snapshot) and rec.last_now == steps[crash - 1].now
        assert store.verify().ok

    after_a = _drive(a, None, steps[crash:], rng)
    after_b = _drive(b, None, steps[crash:], rng)
    assert after_a, "the stream should raise alerts after the crash"
    assert after_b == after_a
    assert [encode_alert(x) for x in a.finish()] == [encode_alert(x) for x in b.finish()]


def test_recovery_without_a_snapshot_replays_the_whole_ledger(
    world: Path, store_target: str
) -> None:
    zs = load(world / "zones.geojson", world / "subjects.toml")
    all_steps = _live_steps(_records(world), 9)
    steps, future = all_steps[: len(all_steps) // 2], all_steps[len(all_steps) // 2 :]
    a = Pipeline(zs)
    with open_store(store_target) as store:
        for step in steps:
            res = recovery.apply(a, step)
            store.commit(res.alerts, res.dead, step.now, steps=[step])
        assert store.latest_snapshot() is None
    b = Pipeline(zs)
    with open_store(store_target) as store:
        rec = recovery.recover(b, store)
    assert not rec.from_snapshot and rec.steps == len(steps) and rec.alerts == []
    _assert_same_future(a, b, future)


def test_a_resume_credits_downtime_so_a_restart_is_not_silence(world: Path) -> None:
    """Tags last heard just before a 2-hour outage are not silent right after it."""
    zs = load(world / "zones.geojson", world / "subjects.toml")
    recs = _records(world)[:300]
    now = max(r.t for r in recs) + 1.0
    late = now + 7200.0

    def silent_after(credit: float) -> int:
        p = Pipeline(zs)
        recovery.apply(p, Step("batch", now, recs))
        recovery.apply(p, Step("resume", late, credit=credit))
        res = recovery.apply(p, Step("tick", late + 1.0))
        return sum(a.kind == "tag_silent" for a in res.alerts)

    assert silent_after(0.0) > 0  # without the credit every tag would look silent
    assert silent_after(7200.0) == 0


# -- the ledger -------------------------------------------------------------------------

_fix = st.builds(
    FixRecord,
    device=st.sampled_from(["T1", "victim/phone", "ÄÖ-tag"]),
    seq=st.integers(0, 2**62),
    t=st.floats(978307200.0, 4.1e9),
    lat=st.floats(-90, 90),
    lon=st.floats(-180, 180),
    acc=st.floats(0.1, 1e5),
    batt=st.none() | st.integers(0, 100),
    src=st.sampled_from([None, "gps", "wifi", "cell"]),
)
_event = st.builds(
    EventRecord,
    device=st.just("T9"),
    seq=st.integers(0, 2**62),
    t=st.floats(978307200.0, 4.1e9),
    event=st.sampled_from(sorted(EVENT_NAMES)),
    batt=st.none() | st.integers(0, 100),
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(_fix, _event.filter(lambda e: e.event != "battery" or e.batt is not None)))
def test_ledger_rows_give_back_the_exact_record(r: Record) -> None:
    assert decode_record(encode_record(r)) == r


def _store_with_history(world: Path, db: str) -> None:
    zs = load(world / "zones.geojson", world / "subjects.toml")
    p = Pipeline(zs)
    with open_store(db) as store:
        for step in _live_steps(_records(world), 4)[:600]:
            res = recovery.apply(p, step)
            store.commit(res.alerts, res.dead, step.now, steps=[step])


def _verify(db: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    rc = main(["audit", "verify", "--db", str(db)])
    cap = capsys.readouterr()
    return rc, cap.out + cap.err


# (SQLite's words, PostgreSQL's words, what verify says)
RECORDS_77 = "n = (SELECT MIN(n) FROM ledger WHERE kind = 'records' AND n >= 77)"
CHANGES = [
    ("UPDATE ledger SET body = CAST(replace(CAST(body AS TEXT), '\"acc\":', '\"acc\":1') AS BLOB)"
     f" WHERE {RECORDS_77}",
     "UPDATE ledger SET body = convert_to(replace(convert_from(body, 'UTF8'), '\"acc\":',"
     f" '\"acc\":1'), 'UTF8') WHERE {RECORDS_77}", "(records) does not match its hash"),
    ("DELETE FROM ledger WHERE n = 120", "DELETE FROM ledger WHERE n = 120", "row 120 is missing"),
    ("UPDATE ledger SET t = t + 1 WHERE n = (SELECT MIN(n) FROM ledger WHERE kind='step')",
     "UPDATE ledger SET t = t + 1 WHERE n = (SELECT MIN(n) FROM ledger WHERE kind='step')",
     "does not match"),
    ("UPDATE alert_log SET record = X'7b7d' WHERE seq = 3",
     "UPDATE alert_log SET record = '\\x7b7d'::bytea WHERE seq = 3", "alert_log record 3"),
]  # fmt: skip


@pytest.mark.parametrize(("lite", "pg", "says"), CHANGES)
def test_audit_verify_finds_any_change(
    world: Path, store_target: str, capsys: pytest.CaptureFixture[str], lite: str, pg: str,
    says: str,
) -> None:  # fmt: skip
    db = store_target
    _store_with_history(world, db)
    rc, text = _verify(db, capsys)
    assert rc == 0 and text.startswith("ok: "), text
    con = connect(db)
    try:
        assert con.execute(lite if dialect(con) == "sqlite" else pg).rowcount == 1
    finally:
        con.close()
    rc, text = _verify(db, capsys)
    assert rc == 1 and "BROKEN" in text and says in text, text
    assert ":s3cret-pw@" not in text  # a URL's password is never printed


def test_retention_keeps_a_verifiable_chain_and_recovery(world: Path, store_target: str) -> None:
    zs = load(world / "zones.geojson", world / "subjects.toml")
    steps = _live_steps(_records(world), 5)
    a = Pipeline(zs)
    db = store_target
    with open_store(db) as store:
        half = len(steps) // 2
        for step in steps[:half]:
            res = recovery.apply(a, step)
            store.commit(res.alerts, res.dead, step.now, steps=[step])
        store.save_snapshot(recovery.fingerprint(a), steps[half - 1].now, recovery.snapshot(a))
        for step in steps[half:]:
            res = recovery.apply(a, step)
            store.commit(res.alerts, res.dead, step.now, steps=[step])
        total = _count(db, "SELECT COUNT(*) FROM ledger")
        # Retention asks for everything: only what precedes the snapshot may go.
        deleted = store.prune(before=steps[-1].now + 1.0, chunk=10**9)
        assert 0 < deleted < total
        assert store.verify().ok
    b = Pipeline(zs)
    with open_store(db) as store:
        rec = recovery.recover(b, store)
    assert rec.from_snapshot and rec.alerts == []
    more = _live_steps(_records(world), 6)
    shift = steps[-1].now - more[0].now + 10.0  # the same tracks again, later
    _assert_same_future(a, b, [Step(x.kind, x.now + shift, x.records) for x in more[:300]])


def test_audit_alert_and_export_reconstruct_an_alert(
    world: Path, tmp_path: Path, store_target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = store_target
    _store_with_history(world, db)
    with open_store(db) as store:
        alert = next(a for a in store.alert_log() if a.kind == "zone_breach")
    assert main(["audit", "alert", alert.id, "--db", str(db)]) == 0
    out = capsys.readouterr().out
    for tag, seq in alert.evidence:
        assert f"evidence {tag} #{seq}: row " in out
    exported = tmp_path / "evidence.jsonl"
    assert main(["audit", "export", "--db", str(db), "--out", str(exported)]) == 0
    lines = exported.read_bytes().splitlines()
    con = connect(db)
    try:
        assert lines == [r[3] for r in ledger_records(con)] and lines
    finally:
        con.close()
    assert all(decode_replay_line(line, "x")[0] for line in lines)
    assert main(["audit", "verify", "--db", str(tmp_path / "nope.db")]) == 2


def test_a_changed_subjects_file_maps_the_snapshot_by_ids_without_a_rebuild(
    world: Path, tmp_path: Path, store_target: str
) -> None:
    """A subject added between runs changes the state's shape; the snapshot is keyed by
    ids, so it is mapped onto the new configuration (the new tag starts empty) instead of
    replaying the whole retained ledger, and the subjects that were already there decide
    exactly what they would have."""
    zs = load(world / "zones.geojson", world / "subjects.toml")
    steps = _live_steps(_records(world), 8)
    half = len(steps) // 2
    a = Pipeline(zs)
    db = store_target
    with open_store(db) as store:
        _drive(a, store, steps[:half], random.Random(1))
        store.save_snapshot(recovery.fingerprint(a), steps[half - 1].now, recovery.snapshot(a))
    more = tmp_path / "subjects.toml"
    more.write_text(
        (world / "subjects.toml").read_text() + '\n[[subjects]]\nid = "NEW"\ntags = ["TNEW"]\n'
    )
    b = Pipeline(load(world / "zones.geojson", more))
    assert recovery.fingerprint(b) != recovery.fingerprint(a)
    with open_store(db) as store:
        rec = recovery.recover(b, store)
    assert rec.from_snapshot and rec.remapped and not rec.rebuilt and rec.steps == 0
    assert rec.alerts == [] and rec.pipeline is b
    _assert_same_future(a, b, steps[half:])


def _count(db: str, sql: str) -> int:
    """A count read by a connection of the test's own (the store's stays on its thread)."""
    con = connect(db)
    try:
        return int(con.execute(sql).fetchone()[0])
    finally:
        con.close()
