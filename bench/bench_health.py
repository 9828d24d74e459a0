"""Device-health benchmarks.

    python -m pytest bench/bench_health.py --benchmark-only -s -p no:cacheprovider

`test_tamper_latency`: a real mosquitto and `tagwatch serve` as a subprocess, a fleet of
tags publishing fixes in the background (default 1000 fixes/s), and tamper events
published one at a time on other tags: event published -> tamper alert received by a
subscriber, against the bare broker round trip (publish -> receive, no engine) in the same
run. Target: under 1 s (DESIGN.md section 4), p99."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from pathlib import Path

import aiomqtt
import pytest

from engine.broker.process import MosquittoProcess, find_mosquitto
from tests.helpers import EngineProcess, fix, wait_online, write_world

N_EVENTS = int(os.environ.get("TAGWATCH_BENCH_TAMPER_EVENTS", "60"))
LOAD_FPS = float(os.environ.get("TAGWATCH_BENCH_LOAD_FPS", "1000"))
N_LOAD_TAGS = 500


def _subjects(n: int) -> str:
    return "".join(f'[[subjects]]\nid = "S{i}"\ntags = ["T{i}"]\n\n' for i in range(n))


async def _round_trip(host: str, port: int, n: int) -> list[float]:
    """Bare broker: publish on one client, receive on another."""
    out: list[float] = []
    async with aiomqtt.Client(host, port) as sub, aiomqtt.Client(host, port) as pub:
        await sub.subscribe("bench/rt", qos=1)
        it = sub.messages.__aiter__()
        for _ in range(n):
            t0 = time.monotonic()
            await pub.publish("bench/rt", b"x", qos=1)
            await asyncio.wait_for(it.__anext__(), 10)
            out.append(time.monotonic() - t0)
    return out


async def _tamper_latency(host: str, port: int, n_tags: int) -> list[float]:
    stop = asyncio.Event()

    async def load() -> None:
        t = time.time() - 3600.0
        seq = 0
        async with aiomqtt.Client(host, port) as c:
            while not stop.is_set():
                t0 = time.monotonic()
                burst = max(1, int(LOAD_FPS / 20))
                for k in range(burst):
                    tag = (seq + k) % N_LOAD_TAGS
                    payload = json.dumps(fix(seq // N_LOAD_TAGS, t, 3000.0 + tag, 0.0))
                    await c.publish(f"tagwatch/v1/tags/T{tag}/fix", payload, qos=1)
                seq += burst
                t += 0.05
                await asyncio.sleep(max(0.0, 0.05 - (time.monotonic() - t0)))

    lat: list[float] = []
    async with aiomqtt.Client(host, port) as sub, aiomqtt.Client(host, port) as pub:
        await sub.subscribe("tagwatch/v1/alerts/+", qos=1)
        await wait_online(host, port)
        loader = asyncio.create_task(load())
        await asyncio.sleep(2.0)  # the engine is busy with the fleet
        it = sub.messages.__aiter__()
        for i in range(N_EVENTS):
            tag = N_LOAD_TAGS + i
            ev = {"seq": 0, "t": time.time(), "event": "strap_open"}
            t0 = time.monotonic()
            await pub.publish(f"tagwatch/v1/tags/T{tag}/event", json.dumps(ev), qos=1)
            while True:
                m = await asyncio.wait_for(it.__anext__(), 30)
                assert isinstance(m.payload, bytes)
                a = json.loads(m.payload)
                if a["kind"] == "tamper" and a["tag"] == f"T{tag}":
                    lat.append(time.monotonic() - t0)
                    break
            await asyncio.sleep(0.05)
        stop.set()
        await loader
    assert n_tags >= N_LOAD_TAGS + N_EVENTS
    return lat


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def test_tamper_latency(benchmark, tmp_path: Path, record_property) -> None:  # type: ignore[no-untyped-def]
    exe = find_mosquitto()
    if exe is None:
        pytest.skip("mosquitto is not installed")
    n_tags = N_LOAD_TAGS + N_EVENTS
    zones, subjects = write_world(tmp_path, subjects_toml=_subjects(n_tags))
    with MosquittoProcess(workdir=tmp_path / "mq", executable=exe) as mq:
        rt = asyncio.run(_round_trip(mq.host, mq.port, 50))
        with EngineProcess(mq.host, mq.port, zones, subjects, tmp_path / "tw.db") as eng:
            lat = benchmark.pedantic(
                lambda: asyncio.run(_tamper_latency(mq.host, mq.port, n_tags)),
                rounds=1,
                iterations=1,
            )
            assert eng.stop() == 0
    p50, p99, worst = statistics.median(lat), _pct(lat, 0.99), max(lat)
    base = statistics.median(rt)
    line = (
        f"tamper event -> alert under {LOAD_FPS:.0f} fixes/s: p50 {p50 * 1000:.1f} ms, "
        f"p99 {p99 * 1000:.1f} ms, max {worst * 1000:.1f} ms over {len(lat)} events; "
        f"bare broker round trip p50 {base * 1000:.2f} ms (x{p50 / base:.1f})"
    )
    print("\n" + line)
    record_property("bench_summary", line)
    assert p99 < 1.0, line


DAY_SEED = 20261123
DAY_SUBJECTS = int(os.environ.get("TAGWATCH_BENCH_HEALTH_SUBJECTS", "200"))


def test_health_day(benchmark, tmp_path: Path, record_property) -> None:  # type: ignore[no-untyped-def]
    """A simulated 24-hour day for 200 subjects with device health on, replayed through
    the engine and scored against its truth beside the naive per-record rules."""
    from bench.healthscore import health_table, naive_health, score_health
    from devices.health.drawn import HealthConfig
    from devices.sensing.noise import URBAN
    from devices.sim.fleet import simulate
    from devices.sim.output import write_run
    from devices.world.city import build_world
    from engine.replay import replay
    from engine.wire.alerts import decode_alert
    from zones.load import load

    run = simulate(
        build_world(DAY_SEED, DAY_SUBJECTS),
        duration_s=86400.0,
        health=HealthConfig(),
        noise=URBAN,  # correlated 5-30 m error: a city, not a test range
    )
    paths = write_run(run, tmp_path)
    zs = load(paths["zones"], paths["subjects"])
    out = tmp_path / "alerts.jsonl"

    def go() -> None:
        with out.open("wb") as fh:
            replay(paths["replay"], zs, fh, progress=False)

    t0 = time.monotonic()
    benchmark.pedantic(go, rounds=1, iterations=1)
    took = time.monotonic() - t0
    alerts = [decode_alert(x) for x in out.read_bytes().splitlines()]
    truth = [json.loads(x) for x in paths["truth"].read_text().splitlines()]
    lines = [json.loads(x) for x in paths["replay"].read_text().splitlines()]
    engine = score_health(alerts, truth)
    naive = score_health(naive_health(lines), truth)
    n_lines = len(lines)
    print(f"\n{run.summary()}\n{n_lines} replay lines in {took:.1f} s "
          f"({n_lines / took:,.0f} lines/s)\n\nEngine:\n{health_table(engine)}\n\n"
          f"Naive per-record rules:\n{health_table(naive)}")  # fmt: skip
    e, nv = engine["all"], naive["all"]
    line = (
        f"health day ({DAY_SUBJECTS} subjects, 24 h): engine missed {e.missed} spurious "
        f"{e.spurious} dup {e.duplicates} of {e.true}; naive missed {nv.missed} spurious "
        f"{nv.spurious} dup {nv.duplicates}"
    )
    record_property("bench_summary", line)
    assert (e.missed, e.spurious, e.duplicates) == (0, 0, 0), line
