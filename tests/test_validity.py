"""Licence conditions and tagging periods: `valid_from` / `valid_until` on zones and
subjects, through the public entry points (`tagwatch zones check`, `tagwatch replay`,
`tagwatch serve` over a real mosquitto).

A zone binds only in [valid_from, valid_until) of its own and of its subject's tagging
period; outside it nothing is raised for it, and an episode still open when it ends is
closed at valid_until with `detail.closed_reason` saying why."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from shapely.geometry import Polygon

from engine.cli.main import main
from engine.core.registry import Registry
from engine.core.schedules import Schedules
from engine.wire.alerts import Alert, decode_alert
from tests.helpers import (
    AlertCollector,
    EngineProcess,
    fix,
    offset,
    publish,
    square,
    wait_online,
    write_world,
)
from zones.compile import compile_zones
from zones.model import Subject, Window, Zone, ZoneSet
from zones.schedule import is_active

T0 = 1_790_000_000.0  # 2026-09-21T14:13:20Z
F, U = T0 + 3600.0, T0 + 7200.0  # the validity used throughout: [F, U)
IN, OUT = 0.0, 2000.0  # metres east of the zone's centre: deep inside, far outside


def rfc3339(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat().replace("+00:00", "Z")


def zone(zid: str = "Z1", subject: str = "S1", kind: str = "exclusion", **props: Any) -> dict:  # type: ignore[type-arg]
    return {
        "type": "Feature",
        "properties": {"id": zid, "subject": subject, "kind": kind, **props},
        "geometry": {"type": "Polygon", "coordinates": [square(100.0)]},
    }


def subjects(s1: str = "", s2: str = "") -> str:
    return (
        f'[[subjects]]\nid = "S1"\ntags = ["T1"]\n{s1}\n'
        f'[[subjects]]\nid = "S2"\ntags = ["T2"]\n{s2}\n'
    )


def track(tag: str, t0: float, t1: float, dx: float, seq0: int, step: float = 60.0) -> list[dict]:  # type: ignore[type-arg]
    """`tag` reporting every `step` s at dx metres east of the centre, over [t0, t1)."""
    out, t, seq = [], t0, seq0
    while t < t1:
        out.append({"tag": tag, **fix(seq, t, dx, 0.0)})
        t, seq = t + step, seq + 1
    return out


def walk(tag: str, legs: list[tuple[float, float, float]]) -> list[dict]:  # type: ignore[type-arg]
    """Consecutive legs (t0, t1, dx) of one tag with increasing seq."""
    out: list[dict] = []  # type: ignore[type-arg]
    for t0, t1, dx in legs:
        out += track(tag, t0, t1, dx, len(out))
    return out


def replay(
    tmp: Path,
    features: list[dict],
    subjects_toml: str,
    lines: list[dict],  # type: ignore[type-arg]
) -> list[Alert]:
    tmp.mkdir(parents=True, exist_ok=True)
    zones, subj = write_world(tmp, features, subjects_toml)
    src = tmp / "in.jsonl"
    lines = sorted(lines, key=lambda x: x["t"])  # arrival order: time order across tags
    src.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = tmp / "alerts.jsonl"
    args = ["replay", str(src), "--zones", str(zones), "--subjects", str(subj), "--out", str(out)]
    assert main([*args, "-q"]) == 0
    return [decode_alert(x) for x in out.read_bytes().splitlines()]


def of(alerts: list[Alert], kind: str) -> list[Alert]:
    return [a for a in alerts if a.kind == kind]


def episodes(alerts: list[Alert], kind: str) -> dict[str, list[Alert]]:
    out: dict[str, list[Alert]] = {}
    for a in of(alerts, kind):
        out.setdefault(a.id, []).append(a)
    return out


def closed(records: list[Alert]) -> Alert:
    (c,) = [a for a in records if a.state == "closed"]
    return c


def why(a: Alert) -> dict[str, Any]:
    """What a closed record says about why it closed (its detail also says where)."""
    return {k: v for k, v in (a.detail or {}).items() if k in ("closed_reason", "valid_until")}


# -- loading: every problem said through `tagwatch zones check` -----------------------------


def test_valid_times_load_as_rfc3339_unix_or_toml_datetimes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    feats = [
        zone("Z1", valid_from=rfc3339(F), valid_until=U),
        zone("Z2", valid_from="2026-09-21T16:13:20+01:00", valid_until=None),
    ]
    subj = subjects("valid_from = 2026-09-21T14:13:20Z\n", f'valid_until = "{rfc3339(U)}"\n')
    zones, spath = write_world(tmp_path, feats, subj)
    assert main(["zones", "check", str(zones), str(spath)]) == 0, capsys.readouterr().err
    assert capsys.readouterr().out.startswith("ok: 2 zones, 2 subjects")
    from zones.load import load

    zs = load(zones, spath)
    z1, z2 = zs.zones
    assert (z1.valid_from, z1.valid_until) == (F, U)
    assert (z2.valid_from, z2.valid_until) == (F, float("inf"))
    s1, s2 = zs.subjects
    assert (s1.valid_from, s1.valid_until) == (T0, float("inf"))
    assert (s2.valid_from, s2.valid_until) == (float("-inf"), U)


@pytest.mark.parametrize(
    ("props", "fragments"),
    [
        ({"valid_from": "tomorrow"}, ["valid_from", "'tomorrow'", "RFC 3339"]),
        ({"valid_from": "2026-09-21T14:13:20"}, ["valid_from", "UTC offset"]),
        ({"valid_until": "2026-02-30T00:00:00Z"}, ["valid_until", "not a valid date"]),
        ({"valid_until": True}, ["valid_until", "RFC 3339", "Unix seconds"]),
        ({"valid_from": 1.79e12}, ["valid_from", "milliseconds"]),
        ({"valid_from": 12.0}, ["valid_from", "[2000-01-01, 2100-01-01)"]),
        ({"valid_from": rfc3339(U), "valid_until": rfc3339(F)},
         ["valid_until", rfc3339(F), "must be after valid_from", rfc3339(U)]),
        ({"valid_from": F, "valid_until": F}, ["valid_until", "must be after valid_from"]),
    ],
)  # fmt: skip
def test_bad_zone_validity_is_a_problem_with_words(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    props: dict,
    fragments: list[str],  # type: ignore[type-arg]
) -> None:
    zones, spath = write_world(tmp_path, [zone("Z1", **props)], subjects())
    assert main(["zones", "check", str(zones), str(spath)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == "1 problem(s) found", err
    assert "feature 0 (id 'Z1')" in err[0]
    for f in fragments:
        assert f in err[0], (f, err[0])


@pytest.mark.parametrize(
    ("line", "fragments"),
    [
        ('valid_from = "soon"', ["subject 0 (id 'S1')", "valid_from", "RFC 3339"]),
        ("valid_from = 2026-09-21T14:13:20", ["valid_from", "UTC offset"]),
        ("valid_from = 2026-09-21", ["valid_from", "UTC offset"]),
        ('valid_from = 1790003600\nvalid_until = "2026-09-21T14:13:20Z"',
         ["valid_until", "must be after valid_from"]),
    ],
)  # fmt: skip
def test_bad_tagging_period_is_a_problem_with_words(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, fragments: list[str]
) -> None:
    zones, spath = write_world(tmp_path, [zone()], subjects(line + "\n"))
    assert main(["zones", "check", str(zones), str(spath)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == "1 problem(s) found", err
    for f in fragments:
        assert f in err[0], (f, err[0])


# -- exclusion zones: a licence condition --------------------------------------------------


def test_a_breach_counts_only_while_the_zone_is_valid(tmp_path: Path) -> None:
    """Before: the properties were ignored, so all three visits opened a breach."""
    lines = walk("T1", [
        (T0, T0 + 600, OUT), (T0 + 600, T0 + 1800, IN),  # before valid_from: nothing
        (T0 + 1800, T0 + 4000, OUT), (T0 + 4000, T0 + 5000, IN),  # inside: a breach
        (T0 + 5000, T0 + 8000, OUT), (T0 + 8000, T0 + 9000, IN),  # after valid_until: nothing
        (T0 + 9000, T0 + 9600, OUT),
    ])  # fmt: skip
    feats = [zone(valid_from=rfc3339(F), valid_until=U, warn_m=300.0)]
    alerts = replay(tmp_path, feats, subjects(), lines)
    eps = episodes(alerts, "zone_breach")
    assert len(eps) == 1, alerts
    (recs,) = eps.values()
    assert recs[0].opened_t == T0 + 4000 and closed(recs).closed_t < T0 + 5100
    approach = episodes(alerts, "zone_approach")
    assert all(F <= r[0].opened_t < U for r in approach.values()), approach


def test_a_breach_open_when_the_zone_expires_closes_at_valid_until(tmp_path: Path) -> None:
    lines = walk("T1", [(T0 + 5000, T0 + 6000, OUT), (T0 + 6000, T0 + 9000, IN)])
    alerts = replay(tmp_path, [zone(valid_from=F, valid_until=U)], subjects(), lines)
    eps = episodes(alerts, "zone_breach")
    assert len(eps) == 1, alerts  # still inside after valid_until: nothing new opens
    (recs,) = eps.values()
    c = closed(recs)
    assert recs[0].opened_t == T0 + 6000 and c.closed_t == U
    assert why(c) == {"closed_reason": "zone_valid_until", "valid_until": U}


def test_a_breach_open_when_the_zone_expires_closes_even_if_the_tag_falls_silent(
    tmp_path: Path,
) -> None:
    """The tag's last fix is inside before valid_until; the clock (another tag) moves on."""
    lines = walk("T1", [(T0 + 5000, T0 + 6000, OUT), (T0 + 6000, T0 + 6600, IN)])
    lines += track("T2", T0 + 5000, T0 + 9000, OUT, 0)
    alerts = replay(tmp_path, [zone(valid_until=U)], subjects(), lines)
    (recs,) = episodes(alerts, "zone_breach").values()
    assert closed(recs).closed_t == U
    assert why(closed(recs)) == {"closed_reason": "zone_valid_until", "valid_until": U}


def test_a_drive_through_counts_only_while_the_zone_is_valid(tmp_path: Path) -> None:
    """Straight-line crossings between two fixes outside, at 10 m/s, 120 s apart."""

    def crossing(t: float, seq0: int) -> list[dict]:  # type: ignore[type-arg]
        return [{"tag": "T1", **fix(seq0 + i, t + 120.0 * i, dx, 0.0)}
                for i, dx in enumerate((-1800.0, -600.0, 600.0, 1800.0))]  # fmt: skip

    lines = crossing(T0, 0) + crossing(T0 + 5000, 10) + crossing(T0 + 9000, 20)
    alerts = replay(tmp_path, [zone(valid_from=F, valid_until=U)], subjects(), lines)
    eps = episodes(alerts, "zone_breach")
    assert len(eps) == 1, alerts
    (recs,) = eps.values()
    assert T0 + 5120 < recs[0].opened_t < T0 + 5240 <= recs[0].raised_t


# -- curfews -----------------------------------------------------------------------------


def test_a_curfew_binds_from_valid_from_and_ends_at_valid_until(tmp_path: Path) -> None:
    """An inclusion zone (no schedule: always in force) valid [F, U); the subject is away
    from T0 to T0 + 9000: the breach runs from valid_from to valid_until, and only then."""
    lines = walk("T1", [(T0, T0 + 9000, OUT)])
    feats = [zone(kind="inclusion", valid_from=F, valid_until=rfc3339(U))]
    alerts = replay(tmp_path, feats, subjects(), lines)
    (recs,) = episodes(alerts, "curfew_breach").values()
    assert recs[0].opened_t == F
    c = closed(recs)
    assert c.closed_t == U and why(c) == {"closed_reason": "zone_valid_until", "valid_until": U}


def test_a_scheduled_curfew_outside_validity_raises_nothing(tmp_path: Path) -> None:
    """A nightly curfew whose licence condition ended yesterday: away all night, nothing."""
    sched = [{"days": "Mon-Sun", "start": "19:00", "end": "07:00", "tz": "Europe/London"}]
    feats = [zone(kind="inclusion", schedule=sched, valid_until=T0)]
    lines = walk("T1", [(T0, T0 + 86400.0, OUT)])
    alerts = replay(tmp_path, feats, subjects(), lines)
    assert not of(alerts, "curfew_breach"), alerts
    feats = [zone(kind="inclusion", schedule=sched)]
    assert of(replay(tmp_path / "b", feats, subjects(), lines), "curfew_breach")  # control


# -- subjects: a tagging period ----------------------------------------------------------

PERIOD = f'valid_from = {F:.0f}\nvalid_until = "{rfc3339(U)}"\n'


def test_a_subject_outside_its_tagging_period_raises_no_zone_alert(tmp_path: Path) -> None:
    lines = walk("T1", [
        (T0, T0 + 600, OUT), (T0 + 600, T0 + 1800, IN), (T0 + 1800, T0 + 4000, OUT),
        (T0 + 4000, T0 + 5000, IN), (T0 + 5000, T0 + 8000, OUT), (T0 + 8000, T0 + 9000, IN),
    ])  # fmt: skip
    alerts = replay(tmp_path, [zone()], subjects(PERIOD), lines)
    (recs,) = episodes(alerts, "zone_breach").values()
    assert recs[0].opened_t == T0 + 4000


def test_tag_health_outside_the_tagging_period_pages_nobody(tmp_path: Path) -> None:
    """Fitting (strap events, a low battery) before valid_from and removal after
    valid_until raise nothing; a silence open when the period ends closes at valid_until;
    the same events inside the period do raise."""
    ev = {"type": "event"}
    lines = [
        {"tag": "T1", **ev, "seq": 0, "t": T0, "event": "strap_open"},
        {"tag": "T1", **fix(1, T0 + 60, OUT, 0.0), "batt": 5},
        {"tag": "T1", **ev, "seq": 2, "t": T0 + 120, "event": "strap_closed"},
    ]
    lines += track("T1", T0 + 180, T0 + 5000, OUT, 3)
    lines.append({"tag": "T1", **ev, "seq": 200, "t": T0 + 5000, "event": "strap_open"})
    lines.append({"tag": "T1", **ev, "seq": 201, "t": T0 + 5060, "event": "strap_closed"})
    # silent from T0 + 5060 (due about 15 min later), still silent at valid_until
    lines += track("T2", T0, T0 + 12000, OUT, 0)  # the replay clock moves on
    alerts = replay(tmp_path, [zone()], subjects(PERIOD), lines)
    t1 = [a for a in alerts if a.tag == "T1"]
    tamper = episodes(t1, "tamper")
    assert len(tamper) == 1 and next(iter(tamper.values()))[0].opened_t == T0 + 5000, t1
    assert not of(t1, "battery_low") and not of(t1, "battery_critical"), t1
    (silent,) = episodes(t1, "tag_silent").values()
    assert F <= silent[0].raised_t < U
    c = closed(silent)
    assert c.closed_t == U and c.detail is not None
    assert c.detail["closed_reason"] == "subject_valid_until" and c.detail["valid_until"] == U


def test_a_tag_silent_since_before_its_tagging_period_is_silent_from_valid_from(
    tmp_path: Path,
) -> None:
    """Heard once at fitting (before valid_from), then nothing: the silence limit counts
    from valid_from, not from the fitting test."""
    lines = [{"tag": "T1", **fix(0, T0, OUT, 0.0)}]
    lines += track("T2", T0, U + 3600, OUT, 0)
    alerts = replay(tmp_path, [zone()], subjects(PERIOD), lines)
    (silent,) = episodes([a for a in alerts if a.tag == "T1"], "tag_silent").values()
    assert F < silent[0].raised_t <= F + 1800
    assert closed(silent).closed_t == U


def test_proximity_counts_only_in_the_tagging_period(tmp_path: Path) -> None:
    prot = '[[subjects.protected]]\ndevice = "P1"\nradius_m = 300\n'
    lines = walk("T1", [
        (T0, T0 + 1800, IN), (T0 + 1800, T0 + 4000, OUT), (T0 + 4000, T0 + 5000, IN),
        (T0 + 5000, T0 + 6000, OUT), (T0 + 6000, T0 + 9000, IN),
    ])  # fmt: skip
    lat, lon = offset(IN, 0.0)
    lines += [{"tag": "P1", "seq": k, "t": T0 + 30 + 60 * k, "lat": lat, "lon": lon, "acc": 10}
              for k in range(150)]  # fmt: skip
    alerts = replay(tmp_path, [zone("Z2", subject="S2")], subjects(PERIOD + prot), lines)
    eps = sorted(episodes(alerts, "proximity").values(), key=lambda r: r[0].opened_t)
    assert [r[0].opened_t for r in eps] == [T0 + 4000, T0 + 6000], alerts
    c = closed(eps[1])
    assert c.closed_t == U and why(c) == {
        "closed_reason": "subject_valid_until",
        "valid_until": U,
    }


# -- live: the same over a real mosquitto ------------------------------------------------


@pytest.mark.timeout(180)
def test_live_expired_zones_raise_nothing_and_an_open_breach_closes_at_valid_until(
    mosquitto: Any, tmp_path: Path
) -> None:
    """Serve over a real mosquitto, on wall time: zones valid until an hour ago or from
    tomorrow raise nothing; one valid now raises, and one that expires 20 s from now
    closes its open breach at valid_until when wall time passes it, though no fix says so."""
    now = float(int(time.time()))
    t0, soon = now - 600.0, now + 20.0
    feats = [
        zone("Z-old", valid_until=rfc3339(now - 3600)),
        zone("Z-later", valid_from=now + 86400),
        zone("Z-now", valid_from=now - 3600, valid_until=now + 86400),
        zone("Z-soon", valid_until=soon),
    ]
    zones, subj = write_world(tmp_path, feats, subjects())
    db = tmp_path / "tw.db"
    walk_in = [fix(i, t0 + 60 * i, dx, 0.0) for i, dx in enumerate([-400, -250, 0, 10, -10, 5, 0])]

    def soon_closed(al: list[Alert]) -> bool:
        return any(a.zone == "Z-soon" and a.state == "closed" for a in al)

    async def scenario() -> list[Alert]:
        async with AlertCollector(mosquitto.host, mosquitto.port) as col:
            await wait_online(mosquitto.host, mosquitto.port)
            await publish(mosquitto.host, mosquitto.port,
                          [("tagwatch/v1/tags/T1/fix", json.dumps(f)) for f in walk_in])  # fmt: skip
            await col.wait_for(lambda al: any(a.kind == "zone_breach" for a in al), 60.0)
            await col.wait_for(soon_closed, 90.0)
            return list(col.alerts)

    with EngineProcess(mosquitto.host, mosquitto.port, zones, subj, db) as eng:
        alerts = asyncio.run(scenario())
        assert eng.stop() == 0, eng.log_text()
    breaches = of(alerts, "zone_breach")
    assert {a.zone for a in breaches} == {"Z-now", "Z-soon"}, alerts
    assert all(a.state == "open" for a in breaches if a.zone == "Z-now")
    (c,) = [a for a in breaches if a.zone == "Z-soon" and a.state == "closed"]
    assert c.closed_t == soon
    assert why(c) == {"closed_reason": "zone_valid_until", "valid_until": soon}


# -- the activity the curfew decisions read, against a plain oracle ------------------------

_DAY = 86400.0
_windows = st.builds(
    Window,
    days=st.frozensets(st.integers(0, 6), min_size=1),
    start_min=st.integers(0, 1439),
    end_min=st.integers(0, 1439),
    tz=st.sampled_from(["Europe/London", "America/New_York", "UTC"]),
)
_bound = st.one_of(st.none(), st.floats(T0 - 3 * _DAY, T0 + 3 * _DAY))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(_windows, max_size=2).map(tuple),
    _bound,
    _bound,
    _bound,
    st.lists(st.floats(T0 - 4 * _DAY, T0 + 4 * _DAY), min_size=1, max_size=12),
)
def test_curfew_activity_is_its_schedule_within_its_validity(
    sched: tuple[Window, ...], lo: float | None, hi: float | None, period_end: float | None,
    ts: list[float],
) -> None:  # fmt: skip
    """`Schedules.active` / `window` agree with is_active(schedule) and the zone's own
    [valid_from, valid_until) and the subject's tagging period."""
    lo_ = -math.inf if lo is None else lo
    hi_ = math.inf if hi is None else hi
    until = math.inf if period_end is None else period_end
    assume(lo_ < hi_)
    ring = Polygon(square(100.0)[0:5])
    z = Zone("Z", "S", "inclusion", 0, geometry=ring, schedule=sched, valid_from=lo_,
             valid_until=hi_)  # fmt: skip
    zs = ZoneSet((z,), (Subject("S", ("T",), valid_until=until),))
    table = compile_zones(zs)
    sch = Schedules(zs, table, Registry(zs, table.subject_ids))
    t = np.array(ts)
    got = sch.active(0, t)
    want = [is_active(sched, x) and lo_ <= x < min(hi_, until) for x in ts]
    assert got.tolist() == want
    for x, w in zip(ts, want, strict=True):
        w0, w1, active = sch.window(0, x)
        assert active == w and (not w or w0 <= x < w1)
        if w:
            assert lo_ <= w0 and w1 <= min(hi_, until)
