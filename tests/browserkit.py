"""What the console's browser tests share: Debian's chromium driven by Playwright (skipped
without it, failed under CI), users, a real `tagwatch serve --http` with a real mosquitto
(`serve_world`), alert records from MQTT with their arrival time, and a logged-in tab that
collects script errors and CSP violations."""

from __future__ import annotations

import io
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from playwright.sync_api import sync_playwright

from engine.cli.main import main
from tests.helpers import EngineProcess

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "correct horse battery"
SCREENSHOTS = os.environ.get("TAGWATCH_SCREENSHOTS") == "1"


def _require_chromium() -> None:
    if not os.access(CHROMIUM, os.X_OK):
        msg = f"Debian's chromium is not installed ({CHROMIUM}); `make chromium` installs it"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {msg}", pytrace=False)
        pytest.skip(msg)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    _require_chromium()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _add_user(monkeypatch: pytest.MonkeyPatch, db: Path, name: str, role: str, team: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["users", "add", name, "--role", role, "--team", team, "--db", str(db)]) == 0


@dataclass
class Records:
    """Alert records from MQTT with their arrival time: when the decision was published."""

    host: str
    port: int
    got: list[tuple[float, dict[str, Any]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, *_: c.subscribe("tagwatch/v1/alerts/+", qos=1)
        self.client.on_subscribe = lambda *_: self.ready.set()
        self.client.on_message = lambda c, u, m: self.got.append(
            (time.monotonic(), json.loads(m.payload))
        )
        self.client.connect(self.host, self.port)
        self.client.loop_start()
        assert self.ready.wait(10), "no subscription to the alert topics"

    def publish(self, msgs: list[tuple[str, Any]]) -> None:
        for topic, payload in msgs:
            self.client.publish(topic, json.dumps(payload), qos=1).wait_for_publish(10)

    def first(self, pred: Any, timeout: float = 30.0) -> tuple[float, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for when, rec in list(self.got):
                if pred(rec):
                    return when, rec
            time.sleep(0.02)
        raise AssertionError(f"no such alert record; got {[r for _, r in self.got]}")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@dataclass
class World:
    base: str
    engine: EngineProcess
    mqtt: Records


def serve_world(host: str, port: int, zones: Path, subjects: Path, db: Path) -> Iterator[World]:
    """`tagwatch serve --http` on a free port until it is healthy, and an MQTT listener on
    the alert topics; stopped (exit 0 checked) when the caller is done."""
    http = _free_port()
    eng = EngineProcess(host, port, zones, subjects, db, extra_args=["--http", f"127.0.0.1:{http}"])
    base = f"http://127.0.0.1:{http}"
    with eng:
        deadline = time.monotonic() + 60
        while True:
            assert eng.running, eng.log_text()
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, eng.log_text()
            time.sleep(0.2)
        rec = Records(host, port)
        try:
            yield World(base, eng, rec)
        finally:
            rec.close()
        assert eng.stop() == 0, eng.log_text()


class Page:
    """A logged-in browser tab, collecting script errors and CSP violations."""

    def __init__(self, browser: Any, base: str) -> None:
        self.ctx = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=base)
        self.page = self.ctx.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.on("console", self._console)
        self.page.set_default_timeout(10_000)

    def _console(self, m: Any) -> None:
        # an answer's status (401 before login, a wrong password) is the network's, not a fault
        if m.type == "error" and not m.text.startswith("Failed to load resource"):
            self.errors.append(f"console {m.type}: {m.text}")

    def login(self, user: str, password: str = PASSWORD) -> Page:
        p = self.page
        p.goto("/")
        p.get_by_label("User name").fill(user)
        p.get_by_label("Password").fill(password)
        p.get_by_role("button", name="Log in").click()
        p.get_by_test_id("queue-view").wait_for(state="visible")
        return self

    def tid(self, testid: str) -> Any:
        return self.page.get_by_test_id(testid)

    def close(self) -> None:
        self.ctx.close()


def _screenshot(page: Any, name: str) -> None:
    """With TAGWATCH_SCREENSHOTS=1 (tests/test_demo_console.py takes the docs' pictures)."""
    if SCREENSHOTS:  # docs/img/ is in the repository
        page.screenshot(path=str(ROOT / "docs" / "img" / name))
