"""Shared test helpers: tiny worlds, metre offsets, and a real `tagwatch serve` process."""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import aiomqtt

from engine.wire.alerts import Alert, decode_alert

LAT0, LON0 = 51.5, -0.12
M_PER_DEG = 6371008.8 * math.pi / 180.0


def offset(dx_m: float, dy_m: float, lat0: float = LAT0, lon0: float = LON0) -> tuple[float, float]:
    """(lat, lon) of the point dx metres east and dy metres north of (lat0, lon0)."""
    lat = lat0 + dy_m / M_PER_DEG
    lon = lon0 + dx_m / (M_PER_DEG * math.cos(math.radians(lat0)))
    return lat, lon


def square(half_m: float, cx: float = 0.0, cy: float = 0.0) -> list[list[float]]:
    ring = [(cx - half_m, cy - half_m), (cx + half_m, cy - half_m), (cx + half_m, cy + half_m),
            (cx - half_m, cy + half_m), (cx - half_m, cy - half_m)]  # fmt: skip
    return [[offset(x, y)[1], offset(x, y)[0]] for x, y in ring]


def write_world(
    d: Path,
    features: Iterable[dict[str, Any]] | None = None,
    subjects_toml: str | None = None,
) -> tuple[Path, Path]:
    """Write zones.geojson and subjects.toml; default: S1 wears T1, one 100 m-half square
    exclusion zone Z1 centred on (LAT0, LON0)."""
    if features is None:
        features = [
            {
                "type": "Feature",
                "properties": {"id": "Z1", "subject": "S1", "kind": "exclusion"},
                "geometry": {"type": "Polygon", "coordinates": [square(100.0)]},
            }
        ]
    zones = d / "zones.geojson"
    zones.write_text(json.dumps({"type": "FeatureCollection", "features": list(features)}))
    subjects = d / "subjects.toml"
    subjects.write_text(subjects_toml or '[[subjects]]\nid = "S1"\ntags = ["T1"]\n')
    return zones, subjects


def fix(seq: int, t: float, dx: float, dy: float, acc: float = 5.0) -> dict[str, Any]:
    lat, lon = offset(dx, dy)
    return {"seq": seq, "t": t, "lat": lat, "lon": lon, "acc": acc}


class EngineProcess:
    """`tagwatch serve` as a real subprocess (the public entry point), stopped by SIGTERM."""

    def __init__(
        self, host: str, port: int, zones: Path, subjects: Path, db: Path | str,
        settings: Path | None = None, *, extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None, preexec_fn: Callable[[], None] | None = None,
        log_via_pipe: bool = False,
    ) -> None:  # fmt: skip
        """`extra_args` go after the usual ones; `env` is added to os.environ; `preexec_fn`
        runs in the child before exec (e.g. setrlimit). With `log_via_pipe` stderr goes
        through a pipe that this process copies to the log file, so the engine itself
        writes no log file (a file-size limit set on it then only hits its database).
        `db` a PostgreSQL URL: the log and the signing key go beside `zones`."""
        url = isinstance(db, str) and "://" in db
        self.log = zones.with_name("engine.log") if url else Path(db).with_suffix(".log")
        self.args = [
            sys.executable, "-m", "engine.cli", "serve", "--broker", f"{host}:{port}",
            "--zones", str(zones), "--subjects", str(subjects), "--db", str(db),
            "--stats-every", "1",
        ]  # fmt: skip
        if settings is not None:
            self.args += ["--settings", str(settings)]
        if url and "--key" not in extra_args:
            self.args += ["--key", str(zones.with_name("tagwatch.key"))]
        self.args += list(extra_args)
        self.env = dict(env or {})
        self.preexec_fn = preexec_fn
        self.log_via_pipe = log_via_pipe
        self.starts = 0  # how many times start() launched a process
        self.proc: subprocess.Popen[bytes] | None = None
        self._copier: threading.Thread | None = None

    def start(self) -> EngineProcess:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        if self.log_via_pipe:
            self.proc = subprocess.Popen(
                self.args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                start_new_session=True, env=env, preexec_fn=self.preexec_fn,
            )  # fmt: skip
            self._copier = threading.Thread(
                target=_copy_stream, args=(self.proc.stderr, self.log), daemon=True
            )
            self._copier.start()
        else:
            with self.log.open("ab") as err:
                self.proc = subprocess.Popen(
                    self.args, stdout=subprocess.DEVNULL, stderr=err,
                    start_new_session=True, env=env, preexec_fn=self.preexec_fn,
                )  # fmt: skip
        self.starts += 1
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> int:
        """SIGKILL without warning (a crash, the OOM killer, a power cut to the process)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._join_copier()
        return int(self.proc.returncode)

    def restart(self) -> EngineProcess:
        """Start again with the same arguments, database and log (appended); stops the
        running process first (SIGTERM)."""
        if self.running:
            self.stop()
        return self.start()

    def _join_copier(self) -> None:
        if self._copier is not None:
            self._copier.join(5.0)
            self._copier = None

    def stop(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"engine ignored SIGTERM; log:\n{self.log_text()}") from None
        self._join_copier()
        return int(self.proc.returncode)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def __enter__(self) -> EngineProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._join_copier()


def _copy_stream(src: IO[bytes] | None, path: Path) -> None:
    """Append everything read from `src` to `path` until EOF (the process exited)."""
    if src is None:
        return
    with path.open("ab") as out:
        while chunk := src.read1(65536):
            out.write(chunk)
            out.flush()
    src.close()


async def wait_online(
    host: str, port: int, timeout: float = 60.0, topic: str = "tagwatch/v1/engine/status"
) -> None:
    """Wait until the engine has (re)subscribed: it publishes a retained status (a
    shard's on its own `topic`)."""

    async def go() -> None:
        while True:
            try:
                async with aiomqtt.Client(host, port) as c:
                    await c.subscribe(topic, qos=1)
                    async for m in c.messages:
                        if isinstance(m.payload, bytes) and b'"online"' in m.payload:
                            return
            except aiomqtt.MqttError:
                await asyncio.sleep(0.2)

    await asyncio.wait_for(go(), timeout)


class AlertCollector:
    """Subscribes to all alert topics and keeps every record received."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.alerts: list[Alert] = []
        self.ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(self.host, self.port) as c:
                    await c.subscribe("tagwatch/v1/alerts/+", qos=1)
                    self.ready.set()
                    async for m in c.messages:
                        if isinstance(m.payload, bytes):
                            self.got(decode_alert(m.payload))
            except aiomqtt.MqttError:
                await asyncio.sleep(0.2)

    def got(self, alert: Alert) -> None:
        """One alert record received (subclasses may note more about it)."""
        self.alerts.append(alert)

    async def __aenter__(self) -> AlertCollector:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.ready.wait(), 30)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def wait_for(self, pred: Any, timeout: float = 30.0) -> list[Alert]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred(self.alerts):
                return self.alerts
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out; alerts so far: {self.alerts}")


async def publish(host: str, port: int, msgs: Iterable[tuple[str, bytes | str]]) -> None:
    async with aiomqtt.Client(host, port) as c:
        for topic, payload in msgs:
            await c.publish(topic, payload, qos=1)


def ledger_records(con: Any) -> list[tuple[str, int, str, bytes]]:
    """(device, seq, kind, line) of every fix and event a ledger holds, in ledger order,
    whether in rows of their own or in records rows (`ledger_rows`). `con`: the test's
    own connection (sqlite3, or engine.store.sql.open.connect for PostgreSQL)."""
    from engine.store.records.index import all_records

    out = []
    for line in all_records(con):
        d = json.loads(line)
        out.append((d["tag"], d["seq"], d.get("type", "fix"), bytes(line)))
    return out
