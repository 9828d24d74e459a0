"""`tagwatch demo`: a broker, the engine (as its own process) and a simulated fleet, with
alerts printed live as monitors would see them. Ctrl-C stops everything it started."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiomqtt

from engine.cli.console import AlertPrinter
from engine.errors import BrokerError
from engine.mqtt.serve import STATUS_TOPIC
from engine.wire.alerts import decode_alert


def _say(msg: str) -> None:
    print(f"[demo] {msg}", file=sys.stderr, flush=True)


def _start_broker(prefer: str):  # type: ignore[no-untyped-def]
    from engine.broker.process import ensure_mosquitto, start_broker

    if prefer in ("auto", "mosquitto"):
        ensure_mosquitto(install=True)
    try:
        return start_broker(prefer=prefer)
    except BrokerError as e:
        if prefer == "auto":
            _say(f"mosquitto failed to start ({e}); using the embedded broker")
            return start_broker(prefer="embedded")
        raise


async def _wait_online(host: str, port: int, timeout: float) -> None:
    async def wait() -> None:
        async with aiomqtt.Client(host, port) as client:
            await client.subscribe(STATUS_TOPIC, qos=1)
            async for msg in client.messages:
                if isinstance(msg.payload, bytes) and b'"online"' in msg.payload:
                    return

    await asyncio.wait_for(wait(), timeout)


async def _print_alerts(host: str, port: int, counts: dict[str, int]) -> None:
    printer = AlertPrinter()
    while True:
        try:
            async with aiomqtt.Client(host, port) as client:
                await client.subscribe("tagwatch/v1/alerts/+", qos=1)
                async for msg in client.messages:
                    if not isinstance(msg.payload, bytes):
                        continue
                    with contextlib.suppress(ValueError):
                        a = decode_alert(msg.payload)
                        printer.print(a)
                        key = f"{a.kind} {a.state}"
                        counts[key] = counts.get(key, 0) + 1
        except aiomqtt.MqttError:
            await asyncio.sleep(0.5)


def run_demo(
    *, subjects: int, seed: int, broker: str, run_dir: Path, duration_s: float = 0.0
) -> int:
    from devices.scenarios.presets import demo_scenario
    from devices.sim.live import run_live

    run_dir.mkdir(parents=True, exist_ok=True)
    db = run_dir / "tagwatch.db"
    for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        p.unlink(missing_ok=True)  # each demo starts from a clean store
    b = _start_broker(broker)
    _say(f"broker: {b.kind} on {b.host}:{b.port}")
    world, run = demo_scenario(seed=seed, n_subjects=subjects)
    world.write(run_dir)
    _say(f"world: {subjects} subjects, zones in {run_dir / 'zones.geojson'}")
    log_path = run_dir / "engine.log"
    engine = subprocess.Popen(
        [
            sys.executable, "-m", "engine.cli", "serve",
            "--broker", f"{b.host}:{b.port}",
            "--zones", str(run_dir / "zones.geojson"),
            "--subjects", str(run_dir / "subjects.toml"),
            "--db", str(db),
        ],
        stdout=subprocess.DEVNULL,
        stderr=log_path.open("wb"),
        start_new_session=True,  # Ctrl-C goes to us; we stop the engine ourselves
    )  # fmt: skip
    _say(f"engine: pid {engine.pid}, log {log_path}, store {db}")
    counts: dict[str, int] = {}
    started = time.monotonic()

    async def main() -> None:
        try:
            await _wait_online(b.host, b.port, 60.0)
        except TimeoutError:
            raise BrokerError(f"the engine did not come online; see {log_path}") from None
        _say("engine online; fleet starting. Alerts appear below as they open and close.")
        _say(f"(watch from another terminal: tagwatch watch --broker {b.host}:{b.port})")
        printer = asyncio.create_task(_print_alerts(b.host, b.port, counts))
        fleet = asyncio.create_task(run_live(run, b.host, b.port, warp=1.0))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        waiters = [asyncio.create_task(stop.wait()), fleet]
        await asyncio.wait(waiters, timeout=duration_s or None, return_when="FIRST_COMPLETED")
        if fleet.done() and not stop.is_set() and not duration_s:
            _say("fleet finished its run; Ctrl-C to stop")
            await stop.wait()
        for t in (fleet, printer, waiters[0]):
            t.cancel()
        await asyncio.gather(fleet, printer, waiters[0], return_exceptions=True)

    try:
        asyncio.run(main())
    finally:
        _say("stopping engine and broker")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(engine.pid, signal.SIGTERM)
        try:
            engine.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(engine.pid, signal.SIGKILL)
            engine.wait()
        b.stop()
        elapsed = time.monotonic() - started
        summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"
        _say(f"ran {elapsed:.0f} s; alert records seen: {summary}")
        _say(f"all alerts are in {db}: tagwatch alerts --db {db}")
    return 0
