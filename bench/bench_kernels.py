"""Geofence kernel throughput against shapely 2's best vectorized path on the same pairs."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import shapely
from shapely.geometry import MultiPolygon, Polygon

from zones.compile import ZoneTable, compile_zones
from zones.geofence import segment_distance, signed_distance, signed_distance_by_subject
from zones.kernels.frame import M_PER_DEG_LAT
from zones.model import Zone

SEED = 20240601
N_ZONES = 200
N_POINTS = 100_000
TOL_ABS, TOL_REL = 1e-6, 1e-9  # as tests/test_kernels.py
_TIMES: dict[str, float] = {}  # median seconds per benchmark, for the ratio lines


def _lonlat(latc: float, lonc: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    kx = M_PER_DEG_LAT * math.cos(math.radians(latc))
    return np.column_stack([lonc + x / kx, latc + y / M_PER_DEG_LAT])


def _blob(rng: np.random.Generator, n: int, r: float) -> tuple[np.ndarray, np.ndarray]:
    """A smooth, irregular star-shaped outline (a building, park or estate boundary)."""
    ang = np.sort(rng.uniform(0.0, 2.0 * np.pi, n))
    rad = np.ones(n)
    for k in (2, 3, 5):
        rad += rng.uniform(0.0, 0.1) * np.cos(k * ang + rng.uniform(0.0, 2.0 * np.pi))
    rad += rng.uniform(-0.02, 0.02, n)
    return r * rad * np.cos(ang), r * rad * np.sin(ang)


def _zones(rng: np.random.Generator) -> list[Zone]:
    zones = []
    for i in range(N_ZONES):
        latc, lonc = rng.uniform(50.5, 54.5), rng.uniform(-3.5, 0.5)
        r = rng.uniform(150.0, 1500.0)
        zid, subject = f"Z{i:03d}", f"S{i // 2:03d}"
        if rng.random() < 0.25:
            zones.append(Zone(zid, subject, "exclusion", i, center=(lonc, latc), radius_m=r))
            continue
        parts = []
        for dx in [0.0] if rng.random() < 0.85 else [0.0, 3.0 * r]:
            x, y = _blob(rng, int(rng.integers(20, 201)), r)
            holes = []
            if rng.random() < 0.3:
                hx, hy = _blob(rng, int(rng.integers(8, 40)), 0.3 * r)
                holes.append(_lonlat(latc, lonc, hx + dx, hy))
            parts.append(Polygon(_lonlat(latc, lonc, x + dx, y), holes))
        geom = parts[0] if len(parts) == 1 else MultiPolygon(parts)
        assert geom.is_valid
        zones.append(Zone(zid, subject, "exclusion", i, geometry=geom))
    return zones


@dataclass
class Data:
    table: ZoneTable
    lat: np.ndarray
    lon: np.ndarray
    zone_idx: np.ndarray
    groups: list[tuple[int, np.ndarray]]  # (zone, indices of its pairs)
    regions: list[shapely.Geometry | None]  # projected zone (None: circle)
    boundaries: list[shapely.Geometry | None]


def build_data() -> Data:
    """Seeded zones, their table, fix-zone pairs and the projected shapely zones."""
    rng = np.random.default_rng(SEED)
    zones = _zones(rng)
    table = compile_zones(zones)
    # Each fix is paired with one zone, as a subject check is: half of them within 1.5
    # radii of the zone (inside, near the edge, just out), half anywhere within 10 km.
    zidx = rng.integers(0, N_ZONES, N_POINTS)
    scale = np.array([float(np.abs(table.arrays.bbox[z]).max()) for z in range(N_ZONES)])[zidx]
    near = rng.random(N_POINTS) < 0.5
    reach = np.where(near, 1.5 * scale, 10_000.0)
    x, y = rng.uniform(-1, 1, N_POINTS) * reach, rng.uniform(-1, 1, N_POINTS) * reach
    lat0, lon0 = table.arrays.origin_lat[zidx], table.arrays.origin_lon[zidx]
    lat = lat0 + y / M_PER_DEG_LAT
    lon = lon0 + x / table.arrays.m_per_deg_lon[zidx]
    regions: list[shapely.Geometry | None] = []
    boundaries: list[shapely.Geometry | None] = []
    for z, zone in enumerate(zones):
        if zone.is_circle:
            regions.append(None)
            boundaries.append(None)
            continue
        za = table.arrays
        lat_z, lon_z, k = za.origin_lat[z], za.origin_lon[z], za.m_per_deg_lon[z]

        def tx(
            c: np.ndarray, lat_z: float = lat_z, lon_z: float = lon_z, k: float = k
        ) -> np.ndarray:
            return np.column_stack(_project_np(c[:, 1], c[:, 0], lat_z, lon_z, k))

        region = shapely.transform(zone.geometry, tx)
        boundary = region.boundary
        shapely.prepare(region)
        shapely.prepare(boundary)
        regions.append(region)
        boundaries.append(boundary)
    order = np.argsort(zidx, kind="stable")
    starts = np.searchsorted(zidx[order], np.arange(N_ZONES + 1))
    groups = [(z, order[starts[z] : starts[z + 1]]) for z in range(N_ZONES)]
    return Data(table, lat, lon, zidx.astype(np.int64), groups, regions, boundaries)


@pytest.fixture(scope="module")
def data() -> Data:
    return build_data()


def _project_np(
    lat: np.ndarray, lon: np.ndarray, lat0: float, lon0: float, k: float
) -> tuple[np.ndarray, np.ndarray]:
    """zones.kernels.frame.project in plain numpy (same arithmetic, same bits)."""
    return k * ((lon - lon0 + 180.0) % 360.0 - 180.0), M_PER_DEG_LAT * (lat - lat0)


def shapely_signed_distance(d: Data) -> np.ndarray:
    """The baseline: per zone, project its fixes, then shapely.contains_xy (prepared) and
    shapely.distance to the boundary, all vectorized; circles in numpy (exact)."""
    out = np.empty(d.lat.shape[0])
    t = d.table.arrays
    for z, idx in d.groups:
        x, y = _project_np(
            d.lat[idx], d.lon[idx], t.origin_lat[z], t.origin_lon[z], t.m_per_deg_lon[z]
        )
        if d.regions[z] is None:
            out[idx] = np.hypot(x, y) - t.radius[z]
            continue
        inside = shapely.contains_xy(d.regions[z], x, y)
        dist = shapely.distance(d.boundaries[z], shapely.points(x, y))
        out[idx] = np.where(inside, -dist, dist)
    return out


def shapely_segment_distance(d: Data, lat1: np.ndarray, lon1: np.ndarray) -> np.ndarray:
    """Oracle for the segment kernel, vectorized per zone: shapely.distance(zone, line)."""
    out = np.empty(d.lat.shape[0])
    t = d.table.arrays
    for z, idx in d.groups:
        frame = (t.origin_lat[z], t.origin_lon[z], t.m_per_deg_lon[z])
        x0, y0 = _project_np(d.lat[idx], d.lon[idx], *frame)
        x1, y1 = _project_np(lat1[idx], lon1[idx], *frame)
        lines = shapely.linestrings(np.stack([np.c_[x0, y0], np.c_[x1, y1]], axis=1))
        if d.regions[z] is None:
            dist = shapely.distance(shapely.Point(0.0, 0.0), lines) - t.radius[z]
            out[idx] = np.maximum(dist, 0.0)
        else:
            out[idx] = shapely.distance(d.regions[z], lines)
    return out


def kernel_signed_distance(d: Data) -> np.ndarray:
    return signed_distance(d.table, d.lat, d.lon, d.zone_idx)


def _assert_agree(got: np.ndarray, want: np.ndarray) -> None:
    err = np.abs(got - want) - (TOL_ABS + TOL_REL * np.abs(want))
    assert (err <= 0.0).all(), f"{int((err > 0).sum())} pairs differ; worst {err.max()} m"
    away = np.abs(want) > TOL_ABS
    assert (np.sign(got[away]) == np.sign(want[away])).all()


def _report(benchmark: object, key: str, record_property: Callable[[str, object], None]) -> None:
    _TIMES[key] = benchmark.stats.stats.median  # type: ignore[attr-defined]
    if "kernel" in _TIMES and "shapely" in _TIMES:
        ratio = _TIMES["shapely"] / _TIMES["kernel"]
        benchmark.extra_info["shapely_over_kernel"] = ratio  # type: ignore[attr-defined]
        record_property(
            "bench_summary",
            f"signed distance, {N_POINTS} fix-zone pairs over {N_ZONES} zones (median): "
            f"kernel {_TIMES['kernel'] * 1e3:.1f} ms, shapely {_TIMES['shapely'] * 1e3:.1f} ms"
            f" -> shapely / kernel = {ratio:.1f}x",
        )


def test_kernel_signed_distance(
    benchmark: object, data: Data, record_property: Callable[[str, object], None]
) -> None:
    kernel_signed_distance(data)  # JIT warm-up (and cache load) outside the timing
    got = benchmark(kernel_signed_distance, data)  # type: ignore[operator]
    _assert_agree(got, shapely_signed_distance(data))
    _report(benchmark, "kernel", record_property)


def test_shapely_signed_distance(
    benchmark: object, data: Data, record_property: Callable[[str, object], None]
) -> None:
    got = benchmark.pedantic(  # type: ignore[attr-defined]
        shapely_signed_distance, args=(data,), rounds=7, iterations=1, warmup_rounds=1
    )
    _assert_agree(kernel_signed_distance(data), got)
    _report(benchmark, "shapely", record_property)


def test_kernel_by_subject_with_cutoff(benchmark: object, data: Data) -> None:
    """The engine's hot call: all zones of each fix's subject, exact only near a zone."""
    subject = data.table.subject[data.zone_idx]
    signed_distance_by_subject(data.table, data.lat, data.lon, subject, cutoff=1000.0)
    offsets, _, dist = benchmark(  # type: ignore[operator]
        signed_distance_by_subject, data.table, data.lat, data.lon, subject, cutoff=1000.0
    )
    assert offsets[-1] == dist.shape[0]


def test_kernel_segment_distance(benchmark: object, data: Data) -> None:
    """Track segments: each fix to a next one up to ~1 km away (a minute at driving speed)."""
    rng = np.random.default_rng(SEED + 1)
    n = data.lat.shape[0]
    lat1 = data.lat + rng.normal(0.0, 500.0, n) / M_PER_DEG_LAT
    lon1 = data.lon + rng.normal(0.0, 500.0, n) / data.table.arrays.m_per_deg_lon[data.zone_idx]
    args = (data.table, data.lat, data.lon, lat1, lon1, data.zone_idx)
    segment_distance(*args)
    out = benchmark(segment_distance, *args)  # type: ignore[operator]
    _assert_agree(out, shapely_segment_distance(data, lat1, lon1))
