"""The store on a real PostgreSQL (the throwaway cluster of tests/pgkit.py): what the
SQLite store gives, byte for byte; shards' schemas read as one by the console and
`tagwatch alerts`; a monitor's action written into the shard that holds the alert; the
accounts in the common schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.cli.main import main
from engine.store.access.accounts import AccountStore
from engine.store.casework.reader import open_reader
from engine.store.casework.shards import SPAN, ShardedReader
from engine.store.casework.workflow import Action
from engine.store.ledger import Step
from engine.store.signing import load_or_create_key
from engine.store.sql.conn import DB_ERRORS, with_schema
from engine.store.sql.open import connect, open_store
from engine.store.sql.pg import shard_schema
from engine.wire.alerts import Alert, alert_id


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("sim")
    rc = main(
        ["simulate", "--seed", "7", "--subjects", "30", "--duration", "3h", "--health",
         "--out-dir", str(d)]
    )  # fmt: skip
    assert rc == 0
    return d


def _rows(target: str, sql: str) -> list[tuple[object, ...]]:
    con = connect(target)
    try:
        return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r)
                for r in con.execute(sql).fetchall()]  # fmt: skip
    finally:
        con.close()


def test_replay_gives_the_same_bytes_and_ledger_hashes_on_both_databases(
    sim_dir: Path, tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tagwatch replay --db`: the same alert records (file and alert log) and the same
    evidence ledger, row for row and hash for hash, on SQLite and on PostgreSQL."""
    lite = str(tmp_path / "tw.db")
    outs = []
    for db in (lite, pg_url):
        out = tmp_path / f"alerts-{len(outs)}.jsonl"
        rc = main(
            ["replay", str(sim_dir / "replay.jsonl"), "--zones", str(sim_dir / "zones.geojson"),
             "--subjects", str(sim_dir / "subjects.toml"), "--out", str(out), "-q", "--db", db]
        )  # fmt: skip
        assert rc == 0
        outs.append(out.read_bytes())
    assert outs[0] and outs[0] == outs[1]
    log_sql = "SELECT seq, alert_id, state, subject, record FROM alert_log ORDER BY seq"
    assert _rows(lite, log_sql) == _rows(pg_url, log_sql)
    ledger_sql = "SELECT n, kind, step, device, seq, t, body, hash FROM ledger ORDER BY n"
    a, b = _rows(lite, ledger_sql), _rows(pg_url, ledger_sql)
    assert len(a) > 50 and a == b  # replay keeps the alert rows (no steps: no broker)
    dead_sql = "SELECT seq, origin, reason, size, payload, sha256, device, count FROM dead_letters"
    assert _rows(lite, dead_sql) == _rows(pg_url, dead_sql + " ORDER BY seq")
    capsys.readouterr()
    for db in (lite, pg_url):
        assert main(["audit", "verify", "--db", db]) == 0
    heads = [line.rsplit("head ", 1)[1] for line in capsys.readouterr().out.splitlines()
             if line.startswith("ok: ")]  # fmt: skip
    assert len(heads) == 2 and heads[0] == heads[1]


def _alert(subject: str, n: int) -> Alert:
    return Alert(
        id=alert_id(subject, "Z1", "zone_breach", ("T" + subject, n)), kind="zone_breach",
        state="open", subject=subject, tag="T" + subject, zone="Z1", severity="high",
        confidence=0.97, opened_t=100.0 + n, raised_t=100.0 + n, closed_t=None,
        evidence=[("T" + subject, n)],
    )  # fmt: skip


def test_readers_see_every_shards_alerts_and_an_action_goes_to_the_holding_shard(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = load_or_create_key(tmp_path / "tagwatch.key")  # one key for the deployment
    shards = [open_store(pg_url, schema=shard_schema(i, 2), signing_key=key) for i in range(2)]
    try:
        shards[0].commit([_alert("A", 1), _alert("A", 2)], [], 10.0, steps=[Step("tick", 10.0)])
        shards[1].commit([_alert("B", 1)], [], 10.0, steps=[Step("tick", 10.0)])
        with open_reader(pg_url) as reader:
            assert isinstance(reader, ShardedReader)
            cur = reader.current()
            assert sorted(a.subject for _, a, _ in cur) == ["A", "A", "B"]
            assert len({s for s, _, _ in cur}) == 3  # merged seqs are unique
            assert reader.log_after(max(s for s, _, _ in cur)) == []
            # shard 1 commits records whose own seqs are below shard 0's: still followed
            shards[1].commit([_alert("B", 2)], [], 11.0, steps=[Step("tick", 11.0)])
            got = reader.log_after(max(s for s, _, _ in cur))
            assert [a.id for _, a in got] == [_alert("B", 2).id]
            assert got[0][0] % SPAN == 1  # shard_1 is the second store found
            # a monitor on shard 0's console acknowledges shard 1's alert
            b1 = _alert("B", 1).id
            item = shards[0].act(b1, Action("ack", "mon", 12.0))
            assert item.seq == 0  # not shard 0's outbox row
            assert [a.state for _, a in reader.records(b1)] == ["open", "acknowledged"]
            assert reader.target_of(b1) == with_schema(pg_url, "tagwatch_shard_1")
            assert shards[0].alert_log() == [_alert("A", 1), _alert("A", 2)]
        # shard 1's engine goes on after the row another process appended to its chain
        shards[1].commit([_alert("B", 3)], [], 13.0, steps=[Step("tick", 13.0)])
        for st in shards:
            rep = st.verify()
            assert (rep.ok and rep.signed is False) or rep.ok, rep.problem
    finally:
        for st in shards:
            st.close()
    capsys.readouterr()
    for i in range(2):
        target = with_schema(pg_url, shard_schema(i, 2))
        assert (
            main(["audit", "verify", "--db", target, "--key", str(tmp_path / "tagwatch.key")]) == 0
        )
    assert "signed by the trusted key" in capsys.readouterr().out
    assert main(["alerts", "--db", pg_url]) == 0  # every shard's current alerts
    out = capsys.readouterr().out
    for a in (_alert("A", 1), _alert("A", 2), _alert("B", 1), _alert("B", 2), _alert("B", 3)):
        assert a.id in out, out


def test_accounts_live_in_the_common_schema_and_the_access_log_is_append_only(
    pg_url: str,
) -> None:
    shard_url = with_schema(pg_url, shard_schema(0, 2))
    with AccountStore(shard_url) as acc:
        acc.add_user("mon", "monitor", "north", "$argon2id$fake")
        acc.log("mon", "127.0.0.1", "login", "")
    with AccountStore(pg_url) as acc:  # the same accounts, whichever schema the URL names
        assert [u.name for u in acc.users()] == ["mon"]
        assert [r.action for r in acc.access_log()] == ["user_add", "login"]
    con = connect(pg_url)
    try:
        with pytest.raises(DB_ERRORS, match="append-only"):
            con.execute("DELETE FROM access_log")
    finally:
        con.close()
