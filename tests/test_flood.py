"""A tag flooding the engine over its rate limit hurts only itself (issue 13, item 3): a
record refused by the rate limit is a (budgeted) dead letter and costs no ledger row, and
restart recovery, which replays steps stored without those records, judges every other
record exactly as the live engine did. Through the pipeline and the ledger's steps, then
through `tagwatch serve` over a real mosquitto (a kill -9 in the middle)."""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from engine.core.pipeline import Pipeline
from engine.settings import Settings
from engine.store import recovery
from engine.store.ledger import Step
from engine.wire.alerts import encode_alert
from engine.wire.records import FixRecord, Record
from tests.helpers import (
    AlertCollector,
    EngineProcess,
    fix,
    ledger_records,
    publish,
    wait_online,
    write_world,
)
from zones.load import load

TWO = '[[subjects]]\nid = "S1"\ntags = ["T1"]\n\n[[subjects]]\nid = "S2"\ntags = ["T2"]\n'
BURST, RATE = 20, 1.0
FLOOD_SETTINGS = f"rate_burst = {BURST}\nrate_max_per_s = {RATE}\n"


def ledger_figures(db: Path, device: str) -> tuple[int, int]:
    """(fix and event rows of `device`, their body bytes) in the store's ledger."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        mine = [line for d, _, _, line in ledger_records(con) if d == device]
    finally:
        con.close()
    return len(mine), sum(len(line) for line in mine)


def walk_in(seq0: int, t0: float) -> list[dict]:  # type: ignore[type-arg]
    """Outside Z1, then deep inside for five minutes: a zone breach."""
    pts = [-400, -250, 0, 10, -10, 5, 0, 0]
    return [fix(seq0 + i, t0 + 60 * i, dx, 0.0) for i, dx in enumerate(pts)]


def _rec(tag: str, seq: int, t: float, dx: float) -> FixRecord:
    f = fix(seq, t, dx, 0.0)
    return FixRecord(tag, seq, t, f["lat"], f["lon"], f["acc"])


# -- through the pipeline: steps stored without the refused records replay the same -------
def test_steps_stored_without_refused_records_recover_the_same_state(tmp_path: Path) -> None:
    """T2 floods (30 fixes every 15 s against a bucket of 20 refilled at 1/s) while T1 walks
    in; a batch of only refused records, and a record from an unknown device, too. Live
    keeps each step without its traceless records; a second pipeline replaying the kept
    steps ends with the same admission state and, fed the same further steps, decides
    the same alerts as the live one."""
    zones, subjects = write_world(tmp_path, subjects_toml=TWO)
    zs = load(zones, subjects)
    st = Settings(rate_burst=BURST, rate_max_per_s=RATE)
    live, rebuilt = Pipeline(zs, st), Pipeline(zs, st)
    opened: set[str] = set()  # breach ids opened (an escalation re-publishes the same id)
    t0 = 1_790_000_000.0
    track = walk_in(1, t0)
    refused = 0
    seq2 = 0
    for k in range(40):
        now = t0 + k * 15.0 - (14.9 if k == 17 else 0.0)  # 17: only refused
        recs: list[Record] = []
        for _ in range(1 if k == 17 else 30):
            seq2 += 1
            recs.append(_rec("T2", seq2, now, 500.0))
        if k % 5 == 0 and k // 5 < len(track):
            f = track[k // 5]
            recs.insert(3, FixRecord("T1", f["seq"], f["t"], f["lat"], f["lon"], f["acc"]))
        if k == 9:
            recs.append(_rec("NOBODY", 1, now, 0.0))
        step = Step("batch", now, recs)
        res = recovery.apply(live, step)
        opened |= {a.id for a in res.alerts if a.kind == "zone_breach" and a.state == "open"}
        kept = step.without(res.traceless)
        assert len(kept.records) + kept.refused == len(recs)
        refused += kept.refused
        if k == 17:
            assert kept.refused == 1 and not kept.records
        # a crash may come after any step: the kept steps must rebuild the state of each
        recovery.apply(rebuilt, kept)
        for name in ("tokens", "last", "full_t", "extra", "clk"):
            a, b = getattr(live.admission, name), getattr(rebuilt.admission, name)
            assert np.array_equal(a, b, equal_nan=True), (k, name)
    assert refused > 400 and len(opened) == 1  # half the flood; T1's walk-in
    # the same future for both: the rest of the walk-in, more flood, time passing
    after = [Step("batch", t0 + 700 + k, [_rec("T2", 10_000 + k, t0 + 700 + k, 500.0)] * 30)
             for k in range(5)]  # fmt: skip
    rest = [
        FixRecord("T1", f["seq"], f["t"], f["lat"], f["lon"], f["acc"]) for f in track
    ]  # resent: duplicates to both
    after.append(Step("batch", t0 + 800, rest))
    after.append(Step("tick", t0 + 1500))
    got = [
        [encode_alert(a) for a in recovery.apply(p, s).alerts]
        for p in (live, rebuilt)
        for s in after
    ]
    assert got[: len(after)] == got[len(after) :]


# -- through `tagwatch serve` and a real mosquitto ------------------------------------------
@pytest.mark.mqtt
@pytest.mark.timeout(240)
def test_serve_records_over_the_rate_limit_cost_no_ledger_row(mosquitto, tmp_path: Path) -> None:
    """T2 sends 2,000 fixes in 10 /fixes uploads against a bucket of 20 refilled at 1 a
    second, then T1 walks into Z1; the engine is killed (-9) and restarted (recovery
    replays every step), and T1 sends one more fix inside. Before: each refused fix was a
    ledger row (2,000 rows, ~190 KB of bodies). After: T2's ledger rows are what the
    bucket admitted, T1's breach is raised once and recovery decides nothing new."""
    zones, subjects = write_world(tmp_path, subjects_toml=TWO)
    conf = tmp_path / "settings.toml"
    conf.write_text(FLOOD_SETTINGS)
    db = tmp_path / "tw.db"
    t0 = float(int(time.time()) - 1200)
    flood = [fix(i, t0 + i * 0.01, 500.0, 0.0) for i in range(1, 2001)]
    uploads = [flood[k : k + 200] for k in range(0, 2000, 200)]
    track = walk_in(1, t0)
    started = time.monotonic()

    async def first() -> list:  # type: ignore[type-arg]
        async with AlertCollector(mosquitto.host, mosquitto.port) as col:
            await wait_online(mosquitto.host, mosquitto.port)
            await publish(
                mosquitto.host,
                mosquitto.port,
                [("tagwatch/v1/tags/T2/fixes", json.dumps(u)) for u in uploads],
            )
            await publish(
                mosquitto.host,
                mosquitto.port,
                [("tagwatch/v1/tags/T1/fix", json.dumps(f)) for f in track],
            )
            return await col.wait_for(
                lambda al: any(a.kind == "zone_breach" and a.tag == "T1" for a in al), 90.0
            )

    async def second() -> list:  # type: ignore[type-arg]
        async with AlertCollector(mosquitto.host, mosquitto.port) as col:
            await wait_online(mosquitto.host, mosquitto.port)
            more = fix(len(track) + 1, t0 + 60 * len(track), 0.0, 0.0)
            await publish(
                mosquitto.host, mosquitto.port, [("tagwatch/v1/tags/T1/fix", json.dumps(more))]
            )
            await asyncio.sleep(3.0)
            return col.alerts

    eng = EngineProcess(mosquitto.host, mosquitto.port, zones, subjects, db, conf)
    with eng:
        alerts = asyncio.run(first())
        time.sleep(1.5)  # the commit after the last message
        eng.kill()
        elapsed = time.monotonic() - started
        rows, size = ledger_figures(db, "T2")
        eng.start()
        later = asyncio.run(second())
        assert eng.stop() == 0, eng.log_text()
    log = eng.log_text()
    print(f"T2 sent 2000 fixes; its ledger rows {rows} ({size} body bytes) in {elapsed:.0f} s")
    # one breach for T1's walk-in (its escalation re-publishes the same id)
    assert len({a.id for a in alerts if a.kind == "zone_breach" and a.tag == "T1"}) == 1
    assert rows <= BURST + RATE * elapsed + 5, f"{rows} ledger rows for T2 ({size} bytes)"
    assert "recovery decided" not in log, log
    assert not any(a.kind == "zone_breach" and a.state == "open" for a in later), later
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        (dead,) = con.execute(
            "SELECT COALESCE(SUM(count), 0) FROM dead_letters WHERE device = 'T2'"
        ).fetchone()
        (n_refused,) = con.execute(
            "SELECT COALESCE(SUM(json_extract(body, '$.refused')), 0) FROM ledger"
            " WHERE kind = 'step'"
        ).fetchone()
    finally:
        con.close()
    assert n_refused == 2000 - rows, (n_refused, rows)  # each step counts what it left out
    assert dead >= 50  # the budget's rows (the summary of the rest is kept at window end)


def _stats(log: str) -> dict[str, int]:
    """The last stats line's counters (received, processed, acked, ...)."""
    line = [ln for ln in log.splitlines() if "tagwatch.serve: received " in ln][-1]
    words = line.split("tagwatch.serve: ", 1)[1].replace("(", " ").replace(")", " ").split()
    pairs = itertools.pairwise(words)
    return {k.strip(","): int(v.strip(",")) for k, v in pairs if v.strip(",").isdigit()}


@pytest.mark.mqtt
@pytest.mark.timeout(120)
def test_serve_takes_no_more_than_receive_max_while_it_cannot_commit(
    mosquitto, tmp_path: Path
) -> None:
    """Backpressure end to end: while the store is locked nothing is acknowledged, so the
    broker sends at most receive_max (50) messages and holds the rest; once the lock
    goes, all 400 are decided."""
    from tests.faultkit import ExclusiveLock

    zones, subjects = write_world(tmp_path)
    conf = tmp_path / "settings.toml"
    conf.write_text("receive_max = 50\n")
    db = tmp_path / "tw.db"
    t0 = float(int(time.time()) - 1200)
    msgs = [
        ("tagwatch/v1/tags/T1/fix", json.dumps(fix(i, t0 + i, 500.0, 0.0))) for i in range(1, 401)
    ]
    with EngineProcess(mosquitto.host, mosquitto.port, zones, subjects, db, conf) as eng:
        asyncio.run(wait_online(mosquitto.host, mosquitto.port))
        lock = ExclusiveLock(db, 30.0)
        lock.start()
        asyncio.run(publish(mosquitto.host, mosquitto.port, msgs))
        time.sleep(4.0)
        held = _stats(eng.log_text())
        lock.release()
        deadline = time.monotonic() + 60
        while _stats(eng.log_text()).get("processed", 0) < 400 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert eng.stop() == 0, eng.log_text()
    after = _stats(eng.log_text())
    print(f"store locked: received {held['received']} of 400 (receive_max 50); after: {after}")
    assert held["received"] <= 50, held
    assert after["processed"] == 400 and after["fixes"] == 400, after


@pytest.mark.mqtt
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_serve_flood_from_one_tag_leaves_the_others_alerted_and_the_store_bounded(
    mosquitto_path: str, tmp_path: Path
) -> None:
    """bench/flood.py for 10 s: X00 floods valid fixes as fast as the broker takes them
    while 20 honest tags report every second and walk into their zones; every walk-in is
    alerted (generous grace, no timing asserted) and X00's ledger rows are what its bucket
    admits (rate_burst 10 000, then 2 a second), not one per message."""
    from bench.flood import run_flood

    fig = run_flood(tmp_path / "flood", seconds=10.0, honest=20, grace=30.0)
    print("\n".join(fig.lines()))
    assert fig.walk_ins >= 5 and fig.missed == 0, fig.lines()
    assert fig.hostile_sent > 10_000 + 2 * 60, "the flood was not a flood"
    assert fig.hostile_ledger_rows <= 10_000 + 2.0 * 60, fig.hostile_ledger_rows
    assert fig.store_mb < 10.0, fig.lines()
