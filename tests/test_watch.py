"""`tagwatch watch` as a monitor runs it (a subprocess of the CLI) beside a real engine and
mosquitto: it shows the open alerts when it starts (from the engine's store, read-only),
lives through a broker restart, and keeps a persistent session, so an alert raised while
the console was away is shown when it is back."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import pytest

from engine.broker.process import MosquittoProcess
from engine.store.sqlite import SqliteStore
from engine.wire.alerts import Alert
from tests.helpers import EngineProcess, fix, publish, wait_online, write_world

pytestmark = [pytest.mark.mqtt, pytest.mark.timeout(150)]

FIX = "tagwatch/v1/tags/T1/fix"
# Outside, in (an episode opens), out long enough to close it, in again (a second episode)
TRACK = [(-600, 0), (-400, 0), (0, 0), (5, 0), (300, 0), (450, 0), (600, 0), (750, 0)]
AGAIN = [(0, 0), (5, 0), (-5, 0)]


def _msgs(t0: float, pts: list[tuple[int, int]], seq0: int = 0) -> list[tuple[str, bytes]]:
    return [
        (FIX, json.dumps(fix(seq0 + i, t0 + 60 * (seq0 + i), dx, dy)).encode())
        for i, (dx, dy) in enumerate(pts)
    ]


class Watch:
    """`tagwatch watch` as a subprocess; its stdout and stderr lines collected as they come."""

    def __init__(self, broker: MosquittoProcess, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine.cli", "watch", "--broker", broker.url, *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        self.out: list[str] = []
        self.err: list[str] = []
        for stream, into in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._read, args=(stream, into), daemon=True).start()

    @staticmethod
    def _read(stream: IO[bytes] | None, into: list[str]) -> None:
        assert stream is not None
        for line in stream:
            into.append(line.decode(errors="replace").rstrip("\n"))

    def wait(self, lines: list[str], text: str, n: int = 1, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while sum(text in ln for ln in lines) < n:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(
                    f"watch: no {n} x {text!r} (exit {self.proc.poll()}); stdout:\n"
                    + "\n".join(self.out) + "\nstderr:\n" + "\n".join(self.err[-30:])
                )  # fmt: skip
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(10)


def _breaches(db: Path, state: str | None = None) -> list[Alert]:
    with SqliteStore(db, read_only=True) as st:
        return [a for a in st.current_alerts(state) if a.kind == "zone_breach"]


def _until(pred: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_watch_shows_open_alerts_survives_a_broker_restart_and_catches_up(
    mosquitto_persistent: MosquittoProcess, tmp_path: Path
) -> None:
    broker = mosquitto_persistent
    zones, subjects = write_world(tmp_path)
    db = tmp_path / "tw.db"
    t0 = time.time() - 3600
    with EngineProcess(broker.host, broker.port, zones, subjects, db):
        asyncio.run(wait_online(broker.host, broker.port))
        asyncio.run(publish(broker.host, broker.port, _msgs(t0, TRACK[:4])))
        _until(lambda: _breaches(db, "open"))
        first = _breaches(db, "open")[0]

        # 1. started after the breach opened: it shows it, from the store
        watch = Watch(broker, "--client-id", "console-1", "--db", str(db))
        try:
            watch.wait(watch.out, first.id)
            watch.wait(watch.err, "connected to")
            # 2. the broker restarts under it: it reconnects and goes on
            broker.restart()
            watch.wait(watch.err, "reconnecting")
            watch.wait(watch.err, "connected to", n=2)
            asyncio.run(wait_online(broker.host, broker.port))
            asyncio.run(publish(broker.host, broker.port, _msgs(t0, TRACK[4:], 4)))
            watch.wait(watch.out, "closed")
        finally:
            watch.stop()
        assert sum(first.id in ln for ln in watch.out) == 2  # open (from the store), closed

        # 3. away (stopped): a new episode opens meanwhile ...
        asyncio.run(publish(broker.host, broker.port, _msgs(t0, AGAIN, len(TRACK))))
        _until(lambda: len(_breaches(db, "open")) == 1)
        second = _breaches(db, "open")[0]
        assert second.id != first.id
        # ... and the same console, back (no --db), is given it by its session
        back = Watch(broker, "--client-id", "console-1")
        try:
            back.wait(back.out, second.id)
        finally:
            back.stop()
