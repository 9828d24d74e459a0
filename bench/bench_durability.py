"""Durability benchmarks: what the evidence ledger costs, and how fast a restart recovers.

    python -m pytest bench/bench_durability.py --benchmark-only -s -q -p no:cacheprovider

Seeded simulator fleets (`tagwatch simulate --health`, 2 simulated hours), decoded from
replay.jsonl and driven through the pipeline as the live engine drives it: batches in
arrival order on an engine clock a little after the records' times, occasional ticks.

`test_commit_cost[20|500]`: records/s through `recovery.apply` + `SqliteStore.commit(...,
steps=[step])` into a file store (WAL, synchronous=FULL, as the store sets them), one
commit per step, beside the same pipeline work committing only alerts and dead letters
(the engine before the ledger); ledger bytes per record from the db file's growth.

`test_snapshot[200|2000]`: `recovery.snapshot` time and size after 2 simulated hours;
writing it (`save_snapshot`) and loading it (`restore`) are printed beside.

`test_recovery`: `recovery.recover` from a snapshot plus a TAIL-record tail in steps of
20, beside a full rebuild (no snapshot) over the whole ledger. TAIL (30 000) is what a
snapshot every `snapshot_every_s` (30 s) leaves at the live target of 1000 records/s;
here they are the last TAIL records of the 2000-subject run (simulating a fleet at 1000
records/s for hours is too slow for a bench), in steps of 20 with no ticks, so the
replay work (records, steps) is that of those 30 s.

`test_audit_verify`: `engine.store.verify.verify` rows/s over the ledger of the recovery store,
beside a bare read of the same rows.

`test_durability_targets`: the table, and every target; fails listing the ones missed.
Measurements are made once and shared, so it costs nothing after the others (run alone,
it makes them all). TAGWATCH_BENCH_DURABILITY_PROFILE=1 also prints a cProfile of a second
(untimed) recovery from the snapshot. TAGWATCH_BENCH_DURABILITY_SUBJECTS (2000) and
TAGWATCH_BENCH_DURABILITY_HOURS (2) size the runs: the 2000-subject run is most of the
bench's five minutes (simulating it, driving it, and the full rebuild, ~80 s each)."""

from __future__ import annotations

import cProfile
import os
import pstats
import random
import shutil
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from engine.cli.main import main
from engine.core.pipeline import Pipeline
from engine.settings import Settings
from engine.store import recovery
from engine.store.ledger import Step
from engine.store.sqlite import SqliteStore
from engine.store.verify import verify
from engine.wire.alerts import Alert
from engine.wire.decode import decode_replay_line
from engine.wire.records import DeadLetter, Record
from zones.load import load
from zones.model import ZoneSet

pytestmark = pytest.mark.timeout(900)

SEED = 20260415
HOURS = float(os.environ.get("TAGWATCH_BENCH_DURABILITY_HOURS", "2"))
SMALL = 200
LARGE = int(os.environ.get("TAGWATCH_BENCH_DURABILITY_SUBJECTS", "2000"))
# Live traffic after the newest snapshot, at 1000 records/s: what a restart replays at most
TAIL = int(Settings().snapshot_every_s * 1000)
TAIL_STEP = 20
COMMIT_BATCHES = (20, 500)
CHUNK = 250  # steps per transaction while building the recovery store (setup only)
PROFILE = os.environ.get("TAGWATCH_BENCH_DURABILITY_PROFILE") == "1"

TARGET_COMMIT_RPS = 2000.0  # 20-record steps: the live target is 1000 fixes/s
TARGET_SNAPSHOT_S = 1.0  # 2000 subjects
TARGET_RECOVERY_S = 10.0  # snapshot + a snapshot_every_s tail

_R: dict[str, Any] = {}  # measurements, made once: tests and the target test share them


# -- fleets and steps -------------------------------------------------------------------
@dataclass
class Fleet:
    subjects: int
    records: list[Record]
    zoneset: ZoneSet
    sim_s: float


def _fleet(root: Path, subjects: int) -> Fleet:
    d = root / f"sim{subjects}"
    t0 = time.perf_counter()
    rc = main(
        ["simulate", "--seed", str(SEED), "--subjects", str(subjects),
         "--duration", f"{round(HOURS * 60)}m", "--health", "--out-dir", str(d)]
    )  # fmt: skip
    assert rc == 0
    sim_s = time.perf_counter() - t0
    recs: list[Record] = []
    with (d / "replay.jsonl").open("rb") as fh:
        for i, line in enumerate(fh):
            r, _ = decode_replay_line(line, f"replay:{i}")
            recs.extend(r)
    zs = load(d / "zones.geojson", d / "subjects.toml")
    # JIT (or numba cache load) outside every timing
    recovery.apply(Pipeline(zs), Step("batch", recs[499].t + 1.0, recs[:500]))
    return Fleet(subjects, recs, zs, sim_s)


def live_steps(
    recs: Sequence[Record], size: int, rng: random.Random, *, now: float = 0.0, tick_p: float = 0.1
) -> list[Step]:
    """Steps as the live engine makes them (tests/test_recovery.py `_live_steps`): batches
    of `size` records in arrival order on an engine clock a little after their times, and
    now and then a tick a second later (no message for a second)."""
    steps: list[Step] = []
    for i in range(0, len(recs), size):
        batch = recs[i : i + size]
        now = max(now, max(r.t for r in batch) + rng.uniform(0.5, 3.0))
        steps.append(Step("batch", now, batch))
        if rng.random() < tick_p:
            now += 1.0
            steps.append(Step("tick", now))
    return steps


def _db_bytes(path: Path) -> int:
    """Size of a closed store (closing the last connection checkpoints the WAL)."""
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def _fresh(path: Path) -> Path:
    for p in path.parent.glob(path.name + "*"):
        p.unlink()
    return path


# -- 1. commit cost ---------------------------------------------------------------------
@dataclass
class CommitRun:
    records: int
    steps: int
    commits: int
    seconds: float
    db_bytes: int
    pipeline: Pipeline
    now: float

    @property
    def rate(self) -> float:
        return self.records / self.seconds


def measure_commit(fleet: Fleet, root: Path, batch: int, ledger: bool) -> CommitRun:
    """One commit per step, as the live loop commits at load: the ledger writes the step
    and its records every time; without it only steps that decided something commit."""
    key = f"commit {batch} {'ledger' if ledger else 'alerts'}"
    if key in _R:
        return _R[key]
    steps = live_steps(fleet.records, batch, random.Random(SEED))
    empty = _fresh(root / "empty.db")
    SqliteStore(empty).close()
    path = _fresh(root / f"commit{batch}{'L' if ledger else 'A'}.db")
    p = Pipeline(fleet.zoneset)
    store = SqliteStore(path)
    commits = 0
    t0 = time.perf_counter()
    for st in steps:
        res = recovery.apply(p, st)
        if ledger or res.alerts or res.dead:
            commits += 1
        store.commit(res.alerts, res.dead, st.now, steps=[st] if ledger else ())
    seconds = time.perf_counter() - t0
    store.close()
    growth = _db_bytes(path) - _db_bytes(empty)
    n = sum(len(s.records) for s in steps)
    _R[key] = CommitRun(n, len(steps), commits, seconds, growth, p, steps[-1].now)
    return _R[key]


# -- 2 and 3. the recovery store (snapshot + tail) --------------------------------------
@dataclass
class RecoveryStore:
    fleet: Fleet
    with_snapshot: Path
    without: Path
    pipeline: Pipeline  # the live pipeline after its last step
    now: float
    head_steps: int
    tail_steps: int
    tail_records: int
    snapshot_bytes: int
    build_s: float


def build_recovery_store(fleet: Fleet, root: Path) -> RecoveryStore:
    """The whole run committed to the ledger as live steps; a snapshot `TAIL` records
    before its end, then the tail in steps of 20 with no ticks (at 1000 records/s the
    queue never idles for a second). Transactions hold CHUNK steps here to build it
    quickly: the ledger's rows are the same as with one commit per step."""
    t0 = time.perf_counter()
    rng = random.Random(SEED)
    tail_n = min(TAIL, len(fleet.records) // 2)
    head = live_steps(fleet.records[:-tail_n], TAIL_STEP, rng)
    tail = live_steps(fleet.records[-tail_n:], TAIL_STEP, rng, now=head[-1].now, tick_p=0.0)
    path = _fresh(root / "recover.db")
    p = Pipeline(fleet.zoneset)
    store = SqliteStore(path)

    def drive(steps: list[Step]) -> None:
        pend: list[Step] = []
        alerts: list[Alert] = []
        dead: list[DeadLetter] = []
        for st in steps:
            res = recovery.apply(p, st)
            pend.append(st)
            alerts += res.alerts
            dead += res.dead
            if len(pend) >= CHUNK or st is steps[-1]:
                store.commit(alerts, dead, st.now, steps=pend)
                pend, alerts, dead = [], [], []

    drive(head)
    data = recovery.snapshot(p)
    store.save_snapshot(recovery.fingerprint(p), head[-1].now, data)
    drive(tail)
    store.close()
    without = _fresh(root / "rebuild.db")
    shutil.copy(path, without)
    db = sqlite3.connect(without)
    db.execute("DELETE FROM snapshots")
    db.commit()
    db.close()
    return RecoveryStore(
        fleet, path, without, p, tail[-1].now, len(head), len(tail), tail_n, len(data),
        time.perf_counter() - t0,
    )  # fmt: skip


@dataclass
class RecoveryRun:
    rec: recovery.Recovered
    seconds: float


def _recover(rs: RecoveryStore, path: Path, profile: bool = False) -> RecoveryRun:
    p = Pipeline(rs.fleet.zoneset)  # engine start: not part of recovery
    with SqliteStore(path) as store:
        prof = cProfile.Profile() if profile else None
        t0 = time.perf_counter()
        if prof is not None:
            prof.enable()
        rec = recovery.recover(p, store)
        seconds = time.perf_counter() - t0
        if prof is not None:
            prof.disable()
            print(f"\ncProfile of recovery.recover ({path.name}; slowed by the profiler):")
            pstats.Stats(prof).sort_stats("cumulative").print_stats(30)
    return RecoveryRun(rec, seconds)


def measure_recovery(rs: RecoveryStore, snapshot: bool) -> RecoveryRun:
    key = f"recover {'snapshot' if snapshot else 'rebuild'}"
    if key not in _R:
        path = rs.with_snapshot if snapshot else rs.without
        _R[key] = _recover(rs, path)
        if PROFILE and snapshot:
            _recover(rs, path, profile=True)  # again, profiled: the timing above is clean
    return _R[key]


# -- snapshots --------------------------------------------------------------------------
@dataclass
class SnapshotRun:
    subjects: int
    seconds: float  # median of the pickling
    size: int
    save_s: float
    restore_s: float


def measure_snapshot(
    subjects: int, p: Pipeline, now: float, root: Path, rounds: int = 3
) -> SnapshotRun:
    key = f"snapshot {subjects}"
    if key in _R:
        return _R[key]
    times, data = [], b""
    for _ in range(rounds):
        t0 = time.perf_counter()
        data = recovery.snapshot(p)
        times.append(time.perf_counter() - t0)
    with SqliteStore(_fresh(root / f"snap{subjects}.db")) as store:
        t0 = time.perf_counter()
        store.save_snapshot(recovery.fingerprint(p), now, data)
        save_s = time.perf_counter() - t0
    q = Pipeline(p.zoneset)
    t0 = time.perf_counter()
    recovery.restore(q, data)
    restore_s = time.perf_counter() - t0
    _R[key] = SnapshotRun(subjects, sorted(times)[len(times) // 2], len(data), save_s, restore_s)
    return _R[key]


# -- 4. verify --------------------------------------------------------------------------
@dataclass
class VerifyRun:
    rows: int
    seconds: float
    read_s: float  # the same rows read, no hashing
    alert_records: int


def _ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)


def measure_verify(path: Path) -> VerifyRun:
    if "verify" in _R:
        return _R["verify"]
    db = _ro(path)
    t0 = time.perf_counter()
    rep = verify(db)
    seconds = time.perf_counter() - t0
    assert rep.ok, rep.problem
    t0 = time.perf_counter()
    last, rows = 0, 0
    while True:  # the chunked scan verify makes, without the hashing
        got = db.execute(
            "SELECT n, kind, step, device, seq, t, body, hash FROM ledger WHERE n > ?"
            " ORDER BY n LIMIT 20000",
            (last,),
        ).fetchall()
        if not got:
            break
        rows += len(got)
        last = got[-1][0]
    read_s = time.perf_counter() - t0
    db.close()
    assert rows == rep.rows
    _R["verify"] = VerifyRun(rep.rows, seconds, read_s, rep.alert_log_checked)
    return _R["verify"]


# -- fixtures ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("durability")


@pytest.fixture(scope="module")
def small(root: Path) -> Fleet:
    return _fleet(root, SMALL)


@pytest.fixture(scope="module")
def large(root: Path) -> Fleet:
    return _fleet(root, LARGE)


@pytest.fixture(scope="module")
def rstore(large: Fleet, root: Path) -> RecoveryStore:
    rs = build_recovery_store(large, root)
    print(
        f"\nrecovery store: {LARGE} subjects, {len(large.records):,} records "
        f"(simulated in {large.sim_s:.0f} s), {rs.head_steps + rs.tail_steps:,} steps "
        f"committed and driven in {rs.build_s:.0f} s"
    )
    return rs


def _summary(record_property: Callable[[str, object], None], line: str) -> None:
    print("\n" + line)
    record_property("bench_summary", line)


# -- tests ------------------------------------------------------------------------------
@pytest.mark.parametrize("batch", COMMIT_BATCHES)
def test_commit_cost(
    benchmark: BenchmarkFixture,
    small: Fleet,
    root: Path,
    batch: int,
    record_property: Callable[[str, object], None],
) -> None:
    run = benchmark.pedantic(
        measure_commit, args=(small, root, batch, True), rounds=1, iterations=1
    )
    base = measure_commit(small, root, batch, False)
    assert run.records == base.records
    _summary(
        record_property,
        f"commit, {batch}-record steps ({SMALL} subjects, {run.records:,} records): ledger "
        f"{run.rate:,.0f} rec/s ({run.commits:,} commits, "
        f"{run.seconds / run.commits * 1000:.2f} ms/step); alerts only {base.rate:,.0f} rec/s "
        f"({base.commits:,} commits) -> ledger / alerts only = x{run.rate / base.rate:.2f}; "
        f"store {run.db_bytes / run.records:.0f} B/record vs {base.db_bytes / base.records:.0f}"
        f" (ledger {(run.db_bytes - base.db_bytes) / run.records:.0f} B/record)",
    )


@pytest.mark.parametrize("subjects", [SMALL, LARGE])
def test_snapshot(
    benchmark: BenchmarkFixture,
    request: pytest.FixtureRequest,
    root: Path,
    subjects: int,
    record_property: Callable[[str, object], None],
) -> None:
    if subjects == SMALL:
        run = measure_commit(request.getfixturevalue("small"), root, 20, True)
        p, now = run.pipeline, run.now
    else:
        rs: RecoveryStore = request.getfixturevalue("rstore")
        p, now = rs.pipeline, rs.now
    snap = benchmark.pedantic(
        measure_snapshot, args=(subjects, p, now, root), rounds=1, iterations=1
    )
    _summary(
        record_property,
        f"snapshot, {subjects} subjects after {HOURS:g} h simulated: "
        f"{snap.size / 1e6:.2f} MB in {snap.seconds * 1000:.0f} ms (median of 3); "
        f"save_snapshot {snap.save_s * 1000:.0f} ms, restore {snap.restore_s * 1000:.0f} ms",
    )


def test_recovery(
    benchmark: BenchmarkFixture,
    rstore: RecoveryStore,
    record_property: Callable[[str, object], None],
) -> None:
    snap = benchmark.pedantic(measure_recovery, args=(rstore, True), rounds=1, iterations=1)
    full = measure_recovery(rstore, False)
    assert snap.rec.from_snapshot and snap.rec.records == rstore.tail_records
    assert not full.rec.from_snapshot and full.rec.records == len(rstore.fleet.records)
    assert snap.rec.alerts == [] and full.rec.alerts == []  # nothing decided twice
    assert snap.rec.last_now == full.rec.last_now == rstore.now
    _summary(
        record_property,
        f"recovery, {LARGE} subjects: snapshot + {snap.rec.records:,} records in "
        f"{snap.rec.steps:,} steps {snap.seconds:.1f} s "
        f"({snap.rec.records / snap.seconds:,.0f} rec/s); full rebuild of "
        f"{full.rec.records:,} records in {full.rec.steps:,} steps {full.seconds:.1f} s "
        f"({full.rec.records / full.seconds:,.0f} rec/s) -> rebuild / snapshot = "
        f"x{full.seconds / snap.seconds:.1f}",
    )


def test_audit_verify(
    benchmark: BenchmarkFixture,
    rstore: RecoveryStore,
    record_property: Callable[[str, object], None],
) -> None:
    v = benchmark.pedantic(measure_verify, args=(rstore.with_snapshot,), rounds=1, iterations=1)
    _summary(
        record_property,
        f"audit verify: {v.rows:,} ledger rows in {v.seconds:.2f} s "
        f"({v.rows / v.seconds:,.0f} rows/s, {v.alert_records:,} alert records matched); "
        f"bare read of the rows {v.read_s:.2f} s ({v.rows / v.read_s:,.0f} rows/s) -> "
        f"verify / read = x{v.seconds / v.read_s:.1f}",
    )


def _all(request: pytest.FixtureRequest, root: Path) -> list[tuple[str, str, str, str, str]]:
    """Every measurement (made now if no test made it yet) as table rows:
    what, engine, baseline, ratio, target."""
    small: Fleet = request.getfixturevalue("small")
    rows = []
    for b in COMMIT_BATCHES:
        run, base = measure_commit(small, root, b, True), measure_commit(small, root, b, False)
        rows.append((
            f"commit, {b}-record steps (rec/s)", f"{run.rate:,.0f}", f"{base.rate:,.0f}",
            f"x{run.rate / base.rate:.2f}",
            f">= {TARGET_COMMIT_RPS:,.0f}" if b == 20 else "",
        ))  # fmt: skip
    run, base = measure_commit(small, root, 20, True), measure_commit(small, root, 20, False)
    rows.append((
        "store bytes / record", f"{run.db_bytes / run.records:.0f}",
        f"{base.db_bytes / base.records:.0f}", "", "",
    ))  # fmt: skip
    rs: RecoveryStore = request.getfixturevalue("rstore")
    for subjects, p, now in ((SMALL, run.pipeline, run.now), (LARGE, rs.pipeline, rs.now)):
        s = measure_snapshot(subjects, p, now, root)
        rows.append((
            f"snapshot, {subjects} subjects (s / MB)", f"{s.seconds:.3f} / {s.size / 1e6:.2f}",
            "", "", f"<= {TARGET_SNAPSHOT_S:g} s" if subjects == LARGE else "",
        ))  # fmt: skip
    snap, full = measure_recovery(rs, True), measure_recovery(rs, False)
    rows.append((
        f"recovery (s): snapshot + {snap.rec.records:,} vs rebuild {full.rec.records:,}",
        f"{snap.seconds:.1f}", f"{full.seconds:.1f}", f"x{snap.seconds / full.seconds:.2f}",
        f"< {TARGET_RECOVERY_S:g} s",
    ))  # fmt: skip
    v = measure_verify(rs.with_snapshot)
    rows.append((
        f"audit verify, {v.rows:,} rows (rows/s) vs bare read", f"{v.rows / v.seconds:,.0f}",
        f"{v.rows / v.read_s:,.0f}", f"x{v.read_s / v.seconds:.2f}", "",
    ))  # fmt: skip
    return rows


def test_durability_targets(
    benchmark: BenchmarkFixture, request: pytest.FixtureRequest, root: Path
) -> None:
    rows = benchmark.pedantic(_all, args=(request, root), rounds=1, iterations=1)
    head = ("measure", "engine", "baseline", "engine/baseline", "target")
    width = [max(len(r[i]) for r in [head, *rows]) for i in range(5)]
    print(f"\ndurability ({os.cpu_count()} CPUs; file store in tmp, WAL, synchronous=FULL;"
          " baselines: alerts-only commits, full rebuild, bare read)")  # fmt: skip
    for r in [head, *rows]:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                        enumerate(zip(r, width, strict=True))))  # fmt: skip
    c20 = _R["commit 20 ledger"]
    snap = _R[f"snapshot {LARGE}"]
    rec = _R["recover snapshot"]
    miss = []
    if c20.rate < TARGET_COMMIT_RPS:
        miss.append(f"commit with 20-record steps {c20.rate:,.0f} rec/s < {TARGET_COMMIT_RPS:,.0f}")
    if snap.seconds > TARGET_SNAPSHOT_S:
        miss.append(f"snapshot of {LARGE} subjects {snap.seconds:.2f} s > {TARGET_SNAPSHOT_S:g} s")
    if rec.seconds >= TARGET_RECOVERY_S:
        miss.append(
            f"recovery from snapshot + {rec.rec.records:,} records {rec.seconds:.1f} s "
            f">= {TARGET_RECOVERY_S:g} s"
        )
    if miss:
        print("\nmissed targets:\n  " + "\n  ".join(miss))
    assert not miss, f"{len(miss)} durability target(s) missed:\n  " + "\n  ".join(miss)
