"""Live clocks through `tagwatch serve` and a real mosquitto: the host's wall time is the
clock, even for the first record the engine hears (issue 13, item 2)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from engine.store.sqlite import SqliteStore
from engine.wire.alerts import Alert
from tests.helpers import AlertCollector, EngineProcess, fix, publish, wait_online, write_world

pytestmark = [pytest.mark.mqtt, pytest.mark.timeout(120)]

FIX = "tagwatch/v1/tags/T1/fix"
YEAR = 365 * 86400.0


def _closed_breach(alerts: list[Alert]) -> bool:
    return any(a.kind == "zone_breach" and a.state == "closed" for a in alerts)


def test_a_year_ahead_first_record_is_dead_lettered_live(mosquitto, tmp_path: Path) -> None:
    """The very first record the engine hears is dated a year ahead, deep inside Z1: it
    must be refused on the host's wall time (there is no fleet clock yet to confirm it),
    and the tag's real walk in and out of Z1 afterwards is one ordinary episode."""
    zones, subjects = write_world(tmp_path)
    db = tmp_path / "tw.db"
    t0 = float(int(time.time()) - 1800)
    wild = [(FIX, json.dumps(fix(0, t0 + YEAR, 0.0, 0.0)).encode())]
    pts = [(-400, 0), (-250, 0), (-40, 10), (20, -5), (300, 0), (450, 0), (600, 0), (750, 0)]
    track = [
        (FIX, json.dumps(fix(1 + i, t0 + 60 * (1 + i), dx, dy)).encode())
        for i, (dx, dy) in enumerate(pts)
    ]

    async def scenario() -> list[Alert]:
        async with AlertCollector(mosquitto.host, mosquitto.port) as col:
            await wait_online(mosquitto.host, mosquitto.port)
            await publish(mosquitto.host, mosquitto.port, wild)
            await publish(mosquitto.host, mosquitto.port, track)
            return await col.wait_for(_closed_breach)

    with EngineProcess(mosquitto.host, mosquitto.port, zones, subjects, db) as eng:
        alerts = asyncio.run(scenario())
        assert eng.stop() == 0, eng.log_text()
    horizon = time.time() + 300.0
    ahead = [(a.kind, a.state, a.opened_t - t0) for a in alerts if a.opened_t > horizon]
    assert ahead == []
    backwards = [
        (a.kind, a.opened_t, a.closed_t)
        for a in alerts
        if a.closed_t is not None and a.closed_t < a.opened_t
    ]
    assert backwards == []
    breach = [(a.state, a.opened_t, a.closed_t) for a in alerts if a.kind == "zone_breach"]
    assert breach == [("open", t0 + 180, None), ("closed", t0 + 180, t0 + 300)]
    with SqliteStore(db) as st:
        dead = [d.reason for d in st.dead_letters()]
    assert len(dead) == 1 and "ahead of the engine clock" in dead[0], dead
    assert "max_future_s" in dead[0]


# -- a host clock that steps ---------------------------------------------------------------

# Loaded by the engine's interpreter (sitecustomize on its PYTHONPATH): time.time() plus the
# offset in the file named by TAGWATCH_TEST_CLOCK_FILE, re-read when the file changes. The
# host clock stepping, without touching the host.
_SHIM = """
import os, time
_f = os.environ.get("TAGWATCH_TEST_CLOCK_FILE")
if _f:
    _real, _st = time.time, [0.0, None]
    def _time():
        try:
            m = os.stat(_f).st_mtime_ns
        except OSError:
            return _real()
        if m != _st[1]:
            _st[1] = m
            with open(_f) as fh:
                _st[0] = float(fh.read() or 0)
        return _real() + _st[0]
    time.time = _time
"""


def _step(path: Path, offset_s: float) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(repr(offset_s))
    tmp.replace(path)


def test_a_host_clock_step_ahead_and_back_neither_poisons_nor_freezes_the_engine(
    mosquitto, tmp_path: Path
) -> None:
    """The engine host's clock jumps a year ahead for a moment and comes back (a bad NTP
    source for one poll). Before, the engine clock followed it and never went back: every
    record after was a year old and dead-lettered, for a year. Now a step ahead is followed
    only once it has held for clock_step_confirm_s: the tag reporting through the moment is
    neither refused nor silent. A step that holds (a day ahead) is followed, and when it
    then comes back silence is still measured on the engine's clock, not a day later. Each
    step is logged."""
    import os

    zones, subjects = write_world(tmp_path)
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(_SHIM)
    clock = tmp_path / "clock-offset"
    _step(clock, 0.0)
    env = {
        "TAGWATCH_TEST_CLOCK_FILE": str(clock),
        "PYTHONPATH": os.pathsep.join([str(shim), os.environ.get("PYTHONPATH", "")]),
    }
    conf = tmp_path / "settings.toml"
    conf.write_text("silent_min_s = 4.0\nsilent_factor = 0.0\nclock_step_confirm_s = 3.0\n")
    db = tmp_path / "tw.db"
    h, p = mosquitto.host, mosquitto.port
    seq = [0]
    silent_during_the_blip: list[str] = []

    def states(alerts: list[Alert]) -> list[str]:
        return [a.state for a in alerts if a.kind == "tag_silent"]

    async def report(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            seq[0] += 1
            msg = json.dumps(fix(seq[0], time.time(), 2000.0, 0.0)).encode()
            await publish(h, p, [(FIX, msg)])
            await asyncio.sleep(0.5)

    async def scenario() -> list[Alert]:
        async with AlertCollector(h, p) as col:
            await wait_online(h, p)
            await report(2.0)
            _step(clock, YEAR)  # the host clock jumps a year ahead...
            await report(1.5)
            _step(clock, 0.0)  # ...and comes back before it is believed
            await report(2.0)
            silent_during_the_blip.extend(states(col.alerts))
            # quiet now: silent after silent_min_s on the engine's clock
            await col.wait_for(lambda a: states(a) == ["open"], timeout=30)
            await report(1.0)
            await col.wait_for(lambda a: states(a)[-1:] == ["closed"], timeout=30)
            _step(clock, 86400.0)  # a step that holds: followed after 3 s
            await report(5.0)
            _step(clock, 0.0)  # ...then comes back: the engine clock runs on monotonic
            await report(1.0)
            n = len(states(col.alerts))
            # quiet again: silent after silent_min_s, not a day later
            await col.wait_for(lambda a: len(states(a)) > n and states(a)[-1] == "open", 30)
            return col.alerts

    with EngineProcess(h, p, zones, subjects, db, conf, env=env) as eng:
        alerts = asyncio.run(scenario())
        assert eng.stop() == 0, eng.log_text()
        log = eng.log_text()
    assert silent_during_the_blip == [], silent_during_the_blip
    assert states(alerts)[-1] == "open"
    with SqliteStore(db) as st:
        dead = [d.reason for d in st.dead_letters()]
    assert dead == []
    for said in ("not followed until it holds", "its step ahead by", "following it",
                 "stepped back"):  # fmt: skip
        assert said in log, (said, log[-3000:])
