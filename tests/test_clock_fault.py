"""`clock_fault` through `tagwatch serve` and a real mosquitto (issue 13, item 2): a tag
whose event time stays apart from its records' arrival (the host's wall time) raises a
health alert, and the decisions made on its time say so."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from engine.settings import Settings
from engine.wire.alerts import Alert
from tests.helpers import AlertCollector, EngineProcess, fix, publish, wait_online, write_world

pytestmark = [pytest.mark.mqtt, pytest.mark.timeout(180)]

THREE = "".join(f'[[subjects]]\nid = "S{i}"\ntags = ["T{i}"]\n\n' for i in (1, 2, 3))
# A short window so the test runs in seconds; the rule is the one the defaults use
FAST = "clock_fault_window_s = 6.0\nclock_fault_min_records = 5\n"
BEHIND, AHEAD = -3600.0, 7200.0  # T1 sends local time as UTC an hour off; T3 two hours ahead


def _faults(alerts: list[Alert]) -> dict[tuple[str | None, str], Alert]:
    return {(a.tag, a.state): a for a in alerts if a.kind == "clock_fault"}


def test_a_tag_whose_clock_is_off_raises_clock_fault_and_its_breach_says_so(
    mosquitto, tmp_path: Path
) -> None:
    """T1's clock runs an hour behind: clock_fault opens once a window of its records all
    arrived an hour after their time, and its walk into Z1 afterwards opens a zone_breach
    whose detail carries clock_offset_s. T3's clock runs two hours ahead: every record is
    refused (too far ahead), and clock_fault says why it looks silent. T2 is honest: none.
    Then T1's clock is put right: its clock_fault closes."""
    zones, subjects = write_world(tmp_path, subjects_toml=THREE)
    conf = tmp_path / "settings.toml"
    conf.write_text(FAST)
    db = tmp_path / "tw.db"
    seq = {"T1": 0, "T2": 0, "T3": 0}

    def msgs(t1_inside: bool, t1_offset: float) -> list[tuple[str, str]]:
        now = time.time()
        out = []
        for tag, off, xy in (
            ("T1", t1_offset, (0.0, 0.0) if t1_inside else (-600.0, 0.0)),
            ("T2", 0.0, (-900.0, 0.0)),
            ("T3", AHEAD, (-700.0, 0.0)),
        ):
            seq[tag] += 1
            out.append((f"tagwatch/v1/tags/{tag}/fix", json.dumps(fix(seq[tag], now + off, *xy))))
        return out

    async def feed(col: AlertCollector, until, inside: bool, off: float) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + 60.0
        while not until(col.alerts) and time.monotonic() < deadline:
            await publish(mosquitto.host, mosquitto.port, msgs(inside, off))
            await asyncio.sleep(0.5)

    async def scenario() -> list[Alert]:
        async with AlertCollector(mosquitto.host, mosquitto.port) as col:
            await wait_online(mosquitto.host, mosquitto.port)
            both = lambda al: {("T1", "open"), ("T3", "open")} <= set(_faults(al))  # noqa: E731
            await feed(col, both, False, BEHIND)
            breach = lambda al: any(a.kind == "zone_breach" for a in al)  # noqa: E731
            await feed(col, breach, True, BEHIND)
            closed = lambda al: ("T1", "closed") in _faults(al)  # noqa: E731
            await feed(col, closed, False, 0.0)
            return list(col.alerts)

    with EngineProcess(mosquitto.host, mosquitto.port, zones, subjects, db, conf) as eng:
        alerts = asyncio.run(scenario())
        assert eng.stop() == 0, eng.log_text()
    faults = _faults(alerts)
    assert ("T2", "open") not in faults
    t1, t3 = faults[("T1", "open")], faults[("T3", "open")]
    assert t1.severity == "medium" and t1.detail is not None
    assert abs(t1.detail["offset_s"] - BEHIND) < 60.0
    assert t1.detail["records"] >= 5
    assert t3.detail is not None and abs(t3.detail["offset_s"] - AHEAD) < 60.0
    assert ("T1", "closed") in faults
    breach = next(a for a in alerts if a.kind == "zone_breach")
    assert breach.tag == "T1" and breach.detail is not None
    assert abs(breach.detail["clock_offset_s"] - BEHIND) < 60.0


def test_replay_and_the_fleet_clock_judge_no_clock_fault() -> None:
    """Arrival time is known only live on wall time: a replay (no wall) or a live engine on
    the fleet clock (warped simulator time) has no witness, so none is judged."""
    from engine.core.pipeline import Pipeline
    from engine.wire.records import FixRecord
    from tests.helpers import offset
    from zones.load import load

    d = Path(__import__("tempfile").mkdtemp())
    zones, subjects = write_world(d)
    lat, lon = offset(-600.0, 0.0)
    t0 = time.time() - 3600.0
    recs = [FixRecord("T1", i, t0 + i, lat, lon, 5.0) for i in range(40)]
    zs = load(zones, subjects)
    fast = {"clock_fault_window_s": 6.0}
    for settings, wall in (
        (Settings.from_mapping(fast), None),
        (Settings.from_mapping({**fast, "live_clock": "fleet"}), time.time()),
        (Settings.from_mapping(fast), time.time()),  # the one that judges: the control
    ):
        p = Pipeline(zs, settings)
        kinds = []
        for i in range(0, 40, 2):
            w = None if wall is None else wall + i
            kinds += [a.kind for a in p.process(recs[i : i + 2], wall=w).alerts]
        expect = ["clock_fault"] if settings.live_clock == "wall" and wall is not None else []
        assert kinds == expect, (settings.live_clock, wall)
