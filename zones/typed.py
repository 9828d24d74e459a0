"""The zones GeoJSON read straight into ZoneRows by a typed msgspec decode, when the file
is plainly valid; anything else is read again by `zones.geojson` for its words.

Its own module because it is the scale path (issue 16: 1.5M features): `json.loads`
builds a dict tree of ~6 KB per feature and a Zone object per feature stays behind. Here
the file's bytes are decoded once into one `msgspec.Raw` slice per feature, and each
feature is decoded alone into small structs that die at once, leaving columns. The
structs' types are the plain case only (a Point with [lon, lat] and radius_m, a Polygon
or MultiPolygon, string ids, a kind of the two): a feature outside it, or any problem the
checks below find, makes `read_typed` give up (None), and `read_zones` reads the whole
file again with `zones.geojson`, which words every problem. So a file this accepts gives
the same zones as `zones.geojson` gives, and a file it does not gives the same messages.
"""

from __future__ import annotations

import math
from array import array
from pathlib import Path
from typing import Any, Literal

import msgspec
import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from zones.geojson import SubjectRef, multipolygon, polygon, schedule_windows, swapped_rows
from zones.geojson import read_zones as read_checked
from zones.model import Window
from zones.problems import Report, StrPath
from zones.rows import ZoneRows
from zones.validity import read_validity


class _Props(msgspec.Struct, gc=False):
    id: str
    subject: str
    kind: Literal["exclusion", "inclusion"]
    radius_m: float | None = None
    warn_m: float | None = None
    name: str | None = None
    schedule: Any = None
    valid_from: Any = None
    valid_until: Any = None


class _Point(msgspec.Struct, tag="Point", tag_field="type", gc=False):
    coordinates: tuple[float, float]


class _Polygon(msgspec.Struct, tag="Polygon", tag_field="type", gc=False):
    coordinates: Any


class _MultiPolygon(msgspec.Struct, tag="MultiPolygon", tag_field="type", gc=False):
    coordinates: Any


class _Feature(msgspec.Struct, gc=False):
    type: Literal["Feature"]  # a field, not a tag: a tag may be left out
    geometry: _Point | _Polygon | _MultiPolygon
    properties: _Props


class _Collection(msgspec.Struct, gc=False):
    type: Literal["FeatureCollection"]
    features: list[msgspec.Raw]


_COLLECTION = msgspec.json.Decoder(_Collection)
_FEATURE = msgspec.json.Decoder(_Feature)
_KIND = {"exclusion": 0, "inclusion": 1}
_BOM = b"\xef\xbb\xbf"


class _GiveUp(Exception):
    """The file is not plainly valid: `zones.geojson` reads it for the words."""


def read_zones(path: StrPath, subjects: SubjectRef) -> tuple[ZoneRows, list[str]]:
    """(the zones of the file as rows, every problem in it); the rows hold the valid zones
    when there are problems."""
    rows = read_typed(path, subjects)
    if rows is not None:
        return rows, []
    zones, problems = read_checked(path, subjects)
    return ZoneRows.from_zones(zones), problems


def read_typed(path: StrPath, subjects: SubjectRef) -> ZoneRows | None:
    """The file as rows when it is plainly valid, else None (nothing is reported)."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    view = memoryview(data)[len(_BOM) :] if data.startswith(_BOM) else data
    try:
        features = _COLLECTION.decode(view).features
        return _Columns(subjects).read(features)
    except (msgspec.MsgspecError, RecursionError, _GiveUp):  # nested deep: a fuzzing find
        return None


class _Columns:
    """The columns being filled, one feature at a time."""

    def __init__(self, subjects: SubjectRef) -> None:
        self.known = subjects.ids
        self.ids: list[str] = []
        self.subject_slot: dict[str, int] = {}
        self.subject, self.kind = array("i"), array("b")
        self.lon, self.lat, self.radius, self.warn = array("d"), array("d"), array("d"), array("d")
        self.valid_from, self.valid_until = array("d"), array("d")
        self.geometry: dict[int, BaseGeometry] = {}
        self.name: dict[int, str] = {}
        self.schedule: dict[int, tuple[Window, ...]] = {}
        self.windows: dict[tuple[Window, ...], tuple[Window, ...]] = {}  # one of each

    def read(self, features: list[msgspec.Raw]) -> ZoneRows:
        decode, nan = _FEATURE.decode, math.nan
        for r, raw in enumerate(features):
            f = decode(raw)
            p = f.properties
            self._props(r, p)
            g = f.geometry
            if isinstance(g, _Point):
                radius = p.radius_m
                if radius is None or not (0.0 < radius < math.inf):
                    raise _GiveUp
                self.lon.append(g.coordinates[0])
                self.lat.append(g.coordinates[1])
                self.radius.append(radius)
            else:
                if p.radius_m is not None:
                    raise _GiveUp
                self.geometry[r] = self._shape(g)
                self.lon.append(nan)
                self.lat.append(nan)
                self.radius.append(nan)
        del features
        return self._rows()

    def _props(self, r: int, p: _Props) -> None:
        zid, sid = p.id, p.subject
        if not zid.strip():
            raise _GiveUp
        slot = self.subject_slot.get(sid)
        if slot is None:
            if not sid.strip() or (self.known is not None and sid not in self.known):
                raise _GiveUp
            slot = self.subject_slot[sid] = len(self.subject_slot)
        self.ids.append(zid)
        self.subject.append(slot)
        self.kind.append(_KIND[p.kind])
        warn = p.warn_m
        if warn is not None and not (0.0 <= warn < math.inf):
            raise _GiveUp
        self.warn.append(warn or 0.0)
        if p.name is not None:
            self.name[r] = p.name
        if p.schedule is not None or p.valid_from is not None or p.valid_until is not None:
            self._timed(r, p)
        else:
            self.valid_from.append(-math.inf)
            self.valid_until.append(math.inf)

    def _timed(self, r: int, p: _Props) -> None:
        """A schedule or validity: read by the same functions `zones.geojson` uses."""
        out: list[str] = []
        report = Report("", out)
        sched = schedule_windows(p.schedule, report)
        lo, hi = read_validity({"valid_from": p.valid_from, "valid_until": p.valid_until}, report)
        if out:
            raise _GiveUp
        if sched:
            self.schedule[r] = self.windows.setdefault(sched, sched)
        self.valid_from.append(lo)
        self.valid_until.append(hi)

    @staticmethod
    def _shape(g: _Polygon | _MultiPolygon) -> BaseGeometry:
        out: list[str] = []
        report = Report("", out)
        if isinstance(g, _Polygon):
            shape: BaseGeometry | None = polygon(g.coordinates, "", report)
        else:
            shape = multipolygon(g.coordinates, report)
        if out or shape is None:
            raise _GiveUp
        return shape

    def _rows(self) -> ZoneRows:
        n = len(self.ids)
        if len(set(self.ids)) != n:
            raise _GiveUp  # a duplicate id
        center = np.empty((n, 2), dtype=np.float64)
        center[:, 0] = np.frombuffer(self.lon, dtype=np.float64)
        center[:, 1] = np.frombuffer(self.lat, dtype=np.float64)
        is_circle = ~np.isnan(center[:, 0])
        pts = center[is_circle]
        if not (np.isfinite(pts).all() and (np.abs(pts) <= (180.0, 90.0)).all()):
            raise _GiveUp
        first = center.copy()  # where each feature is, for the [lat, lon] check
        for r, g in self.geometry.items():
            first[r] = _first(g)
        if swapped_rows(first).shape[0]:
            raise _GiveUp
        return ZoneRows(
            ids=tuple(self.ids),
            subject_ids=tuple(self.subject_slot),
            subject=np.frombuffer(self.subject, dtype=np.int32).copy(),
            kind=np.frombuffer(self.kind, dtype=np.int8).copy(),
            feature=np.arange(n, dtype=np.int64),
            is_circle=is_circle,
            center=center,
            radius=np.frombuffer(self.radius, dtype=np.float64).copy(),
            warn_m=np.frombuffer(self.warn, dtype=np.float64).copy(),
            valid_from=np.frombuffer(self.valid_from, dtype=np.float64).copy(),
            valid_until=np.frombuffer(self.valid_until, dtype=np.float64).copy(),
            geometry=self.geometry,
            name=self.name,
            schedule=self.schedule,
        )


def _first(g: BaseGeometry) -> tuple[float, float]:
    c = shapely.get_coordinates(g)[0]
    return float(c[0]), float(c[1])
