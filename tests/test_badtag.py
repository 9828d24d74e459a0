"""One bad tag hurts only itself (issue 13, item 3): what a dead letter keeps is bounded (an
excerpt, the size, the hash), one device's dead letters are budgeted (a summary row instead
of thousands), they follow retention, and another tag's walk-in is still alerted while a
tag floods the engine with payloads no decoder can represent."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import time
from pathlib import Path

import pytest

from engine.cli.main import main
from engine.store.ledger import Step
from engine.store.sqlite import SqliteStore
from engine.wire.alerts import Alert, alert_id
from engine.wire.decode import decode_message
from engine.wire.records import EXCERPT_BYTES, DeadLetter
from tests.helpers import AlertCollector, EngineProcess, fix, publish, wait_online, write_world

T0 = 1_774_710_000.0  # replay: historical event time
# Live, the engine judges event times on the host's wall time (live_clock "wall")
LIVE_T0 = float(int(time.time()) - 3600)
TWO = '[[subjects]]\nid = "S1"\ntags = ["T1"]\n\n[[subjects]]\nid = "S2"\ntags = ["T2"]\n'
HOSTILE_T = "tagwatch/v1/tags/T2/fixes"
MB = 1_000_000


def hostile_fixes(n: int = 2000, size: int = 262_000) -> bytes:
    """A /fixes batch of `n` numbers no decoder can represent, padded to ~`size` bytes (the
    engine's payload limit is 262 144)."""
    pad = max(0, (size - 2) // n - 6)
    return b"[" + b",".join([b"1e400" + b" " * pad] * n) + b"]"


def store_bytes(db: Path) -> int:
    """The store's size as a reader sees it (committed pages, the WAL's included)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        (pages,) = con.execute("PRAGMA page_count").fetchone()
        (size,) = con.execute("PRAGMA page_size").fetchone()
    finally:
        con.close()
    return int(pages) * int(size)


def walk_in(tag: str, seq0: int, t0: float) -> list[dict]:  # type: ignore[type-arg]
    """Outside Z1, then deep inside for five minutes: a zone breach."""
    pts = [-400, -250, 0, 10, -10, 5, 0, 0]
    return [fix(seq0 + i, t0 + 60 * i, dx, 0.0) for i, dx in enumerate(pts)]


# -- (a) a dead letter keeps a bounded excerpt, its size and its hash ---------------------------
def test_a_batch_of_unrepresentable_numbers_keeps_each_element_not_the_payload(
    tmp_path: Path,
) -> None:
    """Before: each of the 2,000 dead letters carried the whole 256 KiB payload (cut to
    64 KiB in the store): one message grew the store by ~200 MB."""
    payload = hostile_fixes()
    recs, dead = decode_message(HOSTILE_T, payload)
    assert recs == [] and len(dead) == 2000
    for i, d in enumerate(dead[:3]):
        assert d.reason == f"fixes[{i}]: fix must be a JSON object, got a number"
        assert d.payload == b"1e400" and d.size == 5 and d.device == "T2"
        assert d.sha256 == hashlib.sha256(b"1e400").hexdigest()
    assert all(len(d.payload) <= EXCERPT_BYTES for d in dead)
    db = tmp_path / "s.db"
    with SqliteStore(db, dead_letter_budget=0) as st:  # no budget: only the excerpts count
        before = store_bytes(db)
        st.commit([], dead)
        grown = store_bytes(db) - before
        rows = st.dead_letters()
    assert len(rows) == 2000 and rows[0].sha256 == dead[0].sha256 and rows[0].device == "T2"
    assert grown < 1 * MB, f"one 256 KiB message grew the store by {grown / MB:.1f} MB"


def test_a_dead_letter_keeps_an_excerpt_with_the_full_size_and_hash() -> None:
    big = b'{"seq": 1, "note": "' + b"x" * 100_000 + b'"}'
    (d,) = decode_message("tagwatch/v1/tags/T1/fix", big)[1]
    assert d.payload == big[:EXCERPT_BYTES] and d.size == len(big)
    assert d.sha256 == hashlib.sha256(big).hexdigest()


# -- (b) dead letters are budgeted per device and follow retention --------------------------
def test_replay_flood_of_garbage_from_one_tag_is_summarised_and_the_other_tag_alerted(
    tmp_path: Path,
) -> None:
    """`tagwatch replay --db`: 10 MB of lines from T2 that are all rejected (before: every
    one a row, ~40 MB of store) and T1's walk-in, interleaved."""
    zones, subjects = write_world(tmp_path, subjects_toml=TWO)
    bad = json.dumps({"tag": "T2", "seq": 1, "t": T0, "lat": 91.0, "lon": 0.0, "acc": 5.0})
    bad = bad[:-1] + ', "note": "' + "x" * 150 + '"}'
    good = [json.dumps({"tag": "T1", **f}) for f in walk_in("T1", 1, T0)]
    n_bad = 10 * MB // (len(bad) + 1) + 1
    src = tmp_path / "in.jsonl"
    with src.open("w") as fh:
        for k in range(n_bad):
            fh.write(bad + "\n")
            if k % (n_bad // len(good) + 1) == 0:
                fh.write(good.pop(0) + "\n")
        for line in good:
            fh.write(line + "\n")
    assert src.stat().st_size >= 10 * MB
    out, db = tmp_path / "out.jsonl", tmp_path / "tw.db"
    with SqliteStore(db):
        pass
    empty = store_bytes(db)
    args = ["replay", str(src), "--zones", str(zones), "--subjects", str(subjects)]
    assert main([*args, "--out", str(out), "--db", str(db), "-q"]) == 0
    grown = store_bytes(db) - empty
    alerts = [json.loads(x) for x in out.read_text().splitlines()]
    assert [a["state"] for a in alerts if a["tag"] == "T1" and a["kind"] == "zone_breach"][:1] == [
        "open"
    ]
    with SqliteStore(db) as st:
        rows = st.dead_letters()
    assert sum(r.count for r in rows) == n_bad  # every one is counted
    assert len(rows) <= 51, [r.reason for r in rows[-3:]]
    summary = rows[-1]
    assert summary.count == n_bad - 50 and summary.device == "in.jsonl"
    assert summary.reason.startswith(f"{n_bad - 50} more dead letters from in.jsonl in the last")
    assert "fix.lat" in summary.reason
    assert grown < 3 * MB, f"10 MB of garbage grew the store by {grown / MB:.1f} MB"


def test_the_budget_is_per_device_and_a_failed_commit_counts_nothing_twice(
    tmp_path: Path,
) -> None:
    def letters(tag: str, n: int) -> list[DeadLetter]:
        return [DeadLetter(f"tagwatch/v1/tags/{tag}/fix", b"{", "not valid JSON") for _ in range(n)]

    with SqliteStore(tmp_path / "s.db", dead_letter_budget=3, dead_letter_window_s=60) as st:
        st.commit([], letters("T2", 10) + letters("T1", 2), now=1000.0)
        st.commit([], letters("T1", 1), now=1010.0)
        # the window of T2 ends: its summary is written with the next commit
        st.commit([], letters("T2", 1), now=1061.0)
        rows = st.dead_letters()
    by_dev = [(r.device, r.count) for r in rows]
    assert by_dev == [
        (None, 1), (None, 1), (None, 1), (None, 1), (None, 1), (None, 1),
        ("T2", 7), (None, 1),
    ]  # fmt: skip
    assert rows[6].reason == (
        "7 more dead letters from T2 in the last 60 s (over the budget of 3): not valid JSON x7"
    )


def test_dead_letters_follow_retention_and_old_stores_gain_the_columns(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    con = sqlite3.connect(db)
    con.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO meta VALUES ('schema', '2');"
        "CREATE TABLE dead_letters (seq INTEGER PRIMARY KEY AUTOINCREMENT, received_at REAL"
        " NOT NULL, origin TEXT NOT NULL, reason TEXT NOT NULL, size INTEGER NOT NULL,"
        " payload BLOB NOT NULL);"
        "INSERT INTO dead_letters(received_at, origin, reason, size, payload)"
        " VALUES (100.0, 'o', 'old', 3, x'616263');"
    )
    con.commit()
    con.close()
    with SqliteStore(db) as st:
        st.commit([], [DeadLetter("o", b"new", "new")], now=200.0)
        assert [(r.reason, r.sha256 is None) for r in st.dead_letters()] == [
            ("old", True),
            ("new", False),
        ]
        assert st.prune_dead_letters(150.0) == 1
        assert [r.reason for r in st.dead_letters()] == ["new"]


def _alert(seq: int, state: str, t: float) -> Alert:
    return Alert(
        id=alert_id("S1", "Z1", "zone_breach", ("T1", seq)),
        kind="zone_breach",
        state=state,  # type: ignore[arg-type]
        subject="S1",
        tag="T1",
        zone="Z1",
        severity="high",
        confidence=0.97,
        opened_t=t,
        raised_t=t,
        closed_t=t + 50 if state == "closed" else None,
        evidence=[("T1", seq)],
    )


def test_alert_log_follows_the_evidence_retention(tmp_path: Path) -> None:
    """Before: alert_log and alerts were never pruned, whatever the retention."""
    with SqliteStore(tmp_path / "s.db") as st:
        done = [_alert(1, "open", 100.0), _alert(1, "closed", 100.0)]
        out = st.commit(done, [], 100.0, steps=[Step("tick", 100.0)])
        st.mark_published([o.seq for o in out])
        unsent = [_alert(2, "open", 110.0), _alert(2, "closed", 110.0)]  # never published
        st.commit(unsent, [], 110.0, steps=[Step("tick", 110.0)])
        still = st.commit([_alert(3, "open", 200.0)], [], 200.0, steps=[Step("tick", 200.0)])
        st.mark_published([o.seq for o in still])
        st.commit([], [], 300.0, steps=[Step("tick", 300.0)])
        st.save_snapshot("fp", 300.0, b"state")
        assert st.prune(before=1000.0) > 0
        assert st.verify().ok
        kept = [(a.evidence[0][1], a.state) for a in st.alert_log()]
        assert kept == [(2, "open"), (2, "closed"), (3, "open")]
        assert {a.id for a in st.current_alerts()} == {unsent[0].id, _alert(3, "open", 0).id}


def test_alerts_lists_dead_letters_with_their_hash(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "s.db"
    with SqliteStore(db) as st:
        st.commit([], [DeadLetter("t/x", b"x" * 1000, "too big")])
    assert main(["alerts", "--db", str(db), "--dead-letters"]) == 0
    out = capsys.readouterr().out
    sha = hashlib.sha256(b"x" * 1000).hexdigest()
    assert f"dead letter 1: t/x: too big (1000 bytes, sha256 {sha})" in out


# -- through `tagwatch serve` and a real mosquitto ------------------------------------------
@pytest.mark.mqtt
@pytest.mark.timeout(240)
def test_serve_hostile_tag_flood_grows_the_store_little_and_another_walk_in_is_alerted(
    mosquitto, tmp_path: Path
) -> None:
    """40 messages of 2,000 unrepresentable numbers (10 MB) from T2, then T1 walks into Z1.
    Before: every element stored the payload (64 KiB each): ~5 GB for the 40 messages."""
    zones, subjects = write_world(tmp_path, subjects_toml=TWO)
    db = tmp_path / "tw.db"
    hostile = hostile_fixes()
    n = 10 * MB // len(hostile) + 1
    sizes: list[int] = []

    async def scenario() -> list:  # type: ignore[type-arg]
        async with AlertCollector(mosquitto.host, mosquitto.port) as col:
            await wait_online(mosquitto.host, mosquitto.port)
            sizes.append(store_bytes(db))
            await publish(mosquitto.host, mosquitto.port, [(HOSTILE_T, hostile)] * n)
            track = [("tagwatch/v1/tags/T1/fix", json.dumps(f)) for f in walk_in("T1", 1, LIVE_T0)]
            await publish(mosquitto.host, mosquitto.port, track)
            return await col.wait_for(
                lambda al: any(a.kind == "zone_breach" and a.tag == "T1" for a in al), 120.0
            )

    with EngineProcess(mosquitto.host, mosquitto.port, zones, subjects, db) as eng:
        alerts = asyncio.run(scenario())
        assert eng.stop() == 0, eng.log_text()
    grown = store_bytes(db) - sizes[0]
    log = eng.log.stat().st_size
    assert log < 1 * MB, f"the engine log grew to {log / MB:.1f} MB"
    assert any(a.kind == "zone_breach" and a.subject == "S1" for a in alerts)
    with SqliteStore(db) as st:
        rows = st.dead_letters()
    assert sum(r.count for r in rows) == 2000 * n  # every element is counted
    assert len(rows) <= 51 and rows[-1].device == "T2" and rows[-1].count == 2000 * n - 50
    assert n * len(hostile) >= 10 * MB
    assert grown < 3 * MB, (
        f"{n * len(hostile) / MB:.1f} MB of garbage grew the store by {grown / MB:.1f} MB"
    )
    print(
        f"hostile input {n * len(hostile) / MB:.1f} MB, store growth {grown / MB:.3f} MB,"
        f" engine log {log / MB:.3f} MB"
    )
