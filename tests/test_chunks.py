"""A strap cut that arrives while a main batch is being decided (engine/mqtt/serve.py,
`live_chunk`): the serve loop decides the batch in chunks, and after the chunk in
progress decides the strap cut, commits it with the chunks before it and acknowledges
them, then goes on with the rest of the batch. Without chunks the strap cut's commit waited
for the whole batch (bench/backlog.py measured 130-320 ms behind a 2,000-message batch).

The serve loop's processor runs here in process on a real pipeline and store, with the
broker sessions replaced by recorders; the strap cut is put on the priority lane at a known
moment (right after the first chunk is decided), so the order is deterministic. The lanes
through a real broker: tests/test_priority_lane.py."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from engine.core.pipeline import Pipeline
from engine.mqtt.lanes import MAIN, URGENT
from engine.mqtt.serve import Engine
from engine.mqtt.session import BrokerAddress, Incoming
from engine.settings import Settings
from engine.store.sqlite import SqliteStore
from tests.helpers import fix, write_world
from zones.load import load

pytestmark = pytest.mark.timeout(120)

T0 = float(int(time.time()) - 3600)


def _engine(tmp_path: Path, **settings: Any) -> tuple[Engine, SqliteStore]:
    zones, subjects = write_world(tmp_path, None, '[[subjects]]\nid = "S1"\ntags = ["T1", "T2"]\n')
    st = Settings(urgent_lane=True, **settings)
    store = SqliteStore(tmp_path / "e.db")
    eng = Engine(Pipeline(load(zones, subjects), st), store, BrokerAddress.parse("127.0.0.1:1"))
    return eng, store


def _fixes(n: int) -> list[Incoming]:
    return [
        Incoming(
            "tagwatch/v1/tags/T2/fix",
            json.dumps(fix(i, T0 + i, 5000.0, 0.0)).encode(),
            time.monotonic(),
            1,
            i + 1,
            1,
            MAIN,
        )
        for i in range(n)
    ]


STRAP = Incoming(
    "tagwatch/v1/tags/T1/event",
    json.dumps({"seq": 1, "t": T0 + 1000, "event": "strap_open"}).encode(),
    0.0, 1, 9999, 1, URGENT,
)  # fmt: skip


def _run(
    eng: Engine, batch: list[Incoming], cut: bool = True, cuts: list[Incoming] | None = None
) -> tuple[list[list[int]], list[int]]:
    """Process `batch` (one main batch), putting the strap cut (or `cuts`) on the priority
    lane once the first chunk is decided (unless not `cut`). Returns the mids committed
    together, commit by commit, and the mids acknowledged, in order."""
    commits: list[list[int]] = []
    acked: list[int] = []
    decide, settle = eng._decide, eng._settle
    calls = [0]

    def decide_then_cut(items: list[Incoming]) -> Any:
        out = decide(items)
        calls[0] += 1
        if calls[0] == 1 and cut:
            for it in cuts or [STRAP]:
                eng.lanes.queues[URGENT].put_nowait(it)
        return out

    async def settle_recorded(decided: list[Incoming]) -> bool:
        commits.append([it.mid for it in decided])
        return await settle(decided)

    def ack(items: list[Incoming]) -> int:
        acked.extend(it.mid for it in items)
        return len(items)

    eng._decide = decide_then_cut  # type: ignore[method-assign]
    eng._settle = settle_recorded  # type: ignore[method-assign]
    eng.lanes.ack = ack  # type: ignore[method-assign]

    async def go() -> None:
        for it in batch:
            eng.lanes.queues[MAIN].put_nowait(it)
        eng.stopping.set()  # the processor returns once both lanes are empty
        await eng._processor()

    asyncio.run(go())
    return commits, acked


def _ledger_steps(db: Path) -> list[tuple[str, int]]:
    """(device, records) of each batch step that took records, in ledger order."""
    out: list[tuple[str, int]] = []
    con = sqlite3.connect(db)
    for kind, device, body in con.execute("SELECT kind, device, body FROM ledger ORDER BY n"):
        if kind == "step":
            out.append(("", 0))
        elif kind in ("fix", "event", "records"):
            lines = bytes(body).split(b"\n") if kind == "records" else [b""]
            for line in lines:
                dev = json.loads(line)["tag"] if kind == "records" else device
                assert out[-1][0] in ("", dev)  # one device per step here
                out[-1] = (dev, out[-1][1] + 1)
    con.close()
    return [s for s in out if s[1]]


def test_a_strap_cut_is_committed_after_the_chunk_in_progress(tmp_path: Path) -> None:
    eng, store = _engine(tmp_path, live_batch_max=1000, live_chunk=100, batch_wait_s=0.0)
    batch = _fixes(1000)
    commits, acked = _run(eng, batch)
    mids = [it.mid for it in batch]
    # First commit: the first chunk and the strap cut; then the rest of the batch
    assert commits[0] == [*mids[:100], STRAP.mid], commits[0][-3:]
    assert commits[1:] == [mids[100:]], [len(c) for c in commits]
    assert acked == [*mids[:100], STRAP.mid, *mids[100:]]  # main acks stay in order
    # The ledger: the chunk, the strap cut's own step, then the other nine chunks
    store.close()
    steps = _ledger_steps(tmp_path / "e.db")
    assert steps[:3] == [("T2", 100), ("T1", 1), ("T2", 100)], steps[:3]
    assert [s for s in steps if s[0] == "T2"] == [("T2", 100)] * 10
    con = sqlite3.connect(tmp_path / "e.db")
    rows = con.execute("SELECT tag, state FROM alerts WHERE kind = 'tamper'").fetchall()
    assert rows == [("T1", "open")], rows


def test_without_a_waiting_strap_cut_a_batch_is_one_commit(tmp_path: Path) -> None:
    """The control: the chunks of a batch with nothing waiting go in one commit (chunks
    cost no extra fsync), and a batch no larger than a chunk is one step."""
    eng, store = _engine(tmp_path, live_batch_max=1000, live_chunk=100, batch_wait_s=0.0)
    commits, _ = _run(eng, _fixes(1000), cut=False)
    assert [len(c) for c in commits] == [1000]
    store.close()


def test_a_flood_of_events_takes_a_chunk_at_a_time(tmp_path: Path) -> None:
    """A device flooding the priority lane: between two main chunks the loop takes at
    most a chunk of its items, so the main lane still moves at half its pace or better."""
    eng, store = _engine(tmp_path, live_batch_max=1000, live_chunk=100, batch_wait_s=0.0)
    flood = [
        Incoming("tagwatch/v1/tags/T1/event",
                 json.dumps({"seq": 10 + i, "t": T0 + 10 + i, "event": "strap_open"}).encode(),
                 0.0, 1, 20_000 + i, 1, URGENT)
        for i in range(350)
    ]  # fmt: skip
    commits, _ = _run(eng, _fixes(1000), cuts=flood)
    sizes = [(sum(m < 20_000 for m in c), sum(m >= 20_000 for m in c)) for c in commits]
    # (main, priority) per commit: a chunk and at most a chunk of the flood, until it is gone
    assert sizes == [(100, 100), (100, 100), (100, 100), (100, 50), (600, 0)], sizes
    store.close()
