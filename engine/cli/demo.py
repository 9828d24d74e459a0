"""`tagwatch demo`: a broker, the engine (as its own process, with its console's HTTP API)
and a simulated fleet, with alerts printed live as monitors would see them, and a demo
login printed for the console. Ctrl-C stops everything it started."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from engine.broker.process import die_with_parent
from engine.cli.console import AlertPrinter
from engine.errors import BrokerError
from engine.mqtt.serve import BrokerAddress
from engine.mqtt.watch import alert_records, wait_online
from engine.store.sql import enginelock

PRIVATE = "mosquitto"  # --broker: start a private mosquitto; anything else is HOST:PORT
# Not the engine's usual id: on a broker you run, the demo must not take over the session
# (and the queued fixes) of a real engine.
CLIENT_ID = "tagwatch-demo"


CONSOLE_PORT = 8080  # the console's port when free (else any free one; printed)
DEMO_USER = "demo"


def _console_address() -> str:
    """127.0.0.1:8080 when it is free, else a free loopback port (another demo running)."""
    for port in (CONSOLE_PORT, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return f"127.0.0.1:{s.getsockname()[1]}"
    raise BrokerError("no free loopback port for the console")  # pragma: no cover


def _demo_login(db: Path) -> str:
    """A supervisor `demo` with a fresh random password in the demo's store: the password."""
    from engine.store.access.accounts import AccountStore
    from engine.store.access.credentials import hash_password

    password = secrets.token_urlsafe(12)
    with AccountStore(db) as store:
        store.add_user(DEMO_USER, "supervisor", None, hash_password(password))
    return password


def _say(msg: str) -> None:
    print(f"[demo] {msg}", file=sys.stderr, flush=True)


def _start_broker(broker: str) -> tuple[str, Callable[[], None]]:
    """The broker's HOST:PORT and how to stop it: a private mosquitto, or yours (no stop)."""
    from engine.broker.process import MosquittoProcess, find_mosquitto

    if broker != PRIVATE:
        _say(f"broker: yours at {broker} (the fleet and the engine publish there)")
        return broker, lambda: None
    if find_mosquitto() is None:
        raise BrokerError(
            "the demo needs mosquitto (an MQTT broker), which is not installed. Install it "
            "with `sudo apt-get install mosquitto`, or run `make demo` as root (it installs "
            "mosquitto first), or use a broker you already run: tagwatch demo --broker HOST:PORT"
        )
    proc = MosquittoProcess(die_with_parent=True)
    try:
        proc.start()
    except BrokerError:
        proc.cleanup()
        raise
    _say(f"broker: mosquitto on {proc.url}")
    return proc.url, proc.cleanup


async def _print_alerts(broker: str, counts: dict[str, int]) -> None:
    printer = AlertPrinter()
    async with contextlib.aclosing(alert_records(broker, reconnect_s=0.5)) as records:
        async for a in records:
            printer.print(a)
            key = f"{a.kind} {a.state}"
            counts[key] = counts.get(key, 0) + 1


def run_demo(
    *, subjects: int, seed: int, broker: str, run_dir: Path, duration_s: float = 0.0
) -> int:
    """Run the demo against `broker` ("mosquitto" to start one here, else HOST:PORT)."""
    from devices.scenarios.presets import demo_scenario
    from devices.sim.live import run_live

    run_dir.mkdir(parents=True, exist_ok=True)
    db = run_dir / "tagwatch.db"
    # An engine still serving this folder's store (another demo): say so, delete nothing
    enginelock.hold(str(db), 0.0).release()
    for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        p.unlink(missing_ok=True)  # each demo starts from a clean store
    url, stop_broker = _start_broker(broker)
    addr = BrokerAddress.parse(url)
    world, run = demo_scenario(seed=seed, n_subjects=subjects)
    world.write(run_dir)
    _say(f"world: {subjects} subjects, zones in {run_dir / 'zones.geojson'}")
    log_path = run_dir / "engine.log"
    password = _demo_login(db)
    http = _console_address()
    engine = subprocess.Popen(
        [
            sys.executable, "-m", "engine.cli", "serve",
            "--broker", url,
            "--zones", str(run_dir / "zones.geojson"),
            "--subjects", str(run_dir / "subjects.toml"),
            "--db", str(db),
            "--client-id", CLIENT_ID,
            "--http", http,
        ],
        stdout=subprocess.DEVNULL,
        stderr=log_path.open("wb"),
        start_new_session=True,  # Ctrl-C goes to us; we stop the engine ourselves
        preexec_fn=die_with_parent,  # ...and a demo killed with -9 takes the engine along
    )  # fmt: skip
    _say(f"engine: pid {engine.pid}, log {log_path}, store {db}")
    counts: dict[str, int] = {}
    started = time.monotonic()

    async def main() -> None:
        try:
            await wait_online(url, 60.0)
        except TimeoutError:
            raise BrokerError(f"the engine did not come online; see {log_path}") from None
        _say("engine online; fleet starting. Alerts appear below as they open and close.")
        _say(f"(watch from another terminal: tagwatch watch --broker {url})")
        _say(
            f"console: http://{http}/  login {DEMO_USER} / {password}  (open it in a browser:"
            " the live alert queue, maps and the workflow; /metrics and /healthz too)"
        )
        printer = asyncio.create_task(_print_alerts(url, counts))
        fleet = asyncio.create_task(run_live(run, addr.host, addr.port, warp=1.0))
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
        _say("stopping engine and broker" if broker == PRIVATE else "stopping engine")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(engine.pid, signal.SIGTERM)
        try:
            engine.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(engine.pid, signal.SIGKILL)
            engine.wait()
        stop_broker()
        elapsed = time.monotonic() - started
        summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"
        _say(f"ran {elapsed:.0f} s; alert records seen: {summary}")
        _say(f"all alerts are in {db}: tagwatch alerts --db {db}")
    return 0
