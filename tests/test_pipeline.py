"""Pipeline decisions driven with records, as live and replay feed it."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from shapely.geometry import Polygon

from engine.core.pipeline import Pipeline
from engine.settings import Settings
from engine.wire.alerts import Alert
from engine.wire.records import EventRecord, FixRecord
from tests.helpers import offset, square
from zones.model import Protected, Subject, Window, Zone, ZoneSet

T0 = 1_774_710_000.0  # 2026-03-28 15:00 UTC


def _poly(half_m: float, cx: float = 0.0, cy: float = 0.0, holes=()) -> Polygon:  # type: ignore[no-untyped-def]
    return Polygon(square(half_m, cx, cy), [square(h, hx, hy)[::-1] for h, hx, hy in holes])


def _fix(seq: int, dx: float, dy: float, dev: str = "T1", acc: float = 5.0, t=None) -> FixRecord:  # type: ignore[no-untyped-def]
    lat, lon = offset(dx, dy)
    return FixRecord(dev, seq, T0 + 60 * seq if t is None else t, lat, lon, acc)


HEALTH = {"tag_silent", "no_location", "battery_low", "battery_critical", "tamper"}


def _run(p: Pipeline, recs: list, finish: bool = False) -> list[Alert]:  # type: ignore[type-arg]
    """Breach-side alerts (these tests space fixes minutes or days apart: the silences
    between them are tests/test_health.py's business)."""
    out: list[Alert] = []
    for r in recs:  # one record per batch: the strictest ordering
        out += p.process([r]).alerts
    out += p.finish() if finish else []
    return [a for a in out if a.kind not in HEALTH]


def _world(
    zones: list[Zone], subjects: list[Subject] | None = None, settings: Settings | None = None
) -> Pipeline:
    subs = subjects or [Subject("S1", ("T1",))]
    return Pipeline(ZoneSet(tuple(zones), tuple(subs)), settings=settings or Settings())


EXCL = Zone("Z1", "S1", "exclusion", 0, geometry=_poly(100))
GAP = Settings().exit_gap_s


def test_one_episode_per_stay_and_a_new_one_after_the_exit_gap() -> None:
    p = _world([EXCL])
    path = [(-300, 0), (-50, 0), (0, 0), (50, 20), (-30, 0), (300, 0), (350, 0), (400, 0)]
    path += [(250, 0), (60, 0), (250, 0), (400, 0), (520, 0), (640, 0)]
    alerts = _run(p, [_fix(i, x, y) for i, (x, y) in enumerate(path)])
    got = [(a.kind, a.state, a.evidence[0][1]) for a in alerts]
    assert got == [
        ("zone_breach", "open", 1),
        ("zone_breach", "closed", 1),
        ("zone_breach", "open", 9),
        ("zone_breach", "closed", 9),
    ]
    first = alerts[1]
    assert first.evidence == [("T1", 1), ("T1", 2), ("T1", 3), ("T1", 4)]
    assert first.opened_t == T0 + 60 and first.closed_t == T0 + 300  # first fix back out
    assert alerts[0].id == alerts[1].id != alerts[2].id


def test_reentry_within_the_exit_gap_is_the_same_episode() -> None:
    p = _world([EXCL])
    path = [(-300, 0), (0, 0), (300, 0), (0, 0), (300, 0), (320, 0), (340, 0), (360, 0)]
    alerts = _run(p, [_fix(i, x, y) for i, (x, y) in enumerate(path)])
    # the first pass is a straight crossing at a steady 5 m/s: raised again, confident, at
    # the fix after it (tests/test_crossing.py); the re-entry joins the same episode
    assert [(a.state, a.closed_t) for a in alerts] == [
        ("open", None),
        ("open", None),
        ("closed", T0 + 240),
    ]
    assert len({a.id for a in alerts}) == 1
    assert alerts[2].evidence == [("T1", 1), ("T1", 2), ("T1", 3)]


def test_same_alerts_whatever_the_batching() -> None:
    path = [(-300, 0), (-50, 0), (0, 0), (300, 0), (320, 0), (340, 0), (10, 10), (500, 0)]
    recs = [_fix(i, x, y) for i, (x, y) in enumerate(path)]
    one_by_one = _run(_world([EXCL]), recs, finish=True)
    p = _world([EXCL])
    whole = p.process(recs).alerts + p.finish()
    assert whole == one_by_one and len(whole) == 4


def test_duplicates_and_unknown_devices() -> None:
    p = _world([EXCL])
    res = p.process([_fix(0, 0, 0), _fix(0, 0, 0), _fix(1, 0, 0, dev="GHOST")])
    assert res.duplicates == 1 and res.fixes == 1
    assert len(res.dead) == 1 and "GHOST" in res.dead[0].reason
    assert b"GHOST" in res.dead[0].payload
    assert [a.kind for a in res.alerts] == ["zone_breach"]
    res = p.process([EventRecord("NOPE", 1, T0, "strap_open"), EventRecord("T1", 1, T0, "no_gps")])
    assert res.events == 1 and len(res.dead) == 1


def test_a_hole_is_permitted_and_leaving_it_crosses_the_zone() -> None:
    z = Zone("Z1", "S1", "exclusion", 0, geometry=_poly(200, holes=[(50, 0, 0)]))
    p = _world([z])
    assert _run(p, [_fix(0, 0, 0), _fix(1, 10, -20), _fix(2, -20, 30)]) == []
    # walking out of an enclave means crossing the zone, even with no fix in it
    alerts = _run(p, [_fix(3, 300, 0)])
    assert [(a.kind, a.state) for a in alerts] == [
        ("zone_breach", "open"),
        ("zone_breach", "closed"),
    ]
    assert [a.state for a in _run(p, [_fix(9, 120, 0, t=T0 + 3600)])] == ["open"]


def test_a_corridor_between_two_parts_is_permitted() -> None:
    from shapely.geometry import MultiPolygon

    west = Polygon(square(100, -130, 0))
    east = Polygon(square(100, 130, 0))
    z = Zone("Z1", "S1", "exclusion", 0, geometry=MultiPolygon([west, east]))
    p = _world([z])
    walk = [_fix(i, (i % 3 - 1) * 5, -400 + 100 * i) for i in range(9)]  # up the 60 m road
    assert _run(p, walk) == []


def test_approach_ring_then_breach_supersedes() -> None:
    z = Zone("Z1", "S1", "exclusion", 0, geometry=_poly(100), warn_m=150)
    p = _world([z])
    alerts = _run(p, [_fix(0, -400, 0), _fix(1, -200, 0), _fix(2, -180, 0), _fix(3, 0, 0)])
    got = [(a.kind, a.state, a.severity) for a in alerts]
    assert got == [
        ("zone_approach", "open", "medium"),
        ("zone_breach", "open", "high"),
        ("zone_approach", "closed", "medium"),
    ]
    assert alerts[2].evidence == [("T1", 1), ("T1", 2)]
    assert alerts[2].closed_t == alerts[1].opened_t


def test_severity_from_risk_and_no_alarm_from_uncertain_drift() -> None:
    p = _world([EXCL], [Subject("S1", ("T1",), risk=3)])
    deep = _run(p, [_fix(0, 0, 0)])
    assert deep[0].severity == "critical"
    assert deep[0].confidence == Settings().single_fix_confidence_max  # one fix: capped
    q = _world([EXCL])
    # 5 m inside with a 40 m accuracy, twice: could be drift; not a breach
    assert _run(q, [_fix(1, 300, 0), _fix(2, 95, 0, acc=40), _fix(3, 96, 0, acc=40)]) == []


def test_a_wild_fix_that_jumps_in_and_back_is_implausible_not_a_breach() -> None:
    p = _world([EXCL])
    walk = [_fix(0, -900, 0), _fix(1, -830, 0), _fix(2, 0, 0), _fix(3, -700, 0)]
    alerts = _run(p, walk)
    assert [(a.kind, a.state, a.severity) for a in alerts] == [
        ("implausible_fix", "open", "low"),
        ("implausible_fix", "closed", "low"),
    ]
    assert alerts[0].evidence == [("T1", 2)] and alerts[0].raised_t == T0 + 120


def test_a_fast_fix_that_the_next_one_confirms_is_a_breach() -> None:
    p = _world([EXCL])
    # a walker jumps into a car: the fix inside is fast, and the next one carries on
    walk = [_fix(0, -900, 0), _fix(1, -830, 0), _fix(2, 0, 0), _fix(3, 700, 0)]
    alerts = _run(p, walk)
    assert [(a.kind, a.state) for a in alerts] == [("zone_breach", "open")]
    assert alerts[0].opened_t == T0 + 120 and alerts[0].raised_t == T0 + 180  # decided then


def test_nan_fix_is_never_inside() -> None:
    p = _world([EXCL])
    assert _run(p, [FixRecord("T1", 0, T0, float("nan"), float("nan"), 5.0)]) == []


def test_drive_through_between_fixes_is_a_breach() -> None:
    p = _world([EXCL])
    # 15 m/s straight across the 200 m zone; fixes 60 s apart never land inside
    recs = [_fix(i, -1350 + 900 * i, 0) for i in range(3)]  # x = -1350, -450, 450
    alerts = _run(p, recs)
    assert [(a.kind, a.state) for a in alerts] == [
        ("zone_breach", "open"),
        ("zone_breach", "closed"),
    ]
    a = alerts[1]
    assert a.evidence == [("T1", 1), ("T1", 2)] and a.raised_t == T0 + 120
    assert T0 + 60 + 20 <= a.opened_t <= T0 + 60 + 32  # entry at x=-100: 350 m after x=-450
    assert a.confidence <= Settings().transit_confidence_max


def test_walking_straight_through_to_a_fix_just_inside_is_dated_from_the_entry() -> None:
    p = _world([EXCL])
    # across the middle; the fix lands 5 m inside the far edge with a poor accuracy
    alerts = _run(p, [_fix(0, 600, 0), _fix(1, 300, 0), _fix(2, -95, 0, acc=40)])
    assert [(a.kind, a.state) for a in alerts] == [("zone_breach", "open")]
    assert alerts[0].evidence == [("T1", 1)] and alerts[0].raised_t == T0 + 120
    assert alerts[0].opened_t == T0 + 60 + 60 * 200 / 395  # interpolated entry at x=100


def test_driving_round_a_corner_is_not_a_breach() -> None:
    p = _world([EXCL])
    # along the road 40 m south of the zone, turn north at the corner 40 m east of it
    recs = [_fix(0, -900, -140), _fix(1, -200, -140), _fix(2, 140, 300), _fix(3, 140, 1000)]
    assert _run(p, recs) == []


def test_driving_at_a_zone_then_away_beyond_it_is_a_possible_breach() -> None:
    p = _world([EXCL], settings=Settings(onward_routes=True))
    # north at 11.7 m/s straight at the zone; 60 s later 600 m on, 60 degrees right of the
    # heading: the straight segment misses the zone by 13 m, but keeping on north and
    # bending right (a 60 degree turn costs 3 s) goes deep into it
    recs = [_fix(0, 0, -1000), _fix(1, 0, -300), _fix(2, 303, 225)]
    alerts = _run(p, recs)
    assert [(a.kind, a.state) for a in alerts] == [
        ("zone_breach", "open"),
        ("zone_breach", "closed"),
    ]
    a = alerts[1]
    assert a.confidence <= Settings().possible_confidence_max and a.raised_t == T0 + 120
    assert a.evidence == [("T1", 1), ("T1", 2)]
    assert T0 + 60 < a.opened_t < a.closed_t < T0 + 120


def test_a_right_angle_turn_costs_time_so_the_route_cannot_have_gone_as_far_on() -> None:
    # north at 11.7 m/s at the zone, then 450 m east of the heading 60 s later. Without
    # slowing for the corner the tag could have kept on north 236 m (36 m into the zone)
    # and turned; a right angle costs onward_turn_s, and that route no longer fits
    recs = [_fix(0, 0, -1000), _fix(1, 0, -300), _fix(2, 450, 50)]
    onward = Settings(onward_routes=True)
    sharp = _run(_world([EXCL], settings=replace(onward, onward_turn_s=0.0)), recs)
    assert [(a.kind, a.state) for a in sharp] == [
        ("zone_breach", "open"),
        ("zone_breach", "closed"),
    ]
    assert Settings().onward_turn_s >= 5.0
    assert _run(_world([EXCL], settings=onward), recs) == []


def test_turning_off_before_the_zone_is_not_a_breach() -> None:
    p = _world([EXCL])
    # the same approach, but 60 s later 600 m east: it must have turned within 100 m
    recs = [_fix(0, 0, -1000), _fix(1, 0, -300), _fix(2, 600, -250), _fix(3, 1300, -250)]
    assert _run(p, recs) == []


def _curfew() -> Zone:
    w = Window(frozenset(range(7)), 19 * 60, 7 * 60, "Europe/London")
    return Zone("HOME", "S1", "inclusion", 0, geometry=_poly(60), schedule=(w,))


def _utc(y: int, mo: int, d: int, h: int, mi: int = 0) -> float:
    return dt.datetime(y, mo, d, h, mi, tzinfo=dt.UTC).timestamp()


def test_curfew_breach_dates_from_the_window_when_already_away() -> None:
    p = _world([_curfew()])
    # London is UTC+0 until 29 March 2026 01:00 UTC; curfew 19:00-07:00 local
    recs = [
        _fix(0, 500, 0, t=_utc(2026, 3, 27, 18, 30)),  # away before curfew: fine
        _fix(1, 500, 0, t=_utc(2026, 3, 27, 19, 5)),  # still away after 19:00: breach
        _fix(2, 0, 0, t=_utc(2026, 3, 27, 19, 40)),  # home: closes
        _fix(3, 500, 0, t=_utc(2026, 3, 28, 8, 0)),  # out in the morning: fine
    ]
    alerts = _run(p, recs)
    assert [(a.kind, a.state) for a in alerts] == [
        ("curfew_breach", "open"),
        ("curfew_breach", "closed"),
    ]
    assert alerts[0].opened_t == _utc(2026, 3, 27, 19, 0) and alerts[0].raised_t == recs[1].t
    assert alerts[1].closed_t == recs[2].t


def test_curfew_follows_the_clock_change() -> None:
    p = _world([_curfew()])
    # 29 March 2026: BST starts; 06:30 UTC is 07:30 local, after the curfew ended.
    # A naive UTC clock would still think it is 06:30, inside the curfew.
    assert _run(p, [_fix(0, 500, 0, t=_utc(2026, 3, 29, 6, 30))]) == []
    # 18:30 UTC on the same day is 19:30 local: curfew is on
    alerts = _run(p, [_fix(1, 500, 0, t=_utc(2026, 3, 29, 18, 30))])
    assert [(a.kind, a.state) for a in alerts] == [("curfew_breach", "open")]


def test_proximity_to_the_victims_phone_joins_on_time() -> None:
    subj = Subject("S1", ("T1",), protected=(Protected("alice/phone", 200, 300),))
    p = _world([], [subj])
    phone = "alice/phone"
    recs = [_fix(0, 100, 0), _fix(1000, 0, 0, dev=phone, t=T0 + 30)]
    recs += [_fix(i, 400, 0) for i in (1, 2)]  # within the warn ring (200 + 300)
    recs += [_fix(i, 120, 0) for i in (3, 4, 5)]  # within the radius
    recs += [_fix(i, 2000, 0) for i in (6, 7, 8, 9)]  # gone
    alerts = _run(p, recs)
    assert [(a.kind, a.state) for a in alerts] == [
        ("proximity_approach", "open"),
        ("proximity", "open"),  # possible at once: the phone's fix is 150 s old
        ("proximity_approach", "closed"),
        ("proximity", "open"),  # a second fix: likely, re-published
        ("proximity", "closed"),
    ]
    assert all(a.zone == phone and a.tag == "T1" for a in alerts)
    assert alerts[1].confidence <= Settings().possible_confidence_max < alerts[3].confidence
    assert alerts[1].severity == "critical" and alerts[4].closed_t == T0 + 360


def test_victim_phone_fix_never_counts_as_the_subjects_position() -> None:
    subj = Subject("S1", ("T1",), protected=(Protected("alice/phone", 200),))
    p = _world([EXCL], [subj])
    # the phone is deep inside S1's exclusion zone: no breach for S1
    assert _run(p, [_fix(5, 0, 0, dev="alice/phone")]) == []


def test_a_silent_victim_phone_is_reported_stale_not_pretended() -> None:
    subj = Subject("S1", ("T1",), protected=(Protected("alice/phone", 200, 100),))
    p = _world([], [subj])
    phone = "alice/phone"
    recs = [_fix(1000, 0, 0, dev=phone, t=T0)]  # then the phone goes quiet
    recs += [_fix(i, 150, 0) for i in range(20, 24)]  # 20+ minutes later, 150 m away
    recs += [_fix(1100, 0, 0, dev=phone, t=T0 + 60 * 23 + 10)]  # the phone is back
    recs += [_fix(i, 900, 0) for i in range(24, 28)]
    alerts = _run(p, recs)
    stale = [a for a in alerts if a.kind == "victim_device_stale"]
    assert [(a.state, a.severity, a.zone) for a in stale] == [
        ("open", "high", phone),
        ("closed", "high", phone),
    ]
    assert stale[0].opened_t == T0 + 60 * 20
    assert not [a for a in alerts if a.kind == "proximity"]  # no pretended distance
