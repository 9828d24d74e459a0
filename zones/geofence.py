"""Public geofence API: validate inputs, then run the numba kernels over a ZoneTable."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from zones.compile import ZoneTable
from zones.kernels import depth, distance, frame


def _floats(name: str, a: ArrayLike) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {arr.shape}")
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float64)


def _indices(name: str, a: ArrayLike, n: int, what: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {arr.shape}")
    if arr.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must be an integer array, got dtype {arr.dtype}")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= n:
        bad = lo if lo < 0 else hi
        raise ValueError(f"{name} has {what} {bad} out of range: the table has {n} {what}s")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _ends(
    lat0: ArrayLike, lon0: ArrayLike, lat1: ArrayLike, lon1: ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Segment ends as float arrays, checked in the order of the arguments."""
    return (
        _floats("lat0", lat0),
        _floats("lon0", lon0),
        _floats("lat1", lat1),
        _floats("lon1", lon1),
    )


def _same_length(**arrays: np.ndarray) -> None:
    lengths = {k: v.shape[0] for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{k}={v}" for k, v in lengths.items())
        raise ValueError(f"arrays must have equal length, got {detail}")


def _cutoff(cutoff: float) -> float:
    c = float(cutoff)
    if math.isnan(c) or c < 0.0:
        raise ValueError(f"cutoff must be >= 0 metres (inf: always exact), got {cutoff}")
    return c


def signed_distance(
    table: ZoneTable,
    lat: ArrayLike,
    lon: ArrayLike,
    zone_idx: ArrayLike,
    cutoff: float = math.inf,
) -> np.ndarray:
    """Signed distance in metres of fix i to zone zone_idx[i]: negative inside, positive
    outside, 0 on the boundary, NaN for a NaN fix. Where the fix is more than `cutoff`
    from the zone's bbox, the bbox distance (a lower bound > cutoff) is returned instead."""
    la, lo = _floats("lat", lat), _floats("lon", lon)
    zi = _indices("zone_idx", zone_idx, table.n_zones, "zone")
    _same_length(lat=la, lon=lo, zone_idx=zi)
    return distance.signed_pairs(la, lo, zi, _cutoff(cutoff), table.arrays)


def signed_distance_by_subject(
    table: ZoneTable,
    lat: ArrayLike,
    lon: ArrayLike,
    subject_slot: ArrayLike,
    cutoff: float = math.inf,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Signed distance of each fix to every zone of its subject, as CSR `(offsets,
    zone_idx, dist)`: fix i's rows are offsets[i]:offsets[i+1], zones in table order."""
    la, lo = _floats("lat", lat), _floats("lon", lon)
    ss = _indices("subject_slot", subject_slot, table.n_subjects, "subject")
    _same_length(lat=la, lon=lo, subject_slot=ss)
    return distance.signed_by_subject(la, lo, ss, _cutoff(cutoff), table.arrays)


def segment_distance(
    table: ZoneTable,
    lat0: ArrayLike,
    lon0: ArrayLike,
    lat1: ArrayLike,
    lon1: ArrayLike,
    zone_idx: ArrayLike,
    cutoff: float = math.inf,
) -> np.ndarray:
    """Distance in metres between the straight track segment p0 -> p1 (in the zone's
    frame) and zone zone_idx[i]: 0 when it touches, crosses or starts/ends inside; NaN if
    any end is NaN. `cutoff` as in `signed_distance`, on the segment's bbox."""
    a, b, c, d = _ends(lat0, lon0, lat1, lon1)
    zi = _indices("zone_idx", zone_idx, table.n_zones, "zone")
    _same_length(lat0=a, lon0=b, lat1=c, lon1=d, zone_idx=zi)
    return distance.segment_pairs(a, b, c, d, zi, _cutoff(cutoff), table.arrays)


def segment_distance_by_subject(
    table: ZoneTable,
    lat0: ArrayLike,
    lon0: ArrayLike,
    lat1: ArrayLike,
    lon1: ArrayLike,
    subject_slot: ArrayLike,
    cutoff: float = math.inf,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`segment_distance` against every zone of each segment's subject, CSR as in
    `signed_distance_by_subject`."""
    a, b, c, d = _ends(lat0, lon0, lat1, lon1)
    ss = _indices("subject_slot", subject_slot, table.n_subjects, "subject")
    _same_length(lat0=a, lon0=b, lat1=c, lon1=d, subject_slot=ss)
    return distance.segment_by_subject(a, b, c, d, ss, _cutoff(cutoff), table.arrays)


def segment_depth(
    table: ZoneTable,
    lat0: ArrayLike,
    lon0: ArrayLike,
    lat1: ArrayLike,
    lon1: ArrayLike,
    zone_idx: ArrayLike,
    step_m: float = 5.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each segment/zone pair: (depth, f_in, f_out), for telling whether a tag went
    through a zone between two fixes (the segment p0 -> p1 is straight in the zone's frame).

    depth: how deep the segment goes inside the zone, metres >= 0: the max over the segment
    of -signed_distance, clipped at 0; 0 when it never enters. Circles: exact (r minus the
    distance from the centre to the segment). Polygons: never above the true value and less
    than step_m / 2 below it (signed distance is 1-Lipschitz along the segment; see
    `zones.kernels.depth`), unless the search stops at `depth.DEPTH_MAX_EVALS` evaluations:
    only on an inside stretch over ~1000 * step_m long nearly parallel to an edge, and then
    still a depth the segment does reach.
    f_in, f_out: fractions in [0, 1] along p0 -> p1 of the first entry into and the last
    exit from the zone's interior, exact up to rounding (f_in = 0 when p0 is inside, f_out
    = 1 when p1 is); NaN when the segment never enters. Touching the boundary (a vertex, or
    running along an edge) is not entering, though within rounding of it (an end on an
    edge) a touch may read as an entry with a depth of ~1e-9 m: compare depth with a
    threshold, not with 0.
    A zero-length segment (under `depth.POINT_M`, a nanometre) is its start point: depth
    max(0, -signed_distance), fractions (0, 1) if it is inside, else NaN. Any NaN coordinate
    gives NaN in all three."""
    a, b, c, d = _ends(lat0, lon0, lat1, lon1)
    zi = _indices("zone_idx", zone_idx, table.n_zones, "zone")
    _same_length(lat0=a, lon0=b, lat1=c, lon1=d, zone_idx=zi)
    step = float(step_m)
    if not (math.isfinite(step) and step > 0.0):
        raise ValueError(f"step_m must be a finite number of metres > 0, got {step_m}")
    return depth.segment_depth_pairs(a, b, c, d, zi, step, depth.DEPTH_MAX_EVALS, table.arrays)


def point_distance_m(
    lat1: ArrayLike, lon1: ArrayLike, lat2: ArrayLike, lon2: ArrayLike
) -> np.ndarray:
    """Great-circle (haversine) distance in metres between paired positions, e.g. a tag
    and a victim's phone. NaN in either position gives NaN."""
    a, b = _floats("lat1", lat1), _floats("lon1", lon1)
    c, d = _floats("lat2", lat2), _floats("lon2", lon2)
    _same_length(lat1=a, lon1=b, lat2=c, lon2=d)
    return frame.haversine(a, b, c, d)
