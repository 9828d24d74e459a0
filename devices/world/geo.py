"""Local metric frames (east/north metres around an origin) and great-circle distance."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

# WGS84 ellipsoid
_A = 6378137.0
_F = 1.0 / 298.257223563
_E2 = _F * (2.0 - _F)
MEAN_EARTH_RADIUS_M = 6371008.8

FloatArray = NDArray[np.float64]


class LocalFrame:
    """Equirectangular tangent frame at (lat0, lon0) using the ellipsoid's radii of
    curvature there: x east, y north, metres. Within a few hundred metres of the origin
    the error is millimetres; across a 6 km city it stays under about 0.1% of scale,
    which is why ground truth re-projects each zone into a frame of its own."""

    __slots__ = ("lat0", "lon0", "m_per_deg_lat", "m_per_deg_lon")

    def __init__(self, lat0: float, lon0: float) -> None:
        phi = math.radians(lat0)
        w = math.sqrt(1.0 - _E2 * math.sin(phi) ** 2)
        meridional = _A * (1.0 - _E2) / w**3
        normal = _A / w
        self.lat0 = float(lat0)
        self.lon0 = float(lon0)
        self.m_per_deg_lat = math.radians(1.0) * meridional
        self.m_per_deg_lon = math.radians(1.0) * normal * math.cos(phi)

    def to_xy(self, lat: ArrayLike, lon: ArrayLike) -> tuple[FloatArray, FloatArray]:
        """Degrees -> metres east and north of the origin."""
        x = (np.asarray(lon, dtype=np.float64) - self.lon0) * self.m_per_deg_lon
        y = (np.asarray(lat, dtype=np.float64) - self.lat0) * self.m_per_deg_lat
        return x, y

    def to_latlon(self, x: ArrayLike, y: ArrayLike) -> tuple[FloatArray, FloatArray]:
        """Metres east and north of the origin -> (lat, lon) degrees."""
        lat = self.lat0 + np.asarray(y, dtype=np.float64) / self.m_per_deg_lat
        lon = self.lon0 + np.asarray(x, dtype=np.float64) / self.m_per_deg_lon
        return lat, lon


def haversine_m(lat1: ArrayLike, lon1: ArrayLike, lat2: ArrayLike, lon2: ArrayLike) -> FloatArray:
    """Great-circle distance in metres on the mean-radius sphere (vectorised)."""
    p1 = np.radians(np.asarray(lat1, dtype=np.float64))
    p2 = np.radians(np.asarray(lat2, dtype=np.float64))
    dp = p2 - p1
    dl = np.radians(np.asarray(lon2, dtype=np.float64) - np.asarray(lon1, dtype=np.float64))
    h = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2.0 * MEAN_EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))
