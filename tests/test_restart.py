"""Tag restarts through replay (issue 13, item 1): a tag whose seq counter starts again
(reboot, firmware update, watchdog, a counter that wraps) loses nothing, with or without
the contract's optional `boot` counter; true duplicates are still dropped; alert ids stay
unique and evidence cites the right record."""

from __future__ import annotations

import asyncio
import io
import json
import time
from pathlib import Path
from typing import Any

import pytest

from engine.cli.main import main
from engine.replay import ReplaySummary, replay
from engine.wire.alerts import Alert, decode_alert
from tests.helpers import AlertCollector, EngineProcess, fix, publish, wait_online, write_world
from zones.load import load

T0 = 1_790_000_000.0


def _run(tmp_path: Path, lines: list[dict[str, Any]]) -> tuple[ReplaySummary, list[Alert]]:
    zones, subjects = write_world(tmp_path)
    f = tmp_path / "replay.jsonl"
    f.write_text("".join(json.dumps({"tag": "T1", **x}) + "\n" for x in lines))
    out = io.BytesIO()
    summary = replay(f, load(zones, subjects), out, progress=False)
    return summary, [decode_alert(b) for b in out.getvalue().splitlines()]


def _outside(n: int, seq0: int = 1, t0: float = T0, **extra: Any) -> list[dict[str, Any]]:
    return [{**fix(seq0 + i, t0 + 60 * i, 2000.0, 0.0), **extra} for i in range(n)]


def _inside(n: int, seq0: int, t0: float, **extra: Any) -> list[dict[str, Any]]:
    return [{**fix(seq0 + i, t0 + 60 * i, 0.0, 0.0), **extra} for i in range(n)]


def _breaches(alerts: list[Alert]) -> list[Alert]:
    return [a for a in alerts if a.kind == "zone_breach" and a.state == "open"]


@pytest.mark.parametrize("before", [100, 300, 1100])
def test_reboot_inside_the_zone_raises_the_breach(tmp_path: Path, before: int) -> None:
    """seq back to 1 after `before` records, then 2 h inside the zone."""
    lines = _outside(before) + _inside(120, 1, T0 + 60 * before)
    summary, alerts = _run(tmp_path, lines)
    assert summary.duplicates == 0
    assert summary.fixes == before + 120
    b = _breaches(alerts)
    assert b, f"no breach after a reboot following {before} records"
    assert b[0].opened_t <= T0 + 60 * before + 300


@pytest.mark.parametrize("before", [100, 1100])
def test_reboot_with_boot_counter(tmp_path: Path, before: int) -> None:
    lines = _outside(before, boot=4) + _inside(120, 0, T0 + 60 * before, boot=5)
    summary, alerts = _run(tmp_path, lines)
    assert summary.duplicates == 0 and summary.fixes == before + 120
    b = _breaches(alerts)
    assert b
    assert all(len(e) == 3 and e[2] == 5 for e in b[0].evidence), b[0].evidence


def test_true_duplicates_after_a_reboot_are_still_dropped(tmp_path: Path) -> None:
    before, after = _outside(100), _inside(30, 1, T0 + 6000)
    lines = before + after[:20] + after[5:10] + after[20:] + before[95:98]
    summary, alerts = _run(tmp_path, lines)
    assert summary.duplicates == 8  # five resent after the reboot, three from before it
    assert summary.fixes == 130
    assert _breaches(alerts)


def test_same_seq_in_two_boots_gives_two_alert_ids(tmp_path: Path) -> None:
    """Two episodes whose first evidence has the same seq, in different seq spaces."""
    lines = _outside(50) + _inside(30, 51, T0 + 3000) + _outside(20, 81, T0 + 4800)
    lines += _outside(50, 1, T0 + 6000) + _inside(30, 51, T0 + 9000) + _outside(20, 81, T0 + 10800)
    summary, alerts = _run(tmp_path, lines)
    b = _breaches(alerts)
    assert summary.duplicates == 0
    assert len({a.id for a in b}) == 2, [(a.id, a.evidence[:1]) for a in b]


def test_counter_that_wraps(tmp_path: Path) -> None:
    """A 16-bit counter: 65530..65535 then 0.. inside the zone."""
    lines = _outside(6, 65530) + _inside(120, 0, T0 + 360)
    summary, alerts = _run(tmp_path, lines)
    assert summary.duplicates == 0 and summary.fixes == 126
    assert _breaches(alerts)


def _cited(db: Path, aid: str, capsys: Any) -> list[dict[str, Any]]:
    """The records `tagwatch audit alert` prints as an alert's evidence."""
    capsys.readouterr()
    assert main(["audit", "alert", "--db", str(db), aid]) == 0
    got = []
    for line in capsys.readouterr().out.splitlines():
        if line.strip().startswith("evidence "):
            assert ": row " in line, line
            got.append(json.loads(line.split(": ", 2)[2]))
    return got


@pytest.mark.mqtt
@pytest.mark.timeout(120)
@pytest.mark.parametrize("boot", [False, True])
def test_serve_reboot_alert_ids_and_audit_cite_the_right_boot(
    mosquitto: Any, tmp_path: Path, capsys: Any, boot: bool
) -> None:
    """Live, through mosquitto: the same seqs inside the zone in two boots give two
    alerts, and `tagwatch audit alert` cites each one's own records (their times say)."""
    t0 = time.time() - 4 * 3600.0
    b0, b1 = ({"boot": 0}, {"boot": 1}) if boot else ({}, {})
    lines = _outside(50, 1, t0, **b0) + _inside(30, 51, t0 + 3000, **b0)
    lines += _outside(20, 81, t0 + 4800, **b0) + _outside(50, 1, t0 + 6000, **b1)
    lines += _inside(30, 51, t0 + 9000, **b1)
    topic = "tagwatch/v1/tags/T1/fixes"
    msgs = [(topic, json.dumps(lines[i : i + 20]).encode()) for i in range(0, len(lines), 20)]
    zones, subjects = write_world(tmp_path)
    db = tmp_path / "tw.db"

    def two(alerts: list[Alert]) -> bool:
        return len({a.id for a in _breaches(alerts)}) >= 2

    async def scenario() -> list[Alert]:
        async with AlertCollector(mosquitto.host, mosquitto.port) as col:
            await wait_online(mosquitto.host, mosquitto.port)
            await publish(mosquitto.host, mosquitto.port, msgs)
            return await col.wait_for(two)

    with EngineProcess(mosquitto.host, mosquitto.port, zones, subjects, db) as eng:
        alerts = asyncio.run(scenario())
        assert eng.stop() == 0, eng.log_text()
    first = {a.id: a for a in reversed(_breaches(alerts))}  # each id's first open record
    assert len(first) == 2
    for a, lo in zip(sorted(first.values(), key=lambda a: a.opened_t), (3000, 9000), strict=True):
        cited = _cited(db, a.id, capsys)
        assert cited and all(t0 + lo <= r["t"] < t0 + lo + 1800 for r in cited), (a.evidence, cited)


@pytest.mark.mqtt
@pytest.mark.timeout(180)
@pytest.mark.parametrize("before", [100, 1100])
def test_serve_reboot_inside_the_zone_raises_the_breach_as_replay_does(
    mosquitto: Any, tmp_path: Path, before: int
) -> None:
    """Live: seq back to 1 after `before` records, then inside the zone: the breach is
    raised, with the id replay gives the same records."""
    t0 = time.time() - (before + 130) * 60.0
    lines = _outside(before, 1, t0) + _inside(120, 1, t0 + 60 * before)
    topic = "tagwatch/v1/tags/T1/fixes"
    msgs = [(topic, json.dumps(lines[i : i + 100]).encode()) for i in range(0, len(lines), 100)]
    zones, subjects = write_world(tmp_path)

    async def scenario() -> list[Alert]:
        async with AlertCollector(mosquitto.host, mosquitto.port) as col:
            await wait_online(mosquitto.host, mosquitto.port)
            await publish(mosquitto.host, mosquitto.port, msgs)
            return await col.wait_for(lambda a: any(x.confidence >= 0.99 for x in _breaches(a)))

    with EngineProcess(mosquitto.host, mosquitto.port, zones, subjects, tmp_path / "tw.db") as eng:
        live = _breaches(asyncio.run(scenario()))
        assert eng.stop() == 0, eng.log_text()
    summary, replayed = _run(tmp_path, lines)
    assert summary.duplicates == 0
    assert live[0].opened_t <= t0 + 60 * before + 300
    assert [(a.id, a.evidence[:1]) for a in live[:1]] == [
        (a.id, a.evidence[:1]) for a in _breaches(replayed)[:1]
    ]
    assert live[0].evidence[0] == ("T1", 1, 1)  # seq 1 of the second seq space


@pytest.mark.parametrize("boot", [False, True])
def test_a_restart_is_a_line_in_the_tags_health(tmp_path: Path, boot: bool) -> None:
    """One small `device_restart` record pair (low, opened and closed at the restart),
    citing the first record of the new seq space; none without a restart."""
    b0, b1 = ({"boot": 7}, {"boot": 8}) if boot else ({}, {})
    lines = _outside(300, **b0) + _outside(10, 1, T0 + 18_000, **b1)
    _, alerts = _run(tmp_path, lines)
    got = [a for a in alerts if a.kind == "device_restart"]
    assert [a.state for a in got] == ["open", "closed"], got
    a = got[0]
    assert a.severity == "low" and a.tag == "T1" and a.subject == "S1"
    assert a.opened_t == got[1].closed_t == T0 + 18_000 and got[1].id == a.id
    assert a.evidence == [("T1", 1, 8 if boot else 1)]
    assert a.detail == {"seq": 1, "after_seq": 300, **({"boot": 8} if boot else {})}
    _, plain = _run(tmp_path, _outside(300))
    assert not [a for a in plain if a.kind == "device_restart"]
