"""Where it happened: breach and proximity records carry `detail` with the position of the
fix the engine decided on (lat, lon, acc) and how deep into the breach it was (`depth_m`)
or how near (`distance_m`), through `tagwatch replay` and `tagwatch serve` over a real
mosquitto. The fix is the one at the record's raised_t (docs/formats.md, "Alert record")."""

from __future__ import annotations

import asyncio
import json
import math
import time
from pathlib import Path
from typing import Any

import pytest

from engine.cli.main import main
from engine.wire.alerts import Alert, decode_alert
from tests.helpers import (
    LAT0,
    LON0,
    AlertCollector,
    EngineProcess,
    fix,
    offset,
    publish,
    square,
    wait_online,
    write_world,
)

T0 = 1_790_000_000.0
FIX_KEYS = {"t", "lat", "lon", "acc"}
ROUTE_KEYS = FIX_KEYS | {"depth_m", "route", "from_t", "from_lat", "from_lon", "from_acc"}


def metres(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance: a check independent of the engine's local frames."""
    r = 6371008.8
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(h))


def zone(kind: str = "exclusion", **props: Any) -> dict[str, Any]:
    """Z1 of S1: the square of 100 m half-side centred on (LAT0, LON0)."""
    return {
        "type": "Feature",
        "properties": {"id": "Z1", "subject": "S1", "kind": kind, **props},
        "geometry": {"type": "Polygon", "coordinates": [square(100.0)]},
    }


def replay(tmp: Path, lines: list[dict[str, Any]], features: list[dict[str, Any]],
           subjects: str | None = None, settings: str = "") -> list[Alert]:  # fmt: skip
    """`tagwatch replay` of `lines` on `features`; `settings`: a settings TOML's text."""
    zones, subj = write_world(tmp, features, subjects)
    src = tmp / "in.jsonl"
    src.write_text("".join(json.dumps(x) + "\n" for x in sorted(lines, key=lambda x: x["t"])))
    out = tmp / "alerts.jsonl"
    args = ["replay", str(src), "--zones", str(zones), "--subjects", str(subj), "--out", str(out)]
    if settings:
        (tmp / "settings.toml").write_text(settings)
        args += ["--settings", str(tmp / "settings.toml")]
    assert main([*args, "-q"]) == 0
    return [decode_alert(x) for x in out.read_bytes().splitlines()]


def walk(tag: str, t0: float, xs: list[float], step: float = 60.0) -> list[dict[str, Any]]:
    """`tag` at each dx (metres east of the zone's centre, on its east-west axis) in turn."""
    return [{"tag": tag, **fix(i, t0 + step * i, dx, 0.0)} for i, dx in enumerate(xs)]


def at_raised(rec: Alert, lines: list[dict[str, Any]], tag: str = "T1") -> dict[str, Any]:
    """The input fix of `tag` the record was decided on: the one at its raised_t."""
    (f,) = [x for x in lines if x["tag"] == tag and x["t"] == rec.raised_t]
    return f


def assert_at(rec: Alert, f: dict[str, Any]) -> None:
    """The record's detail places it at fix f (within the 6-decimal rounding)."""
    d = rec.detail
    assert d is not None, rec
    assert d["t"] == f["t"]
    assert metres(d["lat"], d["lon"], f["lat"], f["lon"]) < 0.2, (d, f)
    assert d["acc"] == f["acc"]


def test_a_walk_in_says_where_and_how_deep_and_moves_with_the_escalation(
    tmp_path: Path,
) -> None:
    """Outside, then a fix 70 m inside decides at once (confidence capped: one fix), and
    the fix that escalates it past 0.9 five minutes on (50 m further in; six fixes inside,
    confident_walked_fixes: from 300 m out no burst began the run) is the one its
    re-published record places it at; the closed record keeps the last deciding fix."""
    xs = [600, 450, 300, 30, 20, 10, 0, -10, -20, -30, -45, 300, 450, 600, 750, 900, 1050]
    lines = walk("T1", T0, [float(x) for x in xs])
    alerts = [a for a in replay(tmp_path, lines, [zone()]) if a.kind == "zone_breach"]
    assert [(a.state, a.confidence > 0.9) for a in alerts] == [
        ("open", False), ("open", True), ("closed", True),
    ], alerts  # fmt: skip
    opened, escalated, closed = alerts
    assert opened.raised_t == T0 + 180 and escalated.raised_t == T0 + 480
    for rec, dx in ((opened, 30.0), (escalated, -20.0), (closed, -20.0)):
        f = lines[int((rec.raised_t - T0) / 60)]
        assert_at(rec, f)
        assert rec.detail is not None
        assert set(rec.detail) == FIX_KEYS | {"depth_m"}
        assert abs(rec.detail["depth_m"] - (100.0 - abs(dx))) < 0.5, rec.detail
        assert metres(rec.detail["lat"], rec.detail["lon"], *offset(dx, 0.0)) < 0.2


def test_a_drive_through_gives_the_segment_that_crossed(tmp_path: Path) -> None:
    """10 m/s straight through the zone's middle, fixes 120 s apart, none inside: decided on
    the fix after the crossing; detail has it, the fix before and the segment's depth."""
    xs = [-2700.0, -1500.0, -300.0, 900.0, 2100.0, 3300.0]
    lines = walk("T1", T0, xs, step=120.0)
    alerts = [a for a in replay(tmp_path, lines, [zone()]) if a.kind == "zone_breach"]
    assert [a.state for a in alerts] == ["open", "closed"], alerts
    for rec in alerts:
        assert rec.raised_t == T0 + 360
        assert_at(rec, lines[3])
        d = rec.detail
        assert d is not None and set(d) == ROUTE_KEYS, d
        assert d["route"] == "segment" and d["from_t"] == T0 + 240
        assert metres(d["from_lat"], d["from_lon"], lines[2]["lat"], lines[2]["lon"]) < 0.2
        assert d["from_acc"] == lines[2]["acc"]
        assert abs(d["depth_m"] - 100.0) < 0.5, d  # the middle of a 200 m square


def test_a_curfew_breach_says_how_far_outside_the_curfew_zone(tmp_path: Path) -> None:
    """An always-on curfew (no schedule); home, then 1 km east: far and sure, decided at
    once on the first fix away, 900 m outside the 100 m half-side square."""
    lines = walk("T1", T0, [0.0, 10.0, -10.0, 1000.0, 1000.0, 1000.0, 0.0, 0.0])
    alerts = [a for a in replay(tmp_path, lines, [zone("inclusion")]) if a.kind == "curfew_breach"]
    assert [a.state for a in alerts] == ["open", "closed"], alerts
    for rec in alerts:
        assert rec.raised_t == T0 + 180
        assert_at(rec, at_raised(rec, lines))
        assert rec.detail is not None and set(rec.detail) == FIX_KEYS | {"depth_m"}
        assert abs(rec.detail["depth_m"] - 900.0) < 0.5, rec.detail


def test_proximity_says_how_near_and_how_old_the_protected_position_was(tmp_path: Path) -> None:
    """The protected phone P1 reports every 60 s at 2 km west of the zone; the subject
    comes to 100 m of it (radius 300 m, warn 500 m). Detail: the subject's fix, the
    distance and the phone position's age (its fixes come 30 s before the tag's), never
    the phone's own position."""
    lat_p, lon_p = offset(-2000.0, 0.0)
    phone = [{"tag": "P1", "seq": k, "t": T0 - 30 + 60 * k, "lat": lat_p, "lon": lon_p,
              "acc": 10.0} for k in range(30)]  # fmt: skip
    xs = [-1000.0, -1500.0, -1900.0, -1900.0, -1900.0, -1900.0, -1000.0, -800.0, -800.0]
    xs += [-800.0] * 12
    tag = walk("T1", T0, xs)
    prot = '[[subjects]]\nid = "S1"\ntags = ["T1"]\n[[subjects.protected]]\n'
    prot += 'device = "P1"\nradius_m = 300\nwarn_m = 500\n'
    alerts = replay(tmp_path, tag + phone, [zone()], prot)
    prox = [a for a in alerts if a.kind == "proximity"]
    assert prox and prox[0].state == "open" and prox[-1].state == "closed", alerts
    for rec in prox:
        f = at_raised(rec, tag)
        assert_at(rec, f)
        d = rec.detail
        assert d is not None and set(d) == FIX_KEYS | {"distance_m", "protected_age_s"}
        assert abs(d["distance_m"] - metres(f["lat"], f["lon"], lat_p, lon_p)) < 0.5, d
        assert abs(d["distance_m"] - 100.0) < 0.5 and d["protected_age_s"] == 30.0, d
    (ring,) = [a for a in alerts if a.kind == "proximity_approach" and a.state == "open"]
    assert ring.detail is not None and ring.detail["distance_m"] > 300.0, ring
    assert_at(ring, at_raised(ring, tag))


def test_an_approach_says_how_far_outside_the_zone(tmp_path: Path) -> None:
    """The warn ring (300 m): the tag comes to 150 m east of the centre, 50 m outside the
    zone, and leaves; no breach."""
    lines = walk("T1", T0, [900.0, 700.0, 150.0, 150.0, 700.0, 900.0, 1100.0, 1300.0])
    alerts = replay(tmp_path, lines, [zone(warn_m=300.0)])
    assert not [a for a in alerts if a.kind == "zone_breach"], alerts
    recs = [a for a in alerts if a.kind == "zone_approach"]
    assert [a.state for a in recs] == ["open", "closed"], alerts
    for rec in recs:
        assert_at(rec, at_raised(rec, lines))
        assert rec.detail is not None and set(rec.detail) == FIX_KEYS | {"distance_m"}
        assert abs(rec.detail["distance_m"] - 50.0) < 0.5, rec.detail


# -- live: the same over a real mosquitto ----------------------------------------------------


@pytest.mark.mqtt
@pytest.mark.timeout(120)
def test_live_walk_in_record_says_where(mosquitto: Any, tmp_path: Path) -> None:
    """`tagwatch serve` publishes the same detail: the walk-in's deciding fix and depth."""
    t0 = float(int(time.time()) - 3600)  # recent: judged on wall time
    pts = [(-400.0, 0.0), (-250.0, 0.0), (-40.0, 10.0), (20.0, -5.0), (300.0, 0.0),
           (450.0, 0.0), (600.0, 0.0), (750.0, 0.0)]  # fmt: skip
    fixes = [fix(i, t0 + 60 * i, dx, dy) for i, (dx, dy) in enumerate(pts)]
    zones, subjects = write_world(tmp_path)

    async def scenario() -> list[Alert]:
        async with AlertCollector(mosquitto.host, mosquitto.port) as col:
            await wait_online(mosquitto.host, mosquitto.port)
            msgs = [("tagwatch/v1/tags/T1/fix", json.dumps(f).encode()) for f in fixes]
            await publish(mosquitto.host, mosquitto.port, msgs)
            return await col.wait_for(
                lambda al: [a.state for a in al if a.kind == "zone_breach"] == ["open", "closed"]
            )

    with EngineProcess(mosquitto.host, mosquitto.port, zones, subjects, tmp_path / "tw.db") as eng:
        alerts = asyncio.run(scenario())
        assert eng.stop() == 0, eng.log_text()
    opened = next(a for a in alerts if a.kind == "zone_breach")
    (f,) = [x for x in fixes if x["t"] == opened.raised_t]
    assert_at(opened, f)
    assert opened.detail is not None and abs(opened.detail["depth_m"] - 60.0) < 0.5, opened
    assert metres(opened.detail["lat"], opened.detail["lon"], LAT0, LON0) < 50.0


def test_the_terminal_row_says_where_and_how_deep(tmp_path: Path) -> None:
    """The demo's and `watch --plain`'s row for a breach: depth and the deciding fix's
    position, read from the record's detail."""
    from engine.cli.console import alert_row

    xs = [600.0, 450.0, 300.0, 30.0, 20.0, 300.0, 450.0, 600.0, 750.0]
    lines = walk("T1", T0, xs)
    opened = next(a for a in replay(tmp_path, lines, [zone()]) if a.kind == "zone_breach")
    assert opened.detail is not None
    row = alert_row(opened)
    assert f"{opened.detail['depth_m']:.0f} m inside" in row, row
    assert f"at {opened.detail['lat']:.5f},{opened.detail['lon']:.5f}" in row, row
