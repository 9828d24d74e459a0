"""The Earth in metres: each zone's local metric frame (`project`) and great-circle distance.

Projection. Every zone has its own local metric frame: an equirectangular projection about
the zone's origin (its bbox centre; a circle's centre),

    x = R * cos(lat0) * rad(wrap(lon - lon0)),   y = R * rad(lat - lat0),   R = 6371008.8 m,

with `wrap` folding longitude differences to [-180, 180). Zone vertices are stored in their
zone's metres; a fix is projected into the zone's frame by the kernels, per (fix, zone)
pair. One frame per zone keeps the distortion small anywhere in the world (scale error in x
grows as tan(lat0) * dlat: about 0.02 % per km north-south at 50°N, 0.07 % at 78°N), which
one global frame for a national deployment could not. The zone region *is* the projected
polygon (edges straight in its frame); far from the zone the distance is only a coarse,
large number. `m_per_deg_lon` = R * cos(lat0) * pi / 180 is computed once at compile time
and stored, so compile, kernels and the test oracle all run the same arithmetic in
`project` bit for bit.

Its own module because compile (arrays), the kernels (scalars) and the test oracles all
project with it, and none of them needs the distance or depth code to do so.
"""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np

from zones.jit import njit

EARTH_R = 6371008.8  # mean Earth radius (IUGG), metres
M_PER_DEG_LAT = EARTH_R * math.pi / 180.0

FloatOrArray = TypeVar("FloatOrArray", float, np.ndarray)


@njit
def wrap180(d: FloatOrArray) -> FloatOrArray:
    """Fold a longitude difference (degrees; scalar or array) into [-180, 180). Exact (d
    itself) when d is already in range, and cheaper than `%` (a libm fmod call)."""
    return d - 360.0 * np.floor((d + 180.0) / 360.0)  # type: ignore[no-any-return]


@njit
def project(
    lat: FloatOrArray,
    lon: FloatOrArray,
    lat0: FloatOrArray | float,
    lon0: FloatOrArray | float,
    m_per_deg_lon: FloatOrArray | float,
) -> tuple[FloatOrArray, FloatOrArray]:
    """(x, y) metres of (lat, lon) in the frame about (lat0, lon0). Scalars or arrays: the
    one projection used by compile (arrays), the kernels (scalars) and the oracle."""
    return m_per_deg_lon * wrap180(lon - lon0), M_PER_DEG_LAT * (lat - lat0)


@njit
def haversine(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    """Great-circle distance in metres between (lat1[i], lon1[i]) and (lat2[i], lon2[i])."""
    n = lat1.shape[0]
    out = np.empty(n, dtype=np.float64)
    k = math.pi / 180.0
    for i in range(n):
        p1 = lat1[i] * k
        p2 = lat2[i] * k
        sp = math.sin((p2 - p1) * 0.5)
        sl = math.sin((lon2[i] - lon1[i]) * k * 0.5)
        a = sp * sp + math.cos(p1) * math.cos(p2) * sl * sl
        s = math.sqrt(a)
        if s > 1.0:  # rounding; written so that NaN stays NaN
            s = 1.0
        out[i] = 2.0 * EARTH_R * math.asin(s)
    return out


# -- the seam: a segment whose short way crosses the meridian opposite the zone ------------


@njit
def seam_pieces(fx0: float, fx1: float, k: float, lon0: float, lon1: float) -> tuple[int, float]:
    """(pieces, shift) of the segment from (lat0, lon0) to (lat1, lon1), projected to x
    fx0 -> fx1 in a frame of k metres per degree of longitude: 1 piece when the short way
    stays on the frame's side of its seam; else 2, and `shift` the x-offset of the short
    way (each piece is the segment continued straight past the seam on its side)."""
    if abs(fx1 - fx0) > k * 180.0:
        return 2, k * wrap180(lon1 - lon0)
    return 1, 0.0


@njit
def seam_piece(
    piece: int, pieces: int, shift: float, fx0: float, fy0: float, fx1: float, fy1: float
) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) of piece `piece` of `seam_pieces`: the whole segment, or the half
    on p0's side (piece 0) or on p1's side (piece 1). All share one t along p0 -> p1."""
    if pieces == 2 and piece == 0:
        return fx0, fy0, fx0 + shift, fy1
    if pieces == 2:
        return fx1 - shift, fy0, fx1, fy1
    return fx0, fy0, fx1, fy1
