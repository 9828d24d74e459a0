"""Compile validated zones into the frozen table of flat, read-only arrays the kernels read."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from zones.errors import ZoneError
from zones.kernels.arrays import CHUNK, Rings, ZoneArrays
from zones.kernels.frame import EARTH_R, project, wrap180
from zones.model import Subject, Zone, ZoneSet
from zones.rows import ZoneRows, zone_rows

KIND_CODE = {"exclusion": 0, "inclusion": 1}


@dataclass(frozen=True, eq=False)
class ZoneTable:
    """Every zone as rows of flat, read-only arrays (zone z is row z): what the engine reads
    of a zone (id, kind, subject, warn_m, when it binds) here, and what the kernels read, in
    the zone's own metric frame, as one `ZoneArrays` bundle in `arrays` (layout:
    `zones.kernels.arrays`). Memory: ~106 B per zone, 8 per ring, 18 per vertex, plus the id
    strings.

    `valid_from`/`valid_until`: the zone binds in [valid_from, valid_until), its own licence
    condition within its subject's tagging period (when compiled with Subject objects; the
    engine's registry keeps the periods themselves); -inf / +inf where open."""

    zone_ids: tuple[str, ...]
    kind: np.ndarray  # int8: 0 exclusion, 1 inclusion
    subject: np.ndarray  # int32 subject slot
    warn_m: np.ndarray  # float64 approach ring width
    subject_ids: tuple[str, ...]
    arrays: ZoneArrays  # built once here; every kernel takes it as one argument
    valid_from: np.ndarray  # float64 per zone
    valid_until: np.ndarray  # float64 per zone

    def __post_init__(self) -> None:
        for a in self._ndarrays():
            a.flags.writeable = False

    def _ndarrays(self) -> list[np.ndarray]:
        own = [v for v in self.arrays if isinstance(v, np.ndarray)]
        return [self.kind, self.subject, self.warn_m, *own, *self.arrays.rings,
                self.valid_from, self.valid_until]  # fmt: skip

    @cached_property
    def has_validity(self) -> bool:
        """Whether any zone binds for less than all time (else nothing need check it)."""
        return bool(np.isfinite(self.valid_from).any() or np.isfinite(self.valid_until).any())

    @property
    def n_zones(self) -> int:
        return len(self.zone_ids)

    @property
    def n_subjects(self) -> int:
        return len(self.subject_ids)

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays (the id tuples not counted)."""
        return sum(a.nbytes for a in self._ndarrays())

    # Built on first use only: a dict per table, not per zone, and not at all in the hot path.
    @cached_property
    def _zone_slot(self) -> dict[str, int]:
        return {zid: i for i, zid in enumerate(self.zone_ids)}

    @cached_property
    def _subject_slot(self) -> dict[str, int]:
        return {sid: i for i, sid in enumerate(self.subject_ids)}

    def zone_index(self, zone_id: str) -> int:
        """Row of a zone id; KeyError if the table has no such zone."""
        try:
            return self._zone_slot[zone_id]
        except KeyError:
            raise KeyError(f"unknown zone id {zone_id!r}") from None

    def subject_index(self, subject_id: str) -> int:
        """Slot of a subject id; KeyError if the table has no such subject."""
        try:
            return self._subject_slot[subject_id]
        except KeyError:
            raise KeyError(f"unknown subject id {subject_id!r}") from None


def _label(z: Zone) -> str:
    return f"zone {z.id!r} (feature {z.index})"


def _m_per_deg_lon(lat0: np.ndarray) -> np.ndarray:
    out: np.ndarray = EARTH_R * np.cos(np.radians(lat0)) * (math.pi / 180.0)
    return out


def _unwrap_antimeridian(g: BaseGeometry) -> BaseGeometry:
    """A zone split at the antimeridian (RFC 7946) as one piece in lon [0, 360): its parts
    merge, so the seam is not a boundary (a fix just inside it is deep inside the zone)."""
    shifted = shapely.transform(
        g, lambda c: np.where(c[:, :1] < 0.0, c + np.array([360.0, 0.0]), c)
    )
    return shapely.union_all(shapely.get_parts(shifted))


def _polygon_arrays(
    geoms: list[BaseGeometry],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Ragged coordinates of polygon zones: (lon, lat, ring_vert_start, rings_per_zone,
    bounds) with closing vertices dropped."""
    gtype, coords, offsets = shapely.to_ragged_array(np.asarray(geoms, dtype=object))
    ring_off = offsets[0].astype(np.int64)
    if gtype == shapely.GeometryType.POLYGON:
        zone_ring = offsets[1].astype(np.int64)
    else:  # MULTIPOLYGON (Polygons are promoted when mixed)
        zone_ring = offsets[1][offsets[2]].astype(np.int64)
    keep = np.ones(coords.shape[0], dtype=np.bool_)
    keep[ring_off[1:] - 1] = False
    ring_vert_start = ring_off - np.arange(ring_off.shape[0], dtype=np.int64)
    bounds = shapely.bounds(np.asarray(geoms, dtype=object))
    return coords[keep, 0], coords[keep, 1], ring_vert_start, np.diff(zone_ring), bounds


def _chunk_bbox(ring_vert_start: np.ndarray, vx: np.ndarray, vy: np.ndarray) -> np.ndarray:
    """Bbox of each chunk of CHUNK edges; edge i runs from i's ring predecessor to i."""
    n = vx.shape[0]
    nchunks = -(-n // CHUNK)
    if n == 0:
        return np.zeros((0, 4), dtype=np.float64)
    prev = np.arange(-1, n - 1, dtype=np.int64)
    prev[ring_vert_start[:-1]] = ring_vert_start[1:] - 1  # first vertex: from the ring's last
    starts = np.arange(0, n, CHUNK)
    out = np.empty((nchunks, 4), dtype=np.float64)
    out[:, 0] = np.minimum.reduceat(np.minimum(vx, vx[prev]), starts)
    out[:, 1] = np.minimum.reduceat(np.minimum(vy, vy[prev]), starts)
    out[:, 2] = np.maximum.reduceat(np.maximum(vx, vx[prev]), starts)
    out[:, 3] = np.maximum.reduceat(np.maximum(vy, vy[prev]), starts)
    return out


def _check(zones: Sequence[Zone], subj_slot: dict[str, int]) -> list[str]:
    problems: list[str] = []
    seen: set[str] = set()
    for z in zones:
        if z.id in seen:
            problems.append(f"{_label(z)}: duplicate zone id")
        seen.add(z.id)
        if z.subject not in subj_slot:
            problems.append(f"{_label(z)}: subject {z.subject!r} is not in the subjects file")
        if z.kind not in KIND_CODE:
            problems.append(f"{_label(z)}: kind must be 'exclusion' or 'inclusion'")
        if not (math.isfinite(z.warn_m) and z.warn_m >= 0.0):
            problems.append(f"{_label(z)}: warn_m must be a finite number >= 0")
        if z.is_circle:
            assert z.center is not None
            lon, lat = z.center
            r = z.radius_m
            if not (math.isfinite(lon) and math.isfinite(lat) and -90.0 < lat < 90.0):
                problems.append(f"{_label(z)}: circle centre {z.center} is not a position")
            if r is None or not (math.isfinite(r) and r > 0.0):
                problems.append(f"{_label(z)}: radius_m must be a finite number > 0")
        elif z.geometry is None or z.geometry.geom_type not in ("Polygon", "MultiPolygon"):
            kind = "nothing" if z.geometry is None else z.geometry.geom_type
            problems.append(f"{_label(z)}: geometry must be Polygon or MultiPolygon, not {kind}")
        elif z.geometry.is_empty:
            problems.append(f"{_label(z)}: geometry is empty")
        if not (z.valid_from < z.valid_until and z.valid_from < math.inf):
            problems.append(f"{_label(z)}: valid_until must be after valid_from")
    return problems


def _rows_ok(rows: ZoneRows, subj_slot: dict[str, int]) -> bool:
    """Whether rows pass `_check` (vectorized; rows hold distinct ids by construction)."""
    lat = rows.center[rows.is_circle, 1]
    lon = rows.center[rows.is_circle, 0]
    r = rows.radius[rows.is_circle]
    vf, vu = rows.valid_from, rows.valid_until
    return (
        all(map(subj_slot.__contains__, rows.subject_ids))
        and bool(np.isin(rows.kind, (0, 1)).all())
        and bool((np.isfinite(rows.warn_m) & (rows.warn_m >= 0.0)).all())
        and bool((np.isfinite(lon) & (np.abs(lat) < 90.0)).all())
        and bool((np.isfinite(r) & (r > 0.0)).all())
        and len(rows.geometry) == int((~rows.is_circle).sum())
        and all(
            g.geom_type in ("Polygon", "MultiPolygon") and not g.is_empty
            for g in rows.geometry.values()
        )
        and bool(((vf < vu) & (vf < math.inf)).all())
    )


def _validity(
    rows: ZoneRows, subjects: Sequence[Subject | str] | None, subject: np.ndarray, m: int
) -> tuple[np.ndarray, np.ndarray]:
    """(from, until) per zone: each zone's own validity narrowed to its subject's tagging
    period (`subject`: each zone's slot of the m subjects)."""
    s_from, s_until = np.full(m, -np.inf), np.full(m, np.inf)
    # Whole arrays, and no object per subject: 500k subjects make numpy scalar writes slow
    known = [s for s in subjects or () if not isinstance(s, str)]
    if known:
        at = np.flatnonzero([not isinstance(s, str) for s in subjects or ()])
        s_from[at] = np.fromiter((s.valid_from for s in known), np.float64, len(known))
        s_until[at] = np.fromiter((s.valid_until for s in known), np.float64, len(known))
    return np.maximum(rows.valid_from, s_from[subject]), np.minimum(
        rows.valid_until, s_until[subject]
    )


def compile_zones(
    zoneset_or_zones: ZoneSet | Sequence[Zone],
    subjects: Sequence[Subject | str] | None = None,
) -> ZoneTable:
    """Compile zones into a ZoneTable. Subject slots follow `subjects` (Subject objects or
    ids), else the ZoneSet's subjects, else the order subjects first appear in the zones.
    Raises ZoneError listing every problem found."""
    if isinstance(zoneset_or_zones, ZoneSet):
        zones = zoneset_or_zones.zones
        if subjects is None:
            subjects = zoneset_or_zones.subjects
    else:
        zones = zoneset_or_zones
    if not isinstance(zones, ZoneRows):
        zones = tuple(zones)
    if subjects is None:
        subject_ids = (
            zones.subject_ids
            if isinstance(zones, ZoneRows)
            else tuple(dict.fromkeys(z.subject for z in zones))
        )
    else:
        subject_ids = tuple(s if isinstance(s, str) else s.id for s in subjects)
    subj_slot = {s: i for i, s in enumerate(subject_ids)}
    problems: list[str] = []
    if not (isinstance(zones, ZoneRows) and _rows_ok(zones, subj_slot)):
        problems = _check(tuple(zones), subj_slot)  # each problem in words
    if len(subj_slot) != len(subject_ids):
        dups = sorted(s for s, c in Counter(subject_ids).items() if c > 1)
        problems.append(f"duplicate subject ids: {', '.join(dups)}")
    if problems:
        raise ZoneError(f"{len(problems)} problem(s) in zones: {problems[0]}", problems)
    return _compile(zone_rows(zones), subjects, subject_ids, subj_slot)


def _compile(
    rows: ZoneRows,
    subjects: Sequence[Subject | str] | None,
    subject_ids: tuple[str, ...],
    subj_slot: dict[str, int],
) -> ZoneTable:
    n = len(rows)
    is_circle = rows.is_circle
    kind = rows.kind
    slot_of_row_subject = np.fromiter(
        map(subj_slot.__getitem__, rows.subject_ids), np.int32, len(rows.subject_ids)
    )
    subject = slot_of_row_subject[rows.subject] if n else np.zeros(0, dtype=np.int32)
    warn_m = rows.warn_m
    radius = np.zeros(n, dtype=np.float64)
    origin_lat = np.zeros(n, dtype=np.float64)
    origin_lon = np.zeros(n, dtype=np.float64)
    bbox = np.zeros((n, 4), dtype=np.float64)
    ring_count = np.zeros(n, dtype=np.int64)

    circ = np.flatnonzero(is_circle)
    if circ.shape[0]:
        centre = rows.center[circ]
        r = rows.radius[circ]
        radius[circ] = r
        origin_lon[circ] = wrap180(centre[:, 0])
        origin_lat[circ] = centre[:, 1]
        bbox[circ] = np.stack([-r, -r, r, r], axis=1)

    poly = np.flatnonzero(~is_circle)
    vx = vy = np.zeros(0, dtype=np.float64)
    ring_vert_start = np.zeros(1, dtype=np.int64)
    if poly.shape[0]:
        geoms = [rows.geometry[int(i)] for i in poly]
        b = shapely.bounds(np.asarray(geoms, dtype=object))
        for k in np.flatnonzero(b[:, 2] - b[:, 0] > 180.0):
            geoms[k] = _unwrap_antimeridian(geoms[k])
        bad = np.flatnonzero(~shapely.is_valid(np.asarray(geoms, dtype=object)))
        if bad.shape[0]:
            problems = [
                f"{_label(rows[int(poly[k])])}: invalid geometry: {shapely.is_valid_reason(geoms[k])}"
                for k in bad
            ]
            raise ZoneError(f"{len(problems)} problem(s) in zones: {problems[0]}", problems)
        vlon, vlat, ring_vert_start, rings_per_zone, b = _polygon_arrays(geoms)
        if not (np.isfinite(vlon).all() and (np.abs(vlat) < 90.0).all()):
            raise ZoneError("zones: polygon coordinates must be finite, with |lat| < 90")
        ring_count[poly] = rings_per_zone
        origin_lon[poly] = wrap180((b[:, 0] + b[:, 2]) * 0.5)
        origin_lat[poly] = (b[:, 1] + b[:, 3]) * 0.5
    m_per_deg_lon = _m_per_deg_lon(origin_lat)  # once: compile and kernels use these values
    if poly.shape[0]:
        # Each vertex in its zone's frame, projected with the kernels' own function.
        vert_zone = np.repeat(np.repeat(poly, rings_per_zone), np.diff(ring_vert_start))
        vx, vy = project(
            vlat, vlon, origin_lat[vert_zone], origin_lon[vert_zone], m_per_deg_lon[vert_zone]
        )
        vx = np.ascontiguousarray(vx, dtype=np.float64)
        vy = np.ascontiguousarray(vy, dtype=np.float64)
        first_vert = ring_vert_start[np.concatenate([[0], np.cumsum(rings_per_zone)[:-1]])]
        bbox[poly, 0] = np.minimum.reduceat(vx, first_vert)
        bbox[poly, 1] = np.minimum.reduceat(vy, first_vert)
        bbox[poly, 2] = np.maximum.reduceat(vx, first_vert)
        bbox[poly, 3] = np.maximum.reduceat(vy, first_vert)

    zone_ring_start = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(ring_count, out=zone_ring_start[1:])
    valid_from, valid_until = _validity(rows, subjects, subject, len(subject_ids))
    order = np.argsort(subject, kind="stable").astype(np.int32)
    subject_zone_start = np.zeros(len(subject_ids) + 1, dtype=np.int64)
    np.cumsum(np.bincount(subject, minlength=len(subject_ids)), out=subject_zone_start[1:])
    return ZoneTable(
        zone_ids=rows.ids,
        kind=kind,
        subject=subject,
        warn_m=warn_m,
        subject_ids=subject_ids,
        arrays=ZoneArrays(
            origin_lat=origin_lat,
            origin_lon=origin_lon,
            m_per_deg_lon=m_per_deg_lon,
            is_circle=is_circle,
            radius=radius,
            bbox=bbox,
            rings=Rings(
                zone_ring_start=zone_ring_start,
                ring_vert_start=ring_vert_start,
                vx=vx,
                vy=vy,
                chunk_bbox=_chunk_bbox(ring_vert_start, vx, vy),
            ),
            subject_zone_start=subject_zone_start,
            subject_zone_idx=order,
        ),
        valid_from=valid_from,
        valid_until=valid_until,
    )
