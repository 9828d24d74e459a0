"""segment_depth (how deep a straight segment runs inside a zone, and where it enters and
leaves) against the shapely oracle (tests/naive.py), on named and random geometry.

Tolerances. Depth: the kernel is never above the truth and less than step/2 below it; the
oracle samples every ORACLE_SPACING metres, so it is at most ORACLE_SPACING/2 low. Fractions:
kernel and oracle cut the same projected segment at the same edges, so they agree to
FRAC_TOL, except for touches: a piece no deeper than TOUCH (rounding, where an end lies on an
edge, the segment grazes a vertex or runs along an edge) may be seen by one and not the
other, or cut elsewhere; an unmatched kernel fraction must then be on the boundary.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely.geometry import Point, Polygon

from tests import naive
from tests.test_kernels import (
    LONDON,
    NAMED,
    SQUARE,
    TABLE,
    Cases,
    at,
    lonlat,
    poly_zone,
    square,
    zones_and_points,
)
from zones.compile import ZoneTable, compile_zones
from zones.geofence import segment_depth, segment_distance, signed_distance
from zones.kernels.frame import M_PER_DEG_LAT
from zones.model import Zone

pytestmark = pytest.mark.kernel

ORACLE_SPACING = 0.5  # metres between the oracle's depth samples
FRAC_TOL = 1e-6  # fractions of the segment
TOUCH = 1e-6  # metres: a piece no deeper than this is a touch
EXAMPLES = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])

LatLon = tuple[float, float]


def depth_of(
    zone: str, a: LatLon, b: LatLon, step: float = 5.0, table: ZoneTable = TABLE
) -> tuple[float, float, float]:
    z = table.zone_index(zone)
    d, f0, f1 = segment_depth(table, [a[0]], [a[1]], [b[0]], [b[1]], [z], step_m=step)
    return float(d[0]), float(f0[0]), float(f1[0])


def oracle_pieces(zone: Zone, table: ZoneTable, z: int, a: LatLon, b: LatLon) -> list:
    frame = naive.frame_of(table, z)
    return naive.segment_depth_pieces(zone, frame, *a, *b, spacing=ORACLE_SPACING)


def boundary_gap(zone: Zone, table: ZoneTable, z: int, a: LatLon, b: LatLon, f: float) -> float:
    """Distance from the point at fraction f along A -> B (zone frame) to the boundary."""
    frame = naive.frame_of(table, z)
    (ax, ay), (bx, by) = naive.to_xy(*a, frame), naive.to_xy(*b, frame)
    x, y = ax + f * (bx - ax), ay + f * (by - ay)
    if zone.is_circle:
        assert zone.radius_m is not None
        return abs(math.hypot(x, y) - zone.radius_m)
    return float(naive.region_xy(zone, frame).boundary.distance(Point(x, y)))


def assert_matches_oracle(
    got: tuple[float, float, float],
    zone: Zone,
    table: ZoneTable,
    z: int,
    a: LatLon,
    b: LatLon,
    step: float,
) -> None:
    """The kernel's (depth, f_in, f_out) against the oracle's pieces (see the module doc)."""
    depth, f_in, f_out = got
    if not all(math.isfinite(v) for v in (*a, *b)):
        assert math.isnan(depth) and math.isnan(f_in) and math.isnan(f_out)
        return
    pieces = oracle_pieces(zone, table, z, a, b)
    want = max((p[2] for p in pieces), default=0.0)
    assert -step / 2 - 1e-6 <= depth - want <= ORACLE_SPACING / 2 + 1e-6, (got, pieces)
    assert depth >= 0.0
    deep = [p for p in pieces if p[2] > TOUCH]
    if math.isnan(f_in) or math.isnan(f_out):
        assert math.isnan(f_in) and math.isnan(f_out) and depth == 0.0, got
        assert not deep, (got, pieces)
        return
    assert 0.0 <= f_in <= f_out <= 1.0, got
    if deep:
        assert f_in <= deep[0][0] + FRAC_TOL and f_out >= max(p[1] for p in deep) - FRAC_TOL
    # f_in is the start of the first deep piece or of a touch before it; f_out likewise
    # from the other end. Touches are rounding: the oracle may see them elsewhere along a
    # near-collinear edge, or not at all; the kernel's must at least be on the boundary.
    ins = []
    for p in pieces:
        ins.append(p[0])
        if p[2] > TOUCH:
            break
    outs = []
    for p in sorted(pieces, key=lambda p: -p[1]):
        outs.append(p[1])
        if p[2] > TOUCH:
            break
    for f, candidates in ((f_in, ins), (f_out, outs)):
        if not any(abs(f - c) <= FRAC_TOL for c in candidates):
            assert boundary_gap(zone, table, z, a, b, f) <= TOUCH, (got, pieces)


# -- named cases: (zone in tests.test_kernels.NAMED, A, B, depth, f_in, f_out) ----------------


class Case(NamedTuple):
    zone: str
    a: LatLon
    b: LatLon
    depth: float
    f_in: float
    f_out: float


EAST_LON = SQUARE.exterior.coords[1][0]  # the 1 km square's east edge (exact vertex lon)
NE_CORNER = SQUARE.exterior.coords[2]  # (lon, lat)
SW_CORNER = SQUARE.exterior.coords[0]

# Straight across the middle of the 1 km square: in at 400 m of 1800, out at 1400.
DRIVE_THROUGH = Case("square", at("square", -900, 0), at("square", 900, 0), 500.0, 2 / 9, 7 / 9)
# Off-centre: the depth is a 200 m plateau (parallel to two edges), not a peak.
DRIVE_THROUGH_OFF_CENTRE = Case(
    "square", at("square", -900, 100), at("square", 900, 100), 400.0, 2 / 9, 7 / 9
)
# Clipping the NE corner on x + y = 900 m: in at (400, 500), out at (500, 400).
CORNER_CLIP = Case("square", at("square", 200, 700), at("square", 700, 200), 50.0, 0.4, 0.6)
# Corner to corner: on the boundary at both ends, inside between.
DIAGONAL = Case(
    "square", (SW_CORNER[1], SW_CORNER[0]), (NE_CORNER[1], NE_CORNER[0]), 500.0, 0.0, 1.0
)
# From a corner outwards: touches the zone at A only.
FROM_CORNER_OUTWARD = Case(
    "square", (NE_CORNER[1], NE_CORNER[0]), at("square", 900, 800), 0.0, math.nan, math.nan
)
# Along the east edge and beyond both its ends: touching is not entering.
ALONG_EDGE = Case(
    "square",
    (at("square", 0, -900)[0], EAST_LON),
    (at("square", 0, 900)[0], EAST_LON),
    0.0,
    math.nan,
    math.nan,
)
# Wholly inside the 200 m hole of the "hole" zone: never enters.
IN_HOLE_ONLY = Case("hole", at("hole", -50, -30), at("hole", 50, 30), 0.0, math.nan, math.nan)
# From the hole's centre out across the ring (100..500 m): deepest 200 m at x = 300.
HOLE_ACROSS_RING = Case("hole", at("hole", 0, 0), at("hole", 700, 0), 200.0, 1 / 7, 5 / 7)
# Starting deep inside: f_in = 0, the depth is A's.
INSIDE_FROM_START = Case("square", at("square", 0, 0), at("square", 900, 0), 500.0, 0.0, 5 / 9)
# Across both 200 m arms of the U (notch between): first entry in arm 1, last exit in arm 2.
U_BOTH_ARMS = Case("u", at("u", -500, 0), at("u", 500, 0), 100.0, 0.2, 0.8)
# Along the U's notch floor (y = -200): inside under each arm, on the boundary between.
U_ALONG_FLOOR = Case("u", at("u", -500, -200), at("u", 500, -200), 100.0, 0.2, 0.8)
# Through the centre of the 250 m circle.
CIRCLE_THROUGH_CENTRE = Case(
    "circle", at("circle", -900, 0), at("circle", 900, 0), 250.0, 650 / 1800, 1150 / 1800
)
# A chord 150 m off the circle's centre: depth 100, in/out at x = -/+200 (exact).
CIRCLE_CHORD = Case(
    "circle", at("circle", -900, 150), at("circle", 900, 150), 100.0, 700 / 1800, 1100 / 1800
)
# Zero length: a point, inside (depth = -signed distance) or outside.
ZERO_LENGTH_INSIDE = Case("square", at("square", 120, -40), at("square", 120, -40), 380.0, 0, 1)
ZERO_LENGTH_OUTSIDE = Case(
    "square", at("square", 700, 0), at("square", 700, 0), 0.0, math.nan, math.nan
)
# Shorter than a nanometre (its squared length underflows): the point A.
SUB_NANOMETRE = Case(
    "circle", at("circle", 0, 0), (at("circle", 0, 0)[0] + 1e-300, at("circle", 0, 0)[1]),
    250.0, 0, 1,
)  # fmt: skip
# East across 180° (the short way) through the zone at 179.98..179.999°E, -17..-16.99°:
# 0.04° of longitude, in after 0.01°, out after 0.029°; half the zone's height deep.
ACROSS_180 = Case(
    "antimeridian", (-16.995, 179.97), (-16.995, -179.99), 0.005 * M_PER_DEG_LAT, 0.25, 0.725
)

NAMED_CASES = {
    name: case for name, case in globals().items() if isinstance(case, Case) and name.isupper()
}


@pytest.mark.parametrize("name", sorted(NAMED_CASES))
def test_named_case(name: str) -> None:
    case = NAMED_CASES[name]
    got = depth_of(case.zone, case.a, case.b)
    z = TABLE.zone_index(case.zone)
    assert_matches_oracle(got, NAMED[case.zone], TABLE, z, case.a, case.b, 5.0)
    depth, f_in, f_out = got
    assert abs(depth - case.depth) < 1e-6, got
    if math.isnan(case.f_in):
        assert math.isnan(f_in) and math.isnan(f_out), got
    else:
        assert abs(f_in - case.f_in) < 1e-9 and abs(f_out - case.f_out) < 1e-9, got


def test_touching_is_not_entering_but_is_meeting() -> None:
    for case in (ALONG_EDGE, FROM_CORNER_OUTWARD):
        assert depth_of(case.zone, case.a, case.b)[0] == 0.0
        z = TABLE.zone_index(case.zone)
        dist = segment_distance(TABLE, [case.a[0]], [case.a[1]], [case.b[0]], [case.b[1]], [z])
        assert dist[0] == 0.0


def test_segment_across_the_frame_seam_never_enters() -> None:
    # Short way from 179°E to 179°W, half a world from the zone: a naive straight line in
    # the zone frame would run right through it.
    z = Zone("null-island", "S1", "exclusion", 0, geometry=Polygon(lonlat(0.0, 0.0, square(500.0))))
    t = compile_zones([z])
    got = depth_of("null-island", (0.0, 179.0), (0.0, -179.0), table=t)
    assert got[0] == 0.0 and math.isnan(got[1]) and math.isnan(got[2])
    assert_matches_oracle(got, z, t, 0, (0.0, 179.0), (0.0, -179.0), 5.0)


def test_nan_in_nan_out() -> None:
    inside = at("square", 0.0, 0.0)
    for zone in ("square", "circle"):
        for a, b in [
            ((math.nan, inside[1]), inside),
            (inside, (inside[0], math.nan)),
            ((math.inf, inside[1]), inside),
        ]:
            assert all(math.isnan(v) for v in depth_of(zone, a, b))


def test_zero_length_depth_is_signed_distance_bit_for_bit() -> None:
    # The polygon depth reuses the signed-distance arithmetic: a point's depth is exactly
    # max(0, -signed_distance).
    rng = np.random.default_rng(7)
    for name in NAMED:
        z = TABLE.zone_index(name)
        pts = np.array([at(name, x, y) for x, y in rng.uniform(-1500, 1500, (50, 2))])
        lat, lon = pts[:, 0], pts[:, 1]
        zi = np.full(lat.shape[0], z)
        d, f_in, f_out = segment_depth(TABLE, lat, lon, lat, lon, zi)
        sd = signed_distance(TABLE, lat, lon, zi)
        np.testing.assert_array_equal(d, np.maximum(-sd, 0.0))
        np.testing.assert_array_equal(f_in, np.where(sd < 0.0, 0.0, np.nan))
        np.testing.assert_array_equal(f_out, np.where(sd < 0.0, 1.0, np.nan))


def test_step_bounds_the_depth_error() -> None:
    # A chord of the U's arm at a slant: the depth is a peak, found within step/2 for any step.
    a, b = at("u", -500, -150), at("u", 0, 400)
    exact = depth_of("u", a, b, step=1e-3)[0]
    for step in (0.5, 5.0, 50.0, 500.0):
        d = depth_of("u", a, b, step=step)[0]
        assert exact - step / 2 - 1e-6 <= d <= exact + 1e-3


def test_long_plateau_stops_at_the_evaluation_budget() -> None:
    # Down the middle of a 30 km x 200 m strip: a 29.8 km plateau 100 m deep. Proving no
    # point is deeper would take ~8000 bisections at 5 m; the search stops at the budget
    # with the plateau's depth (found first, at the midpoint) and exact fractions.
    strip = Polygon(
        lonlat(*LONDON, [(-15_000, -100), (15_000, -100), (15_000, 100), (-15_000, 100)])
    )
    t = compile_zones([poly_zone("strip", strip)])
    a, b = lonlat(*LONDON, [(-16_000, 0), (16_000, 0)])
    depth, f_in, f_out = depth_of("strip", (a[1], a[0]), (b[1], b[0]), table=t)
    assert abs(depth - 100.0) < 1e-6
    assert abs(f_in - 1 / 32) < 1e-9 and abs(f_out - 31 / 32) < 1e-9


# -- random geometry against the oracle --------------------------------------------------------


@EXAMPLES
@given(zones_and_points(), st.sampled_from([1.0, 5.0, 25.0]))
def test_segment_depth_matches_shapely(cases: Cases, step: float) -> None:
    """Consecutive points as segments, both ways (1-3 zones in one table)."""
    t = compile_zones([zone for zone, _ in cases])
    for z, (zone, pts) in enumerate(cases):
        segs = list(itertools.pairwise(pts))
        segs += [(q, p) for p, q in segs]
        a = np.array([p for p, _ in segs])
        b = np.array([q for _, q in segs])
        zi = np.full(a.shape[0], z)
        d, f_in, f_out = segment_depth(t, a[:, 0], a[:, 1], b[:, 0], b[:, 1], zi, step_m=step)
        for i, (p, q) in enumerate(segs):
            got = (float(d[i]), float(f_in[i]), float(f_out[i]))
            assert_matches_oracle(got, zone, t, z, p, q, step)


# -- batch form and validation -----------------------------------------------------------------


def test_batch_equals_scalar_loop() -> None:
    rng = np.random.default_rng(11)
    names = sorted(NAMED)
    n = 60
    zs = rng.integers(0, len(names), n)
    a = np.array([at(names[k], *rng.uniform(-1500, 1500, 2)) for k in zs])
    b = np.array([at(names[k], *rng.uniform(-1500, 1500, 2)) for k in zs])
    zi = np.array([TABLE.zone_index(names[k]) for k in zs])
    batch = segment_depth(TABLE, a[:, 0], a[:, 1], b[:, 0], b[:, 1], zi)
    for i in range(n):
        one = segment_depth(TABLE, a[i : i + 1, 0], a[i : i + 1, 1], b[i : i + 1, 0],
                            b[i : i + 1, 1], zi[i : i + 1])  # fmt: skip
        for k in range(3):
            np.testing.assert_array_equal(batch[k][i : i + 1], one[k])


def test_empty_batch() -> None:
    out = segment_depth(TABLE, [], [], [], [], [])
    assert [o.shape for o in out] == [(0,), (0,), (0,)]


@pytest.mark.parametrize("step", [0.0, -1.0, math.nan, math.inf])
def test_bad_step_rejected(step: float) -> None:
    with pytest.raises(ValueError, match="step_m"):
        segment_depth(TABLE, [0.0], [0.0], [0.0], [0.0], [0], step_m=step)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (([0.0, 1.0], [0.0], [0.0], [0.0], [0]), "equal length"),
        (([0.0], [0.0], [0.0], [0.0], [TABLE.n_zones]), "out of range"),
        (([0.0], [0.0], [0.0], [0.0], [0.5]), "integer"),
        ((["a"], [0.0], [0.0], [0.0], [0]), "numeric"),
    ],
)
def test_bad_input_rejected(args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        segment_depth(TABLE, *args)
