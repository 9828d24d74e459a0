"""`tagwatch demo` as a newcomer runs it: alerts show up within a minute, and Ctrl-C
stops the broker, the engine and the fleet with no stray processes."""

from __future__ import annotations

import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.broker import process
from engine.broker.process import MosquittoProcess, find_mosquitto
from engine.cli.main import main


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _run_demo_until_alerts(
    tmp_path: Path, broker: str, while_running: Callable[[str], None] | None = None
) -> tuple[list[str], str]:
    """Run the demo until an alert row appears, call `while_running` with what it has said
    on stderr so far, then Ctrl-C it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "demo", "--subjects", "20",
         "--broker", broker, "--run-dir", str(tmp_path / "demo")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        bufsize=0,  # unbuffered: a line read never leaves others in a buffer select misses
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    rows: list[str] = []
    said: list[str] = []
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, rows)
    sel.register(proc.stderr, selectors.EVENT_READ, said)
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline and not any(" open " in r for r in rows):
            for key, _ in sel.select(timeout=1.0):
                line = key.fileobj.readline().decode()  # type: ignore[union-attr]
                if line:
                    key.data.append(line)
            if proc.poll() is not None:
                break
        if while_running is not None and proc.poll() is None:
            while sel.select(timeout=1.0):  # what it said just before the row, too
                for key, _ in sel.select(timeout=0):
                    line = key.fileobj.readline().decode()  # type: ignore[union-attr]
                    if line:
                        key.data.append(line)
                if "console:" in "".join(said):
                    break
            while_running("".join(said))
        proc.send_signal(signal.SIGINT)  # what Ctrl-C does
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    rows += out.decode().splitlines()
    stderr = "".join(said) + err.decode()
    assert proc.returncode == 0, stderr
    return rows, stderr


def _check(rows: list[str], stderr: str, stopping: str = "stopping engine and broker") -> None:
    opened = [r for r in rows if re.search(r"\sopen\s+(critical|high|medium|low)\s", r)]
    assert opened, f"no alert within 90 s; stdout={rows!r}\nstderr={stderr}"
    pid = int(re.search(r"engine: pid (\d+)", stderr).group(1))  # type: ignore[union-attr]
    time.sleep(0.2)
    assert not _alive(pid), "the engine outlived the demo"
    assert stopping in stderr


def test_demo_without_mosquitto_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(process, "find_mosquitto", lambda: None)
    assert main(["demo", "--run-dir", str(tmp_path / "demo")]) == 2
    err = capsys.readouterr().err
    assert "the demo needs mosquitto (an MQTT broker), which is not installed" in err
    for advice in ("sudo apt-get install mosquitto", "`make demo` as root", "--broker HOST:PORT"):
        assert advice in err


@pytest.mark.parametrize("value", ["embedded", "auto", "localhost:", "host:port"])
def test_demo_broker_is_mosquitto_or_host_port(value: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--broker", value])
    assert exit_.value.code == 2


@pytest.mark.mqtt
@pytest.mark.timeout(150)
def test_demo_with_mosquitto(tmp_path: Path) -> None:
    if find_mosquitto() is None:
        pytest.fail("mosquitto missing") if os.environ.get("CI") else pytest.skip("no mosquitto")
    rows, stderr = _run_demo_until_alerts(tmp_path, "mosquitto")
    _check(rows, stderr)
    assert "broker: mosquitto" in stderr
    port = int(re.search(r"broker: mosquitto on [\d.]+:(\d+)", stderr).group(1))  # type: ignore[union-attr]
    with socket.socket() as s, pytest.raises(ConnectionRefusedError):
        s.connect(("127.0.0.1", port))  # the broker is gone too


@pytest.mark.mqtt
@pytest.mark.timeout(150)
def test_demo_with_a_running_broker(tmp_path: Path, mosquitto: MosquittoProcess) -> None:
    """Also: the console it starts takes the demo login it prints."""
    import httpx

    logins: list[tuple[int, int]] = []

    def log_in(said: str) -> None:
        m = re.search(r"console: (http://\S+)/  login (\S+) / (\S+)", said)
        assert m, said
        url, user, password = m.groups()
        with httpx.Client(base_url=url, timeout=10.0) as c:
            bad = c.post("/api/login", json={"username": user, "password": password + "x"})
            good = c.post("/api/login", json={"username": user, "password": password})
            logins.append((bad.status_code, good.status_code))

    rows, stderr = _run_demo_until_alerts(tmp_path, mosquitto.url, log_in)
    assert logins == [(401, 200)], stderr
    _check(rows, stderr, stopping="stopping engine")
    assert f"broker: yours at {mosquitto.url}" in stderr
    assert "stopping engine and broker" not in stderr
    assert mosquitto.running  # the demo leaves a broker it did not start alone


@pytest.mark.mqtt
@pytest.mark.timeout(120)
def test_a_demo_killed_with_sigkill_leaves_no_engine_or_broker(tmp_path: Path) -> None:
    """kill -9 of the demo runs none of its cleanup: the engine and the private broker it
    started must still go (Linux parent-death signal), not hold ports and sessions."""
    if find_mosquitto() is None:
        pytest.fail("mosquitto missing") if os.environ.get("CI") else pytest.skip("no mosquitto")
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "demo", "--subjects", "5",
         "--run-dir", str(tmp_path / "demo")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, bufsize=0,
    )  # fmt: skip
    assert proc.stderr is not None
    said = ""
    deadline = time.monotonic() + 60
    while "engine online" not in said and time.monotonic() < deadline:
        line = proc.stderr.readline().decode()
        if not line:
            break
        said += line
    engine_pid = int(re.search(r"engine: pid (\d+)", said).group(1))  # type: ignore[union-attr]
    port = int(re.search(r"broker: mosquitto on [\d.]+:(\d+)", said).group(1))  # type: ignore[union-attr]
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 15
    while _alive(engine_pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(engine_pid), "the engine outlived a demo killed with -9"
    time.sleep(0.5)
    with socket.socket() as s, pytest.raises(ConnectionRefusedError):
        s.connect(("127.0.0.1", port))  # the broker is gone too
