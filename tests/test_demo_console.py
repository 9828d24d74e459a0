"""The demo's console in a real browser: `tagwatch demo --broker HOST:PORT` against the
mosquitto fixture prints its console URL and login; chromium logs in on the console page,
the simulated fleet's first critical or high zone breach shows in the queue (within a
minute or so), and its alert page draws the zone and the track.

With TAGWATCH_SCREENSHOTS=1 this also saves the documentation's pictures,
docs/img/console-queue.png and docs/img/console-alert.png (1280x800), from the demo world.
Skip rules as tests/test_console_browser.py (no chromium: skip, except under CI)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
from playwright.sync_api import expect

from engine.broker.process import MosquittoProcess
from tests.browserkit import ROOT, SCREENSHOTS, Page, _require_chromium, _screenshot, browser

__all__ = ["browser"]  # a fixture, imported to be used here

pytestmark = [pytest.mark.mqtt, pytest.mark.timeout(300)]

BREACH = "[data-testid=queue-row]:is([data-severity=critical], [data-severity=high])"


@dataclass
class Demo:
    proc: subprocess.Popen[bytes]
    said: list[str] = field(default_factory=list)

    def read(self, stream: IO[bytes]) -> None:
        for line in iter(stream.readline, b""):
            self.said.append(line.decode(errors="replace"))

    def console(self, timeout: float = 90.0) -> tuple[str, str, str]:
        """(url, user, password) from the demo's `console: URL  login USER / PASSWORD`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            m = re.search(r"console: (http://\S+)/  login (\S+) / (\S+)", "".join(self.said))
            if m:
                return m.group(1), m.group(2), m.group(3)
            time.sleep(0.1)
        raise AssertionError(f"the demo printed no console login: {''.join(self.said)}")


@pytest.fixture
def demo(mosquitto: MosquittoProcess, tmp_path: Path) -> Iterator[Demo]:
    """`tagwatch demo` against the test broker, stopped with Ctrl-C (SIGINT) at the end."""
    _require_chromium()  # before starting anything
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "demo", "--broker", mosquitto.url,
         "--run-dir", str(tmp_path / "demo"), "--duration", "280"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.stderr is not None
    d = Demo(proc)
    reader = threading.Thread(target=d.read, args=(proc.stderr,), daemon=True)
    reader.start()
    try:
        yield d
        proc.send_signal(signal.SIGINT)  # what Ctrl-C does
        assert proc.wait(30) == 0, "".join(d.said)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        reader.join(5)


def test_the_demo_console_shows_a_breach_and_its_map(demo: Demo, browser: Any) -> None:
    url, user, password = demo.console()
    tab = Page(browser, url)
    try:
        tab.login(user, password)
        expect(tab.tid("live-status")).to_have_text("live")
        started = time.monotonic()
        breaches = tab.page.locator(BREACH).filter(
            has=tab.page.get_by_test_id("cell-kind").filter(has_text="zone breach")
        )
        expect(breaches.first).to_be_visible(timeout=150_000)
        waited = time.monotonic() - started
        print(f"first critical/high breach in the queue {waited:.0f} s after login")
        if SCREENSHOTS:  # fuller pictures: more alerts, the breach deeper with more fixes
            time.sleep(15.0)
        if tab.tid("critical-banner").is_visible():
            tab.tid("critical-silence").click()  # a steady banner in the picture
        tab.page.mouse.move(0, 0)
        _screenshot(tab.page, "console-queue.png")

        aid = breaches.first.get_attribute("data-id")
        row = tab.page.locator(f'[data-testid=queue-row][data-id="{aid}"]')  # rows move
        row.get_by_role("link", name=re.compile("^Open alert")).click()
        assert tab.page.url.endswith(f"#/alert/{aid}")
        expect(tab.tid("alert-title")).to_contain_text("zone breach")
        amap = tab.tid("alert-map")
        expect(amap.locator("path.tw-zone")).to_have_count(1)
        expect(amap).to_have_attribute("data-zone", "1")
        expect(amap.locator("path.tw-track")).to_have_count(1)  # two fixes or more
        assert int(amap.get_attribute("data-track") or 0) >= 2
        expect(amap.locator("path.tw-evidence")).not_to_have_count(0)
        expect(tab.tid("decision")).to_contain_text("inside zone")
        tab.page.mouse.move(0, 0)
        time.sleep(0.5)  # Leaflet's fit animation
        _screenshot(tab.page, "console-alert.png")
        for name in ("console-queue.png", "console-alert.png"):
            assert not SCREENSHOTS or (ROOT / "docs" / "img" / name).stat().st_size > 1e4
        assert tab.errors == [], tab.errors
    finally:
        tab.close()
