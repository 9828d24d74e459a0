"""Fault-test kit: a simulated fleet's stream with known breaches and its replay reference, a
paced QoS 1 publisher with its own persistent session, readers for the engine's database
and status topic, and the checks that say whether anything was lost or written twice.

Everything runs as real processes on loopback: `tagwatch simulate` and `tagwatch replay`
(the public CLI) make the stream and the reference; mosquitto and `tagwatch serve` are
started by the tests; the publisher and the status watcher are paho clients in threads.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devices.cli import parse_duration
from devices.sim.delivery import Delivery, mqtt_message
from devices.sim.fleet import DEFAULT_EPOCH
from engine.core.health.silence import BREACH_KINDS  # zone_breach, curfew_breach, proximity
from engine.wire import payloads, topics
from engine.wire.alerts import decode_alert
from engine.wire.topics import STATUS
from tests.helpers import ledger_records

Key = tuple[str, int]  # (device, seq): a fix or event, as the ledger identifies it
SYS_STORED = "$SYS/broker/store/messages/count"  # messages the broker holds (mosquitto 2)


# -- the stream and its reference --------------------------------------------------------


@dataclass(frozen=True)
class Msg:
    """One publication as the device makes it: topic, payload, and the record it carries."""

    topic: str
    payload: bytes
    key: Key


@dataclass
class Stream:
    """A simulated world, its replay file as MQTT messages, and the replay reference."""

    dir: Path
    zones: Path
    subjects: Path
    replay: Path
    messages: list[Msg]
    reference: list[dict[str, Any]]  # every alert record `tagwatch replay` wrote
    breach_ids: frozenset[str]  # breach alert ids (BREACH_KINDS) with an open record

    @property
    def keys(self) -> frozenset[Key]:
        return frozenset(m.key for m in self.messages)

    def reference_open_counts(self) -> Counter[str]:
        return Counter(r["id"] for r in self.reference if r["state"] == "open")


def _cli(*args: str, cwd: Path | None = None, timeout: float = 120.0) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        capture_output=True, text=True, timeout=timeout, cwd=cwd,
    )  # fmt: skip
    if done.returncode != 0:
        raise AssertionError(f"tagwatch {' '.join(args)} failed ({done.returncode}):\n"
                             f"{done.stdout}\n{done.stderr}")  # fmt: skip
    return done.stdout + done.stderr


def message_for(line: dict[str, Any]) -> Msg:
    """A replay line as its device publishes it: tag fixes and events on the tag topics (the
    line minus `tag`/`type`), a phone ("user/device") as OwnTracks on owntracks/user/device
    (devices.sim.delivery.mqtt_message, the simulator's own mapping)."""
    device, seq = str(line["tag"]), int(line["seq"])
    if line.get("type") == "event":
        body = payloads.tag_payload(line)
        return Msg(topics.event(device), payloads.encode(body), (device, seq))
    channel = "owntracks" if "/" in device else "fix"
    topic, payload = mqtt_message(Delivery(float(line["t"]), device, channel, (line,)))
    return Msg(topic, payload, (device, seq))


def recent_start(duration_s: float, now: float | None = None) -> float:
    """The latest start at or before `now - duration_s` that falls on the simulator's
    default epoch's weekday and UTC time of day (Saturday 17:30): event times the live
    engine takes as recent (it judges them against its wall clock, and may refuse records
    too far in the past or future), in a week-periodic slot so curfew windows and
    weekday schedules fall the same way on every run."""
    week = 7 * 86400.0
    latest = (time.time() if now is None else now) - duration_s - 60.0
    return DEFAULT_EPOCH + math.floor((latest - DEFAULT_EPOCH) / week) * week


def make_stream(
    tmp_path: Path,
    seed: int,
    subjects: int,
    duration: str = "2h",
    *,
    quick: int | None = None,
    start: float | None = None,
    extra: Sequence[str] = (),
    world: Callable[[Path], None] | None = None,
) -> Stream:
    """`tagwatch simulate --out-dir` a seeded world (zones.geojson, subjects.toml,
    replay.jsonl) where `quick` subjects (default a third) go straight into a zone, then
    `tagwatch replay` it for the reference: the breach alert ids a fault-free engine opens.
    Event times start at `start` (default `recent_start`: the stream is recent, as a live
    fleet's would be). `world(out_dir)` may change the simulated files first."""
    out = tmp_path / f"sim-{seed}-{subjects}"
    quick = subjects // 3 if quick is None else quick
    start = recent_start(parse_duration(duration)) if start is None else start
    _cli("simulate", "--seed", str(seed), "--subjects", str(subjects), "--duration", duration,
         "--quick", str(quick), "--start", repr(start), "--out-dir", str(out),
         *extra)  # fmt: skip
    if world is not None:  # the test's changes to the simulated world, before the reference
        world(out)
    zones, subj, replay = out / "zones.geojson", out / "subjects.toml", out / "replay.jsonl"
    ref_path = out / "reference.jsonl"
    summary = _cli("replay", str(replay), "--zones", str(zones), "--subjects", str(subj),
                   "--out", str(ref_path))  # fmt: skip
    dead = re.search(r"(\d+) dead letters", summary)
    assert dead is not None and dead.group(1) == "0", f"replay refused records:\n{summary}"
    lines = [json.loads(b) for b in replay.read_bytes().splitlines() if b.strip()]
    messages = [message_for(ln) for ln in lines]
    dup = len(messages) - len({m.key for m in messages})
    assert dup == 0, f"the simulated stream repeats {dup} (device, seq) pairs"
    reference = [json.loads(b) for b in ref_path.read_bytes().splitlines() if b.strip()]
    breach = frozenset(
        r["id"] for r in reference if r["kind"] in BREACH_KINDS and r["state"] == "open"
    )
    assert breach, "the reference has no breach alerts: pick a seed/size with breaches"
    return Stream(out, zones, subj, replay, messages, reference, breach)


# -- publishing --------------------------------------------------------------------------


def _v5_client(client_id: str, clean_start: bool, session_expiry: int) -> tuple[paho.Client, Any]:
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = session_expiry
    c.reconnect_delay_set(1, 2)
    return c, props


class StreamPublisher:
    """Publishes a stream's messages at QoS 1, paced at `rate` messages a second, as the
    fleet would: its own persistent MQTT 5 session (fixed client id, no clean start,
    session expiry), so a broker restart loses none of its in-flight messages; paho
    resends what was unacknowledged when the connection comes back. While disconnected it
    waits (a tag buffers), and it keeps at most `window` messages unacknowledged.

    `sent` counts messages handed to the client, `acked` those the broker PUBACKed;
    `no_subscribers` counts PUBACKs with reason 16 "no matching subscribers": the broker
    had nobody to deliver to (an engine without a persistent session, while it was away)
    and dropped the message."""

    def __init__(
        self,
        host: str,
        port: int,
        messages: Sequence[Msg],
        *,
        rate: float = 600.0,
        window: int = 200,
        client_id: str = "faultkit-fleet",
        session_expiry: int = 3600,
    ) -> None:
        self.host, self.port = host, port
        self.messages = list(messages)
        self.rate = rate
        self.window = window
        self.sent = 0
        self.acked = 0
        self.no_subscribers = 0
        self.connects = 0
        self.disconnects = 0
        self.started_at = 0.0
        self.finished_at: float | None = None  # when the last message was acknowledged
        self._infos: list[paho.MQTTMessageInfo] = []
        self._count = threading.Lock()
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._client, self._props = _v5_client(client_id, False, session_expiry)
        self._client.max_inflight_messages_set(100)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._thread = threading.Thread(target=self._run, name="faultkit-publisher", daemon=True)

    # paho callbacks (network thread)
    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if not rc.is_failure:
            self.connects += 1
            self._connected.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self._connected.clear()
        self.disconnects += 1

    def _on_publish(self, client: Any, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        with self._count:
            self.acked += 1
            if rc.value == 16:  # No matching subscribers: accepted, and dropped
                self.no_subscribers += 1
            if self.acked == len(self.messages):
                self.finished_at = time.monotonic()

    def start(self) -> StreamPublisher:
        self._client.connect_async(
            self.host, self.port, keepalive=10, clean_start=False, properties=self._props
        )
        self._client.loop_start()
        self.started_at = time.monotonic()
        self._thread.start()
        return self

    def _run(self) -> None:
        period = 1.0 / self.rate
        due = time.monotonic()
        for m in self.messages:
            while True:
                if self._stop.is_set():
                    return
                if not self._connected.wait(0.1):
                    due = time.monotonic()  # resume at the rate, not in a burst
                    continue
                if self.sent - self.acked >= self.window:
                    time.sleep(0.002)
                    continue
                break
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -0.5:
                due = time.monotonic()
            self._infos.append(self._client.publish(m.topic, m.payload, qos=1))
            self.sent += 1
            due += period

    def wait_sent(self, n: int, timeout: float) -> None:
        """Block until at least n messages were handed to the client."""
        deadline = time.monotonic() + timeout
        while self.sent < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"publisher sent only {self.sent} of {n} in {timeout:.0f} s")
            time.sleep(0.005)

    def wait_all_acked(self, timeout: float) -> None:
        """Block until the broker acknowledged every message of the stream."""
        deadline = time.monotonic() + timeout
        while self.acked < len(self.messages):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"publisher: {self.acked} of {len(self.messages)} acknowledged after "
                    f"{timeout:.0f} s ({self.sent} sent, connected={self._connected.is_set()})"
                )
            time.sleep(0.05)

    def acked_keys(self) -> set[Key]:
        return {m.key for m, i in zip(self.messages, self._infos, strict=False) if i.is_published()}

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5.0)
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> StreamPublisher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class TopicWatcher:
    """Records every message on `topics` (with its arrival time, monotonic) from a clean
    MQTT 5 session that reconnects by itself: the engine's retained status, $SYS figures."""

    def __init__(self, host: str, port: int, topics: Sequence[str] = (STATUS,)) -> None:
        self.topics = list(topics)
        self.records: list[tuple[float, str, bytes]] = []
        self._ready = threading.Event()
        self._client, _ = _v5_client(f"faultkit-watch-{id(self):x}", True, 0)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self.host, self.port = host, port

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if not rc.is_failure:
            for t in self.topics:
                client.subscribe(t, qos=1)
            self._ready.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        self.records.append((time.monotonic(), str(msg.topic), bytes(msg.payload)))

    def start(self, timeout: float = 10.0) -> TopicWatcher:
        self._client.connect_async(self.host, self.port, keepalive=10, clean_start=True)
        self._client.loop_start()
        if not self._ready.wait(timeout):
            raise AssertionError(f"watcher could not connect to {self.host}:{self.port}")
        return self

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> TopicWatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def statuses(
        self, since: float = 0.0, until: float = float("inf"), topic: str = STATUS
    ) -> list[dict[str, Any]]:
        """Engine status payloads seen in [since, until], decoded ({} when not JSON)."""
        out = []
        for t, tp, payload in list(self.records):
            if tp == topic and since <= t <= until:
                try:
                    out.append(json.loads(payload))
                except ValueError:
                    out.append({"raw": payload.decode(errors="replace")})
        return out

    def numbers(self, topic: str, since: float = 0.0, until: float = float("inf")) -> list[int]:
        out = []
        for t, tp, payload in list(self.records):
            if tp == topic and since <= t <= until:
                with contextlib.suppress(ValueError):
                    out.append(int(float(payload)))
        return out


def retained_status(
    host: str, port: int, timeout: float = 5.0, topic: str = STATUS
) -> dict[str, Any] | None:
    """The retained engine status on the broker right now (None if there is none); a
    shard's on its own `topic`."""
    with TopicWatcher(host, port, (topic,)) as w:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = w.statuses(topic=topic)
            if got:
                return got[-1]
            time.sleep(0.05)
    return None


# -- the engine's database ---------------------------------------------------------------


def _is_url(db: Path | str) -> bool:
    return isinstance(db, str) and "://" in db


def _exists(db: Path | str) -> bool:
    """A SQLite file that exists, or a PostgreSQL URL (its tables are looked for)."""
    return _is_url(db) or Path(db).exists()


def _connect(db: Path | str) -> Any:
    """A connection of the test's own: sqlite3's, or the engine's PostgreSQL adapter."""
    if _is_url(db):
        from engine.store.sql.open import connect

        return connect(str(db), busy_timeout_s=10.0)
    con = sqlite3.connect(str(db), timeout=10.0, isolation_level=None)
    con.execute("PRAGMA busy_timeout=10000")
    return con


def _has_table(con: Any, name: str) -> bool:
    if getattr(con, "dialect", "sqlite") == "postgresql":
        sql = "SELECT 1 FROM information_schema.tables WHERE table_schema = ? AND table_name = ?"
        return con.execute(sql, (con.schema, name)).fetchone() is not None
    row = con.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,))
    return row.fetchone() is not None


Db = Path | str  # a SQLite file, or a PostgreSQL URL naming its schema
Dbs = Db | list[Db]  # one engine's database, or each shard's (serve --shard)


def ledger_keys(db: Dbs) -> set[Key] | None:
    """Distinct (device, seq) of the fixes and events in the ledger; None when the
    database has no ledger table (an engine that keeps no evidence ledger)."""
    if isinstance(db, list):
        each = [ledger_keys(d) for d in db]
        return None if any(k is None for k in each) else set().union(*each)  # type: ignore[arg-type]
    if not _exists(db):
        return None
    con = _connect(db)
    try:
        if not _has_table(con, "ledger"):
            return None
        return {(d, s) for d, s, _, _ in ledger_records(con)}
    finally:
        con.close()


def ledger_rows(db: Dbs) -> int | None:
    """Number of fix/event rows in the ledger (duplicates included); None without a ledger."""
    if isinstance(db, list):
        each = [ledger_rows(d) for d in db]
        return None if any(n is None for n in each) else sum(each)  # type: ignore[arg-type]
    if not _exists(db):
        return None
    con = _connect(db)
    try:
        if not _has_table(con, "ledger"):
            return None
        return len(ledger_records(con))
    finally:
        con.close()


@dataclass(frozen=True)
class LogRow:
    seq: int
    alert_id: str
    state: str
    record: bytes

    @property
    def alert(self) -> Any:
        return decode_alert(self.record)


def alert_log_rows(db: Dbs) -> list[LogRow]:
    """Every alert_log row, in the order written (shards' one after another)."""
    if isinstance(db, list):
        return [r for d in db for r in alert_log_rows(d)]
    if not _exists(db):
        return []
    con = _connect(db)
    try:
        if not _has_table(con, "alert_log"):
            return []
        rows = con.execute("SELECT seq, alert_id, state, record FROM alert_log ORDER BY seq")
        return [LogRow(int(s), str(a), str(st), bytes(r)) for s, a, st, r in rows.fetchall()]
    finally:
        con.close()


def dead_letter_reasons(db: Dbs) -> Counter[str]:
    """Dead letters in the database, counted by reason."""
    if isinstance(db, list):
        return sum((dead_letter_reasons(d) for d in db), Counter())
    if not _exists(db):
        return Counter()
    con = _connect(db)
    try:
        if not _has_table(con, "dead_letters"):
            return Counter()
        rows = con.execute("SELECT reason FROM dead_letters").fetchall()
        return Counter(str(r[0]) for r in rows)
    finally:
        con.close()


def open_counts(rows: Iterable[LogRow]) -> Counter[str]:
    """How many `open` records each alert id has (the first, plus any escalations)."""
    return Counter(r.alert_id for r in rows if r.state == "open")


def openings(rows: Iterable[LogRow]) -> Counter[str]:
    """How many times each alert id was *opened*. The engine publishes an open record again
    when its confidence escalates (engine/core/decide.py `republish`, ESCALATE_AT): such a
    record has a higher confidence than every earlier open record of the id. Any other
    open record (the same again, or one from a restart that forgot the episode) is a second
    opening: a monitor would see the alert raised twice."""
    best: dict[str, float] = {}
    out: Counter[str] = Counter()
    for r in rows:
        if r.state != "open":
            continue
        conf = float(r.alert.confidence)
        if r.alert_id not in best or conf <= best[r.alert_id]:
            out[r.alert_id] += 1
        best[r.alert_id] = max(conf, best.get(r.alert_id, conf))
    return out


def wal_frontier(db: Path) -> int:
    """Byte offset just past the last frame of the current WAL generation of `db` (frames
    whose salts match the WAL header), i.e. where SQLite's next write to the WAL goes;
    0 when there is no WAL. A WAL restarted after a checkpoint is rewritten from its start,
    so its file size says nothing about where writes land."""
    wal = Path(f"{db}-wal")
    try:
        data = wal.read_bytes()
    except FileNotFoundError:
        return 0
    if len(data) < 32:
        return 0
    page = struct.unpack(">I", data[8:12])[0]
    salts = data[16:24]
    pos = 32
    while pos + 24 + page <= len(data) and data[pos + 8 : pos + 16] == salts:
        pos += 24 + page
    return pos


class ExclusiveLock:
    """Another process's view of the database: a connection that holds BEGIN EXCLUSIVE for
    `seconds` (or until release()) in a thread (in WAL mode this shuts out every writer;
    readers go on)."""

    def __init__(self, db: Path, seconds: float) -> None:
        self.db, self.seconds = db, seconds
        self.taken_at: float | None = None
        self.released_at: float | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._hold, name="faultkit-lock", daemon=True)
        self._taken = threading.Event()
        self._release = threading.Event()

    def _hold(self) -> None:
        try:
            con = sqlite3.connect(str(self.db), timeout=30.0, isolation_level=None)
            try:
                con.execute("BEGIN EXCLUSIVE")
                self.taken_at = time.monotonic()
                self._taken.set()
                self._release.wait(self.seconds)
                con.execute("ROLLBACK")
                self.released_at = time.monotonic()
            finally:
                con.close()
        except BaseException as e:  # reported by start()/join()
            self.error = e
            self._taken.set()

    def start(self, timeout: float = 30.0) -> ExclusiveLock:
        self._thread.start()
        if not self._taken.wait(timeout) or self.error is not None:
            raise AssertionError(f"could not lock {self.db}: {self.error}")
        return self

    def release(self) -> None:
        """Let go now rather than after `seconds`, and wait until it is done."""
        self._release.set()
        self.join()

    def join(self) -> None:
        self._thread.join(self.seconds + 30.0)
        if self.error is not None:
            raise AssertionError(f"lock holder failed: {self.error}")


# -- waiting and judging -----------------------------------------------------------------


@dataclass
class CatchUp:
    complete: bool
    waited_s: float
    ledger: int | None
    why: str


def wait_caught_up(
    db: Dbs,
    expected: frozenset[Key] | set[Key],
    alive: Callable[[], bool],
    *,
    timeout: float = 60.0,
    stall_s: float = 10.0,
    poll_s: float = 0.5,
) -> CatchUp:
    """Poll the ledger until it holds every expected (device, seq). Gives up after
    `timeout`, when the engine died (`alive()` false), or when neither the ledger nor the
    alert log moved for `stall_s` (an engine that keeps no ledger settles that way)."""
    t0 = time.monotonic()
    last_change, last_sig = t0, None
    while True:
        keys = ledger_keys(db)
        n_log = len(alert_log_rows(db))
        now = time.monotonic()
        if keys is not None and expected <= keys:
            return CatchUp(True, now - t0, len(keys), "ledger holds every record sent")
        sig = (None if keys is None else len(keys), n_log)
        if sig != last_sig:
            last_sig, last_change = sig, now
        ledger = None if keys is None else len(keys & expected)
        if not alive():
            return CatchUp(False, now - t0, ledger, "the engine process is not running")
        if now - t0 > timeout:
            return CatchUp(False, now - t0, ledger, f"timed out after {timeout:.0f} s")
        if now - last_change > stall_s:
            what = "no ledger table" if keys is None else f"ledger stuck at {ledger}"
            return CatchUp(False, now - t0, ledger, f"{what}; nothing moved for {stall_s:.0f} s")
        time.sleep(poll_s)


@dataclass
class Outcome:
    """What a fault run left in the database, judged against the stream and reference."""

    name: str
    sent: int
    acked: int
    no_subscribers: int
    ledger: int | None  # distinct (device, seq) of the stream found in the ledger
    ledger_rows: int | None  # fix/event rows (redeliveries included)
    lost: list[Key]
    breach_ref: int
    breach_found: int
    missed: list[str]  # reference breach ids never opened
    opened_twice: dict[str, int]
    duplicate_records: list[tuple[str, int]]  # (alert id, copies) of byte-identical records
    extra: list[str]  # breach ids the reference does not have
    open_count_diff: dict[str, tuple[int, int]]  # id: (reference open records, live)
    figures: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    dead_letters: int = 0

    def line(self) -> str:
        fig = " ".join(f"{k}={v}" for k, v in self.figures.items())
        ledger = "none" if self.ledger is None else self.ledger
        return (
            f"[{self.name}] sent={self.sent} acked={self.acked} "
            f"dropped_by_broker(no subscriber)={self.no_subscribers} {fig} "
            f"recovered={ledger}/{self.sent} ledger_rows={self.ledger_rows} "
            f"lost={len(self.lost) if self.ledger is not None else 'unknown'} "
            f"dead_letters={self.dead_letters} "
            f"breach={self.breach_found}/{self.breach_ref} missed={len(self.missed)} "
            f"opened_twice={len(self.opened_twice)} duplicates={len(self.duplicate_records)} "
            f"extra={len(self.extra)}"
        )

    def fail(self, msg: str) -> None:
        self.failures.append(msg)

    def report(self) -> str:
        head = self.line()
        if not self.failures:
            return head + "\nall checks passed"
        return head + "\nFAILED checks:\n" + "\n".join(f"  - {f}" for f in self.failures)


def _sample(items: Iterable[Any], n: int = 8) -> str:
    items = list(items)
    more = f" ... (+{len(items) - n})" if len(items) > n else ""
    return ", ".join(map(str, items[:n])) + more


def judge(name: str, stream: Stream, pub: StreamPublisher, db: Dbs, **figures: Any) -> Outcome:
    """The four checks every fault test makes, all evaluated (one failing does not hide the
    others): (a) no fix/event lost, (b) every reference breach opened exactly once,
    (c) no alert record written twice, (d) no breach the reference lacks."""
    keys = ledger_keys(db)
    rows = alert_log_rows(db)
    expected = stream.keys
    lost = sorted(expected - keys) if keys is not None else []
    breach_rows = [r for r in rows if r.alert.kind in BREACH_KINDS]
    opened = openings(breach_rows)
    live_breach = {r.alert_id for r in breach_rows if r.state == "open"}
    ref = stream.breach_ids
    missed = sorted(ref - live_breach)
    twice = {a: n for a, n in opened.items() if a in ref and n > 1}
    copies = Counter((r.alert_id, r.record) for r in rows)
    dups = sorted((a, n) for (a, _), n in copies.items() if n > 1)
    extra = sorted(live_breach - ref)
    ref_counts = stream.reference_open_counts()
    live_counts = open_counts(breach_rows)
    diff = {
        a: (ref_counts[a], live_counts[a]) for a in sorted(ref) if ref_counts[a] != live_counts[a]
    }
    out = Outcome(
        name=name, sent=pub.sent, acked=pub.acked, no_subscribers=pub.no_subscribers,
        ledger=None if keys is None else len(expected & keys), ledger_rows=ledger_rows(db),
        lost=lost, breach_ref=len(ref), breach_found=len(ref & live_breach), missed=missed,
        opened_twice=twice, duplicate_records=dups, extra=extra, open_count_diff=diff,
        figures=dict(figures),
    )  # fmt: skip
    # (a) no fix or event lost
    if keys is None:
        where = (
            db.name if isinstance(db, Path)
            else "a shard's database" if isinstance(db, list) else "the PostgreSQL schema"
        )  # fmt: skip
        out.fail(
            f"(a) no `ledger` table in {where}: the engine keeps no evidence of the "
            f"{len(expected)} fixes/events it was sent, so none can be shown to be kept"
        )
    elif lost:
        by_dev = Counter(d for d, _ in lost)
        out.fail(
            f"(a) {len(lost)} of {len(expected)} fixes/events sent (and PUBACKed by the "
            f"broker) are not in the ledger; per device: {_sample(by_dev.most_common())}; "
            f"e.g. {_sample(lost)}"
        )
    dead = dead_letter_reasons(db)
    out.dead_letters = sum(dead.values())
    if dead:
        out.fail(
            f"(a) {out.dead_letters} dead letters, but every message of the stream is valid "
            f"(replay accepts them all): records refused are records lost; reasons: "
            f"{_sample(f'{n}x {r}' for r, n in dead.most_common())}"
        )
    # (b) every reference breach opened exactly once
    if missed:
        out.fail(f"(b) {len(missed)} of {len(ref)} reference breach alerts never opened: "
                 f"{_sample(_describe(stream, missed))}")  # fmt: skip
    if twice:
        out.fail(f"(b) {len(twice)} reference breach alerts opened more than once "
                 f"(id: openings): {_sample(f'{a}: {n}' for a, n in twice.items())}")  # fmt: skip
    # (c) no record written twice
    if dups:
        out.fail(f"(c) {len(dups)} alert_log records (alert id, record bytes) written more "
                 f"than once (id: copies): {_sample(f'{a}: {n}' for a, n in dups)}")  # fmt: skip
    # (d) nothing the reference lacks
    if extra:
        extra_desc = [_describe_live(rows, a) for a in extra]
        out.fail(f"(d) {len(extra)} breach alert ids the replay reference does not have: "
                 f"{_sample(extra_desc)}")  # fmt: skip
    return out


def _describe(stream: Stream, ids: Iterable[str]) -> list[str]:
    first = {}
    for r in stream.reference:
        first.setdefault(r["id"], r)
    return [
        f"{a} ({first[a]['kind']} {first[a]['subject']}/{first[a]['zone']} "
        f"first evidence {first[a]['evidence'][0]})"
        for a in ids
    ]


def _describe_live(rows: Sequence[LogRow], alert_id: str) -> str:
    a = next(r.alert for r in rows if r.alert_id == alert_id)
    return f"{alert_id} ({a.kind} {a.subject}/{a.zone} first evidence {a.evidence[0]})"


# -- the engine's log ----------------------------------------------------------------------

_RECONNECT_DELAY = re.compile(r"(?:reconnect\w*|retry\w*)\s+in\s+(\d+(?:\.\d+)?)\s*s", re.I)


def reconnect_delays(log: str) -> list[float]:
    """The waits the engine's main session announced between reconnect attempts, in order
    (the priority lane, engine/mqtt/lanes.py, backs off on its own)."""
    main = "\n".join(ln for ln in log.splitlines() if "priority lane" not in ln)
    return [float(m) for m in _RECONNECT_DELAY.findall(main)]


def error_lines(log: str, pattern: str) -> list[str]:
    """ERROR lines of a log matching `pattern` (case-insensitive)."""
    rx = re.compile(pattern, re.I)
    return [ln for ln in log.splitlines() if "ERROR" in ln and rx.search(ln)]


def per_device(keys: Iterable[Key]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for d, s in keys:
        out[d].append(s)
    return {d: sorted(v) for d, v in out.items()}


def wait_log(read: Callable[[], str], pattern: str, start: int, timeout: float) -> float | None:
    """Seconds until `pattern` (a regex) appears in read()[start:]; None after `timeout`."""
    rx = re.compile(pattern, re.I)
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if rx.search(read()[start:]):
            return time.monotonic() - t0
        time.sleep(0.02)
    return None
