"""A crossing seen three ways (engine/core/transit.py, Routes.crossing_step; docs/decisions.md,
"Confidence"): a breach opened by one fix inside rises to crossing_confidence_max at the
next fix when the fixes either side of it, outside, put it there: on the straight track
between them at a steady speed, which is itself inside the zone then. Through
`tagwatch replay`, with the zone of tests/test_where.py (a 200 m square)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.settings import Settings
from engine.wire.alerts import Alert
from tests.helpers import fix
from tests.test_where import ROUTE_KEYS, T0, metres, replay, zone

S = Settings()


def drive(
    points: list[tuple[float, float]], acc: list[float] | None = None, step: float = 60.0
) -> list[dict[str, Any]]:
    """T1 at each (dx, dy) metres from the zone's centre, one fix every `step` s."""
    accs = acc or [5.0] * len(points)
    return [
        {"tag": "T1", **fix(i, T0 + step * i, x, y, acc=a)}
        for i, ((x, y), a) in enumerate(zip(points, accs, strict=True))
    ]


def breaches(tmp: Path, lines: list[dict[str, Any]], settings: str = "") -> list[Alert]:
    """`tagwatch replay` of `lines` on the square; `settings`: a settings TOML's text."""
    return [a for a in replay(tmp, lines, [zone()], settings=settings) if a.kind == "zone_breach"]


# 13.3 m/s east along the square's east-west axis: one fix 50 m inside (x = -50)
STRAIGHT = [(-1650.0, 0.0), (-850.0, 0.0), (-50.0, 0.0), (750.0, 0.0), (1550.0, 0.0), (2350.0, 0.0)]


def test_one_fix_inside_on_a_straight_drive_through_rises_to_confident(tmp_path: Path) -> None:
    lines = drive(STRAIGHT)
    got = breaches(tmp_path, lines)
    assert [a.state for a in got] == ["open", "open", "closed"], got
    opened, escalated, closed = got
    assert opened.confidence == S.single_fix_confidence_max
    assert opened.raised_t == T0 + 120 and opened.opened_t == T0 + 120
    # raised again (same id) at the fix after, which says it was a crossing
    assert escalated.id == opened.id and escalated.raised_t == T0 + 180
    assert escalated.confidence == closed.confidence == S.crossing_confidence_max
    assert ("T1", 3) in escalated.evidence
    d = escalated.detail
    assert d is not None and set(d) == ROUTE_KEYS, d
    assert d["route"] == "crossing" and d["from_t"] == T0 + 60  # the track from the fix before
    assert metres(d["lat"], d["lon"], lines[3]["lat"], lines[3]["lon"]) < 0.2
    assert abs(d["depth_m"] - 100.0) < 0.5, d  # the track goes through the square's middle


def test_a_fix_off_the_track_between_its_neighbours_stays_single(tmp_path: Path) -> None:
    """The fix inside 60 m off the line its neighbours make (a bend, a burst): one fix."""
    pts = list(STRAIGHT)
    pts[2] = (-50.0, 60.0)
    got = breaches(tmp_path, drive(pts))
    assert [a.state for a in got] == ["open", "closed"], got
    assert all(a.confidence == S.single_fix_confidence_max for a in got)


def test_a_track_beside_the_zone_does_not_corroborate_a_fix_inside(tmp_path: Path) -> None:
    """A road 20 m north of the square with coarse fixes (acc 60 m) either side of a sharp
    fix 40 m in: near enough to the track for its sigmas, but the track never enters."""
    pts = [(x, 120.0) for x, _ in STRAIGHT]
    pts[2] = (-50.0, 60.0)
    acc = [60.0, 60.0, 5.0, 60.0, 60.0, 60.0]
    got = breaches(tmp_path, drive(pts, acc))
    assert got and all(a.confidence <= S.single_fix_confidence_max for a in got), got
    assert [a.state for a in got] == ["open", "closed"], got


def test_a_run_of_fixes_through_the_zone_rises_at_the_fix_after_it(tmp_path: Path) -> None:
    """5 m/s east at 15 s fixes (a tag asked to report fast): three fixes inside, 40, 100 and
    10 m in (the last too shallow to count as a transit from it), then out."""
    lines = drive([(-360.0 + 75.0 * i, 0.0) for i in range(12)], step=15.0)
    got = breaches(tmp_path, lines)
    assert [a.state for a in got] == ["open", "open", "closed"], got
    opened, escalated, _ = got
    assert opened.raised_t == opened.opened_t == T0 + 60  # x = -60: decisive
    assert opened.confidence < 0.9
    assert escalated.raised_t == T0 + 105  # x = 165, the first fix after the run
    assert escalated.confidence == S.crossing_confidence_max
    d = escalated.detail
    assert d is not None and d["route"] == "crossing" and d["from_t"] == T0 + 45, d


def test_a_burst_of_fixes_off_a_road_beside_the_zone_is_no_crossing(tmp_path: Path) -> None:
    """The same drive on a road 30 m north of the square; two fixes together 60 m south."""
    pts = [(-375.0 + 75.0 * i, 130.0) for i in range(12)]
    pts[5], pts[6] = (pts[5][0], 70.0), (pts[6][0], 70.0)
    got = breaches(tmp_path, drive(pts, step=15.0))
    assert got and all(a.confidence < 0.9 for a in got), got


def test_a_burst_that_shifts_the_fix_after_the_run_too_is_no_crossing(tmp_path: Path) -> None:
    """A walk east along a path 20 m north of the square, fixes a minute apart (acc 16 m);
    a burst shifts three fixes 70 m south: two inside, then one past the east edge. Each
    lies on the line its neighbours draw, and the line from the fix before the burst to
    the last one is inside through both, up to 33 m in; but the burst moved that last
    fix, and with it the line, by more than that."""
    pts = [(-382.0 + 85.0 * i, 120.0) for i in range(9)]  # P = pts[3] at x = -127
    for i in (4, 5, 6):
        pts[i] = (pts[i][0], 50.0)
    got = breaches(tmp_path, drive(pts, acc=[16.0] * len(pts)))
    assert got and all(a.confidence < 0.9 for a in got), got
    assert not [a for a in got if (a.detail or {}).get("route") == "crossing"], got


def test_a_shallow_crossing_at_a_vehicles_pace_is_likely(tmp_path: Path) -> None:
    """14.7 m/s east at 15 s fixes along a road 22 m inside the square's north edge (acc
    10 m): one fix inside, too shallow to decide by itself (possible). The fixes either
    side put it on their straight track, 22 m in: deep enough for a transit, but a burst
    shifting it and the fix after it together could have put a track outside there, so
    it is likely (ranked by how much of that shift the depth rules out), not confident.
    At a walker's pace nothing draws such a chord: the setting's speed gates it."""
    lines = drive([(-440.0 + 220.0 * i, 78.0) for i in range(6)], [10.0] * 6, step=15.0)
    got = breaches(tmp_path, lines)
    assert [a.state for a in got] == ["open", "open", "closed"], got
    opened, likely, _ = got
    assert opened.confidence == S.possible_confidence_max and opened.raised_t == T0 + 30
    assert likely.id == opened.id and likely.raised_t == T0 + 45
    assert S.likely_confidence_min <= likely.confidence < S.transit_confidence_max, likely
    d = likely.detail
    assert d is not None and d["route"] == "crossing" and d["from_t"] == T0 + 15, d
    assert abs(d["depth_m"] - 22.0) < 0.5, d
    (tmp_path / "slow").mkdir()
    got = breaches(tmp_path / "slow", lines, "crossing_likely_min_speed_mps = 20.0\n")
    assert got and all(a.confidence == S.possible_confidence_max for a in got), got


def test_a_wild_fix_between_two_still_fixes_is_no_crossing(tmp_path: Path) -> None:
    """Parked 600 m west; one fix lands in the middle of the zone and the next is back."""
    pts = [(-600.0, 0.0), (-600.0, 5.0), (0.0, 0.0), (-600.0, 0.0), (-600.0, 5.0)]
    got = replay(tmp_path, drive(pts), [zone()])
    assert not [a for a in got if a.kind == "zone_breach"], got
    assert [a.kind for a in got if a.state == "open"] == ["implausible_fix"], got


# -- no fix inside: the segment, seen both ways (Settings.straight_crossings) ----------------
# 14.7 m/s east at 15 s fixes (a car asked to report fast) along the square's axis: 220 m
# steps put the fixes 110 m either side of its middle, none inside
STEPS = [(-550.0 + 220.0 * i, 0.0) for i in range(6)]


def test_a_straight_steady_drive_with_no_fix_inside_is_a_crossing(tmp_path: Path) -> None:
    lines = drive(STEPS, step=15.0)
    got = breaches(tmp_path, lines)  # opened and closed at once, on x = 110
    assert [a.state for a in got] == ["open", "closed"], got
    rec = got[-1]
    assert rec.raised_t == T0 + 45 and rec.closed_t is not None and rec.closed_t < T0 + 45
    assert all(a.confidence == S.crossing_confidence_max for a in got)
    d = rec.detail
    assert d is not None and d["route"] == "crossing" and d["from_t"] == T0 + 30, d
    assert abs(d["depth_m"] - 100.0) < 0.5
    (tmp_path / "off").mkdir()
    got = breaches(tmp_path / "off", lines, "straight_crossings = false\n")
    assert got and all(a.confidence <= S.transit_confidence_max for a in got), got


def test_a_segment_after_a_bend_is_no_crossing(tmp_path: Path) -> None:
    """The fix before the segment's start is 150 m north of the straight line: a bend, so
    the car may have bent again and gone round."""
    pts = list(STEPS)
    pts[1] = (pts[1][0], 150.0)
    got = breaches(tmp_path, drive(pts, step=15.0))
    assert got and all(a.confidence <= S.transit_confidence_max for a in got), got
    assert not [a for a in got if (a.detail or {}).get("route") == "crossing"], got


def test_a_segment_a_burst_could_have_made_is_no_crossing(tmp_path: Path) -> None:
    """The same drive 60 m north of the axis with 15 m fixes: the segment runs 40 m inside
    the north edge, but a burst shifting the fix after it together with all that follows
    passes the straight-track check unseen up to ~70 m at these accuracies, and could have
    put it there; along the axis (100 m in) it could not."""
    acc = [15.0] * len(STEPS)
    got = breaches(tmp_path, drive([(x, 60.0) for x, _ in STEPS], acc, step=15.0))
    assert got and all(a.confidence <= S.transit_confidence_max for a in got), got
    (tmp_path / "axis").mkdir()
    got = breaches(tmp_path / "axis", drive(STEPS, acc, step=15.0))
    assert got and got[-1].confidence == S.crossing_confidence_max, got
