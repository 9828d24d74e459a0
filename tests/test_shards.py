"""Several engines on one subjects file (`serve --shard i/N`, issue 16 item 3): each owns the
subjects whose stable hash falls in its part, subscribes to its own devices' topics only,
and between them they decide exactly what one engine decides; kill -9 of one shard loses
nothing. Real mosquitto, real processes."""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.broker.process import MosquittoProcess
from engine.store.sql.open import shard_target
from engine.wire import topics
from tests.faultkit import (
    Stream,
    StreamPublisher,
    alert_log_rows,
    dead_letter_reasons,
    judge,
    ledger_keys,
    make_stream,
    retained_status,
    wait_caught_up,
)
from tests.helpers import EngineProcess, fix, publish, square, wait_online, write_world
from zones.load import load
from zones.shard import Shard, devices, subject_hash

SEED = 11


def test_the_hash_is_sha256s_first_8_bytes_and_parse_says_what_it_wants() -> None:
    # The documented rule (docs/deployment.md), computed here independently of zones/shard
    for sid in ("S001", "alice", "Ünïcode-7"):
        want = int.from_bytes(hashlib.sha256(sid.encode()).digest()[:8], "big")
        assert subject_hash(sid) == want
    assert Shard.parse(" 1/3 ") == Shard(1, 3) == Shard.parse("1-of-3")
    assert str(Shard(1, 3)) == "1/3"
    assert Shard(0, 2).label == "0-of-2"
    for bad in ("2/2", "-1/2", "1", "a/b", "0/0", "1/2/3"):
        with pytest.raises(ValueError, match="i/N"):
            Shard.parse(bad)


@given(st.lists(st.text(min_size=1, max_size=12), max_size=40), st.integers(1, 6))
def test_every_subject_belongs_to_exactly_one_shard(ids: list[str], n: int) -> None:
    for sid in ids:
        owners = [i for i in range(n) if Shard(i, n).owns(sid)]
        assert owners == [subject_hash(sid) % n]


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> Stream:
    """30 subjects for 2 h, 10 of them walking straight into a zone, with their victims'
    OwnTracks phones."""
    return make_stream(tmp_path_factory.mktemp("stream"), seed=SEED, subjects=30, duration="2h")


def test_split_keeps_each_subjects_zones_and_names_the_rest_elsewhere(stream: Stream) -> None:
    zs = load(stream.zones, stream.subjects)
    parts = [Shard(i, 3).split(zs) for i in range(3)]
    assert sorted(s.id for p in parts for s in p.subjects) == sorted(s.id for s in zs.subjects)
    assert sorted(z.id for p in parts for z in p.zones) == sorted(z.id for z in zs.zones)
    every = {d for s in zs.subjects for d in (*s.tags, *(p.device for p in s.protected))}
    for p in parts:
        mine = {s.id for s in p.subjects}
        assert all(z.subject in mine for z in p.zones)
        tags, prot = devices(p)
        assert set(tags) | set(prot) | p.elsewhere == every
        assert not (set(tags) | set(prot)) & p.elsewhere
        assert p.gateways == zs.gateways


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def _per_subject(lines: list[bytes]) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = collections.defaultdict(list)
    for b in lines:
        out[json.loads(b)["subject"]].append(b)
    return dict(out)


@pytest.mark.parametrize("n", [2, 3])
def test_shard_replays_together_give_one_engines_records(
    stream: Stream, tmp_path: Path, n: int
) -> None:
    """`tagwatch replay --shard i/N` for every i: each subject's alert records are byte for
    byte the ones one engine writes, none twice, and no shard dead-letters another's input."""
    whole = stream.replay.parent / "reference.jsonl"
    parts: list[bytes] = []
    for i in range(n):
        out = tmp_path / f"shard-{i}.jsonl"
        r = _cli("replay", str(stream.replay), "--zones", str(stream.zones), "--subjects",
                 str(stream.subjects), "--out", str(out), "--shard", f"{i}/{n}")  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert "0 dead letters" in r.stderr, r.stderr
        got = out.read_bytes().splitlines()
        assert got, f"shard {i}/{n} decided nothing: pick a stream with more subjects"
        parts += got
    assert _per_subject(parts) == _per_subject(whole.read_bytes().splitlines())


def test_a_bad_shard_is_refused_by_the_cli(stream: Stream) -> None:
    r = _cli("serve", "--zones", str(stream.zones), "--subjects", str(stream.subjects),
             "--shard", "2/2")  # fmt: skip
    assert r.returncode == 2 and "0 <= i < N" in r.stderr, r.stderr


# -- live: two shards on one mosquitto -----------------------------------------------------


def _key(stream: Stream) -> Path:
    """The deployment's one signing key (a URL's default would be in the working folder)."""
    return stream.zones.parent.parent / "shards.key"


def _shards(
    stack: ExitStack, broker: MosquittoProcess, stream: Stream, db: str, n: int
) -> tuple[list[EngineProcess], list[Path | str]]:
    """n shard engines given the same --db (each keeps its store beside it: a schema of
    its own on PostgreSQL, a file of its own for SQLite); their stores' targets."""
    engines = []
    run = Path(tempfile.mkdtemp(prefix="shards-", dir=stream.zones.parent.parent))
    key = _key(stream)
    for i in range(n):
        eng = EngineProcess(broker.host, broker.port, stream.zones, stream.subjects,
                            run / f"shard-{i}.db",
                            extra_args=["--shard", f"{i}/{n}", "--db", db, "--key", str(key)])  # fmt: skip
        stack.push(eng.__exit__)
        eng.start()
        engines.append(eng)
    for i, eng in enumerate(engines):
        try:
            asyncio.run(wait_online(broker.host, broker.port, 60.0,
                                    topics.status(Shard(i, n).label)))  # fmt: skip
        except TimeoutError:
            raise AssertionError(
                f"shard {i} never came online:\n{eng.log_text()[-3000:]}"
            ) from None
    targets = [shard_target(db, i, n) for i in range(n)]
    return engines, [t if "://" in t else Path(t) for t in targets]


@pytest.mark.mqtt
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_two_shards_decide_what_one_engine_does_and_survive_kill_9(
    mosquitto_persistent: MosquittoProcess, stream: Stream, tmp_path: Path, store_target: str
) -> None:
    """Two shards on one --db (SQLite: a file each; PostgreSQL: a schema each), the fleet's
    stream published at 600 messages/s; shard 1 is SIGKILLed twice mid-stream and
    restarted. Then: nothing the broker acknowledged is missing from the shards' ledgers,
    every breach of the one-engine reference is opened exactly once, no record twice, none
    extra; each shard's ledger holds only its own subjects' devices; each announced its own
    retained status and signed its own chain; on PostgreSQL `tagwatch alerts` on the bare
    URL lists both shards' alerts."""
    n = 2
    rng = random.Random(SEED)
    zs = load(stream.zones, stream.subjects)
    with ExitStack() as stack:
        engines, dbs = _shards(stack, mosquitto_persistent, stream, store_target, n)
        pub = stack.enter_context(StreamPublisher(mosquitto_persistent.host,
                                                  mosquitto_persistent.port, stream.messages,
                                                  rate=600.0))  # fmt: skip
        kills = []
        for frac in (0.3, 0.65):
            pub.wait_sent(int(len(stream.messages) * frac), timeout=60)
            kills.append(pub.sent)
            engines[1].kill()
            time.sleep(rng.uniform(0.3, 1.5))
            engines[1].start()
        pub.wait_all_acked(90.0)
        cu = wait_caught_up(dbs, stream.keys, lambda: all(e.running for e in engines),
                            timeout=90.0, stall_s=15.0)  # fmt: skip
        statuses = [
            retained_status(
                mosquitto_persistent.host,
                mosquitto_persistent.port,
                topic=topics.status(Shard(i, n).label),
            )
            for i in range(n)
        ]
        rcs = [e.stop() for e in engines]
        broker = f"{mosquitto_persistent.host}:{mosquitto_persistent.port}"
        for i, db in enumerate(dbs):  # each shard signs its own chain, kept on its own topic
            cp = tmp_path / f"cp-{i}.json"
            r = _cli("checkpoint", "--broker", broker, "--shard", f"{i}/{n}", "--out", str(cp))
            assert r.returncode == 0, r.stderr
            trust = ["--key", f"{_key(stream)}.pub"]
            r = _cli("audit", "verify", "--db", str(db), "--checkpoint", str(cp), *trust)
            assert r.returncode == 0, r.stdout + r.stderr
            assert "signed" in r.stdout and "unsigned" not in r.stdout, r.stdout
            other = _cli("audit", "verify", "--db", str(dbs[1 - i]), "--checkpoint", str(cp),
                         *trust)  # fmt: skip
            assert other.returncode != 0, "a shard's checkpoint verified another shard's chain"
        if "://" in store_target:  # readers of the bare URL see every shard's alerts
            r = _cli("alerts", "--db", store_target)
            assert r.returncode == 0, r.stderr
            for db in dbs:  # current alerts of both shards, named by subject
                subjects = {row.alert.subject for row in alert_log_rows(db)}
                assert subjects and all(sid in r.stdout for sid in subjects), r.stdout[-2000:]
    out = judge("2 shards, kill -9", stream, pub, dbs, kills_at=kills)
    print("\n" + out.report())
    assert cu.complete, f"{cu.why}\n{engines[1].log_text()[-3000:]}"
    assert not out.failures, out.report()
    assert rcs == [0, 0]
    for i, db in enumerate(dbs):
        shard = Shard(i, n)
        keys = ledger_keys(db) or set()
        mine = {d for s in zs.subjects if shard.owns(s.id)
                for d in (*s.tags, *(p.device for p in s.protected))}  # fmt: skip
        assert keys and {d for d, _ in keys} <= mine, f"shard {i} decided others' devices"
        rows = alert_log_rows(db)
        assert rows and all(shard.owns(r.alert.subject) for r in rows)
        assert statuses[i] is not None and statuses[i]["state"] == "online", statuses[i]
    # the shard-less status topic is nobody's: no engine without --shard ran here
    assert retained_status(mosquitto_persistent.host, mosquitto_persistent.port) is None


@pytest.mark.mqtt
def test_a_store_of_another_layout_is_refused(
    mosquitto: MosquittoProcess, stream: Stream, tmp_path: Path
) -> None:
    """Shard 0 of 2 wrote tw.shard0.db; shard 0 of 3 would continue it (same file), but its
    subjects differ: refused, saying why. So is an engine without --shard on a shard's
    store."""
    db = str(tmp_path / "tw.db")
    with ExitStack() as stack:
        engines, dbs = _shards(stack, mosquitto, stream, db, 2)
        assert engines[0].stop() == 0
    broker = f"{mosquitto.host}:{mosquitto.port}"
    common = ["serve", "--broker", broker, "--zones", str(stream.zones), "--subjects",
              str(stream.subjects)]  # fmt: skip
    r = _cli(*common, "--db", db, "--shard", "0/3")
    assert r.returncode != 0
    assert "written by shard 0/2" in r.stderr and "started as shard 0/3" in r.stderr, r.stderr
    r = _cli(*common, "--db", str(dbs[0]))
    assert r.returncode != 0 and "started without --shard" in r.stderr, r.stderr


def _owned(shard: Shard, k: int, prefix: str = "S") -> list[str]:
    """The first `k` subject ids S1, S2, ... that `shard` owns."""
    return [sid for sid in (f"{prefix}{i}" for i in range(1, 1000)) if shard.owns(sid)][:k]


def _subjects_toml(ids: list[str]) -> str:
    return "".join(f'[[subjects]]\nid = "{s}"\ntags = ["T{s}"]\n\n' for s in ids)


def _strap_cut(tags: list[str]) -> list[tuple[str, bytes]]:
    t = time.time()
    return [(topics.event(tag), json.dumps({"seq": 1, "t": t, "event": "strap_open"}).encode())
            for tag in tags]  # fmt: skip


def _fixes(tag: str, seqs: range) -> list[tuple[str, bytes]]:
    now = time.time()
    return [(topics.fix(tag), json.dumps(fix(q, now - 30 + q * 0.01, 5000.0, 0.0)).encode())
            for q in seqs]  # fmt: skip


@pytest.mark.mqtt
@pytest.mark.timeout(120)
def test_a_shard_hears_its_own_tags_only_and_follows_a_reload(
    mosquitto: MosquittoProcess, tmp_path: Path
) -> None:
    """Shard 0 of 2 with A (its own) and B (shard 1's): fixes from A's tag reach its ledger,
    B's and an unknown C's never reach it at all (not even as dead letters: it did not
    subscribe to them). SIGHUP adding C (shard 0's) subscribes to C's tag; SIGHUP removing A
    unsubscribes A's (A's fixes would otherwise be dead letters: an unknown device).
    Events: its priority lane hears every tag's (one filter), and keeps B's strap cut out
    of its ledger; of two unknown tags' events, it dead-letters the one whose id it owns
    by hash (shard 1 would the other's)."""
    shard = Shard(0, 2)
    a, c = _owned(shard, 2)
    (b,) = _owned(Shard(1, 2), 1)
    zones, subjects = write_world(tmp_path, features=[{
        "type": "Feature", "properties": {"id": "ZB", "subject": b, "kind": "exclusion"},
        "geometry": {"type": "Polygon", "coordinates": [square(100.0)]},
    }], subjects_toml=_subjects_toml([a, b]))  # fmt: skip
    base = str(tmp_path / "s0.db")
    db = Path(shard_target(base, 0, 2))  # where shard 0 keeps its store
    host, port = mosquitto.host, mosquitto.port
    x0 = next(f"X{i}" for i in range(1000) if shard.owns(f"X{i}"))  # unknown tags: by hash
    x1 = next(f"X{i}" for i in range(1000) if not shard.owns(f"X{i}"))

    def devices_in_ledger(want: set[str]) -> set[str]:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            got = {d for d, _ in ledger_keys(db) or set()}
            if want <= got:
                return got
            time.sleep(0.2)
        raise AssertionError(f"ledger has {got}, not {want}:\n{eng.log_text()[-2000:]}")

    def reload(ids: list[str]) -> None:
        subjects.write_text(_subjects_toml(ids))
        start = len(eng.log_text())
        assert eng.proc is not None
        eng.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while "configuration reloaded" not in eng.log_text()[start:]:
            assert time.monotonic() < deadline, eng.log_text()[-2000:]
            time.sleep(0.1)

    extra = ["--shard", "0/2", "--db", base]
    with EngineProcess(host, port, zones, subjects, db, extra_args=extra) as eng:
        asyncio.run(wait_online(host, port, 60.0, topics.status(shard.label)))
        asyncio.run(publish(host, port, _fixes(f"T{b}", range(1, 4)) + _fixes(f"T{c}", range(1, 4))
                            + _strap_cut([f"T{b}", x0, x1]) + _fixes(f"T{a}", range(1, 4))))  # fmt: skip
        assert devices_in_ledger({f"T{a}"}) == {f"T{a}"}
        deadline = time.monotonic() + 20
        while not dead_letter_reasons(db):
            assert time.monotonic() < deadline, eng.log_text()[-2000:]
            time.sleep(0.2)
        (reason,) = dead_letter_reasons(db)
        assert x0 in reason and "unknown" in reason, reason
        reload([a, b, c])
        asyncio.run(publish(host, port, _fixes(f"T{c}", range(4, 7))))
        assert devices_in_ledger({f"T{a}", f"T{c}"}) == {f"T{a}", f"T{c}"}
        reload([b, c])
        asyncio.run(
            publish(host, port, _fixes(f"T{a}", range(4, 7)) + _fixes(f"T{c}", range(7, 9)))
        )
        keys = ledger_keys(db) or set()
        deadline = time.monotonic() + 20
        while (f"T{c}", 8) not in keys:
            assert time.monotonic() < deadline, eng.log_text()[-2000:]
            time.sleep(0.2)
            keys = ledger_keys(db) or set()
        time.sleep(1.0)  # A's fixes, had they come, were published before C's 8
        assert eng.stop() == 0
    assert {q for d, q in ledger_keys(db) or set() if d == f"T{a}"} == {1, 2, 3}
    assert {d for d, _ in ledger_keys(db) or set()} == {f"T{a}", f"T{c}"}
    assert sum(dead_letter_reasons(db).values()) == 1, dead_letter_reasons(db)


def test_shards_starting_together_share_one_signing_key(tmp_path: Path) -> None:
    """Several processes creating the deployment's key at once all end with the same one."""
    import multiprocessing

    from engine.store.signing import load_or_create_key

    key = tmp_path / "keys" / "tagwatch.key"
    with multiprocessing.Pool(4) as pool:
        raws = pool.map(_key_raw, [str(key)] * 16)
    assert len(set(raws)) == 1
    assert _key_raw(str(key)) == raws[0] and load_or_create_key(key) is not None
    assert not [p for p in key.parent.iterdir() if p.name.endswith(".new")]


def _key_raw(path: str) -> bytes:
    from cryptography.hazmat.primitives import serialization

    from engine.store.signing import load_or_create_key

    return (
        load_or_create_key(path)
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )


def _dynsec(path: Path, password: str, engine_may_subscribe: list[str]) -> None:
    """A mosquitto dynamic-security file: anonymous clients may do anything; the engine's
    users (a shard's and its lane's) may subscribe to `engine_may_subscribe` only (a broker
    whose ACL checks SUBSCRIBE, as mosquitto's own ACL file does not)."""
    import base64
    import hashlib as hl
    import os

    salt = os.urandom(12)
    pw = base64.b64encode(hl.pbkdf2_hmac("sha512", password.encode(), salt, 101)).decode()
    everything = [{"acltype": kind, "topic": "#", "allow": True} for kind in
                  ("publishClientSend", "publishClientReceive", "subscribePattern",
                   "unsubscribePattern")]  # fmt: skip
    engine = [*everything[:2], *({"acltype": "subscribePattern", "topic": t, "allow": True}
                                 for t in engine_may_subscribe)]  # fmt: skip
    users = [{"username": u, "password": pw, "salt": base64.b64encode(salt).decode(),
              "iterations": 101, "roles": [{"rolename": "engine"}]}
             for u in ("engine-0-of-2", "engine-0-of-2-urgent")]  # fmt: skip
    path.write_text(json.dumps({
        "clients": users, "groups": [{"groupname": "anon", "roles": [{"rolename": "any"}]}],
        "anonymousGroup": "anon",
        "roles": [{"rolename": "any", "acls": everything}, {"rolename": "engine", "acls": engine}],
        "defaultACLAccess": {"publishClientSend": False, "publishClientReceive": True,
                             "subscribe": False, "unsubscribe": True},
    }))  # fmt: skip


@pytest.mark.mqtt
@pytest.mark.timeout(120)
def test_a_broker_refusing_a_tags_wildcard_gets_its_topics_and_a_refusal_is_in_the_status(
    mosquitto_path: str, tmp_path: Path
) -> None:
    """A shard subscribes to one filter per tag (`tags/{tag}/+`). A broker whose ACL checks
    SUBSCRIBE (mosquitto's dynamic-security plugin) and allows only the tag topics one by
    one refuses it: the shard subscribes to the tag's fix, fixes and event instead, and a
    walk-in still alerts. The gateway filter it may not have at all: the shard's status
    says so, naming the filter, instead of the shard silently never hearing a gateway."""
    plugin = Path("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so")
    if not plugin.exists():
        pytest.skip("mosquitto's dynamic-security plugin is not installed")
    shard = Shard(0, 2)
    (a,) = _owned(shard, 1)
    zones, subjects = write_world(tmp_path, features=[{
        "type": "Feature", "properties": {"id": "ZA", "subject": a, "kind": "exclusion"},
        "geometry": {"type": "Polygon", "coordinates": [square(100.0)]},
    }], subjects_toml=_subjects_toml([a]))  # fmt: skip
    allowed = [f"{topics.TAGS}/+/{k}" for k in topics.TAG_KINDS]
    _dynsec(tmp_path / "dynsec.json", "s3cret", allowed)
    (tmp_path / "pw").write_text("s3cret\n")
    broker = MosquittoProcess(workdir=tmp_path / "mosquitto", executable=mosquitto_path,
                              extra_config=[f"plugin {plugin}",
                                            f"plugin_opt_config_file {tmp_path / 'dynsec.json'}"])  # fmt: skip
    base = str(tmp_path / "s.db")
    db = Path(shard_target(base, 0, 2))
    extra = ["--shard", "0/2", "--db", base, "--username", "engine",
             "--password-file", str(tmp_path / "pw")]  # fmt: skip
    with broker, EngineProcess(broker.host, broker.port, zones, subjects, db,
                               extra_args=extra) as eng:  # fmt: skip
        status_topic = topics.status(shard.label)
        deadline = time.monotonic() + 60
        status = None
        while not (status and status.get("state") == "degraded"):
            assert time.monotonic() < deadline, (status, eng.log_text()[-3000:])
            status = retained_status(broker.host, broker.port, topic=status_topic)
        assert status["reason"].startswith(  # the tags' filters were all taken one by one
            "the broker refused 1 subscription(s), e.g. tagwatch/v1/gateway/+/fixes (reason 0x87)"
        ), status
        now = time.time()
        walk = [(topics.fix(f"T{a}"), json.dumps(fix(q, now - 30 + q, 300.0 - 100.0 * q, 0.0)).encode())
                for q in range(1, 5)]  # fmt: skip
        asyncio.run(publish(broker.host, broker.port, walk))
        deadline = time.monotonic() + 30
        while not alert_log_rows(db):
            assert time.monotonic() < deadline, eng.log_text()[-3000:]
            time.sleep(0.2)
        assert eng.stop() == 0
        log = eng.log_text()
    assert "subscribing to each of their topics instead" in log, log[-3000:]
