"""An exclusion zone with a `schedule` binds only inside its windows (contract: zones
GeoJSON `schedule` — "the zone is active inside any window"): a victim's workplace during
working hours. Before, only curfews read schedules: such a zone alerted at any hour."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from engine.replay import replay
from engine.wire.alerts import Alert, decode_alert
from tests.helpers import fix, square, write_world
from zones.load import load

DAY = 1_789_948_800.0  # 2026-09-21 00:00 UTC, a Monday
H = 3600.0
WORK = [{"days": "Mon-Sun", "start": "08:00", "end": "16:00", "tz": "UTC"}]


def _world(d: Path) -> tuple[Path, Path]:
    zone = {
        "type": "Feature",
        "properties": {"id": "Z1", "subject": "S1", "kind": "exclusion", "schedule": WORK},
        "geometry": {"type": "Polygon", "coordinates": [square(100.0)]},
    }
    return write_world(d, [zone])


def _walk(
    seq0: int, t0: float, pts: list[tuple[float, float]], step_s: float = 60.0
) -> list[dict[str, Any]]:
    return [{"tag": "T1", **fix(seq0 + i, t0 + step_s * i, x, y)} for i, (x, y) in enumerate(pts)]


IN_OUT = [(-400, 0), (-250, 0), (-40, 10), (20, -5), (0, 0), (300, 0), (450, 0), (600, 0)]


def _replay(d: Path, lines: list[dict[str, Any]]) -> list[Alert]:
    zones, subjects = _world(d)
    path = d / "track.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = io.BytesIO()
    replay(path, load(zones, subjects), out, progress=False)
    return [decode_alert(x) for x in out.getvalue().splitlines()]


def _breaches(alerts: list[Alert]) -> list[tuple[str, float, float | None]]:
    return [(a.state, a.opened_t, a.closed_t) for a in alerts if a.kind == "zone_breach"]


def test_a_walk_in_outside_the_window_raises_nothing_inside_it_a_breach(tmp_path: Path) -> None:
    night = _walk(1, DAY + 3 * H, IN_OUT)  # 03:00: the workplace is not protected
    day = _walk(100, DAY + 10 * H, IN_OUT)  # 10:00: it is
    alerts = _replay(tmp_path, night + day)
    b = _breaches(alerts)
    assert [s for s, _, _ in b] == ["open", "closed"], b
    assert all(t >= DAY + 10 * H for _, t, _ in b)
    assert not any(a.kind == "zone_approach" and a.opened_t < DAY + 8 * H for a in alerts)


def test_a_drive_through_outside_the_window_raises_nothing(tmp_path: Path) -> None:
    """Two fixes either side of the zone, 30 s apart at 12 m/s: the segment crosses it."""
    pts = [(-900, 0), (-600, 0), (-180, 0), (180, 0), (600, 0), (900, 0)]
    night = _walk(1, DAY + 2 * H, pts, step_s=30.0)
    day = _walk(100, DAY + 12 * H, pts, step_s=30.0)
    b = _breaches(_replay(tmp_path, night + day))
    assert b and all(t >= DAY + 12 * H for _, t, _ in b), b


def test_a_breach_open_when_the_window_ends_closes_at_its_end(tmp_path: Path) -> None:
    """In at 15:50, still inside at 16:30: the breach closes at 16:00 and says why."""
    pts = [(-400, 0), (-250, 0), (-40, 10)] + [(0, 0)] * 40
    alerts = _replay(tmp_path, _walk(1, DAY + 15 * H + 48 * 60, pts))
    closed = [a for a in alerts if a.kind == "zone_breach" and a.state == "closed"]
    assert len(closed) == 1, _breaches(alerts)
    assert closed[0].closed_t == DAY + 16 * H
    assert closed[0].detail is not None
    assert closed[0].detail["closed_reason"] == "zone_schedule_ended"
    opened = [a for a in alerts if a.kind == "zone_breach" and a.state == "open"]
    assert len({a.id for a in opened}) == 1  # no new episode for the fixes after 16:00
