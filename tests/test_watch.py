"""`tagwatch watch` as a monitor runs it (a subprocess of the CLI) beside a real engine and
mosquitto: it shows the open alerts when it starts (from the engine's store, read-only),
lives through a broker restart, and keeps a persistent session, so an alert raised while
the console was away is shown when it is back."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
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


# --- the live board (`--live`: terminal codes forced, since the test's stdout is a pipe) ---

CSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
CRITICAL_S1 = '[[subjects]]\nid = "S1"\ntags = ["T1"]\nrisk = 3\n'  # a breach is critical


class LiveWatch:
    """`tagwatch watch --live` as a subprocess; its raw stdout kept as it comes."""

    def __init__(self, broker: MosquittoProcess, *args: str) -> None:
        env = {**os.environ, "TERM": "xterm-256color", "LINES": "40"}
        for name in ("NO_COLOR", "COLUMNS", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
            env.pop(name, None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine.cli", "watch", "--broker", broker.url,
             "--live", "--width", "200", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, env=env,
        )  # fmt: skip
        self.raw: list[bytes] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while chunk := self.proc.stdout.read1(65536):  # type: ignore[attr-defined]
            self.raw.append(chunk)

    def text(self) -> str:
        return b"".join(self.raw).decode(errors="replace")

    def frame(self) -> list[str]:
        """The last whole frame drawn: from the last status line on, terminal codes out."""
        plain = CSI.sub("", self.text()).replace("\a", "").replace("\r", "\n")
        lines = plain.split("\n")
        starts = [i for i, ln in enumerate(lines) if ln.startswith("tagwatch watch ")]
        return lines[starts[-1] :] if starts else []

    def wait(self, pred: Callable[[list[str]], bool], what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not pred(self.frame()):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.poll() is not None else ""  # type: ignore[union-attr]
                raise AssertionError(
                    f"watch --live: no {what} (exit {self.proc.poll()}); last frame:\n"
                    + "\n".join(self.frame()) + "\nstderr:\n" + err
                )  # fmt: skip
            time.sleep(0.05)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(10)


def _rows(frame: list[str], alert_id: str) -> list[str]:
    return [ln for ln in frame if alert_id in ln]


def test_live_board_one_row_per_alert_updated_in_place_through_a_broker_restart(
    mosquitto_persistent: MosquittoProcess, tmp_path: Path
) -> None:
    broker = mosquitto_persistent
    zones, subjects = write_world(tmp_path, subjects_toml=CRITICAL_S1)
    db = tmp_path / "tw.db"
    t0 = time.time() - 3600
    with EngineProcess(broker.host, broker.port, zones, subjects, db):
        asyncio.run(wait_online(broker.host, broker.port))
        watch = LiveWatch(broker, "--client-id", "console-live", "--db", str(db),
                          "--subjects", str(subjects))  # fmt: skip
        try:
            watch.wait(lambda f: any("broker connected" in ln for ln in f), "connection")
            watch.wait(lambda f: any("engine online" in ln for ln in f), "engine status")
            # a critical breach opens while the console watches: a row, and the bell
            asyncio.run(publish(broker.host, broker.port, _msgs(t0, TRACK[:4])))
            _until(lambda: _breaches(db, "open"))
            first = _breaches(db, "open")[0].id
            watch.wait(lambda f: bool(_rows(f, first)), "row for the first alert")
            assert "\a" in watch.text()
            # the broker restarts under it: the status line says so, then it is back
            broker.restart()
            watch.wait(lambda f: any("broker reconnecting" in ln for ln in f), "reconnecting")
            watch.wait(lambda f: any("broker connected" in ln for ln in f), "reconnection")
            asyncio.run(wait_online(broker.host, broker.port))
            # the episode closes, another opens: the closed row stays, in place, below
            asyncio.run(publish(broker.host, broker.port, _msgs(t0, TRACK[4:], 4)))
            watch.wait(lambda f: any("closed" in r for r in _rows(f, first)), "close")
            asyncio.run(publish(broker.host, broker.port, _msgs(t0, AGAIN, len(TRACK))))
            _until(lambda: len(_breaches(db, "open")) == 1)
            second = _breaches(db, "open")[0].id
            watch.wait(lambda f: bool(_rows(f, second)), "row for the second alert")
        finally:
            code = watch.stop()
        assert code == 0  # SIGTERM ends it cleanly: the last frame stays on the screen
        frame = watch.frame()
        (row1,), (row2,) = _rows(frame, first), _rows(frame, second)
        assert " closed " in row1 and " open " in row2 and "critical" in row2
        assert frame.index(row2) < frame.index(row1)  # open first
        assert re.search(r"open 1\s+acknowledged 0\s+closed 1", frame[0])
        with SqliteStore(db, read_only=True) as st:  # several records, one row
            assert sum(a.id == first for a in st.alert_log()) >= 2
