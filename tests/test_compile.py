"""The compiled zone table: shapes, CSR consistency, read-only arrays, subject index, round trip."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import shapely
from shapely.geometry import MultiPolygon, Polygon, box

from engine.errors import ZoneError
from tests import naive
from zones.compile import ZoneTable, compile_zones
from zones.kernels.arrays import CHUNK
from zones.kernels.frame import M_PER_DEG_LAT
from zones.model import Subject, Zone, ZoneSet

LAT, LON = 53.48, -2.24  # Manchester


def ll(
    xy: list[tuple[float, float]], lat: float = LAT, lon: float = LON
) -> list[tuple[float, float]]:
    kx = M_PER_DEG_LAT * math.cos(math.radians(lat))
    return [(lon + x / kx, lat + y / M_PER_DEG_LAT) for x, y in xy]


def sq(half: float, cx: float = 0.0, cy: float = 0.0) -> list[tuple[float, float]]:
    return [(cx - half, cy - half), (cx + half, cy - half), (cx + half, cy + half),
            (cx - half, cy + half)]  # fmt: skip


# Two parts, each with a hole; the second part's hole is a triangle.
MULTI_WITH_HOLES = MultiPolygon(
    [
        Polygon(ll(sq(400.0)), [ll(sq(100.0, 150.0, 0.0))]),
        Polygon(ll(sq(300.0, 1500.0)), [ll([(1400.0, -100.0), (1600.0, -100.0), (1500.0, 150.0)])]),
    ]
)
# 40 vertices: more than two chunks of CHUNK edges in one ring.
ROUND = Polygon(
    ll(
        [
            (900.0 * math.cos(a), 700.0 * math.sin(a))
            for a in np.linspace(0, 2 * np.pi, 40, endpoint=False)
        ]
    )
)
ZONES = (
    Zone("multi", "S1", "exclusion", 0, geometry=MULTI_WITH_HOLES, warn_m=150.0),
    Zone("circle", "S2", "exclusion", 1, center=(LON, LAT), radius_m=300.0),
    Zone("curfew", "S1", "inclusion", 2, geometry=Polygon(ll(sq(50.0, -3000.0)))),
    Zone("round", "S2", "exclusion", 3, geometry=ROUND),
)
SUBJECTS = (
    Subject("S2", ("T2",)),
    Subject("S9", ("T9",)),  # no zones
    Subject("S1", ("T1",)),
)


@pytest.fixture(scope="module")
def table() -> ZoneTable:
    return compile_zones(ZoneSet(ZONES, SUBJECTS))


def test_shapes_and_dtypes(table: ZoneTable) -> None:
    a = table.arrays
    n = 4
    assert table.zone_ids == ("multi", "circle", "curfew", "round")
    for owner, name, dtype in [(table, "kind", np.int8), (table, "subject", np.int32),
                               (a, "origin_lat", np.float64), (a, "origin_lon", np.float64),
                               (a, "m_per_deg_lon", np.float64), (table, "warn_m", np.float64),
                               (a, "is_circle", np.bool_), (a, "radius", np.float64)]:  # fmt: skip
        arr = getattr(owner, name)
        assert arr.shape == (n,) and arr.dtype == dtype, name
    assert a.bbox.shape == (n, 4) and a.bbox.dtype == np.float64
    assert a.rings.zone_ring_start.shape == (n + 1,) and a.rings.zone_ring_start.dtype == np.int64
    assert a.rings.ring_vert_start.dtype == np.int64
    assert a.rings.vx.dtype == a.rings.vy.dtype == np.float64
    assert table.kind.tolist() == [0, 0, 1, 0]
    assert a.is_circle.tolist() == [False, True, False, False]
    assert a.radius.tolist() == [0.0, 300.0, 0.0, 0.0]
    assert table.warn_m.tolist() == [150.0, 0.0, 0.0, 0.0]
    assert a.rings.chunk_bbox.shape == (-(-a.rings.vx.shape[0] // CHUNK), 4)


def test_ring_csr_is_consistent(table: ZoneTable) -> None:
    rings = table.arrays.rings
    zrs, rvs = rings.zone_ring_start, rings.ring_vert_start
    assert zrs[0] == 0 and zrs[-1] == rvs.shape[0] - 1
    assert rvs[0] == 0 and rvs[-1] == rings.vx.shape[0] == rings.vy.shape[0]
    assert (np.diff(zrs) >= 0).all() and (np.diff(rvs) >= 3).all()
    assert np.diff(zrs).tolist() == [4, 0, 1, 1]  # 2 exteriors + 2 holes; circle: none
    for r in range(rvs.shape[0] - 1):  # stored without the closing vertex
        lo, hi = rvs[r], rvs[r + 1]
        assert (rings.vx[lo], rings.vy[lo]) != (rings.vx[hi - 1], rings.vy[hi - 1])


def test_bboxes_bound_their_vertices_and_circles(table: ZoneTable) -> None:
    a = table.arrays
    for z in range(table.n_zones):
        lo, hi = (
            a.rings.ring_vert_start[a.rings.zone_ring_start[z]],
            a.rings.ring_vert_start[a.rings.zone_ring_start[z + 1]],
        )
        if a.is_circle[z]:
            assert a.bbox[z].tolist() == [-300.0, -300.0, 300.0, 300.0]
            continue
        x, y = a.rings.vx[lo:hi], a.rings.vy[lo:hi]
        assert a.bbox[z].tolist() == [x.min(), y.min(), x.max(), y.max()]


def test_chunk_bboxes_bound_their_edges(table: ZoneTable) -> None:
    rings = table.arrays.rings
    rvs = rings.ring_vert_start
    for r in range(rvs.shape[0] - 1):
        for i in range(rvs[r], rvs[r + 1]):
            j = i - 1 if i > rvs[r] else rvs[r + 1] - 1  # edge j -> i
            b = rings.chunk_bbox[i // CHUNK]
            for v in (i, j):
                assert b[0] <= rings.vx[v] <= b[2] and b[1] <= rings.vy[v] <= b[3]


def test_origin_is_bbox_centre_or_circle_centre(table: ZoneTable) -> None:
    a = table.arrays
    minx, miny, maxx, maxy = MULTI_WITH_HOLES.bounds
    assert a.origin_lon[0] == pytest.approx((minx + maxx) / 2, abs=1e-12)
    assert a.origin_lat[0] == pytest.approx((miny + maxy) / 2, abs=1e-12)
    assert (a.origin_lon[1], a.origin_lat[1]) == (LON, LAT)
    k = a.m_per_deg_lon
    assert k[1] == pytest.approx(M_PER_DEG_LAT * math.cos(math.radians(LAT)), rel=1e-15)
    # The zone's own frame is centred: its bbox is symmetric about the origin.
    assert a.bbox[0, 0] == pytest.approx(-a.bbox[0, 2], rel=1e-9)


def test_arrays_are_read_only(table: ZoneTable) -> None:
    a = table.arrays
    for arr in (table.kind, a.rings.vx, a.bbox, a.subject_zone_idx, a.rings.chunk_bbox):
        assert not arr.flags.writeable
        with pytest.raises(ValueError):
            arr[0] = 0


def test_subject_index(table: ZoneTable) -> None:
    assert table.subject_ids == ("S2", "S9", "S1")  # the subjects file's order
    assert table.subject_index("S1") == 2
    assert table.zone_index("round") == 3
    assert table.subject.tolist() == [2, 0, 2, 0]
    szs, szi = table.arrays.subject_zone_start, table.arrays.subject_zone_idx
    assert szs.dtype == np.int64 and szi.dtype == np.int32
    rows = {s: szi[szs[i] : szs[i + 1]].tolist() for i, s in enumerate(table.subject_ids)}
    assert rows == {"S2": [1, 3], "S9": [], "S1": [0, 2]}
    with pytest.raises(KeyError, match="nope"):
        table.zone_index("nope")
    with pytest.raises(KeyError, match="nope"):
        table.subject_index("nope")


def test_subjects_default_to_first_appearance() -> None:
    t = compile_zones(ZONES[::-1])
    assert t.subject_ids == ("S2", "S1")
    t2 = compile_zones(ZONES, ["S1", "S2", "S3"])
    assert t2.subject_ids == ("S1", "S2", "S3")


def _rebuilt(table: ZoneTable, z: int) -> shapely.Geometry:
    """Even-odd region of the zone's rings read back from the arrays."""
    polys = [Polygon(ring) for ring in naive.table_rings(table, z)]
    return functools.reduce(shapely.symmetric_difference, polys)


@pytest.mark.parametrize("name", ["multi", "round", "curfew"])
def test_polygons_round_trip(table: ZoneTable, name: str) -> None:
    rings = table.arrays.rings
    z = table.zone_index(name)
    original = naive.region_xy(ZONES[z], naive.frame_of(table, z))
    rebuilt = _rebuilt(table, z)
    assert rebuilt.equals(original)
    assert rebuilt.symmetric_difference(original).area == 0.0
    # Bit-exact vertices: every stored vertex is a vertex of the projected original.
    orig = {tuple(c) for c in shapely.get_coordinates(original).tolist()}
    stored = set(zip(rings.vx.tolist(), rings.vy.tolist(), strict=True))
    lo = rings.ring_vert_start[rings.zone_ring_start[z]]
    hi = rings.ring_vert_start[rings.zone_ring_start[z + 1]]
    assert set(zip(rings.vx[lo:hi].tolist(), rings.vy[lo:hi].tolist(), strict=True)) <= orig
    assert stored


def test_antimeridian_split_zone_is_merged() -> None:
    west = Polygon([(179.99, 10.0), (180.0, 10.0), (180.0, 10.01), (179.99, 10.01)])
    east = Polygon([(-180.0, 10.0), (-179.99, 10.0), (-179.99, 10.01), (-180.0, 10.01)])
    t = compile_zones([Zone("a", "S", "exclusion", 0, geometry=MultiPolygon([west, east]))])
    assert t.arrays.rings.zone_ring_start.tolist() == [0, 1]
    assert abs(t.arrays.origin_lon[0]) == 180.0
    width = t.arrays.bbox[0, 2] - t.arrays.bbox[0, 0]
    assert width == pytest.approx(0.02 * t.arrays.m_per_deg_lon[0], rel=1e-9)  # ~2.2 km, not 40,000


def test_problems_are_all_reported() -> None:
    bowtie = Polygon([(0.0, 0.0), (0.01, 0.01), (0.01, 0.0), (0.0, 0.01)])
    bad = [
        Zone("a", "S1", "exclusion", 0, geometry=box(0, 0, 0.01, 0.01)),
        Zone("a", "S1", "exclusion", 1, geometry=box(0, 0, 0.01, 0.01)),
        Zone("b", "ghost", "exclusion", 2, geometry=box(0, 0, 0.01, 0.01)),
        Zone("c", "S1", "exclusion", 3, center=(0.0, 0.0), radius_m=-5.0),
        Zone("d", "S1", "exclusion", 4, geometry=Polygon()),
        Zone("e", "S1", "exclusion", 5, geometry=shapely.Point(0, 0)),
    ]
    with pytest.raises(ZoneError) as err:
        compile_zones(bad, ["S1"])
    text = "\n".join(err.value.problems)
    assert len(err.value.problems) == 5
    for needle in ("duplicate zone id", "'ghost'", "radius_m", "empty", "Point"):
        assert needle in text
    with pytest.raises(ZoneError, match=r"feature 0.*invalid geometry"):
        compile_zones([Zone("x", "S1", "exclusion", 0, geometry=bowtie)])
    with pytest.raises(ZoneError, match="duplicate subject"):
        compile_zones(ZONES, ["S1", "S2", "S1"])


def test_empty_zone_list() -> None:
    t = compile_zones([], ["S1"])
    assert t.n_zones == 0 and t.arrays.subject_zone_start.tolist() == [0, 0]
    assert t.arrays.rings.vx.shape == (0,) and t.arrays.rings.chunk_bbox.shape == (0, 4)


def test_memory_per_zone_is_small() -> None:
    """500k subjects x a few zones must fit with room to spare: a 16-vertex polygon zone
    costs ~400 B of arrays and a circle ~100 B (plus its id string)."""
    rng = np.random.default_rng(7)
    zones = []
    for i in range(2000):
        lat, lon = rng.uniform(50, 55), rng.uniform(-5, 1)
        if i % 2:
            zones.append(
                Zone(f"c{i}", f"S{i // 3}", "exclusion", i, center=(lon, lat), radius_m=200.0)
            )
        else:
            ang = np.linspace(0, 2 * np.pi, 16, endpoint=False)
            ring = ll(list(zip(300 * np.cos(ang), 300 * np.sin(ang), strict=True)), lat, lon)
            zones.append(Zone(f"p{i}", f"S{i // 3}", "exclusion", i, geometry=Polygon(ring)))
    t = compile_zones(zones)
    per_zone = t.nbytes / t.n_zones
    assert per_zone < 300, per_zone  # half circles (~90 B), half 16-gons (~480 B)
