"""Asking a tag heading for a zone to report faster (engine/core/measure.py, Measure.ahead;
docs/settings.md, `ahead_s`): the pipeline's reporting-rate commands before any alert,
back to the usual rate once the tag is past, through a snapshot; and over a real mosquitto,
on tagwatch/v1/tags/{tag}/cmd."""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiomqtt
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.history import speed, speeds
from engine.core.pipeline import Pipeline
from engine.settings import Settings
from engine.wire.records import FixRecord
from tests.helpers import AlertCollector, offset, publish, wait_online
from tests.test_health_mqtt import BASE, _fix, _run, _states
from tests.test_health_mqtt import T0 as LIVE_T0
from tests.test_pipeline import EXCL, T0, _world

S = Settings()


def fix(seq: int, t: float, dx: float, dy: float = 0.0, acc: float = 5.0) -> FixRecord:
    lat, lon = offset(dx, dy)
    return FixRecord("T1", seq, t, lat, lon, acc)


def commands(p: Pipeline, recs: list[FixRecord]) -> list[tuple[float, str, float]]:
    """(time of the fix it answered, tag, rate_s), one record per batch."""
    out = []
    for r in recs:
        out += [(r.t, tag, rate) for tag, rate in p.process([r]).commands]
    return out


def drive(xs: list[float], y: float = 0.0, step: float = 60.0) -> list[FixRecord]:
    return [fix(i, T0 + step * i, x, y) for i, x in enumerate(xs)]


# 13.3 m/s east along the square's axis, one fix a minute: straight through it
THROUGH = [-3000.0, -2200.0, -1400.0, -600.0, 200.0, 1000.0, 1800.0]


def test_a_car_heading_for_a_zone_is_asked_to_report_fast_before_it_gets_there() -> None:
    got = commands(_world([EXCL]), drive(THROUGH))
    # 1300 m out at x = -1400: beyond 90 s at 13.3 m/s (+50 m); 500 m out at x = -600: not
    assert got[0] == (T0 + 180, "T1", S.report_fast_s), got
    # past it at x = 200 (the crossing between the fixes, a transit breach opened and
    # closed on that fix) the flag still holds (ahead_s after the fix that set it); driving
    # away at x = 1000: back to the usual rate
    assert got[1:] == [(T0 + 300, "T1", S.report_interval_s)], got


def test_a_walker_stays_fast_over_the_short_steps_it_was_asked_for() -> None:
    """1.4 m/s towards the square: 84 m a minute is movement beyond 5 m fixes, 21 m in 15 s
    is not (21 - 2 x 5 m over 15 s < 1 m/s). While the first finding holds (ahead_s) the
    fixes count as they are, so the tag is kept fast until it is inside: no minute-long
    gap hides the entry. Fails without the hold, and without the fixes as they are."""
    p = _world([EXCL])
    # 1.4 m/s: 1.2 m/s beyond the fixes' accuracy, 108 m in 90 s: found heading for the
    # square (its edge at x = -100) at x = -260
    recs = [fix(0, T0, -344.0), fix(1, T0 + 60, -260.0)]
    recs += [fix(2 + i, T0 + 60 + 15 * (i + 1), -260.0 + 21.0 * (i + 1)) for i in range(16)]
    got = commands(p, recs)
    assert got[0] == (T0 + 60, "T1", S.report_fast_s), got
    # 16 fixes later, 120 m into the square: never told to slow down on the way in
    assert all(rate == S.report_fast_s for _, _, rate in got), got


def test_nothing_asked_of_a_tag_parked_near_a_zone_or_driving_past_well_clear() -> None:
    parked = [fix(i, T0 + 60 * i, -300.0 + (5.0 if i % 2 else 0.0)) for i in range(10)]
    assert commands(_world([EXCL]), parked) == []
    # a road 200 m north of the square's edge: never within 50 m (+2 sigma) of it
    assert commands(_world([EXCL]), drive(THROUGH, y=300.0)) == []


def test_a_zone_not_yet_in_force_asks_nothing() -> None:
    later = replace(EXCL, valid_from=T0 + 3600.0)  # the condition starts in an hour
    assert commands(_world([later]), drive(THROUGH)) == []


def test_off_asks_nothing_until_an_alert() -> None:
    p = _world([EXCL], settings=replace(S, ahead_s=0.0))
    got = commands(p, drive(THROUGH))
    # the transit breach at x = 200 opens and closes at once: fast for that batch only
    assert all(t >= T0 + 240 for t, _, _ in got), got


def test_heading_survives_a_snapshot() -> None:
    p = _world([EXCL])
    recs = drive(THROUGH)
    assert commands(p, recs[:4]) == [(T0 + 180, "T1", S.report_fast_s)]
    q = _world([EXCL])
    q.import_state(p.export_state())
    # the restored engine knows the tag was heading for the zone and since when: parked
    # there now, it stays fast while the hold lasts and is then told the usual rate again
    still = [fix(4, T0 + 240, -600.0), fix(5, T0 + 300, -600.0)]
    assert commands(q, still) == [(T0 + 300, "T1", S.report_interval_s)]


@pytest.mark.mqtt
@pytest.mark.timeout(120)
def test_heading_for_a_zone_over_mqtt(mosquitto: Any, tmp_path: Path) -> None:
    """`tagwatch serve` with a real mosquitto: the fast command comes before any alert."""
    h, p = mosquitto.host, mosquitto.port

    async def scenario() -> tuple[list[float], list[Any]]:
        got: list[float] = []
        async with aiomqtt.Client(h, p) as sub, AlertCollector(h, p) as col:
            await sub.subscribe(f"{BASE}/cmd", qos=1)
            await wait_online(h, p)
            xs = [-3000.0, -2200.0, -1400.0, -600.0]
            msgs = [(f"{BASE}/fix", _fix(i, LIVE_T0 + 60 * i, x)) for i, x in enumerate(xs)]
            await publish(h, p, msgs)

            async def read() -> None:
                async for m in sub.messages:
                    assert isinstance(m.payload, bytes)
                    got.append(json.loads(m.payload)["rate_s"])
                    return

            await asyncio.wait_for(read(), 30)
            return got, list(col.alerts)

    got, alerts = _run(mosquitto, tmp_path, "", scenario)
    assert got == [S.report_fast_s]
    assert _states(alerts, "zone_breach") == [] and _states(alerts, "zone_approach") == []


FIXES = st.tuples(
    st.one_of(st.just(math.nan), st.floats(-1e4, 1e4)), st.floats(51.0, 52.0),
    st.floats(-1.0, 1.0), st.floats(0.0, 800.0),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(FIXES, FIXES), min_size=1, max_size=20))
def test_speeds_is_speed_row_by_row(pairs: list[tuple[tuple[float, ...], ...]]) -> None:
    """Measure.ahead's vectorised speeds against history.speed, the outliers' own."""
    a = np.array([p[0] for p in pairs])
    b = np.array([p[1] for p in pairs])
    got = speeds(a, b)
    for i in range(len(pairs)):
        want = speed(a[i], b[i])
        assert (math.isnan(got[i]) and math.isnan(want)) or got[i] == pytest.approx(want, rel=1e-12)
