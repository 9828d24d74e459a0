"""The repo's broker config carries the durability settings the engine relies on, and a
real mosquitto accepts it."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from engine.broker.process import DURABLE_BROKER_OPTIONS, MosquittoProcess, free_port

CONF = Path(__file__).resolve().parent.parent / "deploy" / "mosquitto.conf"


def _lines(path: Path) -> list[str]:
    out = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if line:
            out.append(" ".join(line.split()))
    return out


def test_repo_config_has_every_durable_option() -> None:
    lines = _lines(CONF)
    for opt in DURABLE_BROKER_OPTIONS:
        assert opt in lines, f"deploy/mosquitto.conf lacks '{opt}'"
    assert "persistence true" in lines


@pytest.mark.mqtt
def test_mosquitto_runs_the_repo_config(tmp_path: Path, mosquitto_path: str) -> None:
    """The file as shipped, with only its port, paths and log moved into tmp_path: mosquitto
    refuses to start on an unknown, malformed or duplicated option."""
    port = free_port()
    text = CONF.read_text()
    text = text.replace("listener 1883 127.0.0.1", f"listener {port} 127.0.0.1")
    text = text.replace("/var/lib/mosquitto/", f"{tmp_path}/")
    text = text.replace("log_dest stderr", f"log_dest file {tmp_path}/log")
    if os.geteuid() == 0:
        text += "user root\n"
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(text)
    proc = subprocess.Popen([mosquitto_path, "-c", str(conf)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        assert proc.poll() is None, (tmp_path / "log").read_text(errors="replace")
    finally:
        proc.terminate()
        proc.wait(10)
    assert (tmp_path / "mosquitto.db").exists()  # persistence on: saved at shutdown


def test_test_brokers_get_the_durable_options(tmp_path: Path, mosquitto_path: str) -> None:
    conf = MosquittoProcess(workdir=tmp_path, executable=mosquitto_path, persistence=True)
    text = conf.config_text()
    for opt in DURABLE_BROKER_OPTIONS:
        assert opt in text
    assert text.count("max_queued_messages") == 1
    custom = MosquittoProcess(workdir=tmp_path, executable=mosquitto_path, max_queued_messages=5)
    assert "max_queued_messages 5" in custom.config_text()
    assert custom.config_text().count("max_queued_messages") == 1
