"""ZoneRows: the zones of a file as columns, not as one Python object per zone.

Its own module because 500,000 subjects with a few zones each (issue 16) make a Zone
dataclass per feature the largest thing the engine holds: ~2 KB each with its strings,
where a row here costs ~70 bytes plus its id. `zones.geojson` reads a file straight into
rows, `zones.compile` builds the kernels' arrays from them without any per-zone Python,
and the engine reads what it still needs per zone (ids, schedules, validity) from them.

A ZoneRows is still a `Sequence[Zone]`: indexing or iterating makes the Zone of a row on
the spot (equal to the one the file describes), so code that wants a Zone now and then
(the console, tests, baselines) keeps working. Rows are built only from validated zones:
ids distinct, kinds known, circles with a centre and radius, polygons with a geometry.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import overload

import numpy as np
from shapely.geometry.base import BaseGeometry

from zones.model import Window, Zone, ZoneKind

KINDS: tuple[ZoneKind, ZoneKind] = ("exclusion", "inclusion")  # kind code -> name


@dataclass(frozen=True, eq=False)
class ZoneRows(Sequence[Zone]):
    """Zone r is row r of each column; the sparse dicts hold what few zones have."""

    ids: tuple[str, ...]
    subject_ids: tuple[str, ...]  # the distinct subjects, in order of first appearance
    subject: np.ndarray  # int32 index into subject_ids
    kind: np.ndarray  # int8: 0 exclusion, 1 inclusion (KINDS)
    feature: np.ndarray  # int64 feature index in the file (Zone.index)
    is_circle: np.ndarray  # bool_
    center: np.ndarray  # float64 (n, 2) lon, lat of circles (nan for polygons)
    radius: np.ndarray  # float64 metres of circles (nan for polygons)
    warn_m: np.ndarray  # float64
    valid_from: np.ndarray  # float64 Unix seconds, -inf: open
    valid_until: np.ndarray  # float64 Unix seconds, +inf: open
    geometry: dict[int, BaseGeometry]  # row -> lon/lat Polygon | MultiPolygon
    name: dict[int, str]  # row -> name, for the rows that have one
    schedule: dict[int, tuple[Window, ...]]  # row -> windows, for scheduled zones

    def __len__(self) -> int:
        return len(self.ids)

    @overload
    def __getitem__(self, i: int) -> Zone: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[Zone, ...]: ...
    def __getitem__(self, i: int | slice) -> Zone | tuple[Zone, ...]:
        if isinstance(i, slice):
            return tuple(self._zone(r) for r in range(*i.indices(len(self))))
        n = len(self)
        if not -n <= i < n:
            raise IndexError("zone row out of range")
        return self._zone(i % n if n else i)

    def __iter__(self) -> Iterator[Zone]:
        return (self._zone(r) for r in range(len(self)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    def __hash__(self) -> int:
        return hash(self.ids)

    def __repr__(self) -> str:
        return f"ZoneRows({len(self)} zones of {len(self.subject_ids)} subjects)"

    def _zone(self, r: int) -> Zone:
        circle = bool(self.is_circle[r])
        return Zone(
            id=self.ids[r],
            subject=self.subject_ids[int(self.subject[r])],
            kind=KINDS[int(self.kind[r])],
            index=int(self.feature[r]),
            geometry=self.geometry.get(r),
            center=(float(self.center[r, 0]), float(self.center[r, 1])) if circle else None,
            radius_m=float(self.radius[r]) if circle else None,
            warn_m=float(self.warn_m[r]),
            name=self.name.get(r),
            schedule=self.schedule.get(r, ()),
            valid_from=float(self.valid_from[r]),
            valid_until=float(self.valid_until[r]),
        )

    def only(self, subject_ids: Collection[str]) -> ZoneRows:
        """The rows of these subjects' zones, in file order, with no Zone made (e.g. the
        zones of one shard's subjects); `Zone.index` still counts features in the file."""
        keep = np.fromiter((s in subject_ids for s in self.subject_ids), np.bool_)
        rows = np.flatnonzero(keep[self.subject])
        kept = np.flatnonzero(keep)
        slot = np.full(len(self.subject_ids), -1, dtype=np.int32)
        slot[kept] = np.arange(kept.shape[0], dtype=np.int32)
        new = {int(r): k for k, r in enumerate(rows)}
        return ZoneRows(
            ids=tuple(self.ids[r] for r in new),
            subject_ids=tuple(self.subject_ids[i] for i in kept),
            subject=slot[self.subject[rows]],
            kind=self.kind[rows],
            feature=self.feature[rows],
            is_circle=self.is_circle[rows],
            center=self.center[rows],
            radius=self.radius[rows],
            warn_m=self.warn_m[rows],
            valid_from=self.valid_from[rows],
            valid_until=self.valid_until[rows],
            geometry={new[r]: g for r, g in self.geometry.items() if r in new},
            name={new[r]: v for r, v in self.name.items() if r in new},
            schedule={new[r]: w for r, w in self.schedule.items() if r in new},
        )

    @classmethod
    def from_zones(cls, zones: Sequence[Zone]) -> ZoneRows:
        """Rows of validated Zone objects (as `zones.compile` checks them), in order."""
        if isinstance(zones, ZoneRows):
            return zones
        n = len(zones)
        subject_ids = tuple(dict.fromkeys(z.subject for z in zones))
        slot = {s: k for k, s in enumerate(subject_ids)}
        center = np.full((n, 2), math.nan)
        radius = np.full(n, math.nan)
        for r, z in enumerate(zones):
            if z.center is not None:
                center[r] = z.center
                radius[r] = math.nan if z.radius_m is None else z.radius_m
        return cls(
            ids=tuple(z.id for z in zones),
            subject_ids=subject_ids,
            subject=np.fromiter((slot[z.subject] for z in zones), np.int32, n),
            kind=np.fromiter((KINDS.index(z.kind) for z in zones), np.int8, n),
            feature=np.fromiter((z.index for z in zones), np.int64, n),
            is_circle=np.fromiter((z.is_circle for z in zones), np.bool_, n),
            center=center,
            radius=radius,
            warn_m=np.fromiter((z.warn_m for z in zones), np.float64, n),
            valid_from=np.fromiter((z.valid_from for z in zones), np.float64, n),
            valid_until=np.fromiter((z.valid_until for z in zones), np.float64, n),
            geometry={r: z.geometry for r, z in enumerate(zones) if z.geometry is not None},
            name={r: z.name for r, z in enumerate(zones) if z.name is not None},
            schedule={r: z.schedule for r, z in enumerate(zones) if z.schedule},
        )


def zone_rows(zones: Sequence[Zone]) -> ZoneRows:
    """`zones` as rows: themselves when they are rows already."""
    return zones if isinstance(zones, ZoneRows) else ZoneRows.from_zones(zones)
