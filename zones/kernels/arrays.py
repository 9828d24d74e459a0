"""ZoneArrays: the compiled zone table as the kernels read it, one bundle, and its layout.

Its own module because two sides share it: `zones.compile` builds it once per table, and
every batch kernel in `distance` and `depth` takes it as one argument (numba types a
NamedTuple of arrays like any tuple; reading a field inside a compiled loop is free).

Layout. Zone z is row z of the per-zone arrays, in the zone's own metric frame (see
`zones.kernels.frame`). Rings (`ZoneArrays.rings`) are CSR: zone z owns rings
zone_ring_start[z] .. zone_ring_start[z+1] (exteriors and holes of all its parts; none for
circles), ring r owns vertices ring_vert_start[r] .. ring_vert_start[r+1] of vx/vy, stored
without the closing vertex (edges wrap: vertex i ends the edge from its ring predecessor).
Vertices are grouped in chunks of CHUNK by global index (chunk c = vertices c*CHUNK ..
c*CHUNK+CHUNK-1), and chunk_bbox[c] bounds the edges ending there; a chunk may span two
rings, its bbox then covers both (still a bound). The kernels skip chunks whose bbox is
far. Subjects are CSR too: subject s owns zones
subject_zone_idx[subject_zone_start[s]:subject_zone_start[s+1]].
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

CHUNK = 16  # edges per chunk


class Rings(NamedTuple):
    """The polygon rings of all zones (circles have none): CSR, vertices and chunk boxes.
    A bundle of its own because the polygon helpers, called once per (fix, zone) pair, take
    it alone: numba counts a reference to every array a helper binds, on every call (see
    `zones.kernels.distance`)."""

    zone_ring_start: np.ndarray  # int64 (n + 1)
    ring_vert_start: np.ndarray  # int64 (nrings + 1)
    vx: np.ndarray  # float64 vertex x, metres
    vy: np.ndarray  # float64 vertex y, metres
    chunk_bbox: np.ndarray  # float64 (ceil(nverts / CHUNK), 4): bbox of edges ending there


class ZoneArrays(NamedTuple):
    """What the kernels read of a ZoneTable (read-only arrays, the same objects)."""

    origin_lat: np.ndarray  # float64 degrees: frame origin (bbox centre / circle centre)
    origin_lon: np.ndarray  # float64 degrees, in [-180, 180)
    m_per_deg_lon: np.ndarray  # float64: R * cos(origin_lat) * pi / 180
    is_circle: np.ndarray  # bool_
    radius: np.ndarray  # float64 metres (circles; 0 otherwise)
    bbox: np.ndarray  # float64 (n, 4) minx, miny, maxx, maxy in the zone's metres
    rings: Rings
    subject_zone_start: np.ndarray  # int64 (nsubj + 1)
    subject_zone_idx: np.ndarray  # int32
