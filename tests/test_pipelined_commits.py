"""The serve loop decides the next batch while the last one's commit lands, under a backlog
(engine/mqtt/pending.py). Driven in process on a real pipeline and SQLite store, with the
broker sessions replaced by recorders (as tests/test_chunks.py does): a commit that fails
while the next batch is decided keeps its steps first, nothing is acknowledged before its
own commit, and the ledger holds every record once, in the order decided."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from engine.core.pipeline import Pipeline
from engine.errors import StoreError
from engine.mqtt.lanes import MAIN
from engine.mqtt.serve import Engine
from engine.mqtt.session import BrokerAddress, Incoming
from engine.settings import Settings
from engine.store.sqlite import SqliteStore
from tests.helpers import fix, ledger_records, write_world
from zones.load import load

pytestmark = pytest.mark.timeout(120)

T0 = float(int(time.time()) - 3600)
N = 1200


def _backlog() -> list[Incoming]:
    """T2 far from every zone, then T1 walking into Z1 (the breach the ledger must hold)."""
    far = [
        Incoming("tagwatch/v1/tags/T2/fix", json.dumps(fix(i, T0 + i, 5000.0, 0.0)).encode(),
                 time.monotonic(), 1, i + 1, 1, MAIN)
        for i in range(N)
    ]  # fmt: skip
    walk = [(-400.0, 0.0), (-200.0, 0.0), (0.0, 0.0), (5.0, 0.0)]
    return far + [
        Incoming("tagwatch/v1/tags/T1/fix", json.dumps(fix(k, T0 + N + k, dx, dy)).encode(),
                 time.monotonic(), 1, N + k + 1, 1, MAIN)
        for k, (dx, dy) in enumerate(walk)
    ]  # fmt: skip


def _durable(db: Path) -> list[tuple[str, int]]:
    con = sqlite3.connect(db)
    try:
        return [(d, s) for d, s, k, _ in ledger_records(con) if k == "fix"]
    finally:
        con.close()


@pytest.mark.parametrize("fail_at", [0, 2, 3])
def test_a_backlog_is_committed_while_the_next_batch_is_decided(
    tmp_path: Path, fail_at: int
) -> None:
    zones, subjects = write_world(tmp_path, None, '[[subjects]]\nid = "S1"\ntags = ["T1", "T2"]\n')
    st = Settings(urgent_lane=False, live_batch_max=100, live_chunk=50)
    db = tmp_path / "e.db"
    store = SqliteStore(db)
    eng = Engine(Pipeline(load(zones, subjects), st), store, BrokerAddress.parse("127.0.0.1:1"))
    events: list[tuple[str, float]] = []
    lock = threading.Lock()

    def mark(what: str) -> None:
        with lock:
            events.append((what, time.perf_counter()))

    decide, commit = eng._decide, store.commit
    calls = [0]

    def decide_marked(items: list[Incoming]):  # type: ignore[no-untyped-def]
        mark("decide+")
        try:
            return decide(items)
        finally:
            mark("decide-")

    def commit_marked(*a, **k):  # type: ignore[no-untyped-def]
        calls[0] += 1
        mark("commit+")
        try:
            time.sleep(0.01)  # an fsync's worth: long enough to see the next decide start
            if calls[0] == fail_at:
                raise StoreError("injected: the disk is full")
            return commit(*a, **k)
        finally:
            mark("commit-")

    acked: list[int] = []
    seqs = {it.mid: json.loads(it.payload)["seq"] for it in _backlog()}
    devs = {it.mid: it.topic.split("/")[3] for it in _backlog()}
    late: list[int] = []

    def ack(items: list[Incoming]) -> int:
        durable = set(_durable(db))
        late.extend(it.mid for it in items if (devs[it.mid], seqs[it.mid]) not in durable)
        acked.extend(it.mid for it in items)
        if len(acked) >= N + 4:
            eng.stopping.set()  # (stopping while a commit fails would give its steps up)
        return len(items)

    eng._decide = decide_marked  # type: ignore[method-assign]
    store.commit = commit_marked  # type: ignore[method-assign]
    eng.lanes.ack = ack  # type: ignore[method-assign]

    async def go() -> None:
        for it in _backlog():
            eng.lanes.queues[MAIN].put_nowait(it)
        await asyncio.wait_for(eng._processor(), 60)

    asyncio.run(go())
    store.commit = commit  # type: ignore[method-assign]
    eng._commit_pending()
    assert late == []  # nothing acknowledged before its own commit
    assert sorted(acked) == list(range(1, N + 5))
    got = _durable(db)
    assert got == [("T2", i) for i in range(N)] + [("T1", k) for k in range(4)]
    breaches = [a for a in store.alert_log() if a.kind == "zone_breach"]
    assert [a.tag for a in breaches] == ["T1"]
    # A decision ran while a commit was in flight (the point of it)
    inflight = 0
    overlapped = False
    for what, _ in sorted(events, key=lambda e: e[1]):
        inflight += {"commit+": 1, "commit-": -1}.get(what, 0)
        overlapped |= what == "decide+" and inflight > 0
    assert overlapped
    store.close()
