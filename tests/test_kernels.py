"""Geofence kernels against the shapely oracle (tests/naive.py), on named and random geometry.

Tolerance. Kernel and oracle see bit-identical projected coordinates, so they differ only in
floating-point rounding: |kernel - oracle| <= TOL_ABS + TOL_REL * |oracle|. Away from the
boundary (|oracle| > TOL_ABS) the sign must agree exactly; within TOL_ABS of the boundary
(1 µm: far below GPS error) the sign may differ.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from shapely.geometry import MultiPolygon, Polygon

from tests import naive
from zones.compile import ZoneTable, compile_zones
from zones.geofence import (
    point_distance_m,
    segment_distance,
    segment_distance_by_subject,
    signed_distance,
    signed_distance_by_subject,
)
from zones.kernels.frame import M_PER_DEG_LAT
from zones.model import Zone

pytestmark = pytest.mark.kernel

TOL_ABS = 1e-6  # metres
TOL_REL = 1e-9
EXAMPLES = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def lonlat(latc: float, lonc: float, xy: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Metre offsets about (latc, lonc) as GeoJSON (lon, lat) pairs."""
    kx = M_PER_DEG_LAT * math.cos(math.radians(latc))
    return [(lonc + x / kx, latc + y / M_PER_DEG_LAT) for x, y in xy]


def square(half: float, cx: float = 0.0, cy: float = 0.0) -> list[tuple[float, float]]:
    return [(cx - half, cy - half), (cx + half, cy - half), (cx + half, cy + half),
            (cx - half, cy + half)]  # fmt: skip


def poly_zone(zid: str, geom: Polygon | MultiPolygon, subject: str = "S1") -> Zone:
    return Zone(zid, subject, "exclusion", 0, geometry=geom)


# -- named edge-case geometry (shapely-style test constants) ---------------------------------

LONDON = (51.5, -0.12)
SVALBARD = (78.22, 15.65)  # Longyearbyen
SQUARE = Polygon(lonlat(*LONDON, square(500.0)))  # 1 km square
SQUARE_VERTEX = SQUARE.exterior.coords[1]  # (lon, lat) exactly a vertex
ON_EDGE = (LONDON[0], SQUARE_VERTEX[0])  # (lat, lon) on the east edge, mid-height
SQUARE_WITH_HOLE = Polygon(lonlat(*LONDON, square(500.0)), [lonlat(*LONDON, square(100.0))])
MULTI_WITH_GAP = MultiPolygon(  # two 400 m squares, 200 m apart; (LONDON) is in the gap
    [
        Polygon(lonlat(*LONDON, square(200.0, -300.0))),
        Polygon(lonlat(*LONDON, square(200.0, 300.0))),
    ]
)
SLIVER = Polygon(lonlat(*LONDON, [(-500.0, 0.0), (500.0, 0.0), (500.0, 0.05)]))  # 5 cm wide
HIGH_LATITUDE = Polygon(lonlat(*SVALBARD, [(-800.0, -300.0), (900.0, -400.0), (700.0, 500.0),
                                           (-600.0, 350.0)]))  # fmt: skip
ANTIMERIDIAN = Polygon([(179.98, -17.0), (179.999, -17.0), (179.999, -16.99), (179.98, -16.99)])
ANTIMERIDIAN_SPLIT = MultiPolygon(  # RFC 7946 split at 180: one zone, no seam
    [Polygon([(179.99, -17.0), (180.0, -17.0), (180.0, -16.99), (179.99, -16.99)]),
     Polygon([(-180.0, -17.0), (-179.99, -17.0), (-179.99, -16.99), (-180.0, -16.99)])]
)  # fmt: skip
# A U open to the north: arms 200 m wide, notch 200 m wide and 600 m deep.
U_SHAPE = Polygon(lonlat(*LONDON, [(-300.0, -400.0), (300.0, -400.0), (300.0, 400.0),
                                   (100.0, 400.0), (100.0, -200.0), (-100.0, -200.0),
                                   (-100.0, 400.0), (-300.0, 400.0)]))  # fmt: skip

NAMED = {
    "square": poly_zone("square", SQUARE),
    "hole": poly_zone("hole", SQUARE_WITH_HOLE),
    "gap": poly_zone("gap", MULTI_WITH_GAP),
    "sliver": poly_zone("sliver", SLIVER),
    "svalbard": poly_zone("svalbard", HIGH_LATITUDE, "S2"),
    "antimeridian": poly_zone("antimeridian", ANTIMERIDIAN, "S3"),
    "split": poly_zone("split", ANTIMERIDIAN_SPLIT, "S3"),
    "u": poly_zone("u", U_SHAPE, "S4"),
    "circle": Zone("circle", "S4", "exclusion", 0, center=(LONDON[1], LONDON[0]), radius_m=250.0),
    "svalbard-circle": Zone(
        "svalbard-circle", "S2", "inclusion", 0, center=(SVALBARD[1], SVALBARD[0]), radius_m=500.0
    ),
}
TABLE = compile_zones(list(NAMED.values()))


def at(zone: str, x: float, y: float) -> tuple[float, float]:
    """(lat, lon) of metre offset (x, y) from a named zone's centre (its bbox centre)."""
    c = NAMED[zone]
    if c.is_circle:
        assert c.center is not None
        latc, lonc = c.center[1], c.center[0]
    else:
        assert c.geometry is not None
        minx, miny, maxx, maxy = c.geometry.bounds
        lonc, latc = (minx + maxx) / 2, (miny + maxy) / 2
    [(lon, lat)] = lonlat(latc, lonc, [(x, y)])
    return lat, lon


def sd(zone: str, lat: float, lon: float, table: ZoneTable = TABLE) -> float:
    z = table.zone_index(zone)
    return float(signed_distance(table, [lat], [lon], [z])[0])


def seg(zone: str, a: tuple[float, float], b: tuple[float, float]) -> float:
    z = TABLE.zone_index(zone)
    return float(segment_distance(TABLE, [a[0]], [a[1]], [b[0]], [b[1]], [z])[0])


def oracle_sd(zone: str, lat: float, lon: float) -> float:
    z = TABLE.zone_index(zone)
    return naive.signed_distance(NAMED[zone], naive.frame_of(TABLE, z), lat, lon)


def oracle_seg(zone: str, a: tuple[float, float], b: tuple[float, float]) -> float:
    z = TABLE.zone_index(zone)
    return naive.segment_distance(NAMED[zone], naive.frame_of(TABLE, z), *a, *b)


def assert_close(got: float, want: float) -> None:
    assert abs(got - want) <= TOL_ABS + TOL_REL * abs(want), (got, want)
    if abs(want) > TOL_ABS:
        assert math.copysign(1.0, got) == math.copysign(1.0, want), (got, want)


# -- named cases ---------------------------------------------------------------------------


def test_point_on_edge_and_vertex_is_zero() -> None:
    assert sd("square", *ON_EDGE) == 0.0
    assert sd("square", SQUARE_VERTEX[1], SQUARE_VERTEX[0]) == 0.0
    assert oracle_sd("square", *ON_EDGE) == 0.0


def test_square_inside_outside() -> None:
    assert abs(sd("square", *at("square", 0.0, 0.0)) + 500.0) < 1e-6
    for x, y in [(0.0, 0.0), (499.0, 0.0), (501.0, 3.0), (700.0, 800.0), (-20_000.0, 5.0)]:
        p = at("square", x, y)
        assert_close(sd("square", *p), oracle_sd("square", *p))


def test_inside_a_hole_is_outside() -> None:
    d = sd("hole", *at("hole", 0.0, 0.0))
    assert d > 0.0
    assert abs(d - 100.0) < 1e-3  # the hole ring is 100 m away (projection round trip)
    assert_close(d, oracle_sd("hole", *at("hole", 0.0, 0.0)))
    assert sd("hole", *at("hole", 300.0, 0.0)) < 0.0  # between hole and exterior: inside


def test_multipolygon_gap_is_outside() -> None:
    p = at("gap", 0.0, 0.0)
    assert abs(sd("gap", *p) - 100.0) < 1e-3
    assert_close(sd("gap", *p), oracle_sd("gap", *p))
    assert sd("gap", *at("gap", 300.0, 0.0)) < 0.0
    assert sd("gap", *at("gap", -300.0, 0.0)) < 0.0


def test_sliver_polygon() -> None:
    # The sliver is a thin triangle: width 0.05 m at x=500, 0 at x=-500.
    lon0, lat0 = SLIVER.exterior.coords[0]
    c = (lat0, lon0)
    for x, y in [(400.0, 0.02), (400.0, 0.06), (0.0, 0.01), (0.0, -0.01), (-499.0, 0.0)]:
        [(lon, lat)] = lonlat(c[0], c[1], [(x, y)])
        assert_close(sd("sliver", lat, lon), oracle_sd("sliver", lat, lon))


def test_high_latitude_zone_matches_oracle_and_haversine() -> None:
    for x, y in [(0.0, 0.0), (950.0, 0.0), (0.0, 600.0), (-2000.0, 3000.0)]:
        p = at("svalbard", x, y)
        assert_close(sd("svalbard", *p), oracle_sd("svalbard", *p))
    # The circle's frame is exact north-south; east-west the local frame agrees with the
    # great-circle distance to far better than GPS error at this latitude.
    c = NAMED["svalbard-circle"]
    assert c.center is not None
    lon_c, lat_c = c.center
    north = (lat_c + 1500.0 / M_PER_DEG_LAT, lon_c)
    assert abs(sd("svalbard-circle", *north) - 1000.0) < 1e-6
    east = (lat_c, lon_c + 1500.0 / (M_PER_DEG_LAT * math.cos(math.radians(lat_c))))
    true_d = naive.haversine(lat_c, lon_c, *east) - 500.0
    assert abs(sd("svalbard-circle", *east) - true_d) < 0.01


def test_antimeridian_zone_seen_from_across_the_line() -> None:
    # Fix 0.002° of longitude east of the zone's east edge, on the other side of 180°.
    lat, lon = -16.995, -179.999
    want = 0.002 * M_PER_DEG_LAT * math.cos(math.radians(-16.995))
    got = sd("antimeridian", lat, lon)
    assert abs(got - want) < 0.5  # cos(lat) differs between origin and fix: sub-metre
    assert_close(got, oracle_sd("antimeridian", lat, lon))
    assert sd("antimeridian", -16.995, 179.99) < 0.0


def test_antimeridian_split_zone_has_no_seam() -> None:
    # Just west of 180° inside the split zone: ~1 km from the real boundary, not 1 m.
    for lon in (179.99999, -179.99999, 180.0, -180.0):
        d = sd("split", -16.995, lon)
        assert -600.0 < d < -500.0, (lon, d)
        assert_close(d, oracle_sd("split", -16.995, lon))
    assert (
        TABLE.arrays.rings.zone_ring_start[TABLE.zone_index("split") + 1]
        - TABLE.arrays.rings.zone_ring_start[TABLE.zone_index("split")]
        == 1
    )


def test_circle_is_exact() -> None:
    for r in (0.0, 100.0, 249.0, 251.0, 5000.0):
        lat, lon = at("circle", r * 0.6, r * 0.8)
        assert abs(sd("circle", lat, lon) - (r - 250.0)) < 1e-6
        assert_close(sd("circle", lat, lon), oracle_sd("circle", lat, lon))


def test_u_notch_segment_passes_without_touching() -> None:
    # Straight down the notch's middle, stopping 50 m short of its floor (y = -200).
    a, b = at("u", 0.0, 900.0), at("u", 0.0, -150.0)
    d = seg("u", a, b)
    assert abs(d - 50.0) < 1e-3
    assert_close(d, oracle_seg("u", a, b))
    assert sd("u", *a) > 0.0 and sd("u", *b) > 0.0
    # Across both arms through the notch: crosses the zone.
    assert seg("u", at("u", -500.0, 0.0), at("u", 500.0, 0.0)) == 0.0


def test_drive_through_both_ends_outside() -> None:
    a, b = at("square", -900.0, -50.0), at("square", 900.0, 80.0)
    assert sd("square", *a) > 0.0 and sd("square", *b) > 0.0
    assert seg("square", a, b) == 0.0
    assert oracle_seg("square", a, b) == 0.0
    assert seg("circle", at("circle", -900.0, 0.0), at("circle", 900.0, 10.0)) == 0.0


def test_segment_skirting_outside() -> None:
    a, b = at("square", -900.0, 520.0), at("square", 900.0, 520.0)
    d = seg("square", a, b)
    assert abs(d - 20.0) < 1e-3
    assert_close(d, oracle_seg("square", a, b))
    c = seg("circle", at("circle", -900.0, 270.0), at("circle", 900.0, 270.0))
    assert abs(c - 20.0) < 1e-3


def test_segment_ending_inside_or_on_boundary() -> None:
    assert seg("square", at("square", -900.0, 0.0), at("square", 0.0, 0.0)) == 0.0
    assert seg("square", at("square", 0.0, 0.0), at("square", 0.0, 0.0)) == 0.0
    assert seg("square", ON_EDGE, at("square", 900.0, 0.0)) == 0.0
    # A zero-length segment outside is a point.
    p = at("square", 700.0, 0.0)
    assert_close(seg("square", p, p), sd("square", *p))


def test_segment_across_the_frame_seam_is_far() -> None:
    # Short way from 179°E to 179°W passes the antipode of the zone's meridian: a naive
    # straight line in the zone frame would run through the zone.
    z = Zone("null-island", "S1", "exclusion", 0, geometry=Polygon(lonlat(0.0, 0.0, square(500.0))))
    t = compile_zones([z])
    d = float(segment_distance(t, [0.0], [179.0], [0.0], [-179.0], [0])[0])
    assert d > 1.9e7
    assert_close(d, naive.segment_distance(z, naive.frame_of(t, 0), 0.0, 179.0, 0.0, -179.0))


def test_nan_fix_is_never_inside() -> None:
    inside = at("square", 0.0, 0.0)
    z = TABLE.zone_index("square")
    for lat, lon in [(math.nan, inside[1]), (inside[0], math.nan), (math.inf, inside[1])]:
        assert math.isnan(sd("square", lat, lon))
        assert math.isnan(sd("circle", lat, lon))
        assert math.isnan(seg("square", (lat, lon), inside))
        assert math.isnan(signed_distance(TABLE, [lat], [lon], [z], cutoff=10.0)[0])
    s = TABLE.subject_index("S1")
    _, _, dist = signed_distance_by_subject(TABLE, [math.nan], [0.0], [s])
    assert dist.shape[0] > 0 and np.isnan(dist).all()
    assert np.isnan(point_distance_m([math.nan], [0.0], [0.0], [0.0])).all()


def test_pure_python_twin_agrees_on_named_zones() -> None:
    for name, zone in NAMED.items():
        if zone.is_circle:
            continue
        z = TABLE.zone_index(name)
        rings = naive.table_rings(TABLE, z)
        for x, y in [(0.0, 0.0), (150.0, -30.0), (-2500.0, 700.0)]:
            lat, lon = at(name, x, y)
            px, py = naive.to_xy(lat, lon, naive.frame_of(TABLE, z))
            assert_close(sd(name, lat, lon), naive.py_signed_distance(rings, px, py))


# -- random geometry against the oracle --------------------------------------------------------

centres = st.tuples(st.floats(-60.0, 78.0), st.floats(-179.0, 179.0))


@st.composite
def star(draw: st.DrawFn, n_min: int, n_max: int, r_lo: float, r_hi: float) -> np.ndarray:
    """Star-shaped ring about (0, 0) in metres; angular jitter < 0.4 of the spacing."""
    n = draw(st.integers(n_min, n_max))
    jitter = draw(st.lists(st.floats(-0.4, 0.4), min_size=n, max_size=n))
    radii = draw(st.lists(st.floats(r_lo, r_hi), min_size=n, max_size=n))
    ang = (np.arange(n) + np.asarray(jitter)) * (2.0 * math.pi / n)
    r = np.asarray(radii)
    return np.column_stack([r * np.cos(ang), r * np.sin(ang)])


@st.composite
def star_polygon(draw: st.DrawFn, dx: float = 0.0) -> tuple[list, list]:
    """(exterior, holes) in metres; maybe with one hole inside the star's kernel disk."""
    ext = draw(star(5, 48, 40.0, 2000.0))
    holes = []
    if draw(st.booleans()):
        n = ext.shape[0]
        rho = float(np.hypot(ext[:, 0], ext[:, 1]).min()) * math.cos(1.8 * math.pi / n)
        holes.append(draw(star(3, 8, 0.2 * rho, 0.7 * rho)))
    return [(x + dx, y) for x, y in ext], [[(x + dx, y) for x, y in h] for h in holes]


@st.composite
def random_zone(draw: st.DrawFn) -> tuple[Zone, float]:
    """(zone, scale in metres) about a random centre."""
    latc, lonc = draw(centres)
    what = draw(st.sampled_from(["polygon", "multipolygon", "circle"]))
    if what == "circle":
        r = draw(st.floats(10.0, 3000.0))
        return Zone("z", "S1", "exclusion", 0, center=(lonc, latc), radius_m=r), r
    ext, holes = draw(star_polygon())
    parts = [Polygon(lonlat(latc, lonc, ext), [lonlat(latc, lonc, h) for h in holes])]
    if what == "multipolygon":
        gap = draw(st.floats(1.0, 500.0))
        ext2, holes2 = draw(star_polygon(dx=4000.0 + gap))
        parts.append(Polygon(lonlat(latc, lonc, ext2), [lonlat(latc, lonc, h) for h in holes2]))
    geom = parts[0] if len(parts) == 1 else MultiPolygon(parts)
    assume(geom.is_valid)
    return Zone("z", "S1", "exclusion", 0, geometry=geom), 6000.0 if len(parts) > 1 else 2000.0


@st.composite
def points_near(draw: st.DrawFn, zone: Zone, scale: float) -> list[tuple[float, float]]:
    """(lat, lon) fixes: around the zone, near its vertices (within a metre), on its
    vertices and edges, and far away."""
    ring = np.zeros((0, 2))
    if zone.is_circle:
        assert zone.center is not None
        lonc, latc = zone.center
        verts = [(scale, 0.0), (0.0, -scale)]
    else:
        assert zone.geometry is not None
        lonc, latc = zone.geometry.centroid.x, zone.geometry.centroid.y
        kx = M_PER_DEG_LAT * math.cos(math.radians(latc))
        g = zone.geometry
        first = g.geoms[0] if isinstance(g, MultiPolygon) else g
        ring = np.asarray(first.exterior.coords)
        verts = [((lon - lonc) * kx, (lat - latc) * M_PER_DEG_LAT) for lon, lat in ring]
    out = []
    modes = ["around", "vertex", "far"] + (["on-vertex", "on-edge"] if ring.shape[0] else [])
    for _ in range(draw(st.integers(5, 20))):
        mode = draw(st.sampled_from(modes))
        if mode in ("on-vertex", "on-edge"):  # exactly on the boundary, in lon/lat
            k = draw(st.integers(0, ring.shape[0] - 2))
            lon, lat = ring[k] if mode == "on-vertex" else (ring[k] + ring[k + 1]) / 2
            out.append((float(lat), float(lon)))
            continue
        if mode == "around":
            xy = (
                draw(st.floats(-1.5 * scale, 1.5 * scale)),
                draw(st.floats(-1.5 * scale, 1.5 * scale)),
            )
        elif mode == "vertex":
            vx, vy = draw(st.sampled_from(verts))
            xy = (vx + draw(st.floats(-1.0, 1.0)), vy + draw(st.floats(-1.0, 1.0)))
        else:
            xy = (draw(st.floats(-50_000.0, 50_000.0)), draw(st.floats(-50_000.0, 50_000.0)))
        [(lon, lat)] = lonlat(latc, lonc, [xy])
        out.append((lat, lon))
    return out


@st.composite
def zones_and_points(draw: st.DrawFn) -> list[tuple[Zone, list[tuple[float, float]]]]:
    """1-3 zones (compiled into one table, so vertex chunks straddle zones) with fixes."""
    cases = []
    for i in range(draw(st.integers(1, 3))):
        zone, scale = draw(random_zone())
        zone = dataclasses.replace(zone, id=f"z{i}")
        cases.append((zone, draw(points_near(zone, scale))))
    return cases


Cases = list[tuple[Zone, list[tuple[float, float]]]]


@EXAMPLES
@given(zones_and_points())
def test_signed_distance_matches_shapely(cases: Cases) -> None:
    t = compile_zones([zone for zone, _ in cases])
    for z, (zone, pts) in enumerate(cases):
        lat, lon = np.array(pts).T
        got = signed_distance(t, lat, lon, np.full(len(pts), z))
        frame = naive.frame_of(t, z)
        for g, (la, lo) in zip(got.tolist(), pts, strict=True):
            assert_close(g, naive.signed_distance(zone, frame, la, lo))


@EXAMPLES
@given(zones_and_points())
def test_segment_distance_matches_shapely(cases: Cases) -> None:
    t = compile_zones([zone for zone, _ in cases])
    for z, (zone, pts) in enumerate(cases):
        a, b = np.array(pts[:-1]), np.array(pts[1:])
        got = segment_distance(t, a[:, 0], a[:, 1], b[:, 0], b[:, 1], np.full(a.shape[0], z))
        frame = naive.frame_of(t, z)
        for g, p, q in zip(got.tolist(), a.tolist(), b.tolist(), strict=True):
            assert_close(g, naive.segment_distance(zone, frame, *p, *q))


# -- batch forms, cutoff, haversine ------------------------------------------------------------

fixes = st.lists(
    st.tuples(
        st.sampled_from(sorted(NAMED)), st.floats(-3000.0, 3000.0), st.floats(-3000.0, 3000.0)
    ),
    min_size=1,
    max_size=40,
)


def _fix_arrays(fx: list[tuple[str, float, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pts = [at(name, x, y) for name, x, y in fx]
    lat, lon = np.array(pts).T
    z = np.array([TABLE.zone_index(name) for name, _, _ in fx], dtype=np.int64)
    return lat, lon, z


@EXAMPLES
@given(fixes)
def test_batch_equals_scalar_loop(fx: list[tuple[str, float, float]]) -> None:
    lat, lon, z = _fix_arrays(fx)
    batch = signed_distance(TABLE, lat, lon, z)
    one = [
        signed_distance(TABLE, lat[i : i + 1], lon[i : i + 1], z[i : i + 1])[0]
        for i in range(len(z))
    ]
    np.testing.assert_array_equal(batch, np.array(one))
    seg_batch = segment_distance(TABLE, lat, lon, lat[::-1], lon[::-1], z)
    seg_one = [
        segment_distance(TABLE, [lat[i]], [lon[i]], [lat[-1 - i]], [lon[-1 - i]], [z[i]])[0]
        for i in range(len(z))
    ]
    np.testing.assert_array_equal(seg_batch, np.array(seg_one))


@EXAMPLES
@given(fixes, st.floats(0.0, 5000.0) | st.just(math.inf))
def test_subject_csr_equals_pairs(fx: list[tuple[str, float, float]], cutoff: float) -> None:
    lat, lon, z = _fix_arrays(fx)
    subj = TABLE.subject[z]
    offsets, zidx, dist = signed_distance_by_subject(TABLE, lat, lon, subj, cutoff=cutoff)
    counts = np.diff(TABLE.arrays.subject_zone_start)[subj]
    np.testing.assert_array_equal(np.diff(offsets), counts)
    rows = np.repeat(np.arange(len(z)), counts)
    for i in range(len(z)):
        want = TABLE.arrays.subject_zone_idx[
            TABLE.arrays.subject_zone_start[subj[i]] : TABLE.arrays.subject_zone_start[subj[i] + 1]
        ]
        np.testing.assert_array_equal(zidx[offsets[i] : offsets[i + 1]], want)
    pairs = signed_distance(TABLE, lat[rows], lon[rows], zidx, cutoff=cutoff)
    np.testing.assert_array_equal(dist, pairs)
    s_off, s_zidx, s_dist = segment_distance_by_subject(TABLE, lat, lon, lat[::-1], lon[::-1], subj)
    np.testing.assert_array_equal(s_off, offsets)
    np.testing.assert_array_equal(s_zidx, zidx)
    np.testing.assert_array_equal(
        s_dist,
        segment_distance(TABLE, lat[rows], lon[rows], lat[::-1][rows], lon[::-1][rows], zidx),
    )


@EXAMPLES
@given(fixes, st.floats(0.0, 3000.0))
def test_cutoff_is_exact_within_and_a_lower_bound_beyond(
    fx: list[tuple[str, float, float]], cutoff: float
) -> None:
    lat, lon, z = _fix_arrays(fx)
    exact = signed_distance(TABLE, lat, lon, z)
    cut = signed_distance(TABLE, lat, lon, z, cutoff=cutoff)
    within = exact <= cutoff
    np.testing.assert_array_equal(cut[within], exact[within])
    beyond = ~within
    assert (cut[beyond] > cutoff).all()  # same side of the cutoff as the exact value
    assert (cut[beyond] <= exact[beyond] * (1 + 1e-12) + 1e-9).all()
    seg_exact = segment_distance(TABLE, lat, lon, lat[::-1], lon[::-1], z)
    seg_cut = segment_distance(TABLE, lat, lon, lat[::-1], lon[::-1], z, cutoff=cutoff)
    w = seg_exact <= cutoff
    np.testing.assert_array_equal(seg_cut[w], seg_exact[w])
    assert (seg_cut[~w] > cutoff).all()


@EXAMPLES
@given(
    st.lists(
        st.tuples(
            st.floats(-89.0, 89.0),
            st.floats(-180.0, 180.0),
            st.floats(-89.0, 89.0),
            st.floats(-180.0, 180.0),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_haversine_matches_python(rows: list[tuple[float, float, float, float]]) -> None:
    a = np.array(rows)
    got = point_distance_m(a[:, 0], a[:, 1], a[:, 2], a[:, 3])
    for g, r in zip(got.tolist(), rows, strict=True):
        assert abs(g - naive.haversine(*r)) <= 1e-6 + 1e-9 * g


def test_haversine_known_distances() -> None:
    d = point_distance_m(
        [0.0, 51.5, 10.0], [0.0, -0.12, 179.9], [1.0, 51.5, 10.0], [0.0, -0.12, -179.9]
    )
    assert abs(d[0] - 111_195.08) < 0.01  # one degree of latitude, R = 6371008.8 m
    assert d[1] == 0.0
    assert abs(d[2] - 0.2 * 111_195.08 * math.cos(math.radians(10.0))) < 1.0  # across 180°


# -- wrapper validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (([0.0, 1.0], [0.0], [0]), "equal length"),
        (([0.0], [0.0], [99]), "out of range"),
        (([0.0], [0.0], [-1]), "out of range"),
        (([0.0], [0.0], [0.5]), "integer"),
        (([[0.0]], [0.0], [0]), "1-D"),
        ((["a"], [0.0], [0]), "numeric"),
    ],
)
def test_signed_distance_rejects_bad_input(args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        signed_distance(TABLE, *args)


def test_bad_cutoff_and_subject_rejected() -> None:
    with pytest.raises(ValueError, match="cutoff"):
        signed_distance(TABLE, [0.0], [0.0], [0], cutoff=-1.0)
    with pytest.raises(ValueError, match="cutoff"):
        signed_distance(TABLE, [0.0], [0.0], [0], cutoff=math.nan)
    with pytest.raises(ValueError, match="subject"):
        signed_distance_by_subject(TABLE, [0.0], [0.0], [TABLE.n_subjects])


def test_empty_batches() -> None:
    assert signed_distance(TABLE, [], [], []).shape == (0,)
    offsets, zidx, dist = signed_distance_by_subject(TABLE, [], [], [])
    assert offsets.tolist() == [0] and zidx.shape == dist.shape == (0,)
