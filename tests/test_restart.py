"""Tag restarts through replay (issue 13, item 1): a tag whose seq counter starts again
(reboot, firmware update, watchdog, a counter that wraps) loses nothing, with or without
the contract's optional `boot` counter; true duplicates are still dropped; alert ids stay
unique and evidence cites the right record."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from engine.replay import ReplaySummary, replay
from engine.wire.alerts import Alert, decode_alert
from tests.helpers import fix, write_world
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
