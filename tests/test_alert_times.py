"""No alert record ever closes before it opened (issue 13, item 2): a crafted replay whose
first record is dated a year ahead, random streams with wild clocks (replay and live), and
every alert of the decision families and a device-health run through `tagwatch replay`."""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.families.catalog import FAMILIES, build_family, write_family
from devices.health.drawn import HealthConfig
from devices.sim.fleet import simulate
from devices.sim.output import write_run
from devices.world.city import build_world
from engine.core.pipeline import Pipeline
from engine.replay import replay
from engine.settings import Settings
from engine.wire.alerts import Alert, decode_alert
from engine.wire.records import EventRecord, FixRecord, Record
from tests.helpers import fix, offset, write_world
from zones.load import load

T0 = 1_790_000_000.0  # 2026-09-21
YEAR = 365 * 86400.0
TWO = '[[subjects]]\nid = "S1"\ntags = ["T1"]\n\n[[subjects]]\nid = "S2"\ntags = ["T2"]\n'


def _backwards(alerts: list[Alert]) -> list[tuple[str, str, float, float]]:
    return [
        (a.kind, a.id, a.opened_t, a.closed_t)
        for a in alerts
        if a.closed_t is not None and a.closed_t < a.opened_t
    ]


def _replay(d: Path, lines: list[dict[str, Any]], zones: Path, subjects: Path) -> list[Alert]:
    path = d / "replay.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = io.BytesIO()
    replay(path, load(zones, subjects), out, progress=False)
    return [decode_alert(x) for x in out.getvalue().splitlines()]


def test_replay_a_year_ahead_first_record_never_closes_before_it_opened(tmp_path: Path) -> None:
    """A one-tag file whose first fix is dated a year ahead, deep inside Z1, then the tag's
    real walk in and out: replay has no second device to judge the wild clock by. A batch is
    taken in event-time order, so the year-ahead fix comes last, and its seq 0 after seq 8
    reads as a restart into a new seq space (the device_restart pair): the real walk's breach
    opens and closes on the real walk's times, the year-ahead fix opens one of its own that
    stays open, and no close is dated before its opening."""
    zones, subjects = write_world(tmp_path)
    pts = [(-400, 0), (-250, 0), (-40, 10), (20, -5), (300, 0), (450, 0), (600, 0), (750, 0)]
    lines = [{"tag": "T1", **fix(0, T0 + YEAR, 0.0, 0.0)}]
    lines += [{"tag": "T1", **fix(1 + i, T0 + 60 * (1 + i), x, y)} for i, (x, y) in enumerate(pts)]
    alerts = _replay(tmp_path, lines, zones, subjects)
    breaches = [(a.state, a.opened_t, a.closed_t) for a in alerts if a.kind == "zone_breach"]
    assert breaches == [
        ("open", T0 + 180, None),
        ("closed", T0 + 180, T0 + 300),
        ("open", T0 + YEAR, None),
    ]
    assert _backwards(alerts) == []


# -- random streams with wild clocks -------------------------------------------------------

_OFFSETS = [0.0, 0.0, 0.0, 0.0, -3600.0, 7200.0, -86400.0, 40 * 86400.0, YEAR, -YEAR]
_rec = st.tuples(
    st.sampled_from(["T1", "T2"]),
    st.integers(0, 11),  # step: the record's nominal time T0 + 60 * step
    st.sampled_from(_OFFSETS),  # the device's clock error for this record
    st.sampled_from([(-400.0, 0.0), (0.0, 0.0), (-90.0, 0.0), (300.0, 50.0), (2000.0, 0.0)]),
    st.sampled_from(["fix", "fix", "fix", "strap_open", "strap_closed", "battery"]),
    st.integers(0, 100),  # battery
)


def _record(dev: str, seq: int, step: int, off: float, xy: tuple[float, float], kind: str,
            batt: int) -> Record:  # fmt: skip
    t = T0 + 60.0 * step + off
    if kind == "fix":
        return FixRecord(dev, seq, t, *offset(*xy), 5.0, batt=batt)
    return EventRecord(dev, seq, t, kind, batt=batt)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_world(tmp_path_factory.mktemp("times"), subjects_toml=TWO)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recs=st.lists(_rec, min_size=1, max_size=40), batch=st.integers(1, 7),
       live=st.booleans())  # fmt: skip
def test_no_alert_closes_before_it_opened_whatever_the_device_clocks(
    world: tuple[Path, Path], recs: list[Any], batch: int, live: bool
) -> None:
    """Replay (the event clock) and live with live_clock "fleet" (wall time stepping on,
    the fleet as a second witness), devices whose clocks jump a year either way."""
    zoneset = load(*world)
    p = Pipeline(zoneset, Settings(live_clock="fleet", hold_max=2))
    seqs = {"T1": 0, "T2": 0}
    records: list[Record] = []
    for dev, step, off, xy, kind, batt in recs:
        records.append(_record(dev, seqs[dev], step, off, xy, kind, batt))
        seqs[dev] += 1
    alerts: list[Alert] = []
    for k in range(0, len(records), batch):
        wall = T0 + 30.0 * k if live else None
        alerts += p.process(records[k : k + batch], wall=wall).alerts
        if live:
            alerts += p.tick(float(k), wall=wall).alerts
    alerts += p.finish()
    assert _backwards(alerts) == []


# -- simulated runs: the decision families and device health ---------------------------------


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_no_family_alert_closes_before_it_opened(name: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = write_family(build_family(name, 5, 4), Path(d))
        out = io.BytesIO()
        replay(p["replay"], load(p["zones"], p["subjects"]), out, progress=False)
    alerts = [decode_alert(x) for x in out.getvalue().splitlines()]
    assert alerts and _backwards(alerts) == []


def test_no_health_alert_closes_before_it_opened(tmp_path: Path) -> None:
    """Every kind of device trouble for 6 subjects over 8 h (the health day, smaller)."""
    busy = HealthConfig(
        forget_charge_fraction=1.0, tamper_fraction=1.0, coverage_gap_fraction=1.0,
        indoor_loss_fraction=1.0, tamper_toggle_fraction=0.5,
    )  # fmt: skip
    run = simulate(build_world(3, 6), duration_s=8 * 3600.0, health=busy)
    p = write_run(run, tmp_path)
    out = io.BytesIO()
    replay(p["replay"], load(p["zones"], p["subjects"]), out, progress=False)
    alerts = [decode_alert(x) for x in out.getvalue().splitlines()]
    kinds = {a.kind for a in alerts}
    assert {"tamper", "tag_silent", "battery_low"} <= kinds, kinds
    assert _backwards(alerts) == []
