"""Fault tests with real processes on loopback: `tagwatch serve` is SIGKILLed, mosquitto is
restarted or away for 30 s, the database is locked by another process or its disk fills,
all under a few thousand messages a second's worth of a simulated fleet with known
breaches. Afterwards nothing the broker acknowledged may be missing from the engine's
evidence ledger, every breach the replay reference opens is opened exactly once, no alert
record is written twice and no breach appears that the reference lacks (faultkit.judge).

Every check is evaluated and printed (one failing does not hide the others), then the test
fails listing all that failed. Each test prints a one-line figure summary."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import re
import resource
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from engine.broker.process import MosquittoProcess
from tests.faultkit import (
    SYS_STORED,
    ExclusiveLock,
    Outcome,
    Stream,
    StreamPublisher,
    TopicWatcher,
    dead_letter_reasons,
    error_lines,
    judge,
    ledger_keys,
    ledger_rows,
    make_stream,
    reconnect_delays,
    retained_status,
    wait_caught_up,
    wait_log,
    wal_frontier,
)
from tests.helpers import EngineProcess, wait_online

pytestmark = [pytest.mark.mqtt, pytest.mark.slow]

SEED = 7
RATE = 700.0  # messages a second from the fleet
ACK_TIMEOUT = 90.0  # for the broker to acknowledge the whole stream after the last fault
CATCH_UP = dict(timeout=60.0, stall_s=10.0)
STUCK_S = 8.0  # how long the database stays locked / full
DISK_WORDS = r"disk|full|space|I/O|too large|EFBIG|quota"


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> Stream:
    """40 subjects for 2 h at a fix a minute, 13 of them walking straight into a zone, plus
    their victims' OwnTracks phones: 6840 messages, 17 breach alerts in the reference."""
    return make_stream(tmp_path_factory.mktemp("stream"), seed=SEED, subjects=40, duration="2h")


@pytest.fixture
def mosquitto_sys(tmp_path: Path, mosquitto_path: str) -> Iterator[MosquittoProcess]:
    """A persistent mosquitto that publishes its $SYS figures every second: how many
    messages it holds shows whether the engine acknowledges them."""
    with MosquittoProcess(
        workdir=tmp_path / "mosquitto", persistence=True, executable=mosquitto_path,
        extra_config=["sys_interval 1"],
    ) as m:  # fmt: skip
        yield m


def _engine(
    broker: MosquittoProcess, stream: Stream, db: Path | str, **kw: object
) -> EngineProcess:
    return EngineProcess(broker.host, broker.port, stream.zones, stream.subjects, db, **kw)  # type: ignore[arg-type]


def _start_online(eng: EngineProcess, broker: MosquittoProcess) -> None:
    """Start the engine and wait for its first connection (which creates its session)."""
    eng.start()
    try:
        asyncio.run(wait_online(broker.host, broker.port, 60.0))
    except TimeoutError:
        raise AssertionError(f"engine never came online; log:\n{eng.log_text()[-3000:]}") from None


def _finish(
    name: str,
    stream: Stream,
    pub: StreamPublisher,
    eng: EngineProcess,
    db: Path | str,
    **figures: object,
) -> Outcome:
    """Wait for the whole stream to be acknowledged and the engine to catch up, stop the
    engine (SIGTERM), judge what the database holds."""
    pub.wait_all_acked(ACK_TIMEOUT)
    t0 = time.monotonic()
    cu = wait_caught_up(db, stream.keys, lambda: eng.running, **CATCH_UP)  # type: ignore[arg-type]
    alive = eng.running
    rc = eng.stop() if alive else eng.proc.returncode if eng.proc else None
    out = judge(name, stream, pub, db, **figures, caught_up_s=f"{time.monotonic() - t0:.1f}")
    if not cu.complete:
        out.fail(f"catch-up: {cu.why} (ledger holds {cu.ledger} of {len(stream.keys)})")
    if not alive:
        out.fail(f"the engine died during the test (exit {rc}); log tail:\n"
                 f"{eng.log_text()[-2000:]}")  # fmt: skip
    elif rc != 0:
        out.fail(f"the engine exited {rc} on SIGTERM")
    return out


def _conclude(out: Outcome) -> None:
    print("\n" + out.report(), flush=True)
    assert not out.failures, out.report()


def _cut_points(rng: random.Random, n: int, k: int, lo: float = 0.1, hi: float = 0.86) -> list[int]:
    """k message counts spread over the stream: one at random in each of k equal stretches
    of [lo, hi] (a margin at each end of every stretch)."""
    step = (hi - lo) / k
    return [
        int(n * rng.uniform(lo + i * step + 0.02, lo + (i + 1) * step - 0.02)) for i in range(k)
    ]


def _running(
    stack: ExitStack, broker: MosquittoProcess, stream: Stream, db: Path | str, **kw: object
) -> tuple[EngineProcess, StreamPublisher]:
    """An engine online (killed on the way out, whatever happened) and the stream being
    published to it."""
    eng = _engine(broker, stream, db, **kw)
    stack.push(eng.__exit__)
    _start_online(eng, broker)
    pub = stack.enter_context(StreamPublisher(broker.host, broker.port, stream.messages, rate=RATE))
    return eng, pub


# -- 1. kill -9 under load -----------------------------------------------------------------


@pytest.mark.timeout(180)
def test_engine_killed_three_times_under_load_loses_and_repeats_nothing(
    mosquitto_persistent: MosquittoProcess, stream: Stream, store_target: str
) -> None:
    """On SQLite and on PostgreSQL (the engine's schema: what a shard's engine has)."""
    db: Path | str = store_target if "://" in store_target else Path(store_target)
    out, _ = _killed_three_times("kill -9", mosquitto_persistent, stream, db)
    _conclude(out)


def _killed_three_times(
    label: str, broker: MosquittoProcess, stream: Stream, db: Path | str, **kw: object
) -> tuple[Outcome, str]:
    """The stream published to an engine SIGKILLed three times (at seeded points, each
    restarted after a seeded pause); the outcome and the engine's log."""
    rng = random.Random(SEED * 1000 + 1)
    kills: list[int] = []
    pauses: list[float] = []
    with ExitStack() as stack:
        eng, pub = _running(stack, broker, stream, db, **kw)
        for at in _cut_points(rng, len(stream.messages), 3):
            pub.wait_sent(at, timeout=60)
            kills.append(pub.sent)
            eng.kill()
            pause = rng.uniform(0.3, 2.0)
            pauses.append(round(pause, 2))
            time.sleep(pause)
            eng.start()
        out = _finish(label, stream, pub, eng, db, kills_at=kills, pauses_s=pauses,
                      restarts=eng.starts - 1)  # fmt: skip
        return out, eng.log_text()


@pytest.mark.timeout(180)
def test_killed_while_commits_land_beside_decisions_loses_and_repeats_nothing(
    mosquitto_persistent: MosquittoProcess, stream: Stream, tmp_path: Path
) -> None:
    """The kill -9 run with batches of 20 messages, so that each restart's backlog fills
    batches and the engine decides the next while the last one's commit lands
    (engine/mqtt/pending.py): kills land between a decision and its commit, and between a
    commit and its acknowledgements. The alerts are still the replay reference's, each once."""
    conf = tmp_path / "settings.toml"
    conf.write_text("live_batch_max = 20\nlive_chunk = 10\n")
    out, log = _killed_three_times("kill -9, pipelined commits", mosquitto_persistent, stream,
                                   tmp_path / "tw.db", settings=conf)  # fmt: skip
    assert re.search(r"ahead [1-9]", log), "no commit ran beside a decision: nothing was tested"
    _conclude(out)


def _approach_rings(out: Path) -> None:
    """A 300 m approach ring round every exclusion zone: a tag walking in is watched (its
    fixes on the priority lane too, engine/mqtt/lanes.py) before its breach opens."""
    path = out / "zones.geojson"
    data = json.loads(path.read_text())
    for f in data["features"]:
        if f["properties"]["kind"] == "exclusion":
            f["properties"]["warn_m"] = 300.0
    path.write_text(json.dumps(data))


@pytest.mark.timeout(180)
def test_killed_with_watched_tags_ahead_of_the_backlog_loses_and_repeats_nothing(
    mosquitto_persistent: MosquittoProcess, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The same kill -9 run where zones have approach rings, so tags walking in are watched
    and, after each restart, taken from the priority lane ahead of the backlog: the alerts
    are still the replay reference's, each once (a watched tag's decisions rest on its own
    records, whose order the lane keeps)."""
    stream = make_stream(tmp_path_factory.mktemp("rings"), seed=SEED, subjects=40,
                         duration="2h", world=_approach_rings)  # fmt: skip
    db = tmp_path_factory.mktemp("db") / "tw.db"
    out, log = _killed_three_times("kill -9, watched", mosquitto_persistent, stream, db)
    watching = re.findall(r"priority lane: watching ([1-9]\d*) tag", log)
    assert watching, "no tag was ever watched: the run tests nothing new"
    _conclude(out)


# -- 2. mosquitto restarted under load -----------------------------------------------------


@pytest.mark.timeout(150)
def test_broker_restarted_twice_under_load_loses_and_repeats_nothing(
    mosquitto_persistent: MosquittoProcess, stream: Stream, tmp_path: Path
) -> None:
    rng = random.Random(SEED * 1000 + 2)
    db = tmp_path / "tw.db"
    restarts: list[int] = []
    with ExitStack() as stack:
        eng, pub = _running(stack, mosquitto_persistent, stream, db)
        for at in _cut_points(rng, len(stream.messages), 2):
            pub.wait_sent(at, timeout=60)
            restarts.append(pub.sent)
            mosquitto_persistent.restart()  # SIGTERM (saves its store), start on the same port
        out = _finish("broker restart", stream, pub, eng, db, broker_restarts_at=restarts,
                      publisher_reconnects=pub.connects - 1)  # fmt: skip
        connects = len(re.findall(r"(?i)\b(?:re)?connected to\b", eng.log_text()))
        kept = eng.log_text().count("broker: the broker kept this session")
    if connects < 3:
        out.fail(f"engine log shows {connects} connections; expected one per broker start (3)")
    if kept < 2:  # (the session's subscriptions were not sent again: all still came)
        out.fail(f"the engine subscribed again {2 - kept} times to a session the broker kept")
    _conclude(out)


# -- 3. broker unreachable for 30 s --------------------------------------------------------


@pytest.mark.timeout(180)
def test_broker_away_30s_engine_backs_off_reconnects_and_catches_up(
    mosquitto_persistent: MosquittoProcess, stream: Stream, tmp_path: Path
) -> None:
    db = tmp_path / "tw.db"
    away_s = 30.0
    connected = re.compile(r"(?i)\b(?:re)?connected to\b")
    with ExitStack() as stack:
        eng, pub = _running(stack, mosquitto_persistent, stream, db)
        pub.wait_sent(len(stream.messages) // 2, timeout=60)
        at = pub.sent
        before = len(connected.findall(eng.log_text()))
        log_before = len(eng.log_text())
        mosquitto_persistent.stop()
        time.sleep(away_s)
        mosquitto_persistent.start()
        back = time.monotonic()
        reconnect_s = None
        while time.monotonic() - back < 20.0:
            if len(connected.findall(eng.log_text())) > before:
                reconnect_s = time.monotonic() - back
                break
            time.sleep(0.1)
        during = eng.log_text()[log_before:]
        out = _finish("broker away 30 s", stream, pub, eng, db, broker_stopped_at=at,
                      away_s=away_s, reconnect_after_s=None if reconnect_s is None
                      else round(reconnect_s, 1))  # fmt: skip
    delays = reconnect_delays(during)
    out.figures["reconnect_delays_s"] = delays
    if len(delays) < 3:
        out.fail(f"engine log shows {len(delays)} reconnect attempts in a 30 s outage "
                 f"(expected several, with their delays): {delays}")  # fmt: skip
    elif any(b < a for a, b in itertools.pairwise(delays)) or delays[-1] <= delays[0]:
        out.fail(f"reconnect delays do not grow (backoff): {delays}")
    if reconnect_s is None:
        out.fail("the engine did not log a new connection within 20 s of the broker's return")
    _conclude(out)


# -- 4 and 5. the database cannot be written ------------------------------------------------


def _sample_retained(broker: MosquittoProcess, until: float) -> list[str | None]:
    """The retained engine state a newly connecting monitor sees, every half second."""
    seen: list[str | None] = []
    while time.monotonic() < until:
        status = retained_status(broker.host, broker.port, timeout=1.0)
        seen.append(None if status is None else status.get("state"))
        time.sleep(0.5)
    return seen


def _stuck_checks(
    out: Outcome,
    watcher: TopicWatcher,
    eng: EngineProcess,
    log_from: int,
    window: tuple[float, float],
    acked_during: int,
    reason: str,
    retained: list[str | None],
) -> None:
    """While the store could not be written: an ERROR saying why, a retained `degraded`
    status naming the reason, the broker holding what the engine did not acknowledge, and
    `online` again afterwards."""
    t0, t1 = window
    log = eng.log_text()[log_from:]
    errors = error_lines(log, reason)
    out.figures["error_lines"] = len(errors)
    if not errors:
        out.fail(f"no ERROR line in the engine log matching /{reason}/ while the database "
                 f"could not be written")  # fmt: skip
    states = watcher.statuses(t0, t1 + 5.0)
    degraded = [s for s in states if s.get("state") == "degraded"]
    out.figures["statuses"] = [s.get("state") for s in watcher.statuses()]
    if not degraded:
        out.fail(f"no `degraded` status on tagwatch/v1/engine/status while stuck "
                 f"(saw {[s.get('state') for s in states]})")  # fmt: skip
    elif not any(re.search(reason, str(s.get("reason", "")), re.I) for s in degraded):
        out.fail(f"`degraded` status does not say why (/{reason}/): {degraded}")
    else:
        after = watcher.statuses(t0)
        last_degraded = max(i for i, s in enumerate(after) if s.get("state") == "degraded")
        if not any(s.get("state") == "online" for s in after[last_degraded:]):
            out.fail("no `online` status after the `degraded` one once the database recovered")
    out.figures["retained_samples"] = "".join(
        {"degraded": "D", "online": "o"}.get(str(r), "?") for r in retained
    )
    if degraded and "degraded" not in retained:
        out.fail(f"`degraded` was published but not retained: a monitor connecting while "
                 f"stuck is not told (retained status sampled {len(retained)} times: "
                 f"{sorted(set(retained))})")  # fmt: skip
    # The broker's message store while stuck: an engine that stops acknowledging leaves
    # what it was sent there; one that acknowledges (and buffers in memory) does not.
    base = watcher.numbers(SYS_STORED, 0.0, t0)
    held = watcher.numbers(SYS_STORED, t0 + 2.0, t1)
    if not base or not held:
        out.fail(f"no $SYS store figures from mosquitto ({len(base)} before, {len(held)} during)")
        return
    grew = max(held) - min(base)
    out.figures["broker_held_while_stuck"] = grew
    out.figures["published_while_stuck"] = acked_during
    if grew < acked_during // 2:
        out.fail(
            f"the broker held only {grew} more messages while the database was stuck, of "
            f"{acked_during} published meanwhile: the engine kept acknowledging messages it "
            f"could not persist (a crash then loses them)"
        )


def _stuck_rig(
    stack: ExitStack, broker: MosquittoProcess, stream: Stream, db: Path, log_via_pipe: bool = False
) -> tuple[EngineProcess, TopicWatcher, StreamPublisher]:
    """An engine online, a watcher on its status and the broker's stored-message count, and
    the stream 30 % published: the moment to make the store unwritable."""
    watcher = stack.enter_context(
        TopicWatcher(broker.host, broker.port, ["tagwatch/v1/engine/status", SYS_STORED])
    )
    eng, pub = _running(stack, broker, stream, db, log_via_pipe=log_via_pipe)
    pub.wait_sent(int(len(stream.messages) * 0.3), timeout=60)
    return eng, watcher, pub


@pytest.mark.timeout(150)
def test_database_locked_by_another_process_engine_waits_and_catches_up(
    mosquitto_sys: MosquittoProcess, stream: Stream, tmp_path: Path
) -> None:
    db = tmp_path / "tw.db"
    with ExitStack() as stack:
        eng, watcher, pub = _stuck_rig(stack, mosquitto_sys, stream, db)
        log_from = len(eng.log_text())
        lock = ExclusiveLock(db, STUCK_S).start()
        at, acked0, rows0 = pub.sent, pub.acked, ledger_rows(db)
        retained = _sample_retained(mosquitto_sys, time.monotonic() + STUCK_S - 0.5)
        lock.join()
        assert lock.taken_at is not None and lock.released_at is not None
        acked_during = pub.acked - acked0
        out = _finish("database locked", stream, pub, eng, db, locked_at=at,
                      locked_s=STUCK_S, ledger_rows_at_lock=rows0)  # fmt: skip
        _stuck_checks(out, watcher, eng, log_from, (lock.taken_at, lock.released_at),
                      acked_during, r"lock", retained)  # fmt: skip
    _conclude(out)


@pytest.mark.timeout(150)
def test_disk_full_engine_waits_and_catches_up(
    mosquitto_sys: MosquittoProcess, stream: Stream, tmp_path: Path
) -> None:
    """A full disk without root: lower the engine's RLIMIT_FSIZE (prlimit on its pid) to
    just past where SQLite writes next, so its writes fail with EFBIG (Python ignores
    SIGXFSZ), then raise it again. The engine's log goes through a pipe, so the limit
    bites on its database and nothing else."""
    db = tmp_path / "tw.db"
    with ExitStack() as stack:
        eng, watcher, pub = _stuck_rig(stack, mosquitto_sys, stream, db, log_via_pipe=True)
        assert eng.pid is not None
        log_from = len(eng.log_text())
        original = resource.prlimit(eng.pid, resource.RLIMIT_FSIZE)
        limit = max(wal_frontier(db), 32) + 1
        resource.prlimit(eng.pid, resource.RLIMIT_FSIZE, (limit, original[1]))
        t0, at, acked0, rows0 = time.monotonic(), pub.sent, pub.acked, ledger_rows(db)
        try:
            time.sleep(3.0)
            rows3 = ledger_rows(db)
            if not error_lines(eng.log_text()[log_from:], DISK_WORDS) and rows3 != rows0:
                # the WAL was rewound (checkpointed) below the limit: let nothing be written
                limit = 1
                resource.prlimit(eng.pid, resource.RLIMIT_FSIZE, (limit, original[1]))
            retained = _sample_retained(mosquitto_sys, t0 + STUCK_S - 0.5)
            time.sleep(max(0.0, t0 + STUCK_S - time.monotonic()))
        finally:
            if eng.running:
                resource.prlimit(eng.pid, resource.RLIMIT_FSIZE, original)
        t1 = time.monotonic()
        acked_during = pub.acked - acked0
        out = _finish("disk full", stream, pub, eng, db, full_at=at, full_s=STUCK_S,
                      fsize_limit=limit, ledger_rows_at_full=rows0)  # fmt: skip
        _stuck_checks(out, watcher, eng, log_from, (t0, t1), acked_during, DISK_WORDS,
                      retained)  # fmt: skip
    _conclude(out)


# -- 6. no acknowledgement before commit, not even while connecting ----------------------------


@pytest.mark.timeout(150)
def test_engine_connecting_to_a_backlog_acknowledges_nothing_before_commit(
    mosquitto_persistent: MosquittoProcess, stream: Stream, tmp_path: Path
) -> None:
    """The random kills above catch an acknowledgement sent too early only when a kill lands
    between a restarted engine's connect and its first commit. Here that moment is held
    open: the engine connects to a backlog the broker kept for its session while another
    process locks its database (so it can commit nothing), and is killed 1.5 s later.
    Every message of the backlog must reach the next engine. Three rounds."""
    broker = mosquitto_persistent
    db = tmp_path / "tw.db"
    size = 400
    chunks = [stream.messages[i * size : (i + 1) * size] for i in range(3)]
    sent: set[tuple[str, int]] = set()
    dropped = 0
    connected_after: list[float | None] = []
    problems: list[str] = []
    with ExitStack() as stack:
        eng = _engine(broker, stream, db)
        stack.push(eng.__exit__)  # killed on the way out, whatever happened
        _start_online(eng, broker)  # its session now exists at the broker
        eng.kill()
        for i, chunk in enumerate(chunks):
            # the backlog: published while the engine is away, kept for its session
            with StreamPublisher(broker.host, broker.port, chunk, rate=RATE) as pub:
                pub.wait_all_acked(60)
            dropped += pub.no_subscribers
            sent |= {m.key for m in chunk}
            broker.stop()
            mark = len(eng.log_text())
            eng.start()  # recovers, then retries the broker
            if wait_log(eng.log_text, r"(?:reconnect\w*|retry\w*) in", mark, 30.0) is None:
                problems.append(f"round {i}: the engine never retried the stopped broker")
            lock = ExclusiveLock(db, 60.0).start()
            try:
                broker.start()
                took = wait_log(eng.log_text, r"\b(?:re)?connected to\b", mark, 15.0)
                connected_after.append(None if took is None else round(took, 2))
                if took is None:
                    problems.append(f"round {i}: the engine did not connect within 15 s")
                time.sleep(1.5)  # it receives the backlog and cannot commit it
                eng.kill()
            finally:
                lock.release()
        eng.start()
        cu = wait_caught_up(db, sent, lambda: eng.running, **CATCH_UP)  # type: ignore[arg-type]
        rc = eng.stop() if eng.running else None
    keys = ledger_keys(db)
    lost = sorted(sent - keys) if keys is not None else sorted(sent)
    dead = sum(dead_letter_reasons(db).values())
    line = (
        f"[ack at connect] backlog={len(sent)} in {len(chunks)} rounds "
        f"dropped_by_broker(no subscriber)={dropped} connected_after_s={connected_after} "
        f"recovered={'none' if keys is None else len(sent & keys)}/{len(sent)} "
        f"lost={len(lost)} dead_letters={dead}"
    )
    if keys is None:
        problems.append(f"(a) no `ledger` table in {db.name}")
    elif lost:
        problems.append(
            f"(a) {len(lost)} of {len(sent)} backlog messages never reached the ledger: the "
            f"broker took them as acknowledged by an engine that committed nothing; "
            f"e.g. {lost[:8]}"
        )
    if dead:
        problems.append(f"(a) {dead} dead letters for a valid stream")
    if not cu.complete:
        problems.append(f"catch-up: {cu.why}")
    if rc not in (0, None):
        problems.append(f"the engine exited {rc} on SIGTERM")
    report = line + ("\nall checks passed" if not problems else "\nFAILED checks:\n" +
                     "\n".join(f"  - {p}" for p in problems))  # fmt: skip
    print("\n" + report, flush=True)
    assert not problems, report
