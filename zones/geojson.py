"""The zones GeoJSON: each Feature checked into a Zone (geometry, properties, schedule,
validity).

Its own module because it is most of the checking: positions and rings before shapely
sees them, polygon validity in words, properties against the subjects file, schedules,
and whole-file checks (duplicate ids, [lat, lon] written swapped, lone surrogates).
`zones.load` pairs it with the subjects TOML (`zones.subjects`).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from numpy.typing import NDArray
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from zones.model import Window, Zone
from zones.problems import Report, StrPath, is_number, non_empty_str, number, read_text, short
from zones.schedule import parse_window
from zones.validity import read_validity

KINDS = ("exclusion", "inclusion")
GEOMETRY_HINT = "use Polygon, MultiPolygon, or Point with radius_m"
_NUMBER = (int, float)  # exact types: a JSON true is not a coordinate
_VALIDITY = re.compile(r"(?P<reason>.*?)\s*\[(?P<x>\S+) (?P<y>\S+)\]")
# JSON may escape a lone UTF-16 surrogate ("\ud800"); such a string is not Unicode text and
# could never be encoded again (alert ids, topics, the store)
_SURROGATE = re.compile("[\ud800-\udfff]")


def _fmt(v: float) -> str:
    return repr(round(v, 7))


def _parse_int(s: str) -> int | float:
    """A JSON integer; one longer than Python converts (4300 digits) is no coordinate,
    radius or id: it reads as infinite and is reported as non-finite where it is. (A
    fuzzing find: json.loads raised a bare ValueError for it.)"""
    if len(s) <= 4000:
        return int(s)
    return -math.inf if s.startswith("-") else math.inf


# -- geometry ------------------------------------------------------------------------------


def _position(raw: Any, label: str) -> tuple[tuple[float, float] | None, str | None]:
    """A GeoJSON position -> ((lon, lat), None) or (None, what is wrong with it)."""
    if not isinstance(raw, list) or len(raw) < 2 or not all(is_number(v) for v in raw):
        return None, f"{label} is not a [lon, lat] position: {short(raw)}"
    try:
        lon, lat = float(raw[0]), float(raw[1])
    except OverflowError:
        lon = lat = math.inf
    if not (math.isfinite(lon) and math.isfinite(lat)):
        return None, f"{label} {short(raw)} has a non-finite coordinate"
    if abs(lon) <= 180 and abs(lat) <= 90:
        return (lon, lat), None
    what = f"{label} [{_fmt(lon)}, {_fmt(lat)}] is out of range (lon within ±180, lat within ±90)"
    if abs(lat) <= 180 and abs(lon) <= 90:
        what += "; values look like [lat, lon]; GeoJSON is [lon, lat]"
    return None, what


def _fast_positions(raw: list[Any]) -> NDArray[np.float64] | None:
    """The (n, 2) lon/lat array when every position is plainly fine (the common case), so
    big files skip the per-position checks; None sends the ring to `_position` for words."""
    if not all(type(p) is list and len(p) >= 2 and all(type(v) in _NUMBER for v in p) for p in raw):
        return None
    try:
        pts = np.array([p[:2] for p in raw], dtype=np.float64).reshape(-1, 2)
    except OverflowError:
        return None
    ok = np.isfinite(pts).all() and (np.abs(pts) <= (180.0, 90.0)).all()
    return pts if ok else None


def _ring(raw: Any, label: str, report: Report) -> NDArray[np.float64] | None:
    """Raw checks shapely would hide: positions valid, >= 4 of them, first == last."""
    if not isinstance(raw, list):
        report(f"{label} is not a list of positions: {short(raw)}")
        return None
    pts = _fast_positions(raw)
    if pts is None:
        bad = [w for k, pos in enumerate(raw) if (w := _position(pos, f"{label} position {k}")[1])]
        more = f" (and {len(bad) - 1} more bad positions in this ring)" if len(bad) > 1 else ""
        report((bad or [f"{label} has an invalid position"])[0] + more)
        return None
    ok = True
    if len(pts) < 4:
        report(
            f"{label} has {len(pts)} positions; a ring needs at least 4 "
            "(3 corners, then the first repeated)"
        )
        ok = False
    if len(pts) and (pts[0] != pts[-1]).any():
        (x0, y0), (x1, y1) = pts[0].tolist(), pts[-1].tolist()
        report(
            f"{label} is not closed: first position [{_fmt(x0)}, {_fmt(y0)}] "
            f"!= last [{_fmt(x1)}, {_fmt(y1)}] (repeat the first at the end)"
        )
        ok = False
    return pts if ok else None


def _validity(geom: BaseGeometry) -> tuple[str, str] | None:
    """None if valid, else (GEOS reason, ' at (x, y)' or '')."""
    if geom.is_valid:
        return None
    reason = shapely.is_valid_reason(geom)
    m = _VALIDITY.fullmatch(reason)
    if m is None:
        return reason, ""
    return m["reason"], f" at ({_fmt(float(m['x']))}, {_fmt(float(m['y']))})"


def polygon(raw: Any, label: str, report: Report) -> Polygon | None:
    """Polygon coordinates (outer ring, then holes) -> a valid shapely Polygon or None."""
    if not isinstance(raw, list) or not raw:
        report(f"{label}coordinates must be a non-empty list of rings, got {short(raw)}")
        return None
    names = [f"{label}ring {k} ({'outer' if k == 0 else f'hole {k}'})" for k in range(len(raw))]
    checked = [_ring(r, n, report) for r, n in zip(raw, names, strict=True)]
    rings = [r for r in checked if r is not None]
    if len(rings) < len(checked):
        return None
    poly = Polygon(rings[0], rings[1:])
    if poly.is_valid:
        return poly
    ok = True  # say which ring is at fault before blaming how the rings fit together
    for ring, n in zip(rings, names, strict=True):
        alone = Polygon(ring)
        if alone.convex_hull.area == 0:
            report(f"{n} has zero area (its corners are repeated or in a line)")
            ok = False
        elif bad := _validity(alone):
            report(f"{n} is self-intersecting{bad[1]}")
            ok = False
    if not ok:
        return None
    if bad := _validity(poly):
        reason, at = bad
        text = {
            "Hole lies outside shell": "a hole is not inside the outer ring",
            "Holes are nested": "a hole lies inside another hole",
            "Interior is disconnected": "holes cut the polygon into pieces (use a MultiPolygon)",
            "Self-intersection": "rings cross each other",
        }.get(reason, f"polygon is invalid: {reason}")
        report(f"{label}{text}{at}")
        return None
    return poly


def multipolygon(raw: Any, report: Report) -> MultiPolygon | None:
    if not isinstance(raw, list) or not raw:
        report(f"MultiPolygon coordinates must be a non-empty list of polygons, got {short(raw)}")
        return None
    parts = [polygon(p, f"polygon {k} ", report) for k, p in enumerate(raw)]
    if any(p is None for p in parts):
        return None
    multi = MultiPolygon(parts)
    if bad := _validity(multi):
        reason, at = bad
        text = {
            "Self-intersection": "polygons overlap or cross (merge them, or use separate features)",
            "Nested shells": "one polygon lies inside another (use a hole, or separate features)",
        }.get(reason, f"multipolygon is invalid: {reason}")
        report(f"{text}{at}")
        return None
    return multi


@dataclass
class _Shape:
    geometry: BaseGeometry | None = None
    center: tuple[float, float] | None = None
    first: tuple[float, float] | None = None  # first position: where the feature is


def _geometry(raw: Any, report: Report) -> _Shape | None:
    if raw is None:
        report(f"has no geometry ({GEOMETRY_HINT})")
        return None
    if not isinstance(raw, dict):
        report(f"geometry must be a GeoJSON geometry object, got {short(raw)}")
        return None
    gtype, coords = raw.get("type"), raw.get("coordinates")
    if gtype == "Point":
        center, what = _position(coords, "point")
        if what:
            report(what)
        return _Shape(center=center, first=center) if center else None
    if gtype == "Polygon":
        geom: BaseGeometry | None = polygon(coords, "", report)
    elif gtype == "MultiPolygon":
        geom = multipolygon(coords, report)
    else:
        report(f"geometry type {gtype!r} is not supported ({GEOMETRY_HINT})")
        return None
    if geom is None:
        return None
    first = shapely.get_coordinates(geom)[0]
    return _Shape(geometry=geom, first=(float(first[0]), float(first[1])))


# -- features ------------------------------------------------------------------------------


def schedule_windows(raw: Any, report: Report) -> tuple[Window, ...]:
    if raw is None:
        return ()
    example = '[{"days": "Mon-Sun", "start": "19:00", "end": "07:00", "tz": "Europe/London"}]'
    if not isinstance(raw, list):
        report(f"schedule must be a list of windows like {example}, got {short(raw)}")
        return ()
    if not raw:
        report("schedule is an empty list; leave it out for a zone that is always active")
    windows = []
    for k, entry in enumerate(raw):
        window, problems = parse_window(entry)
        for p in problems:
            report(f"schedule[{k}] {p}")
        if window is not None:
            windows.append(window)
    return tuple(windows)


def _properties(raw: dict[str, Any], report: Report, subjects: SubjectRef) -> None:
    """Check id, subject, kind and name (everything but geometry-dependent values)."""
    props = raw.get("properties") or {}
    zid = props.get("id")
    if zid is None:
        hint = " (the Feature's own 'id' member is not read)" if "id" in raw else ""
        report(f"missing property 'id' (a unique zone id){hint}")
    elif not non_empty_str(zid):
        report(f"property 'id' must be a non-empty string, got {short(zid)}")
    subj = props.get("subject")
    if subj is None:
        report(f"missing property 'subject' (a subject id from {subjects.file})")
    elif not non_empty_str(subj):
        report(f"property 'subject' must be a non-empty string, got {short(subj)}")
    elif subjects.ids is not None and subj not in subjects.ids:
        report(f"subject {subj!r} is not in {subjects.file}{subjects.known()}")
    kind = props.get("kind")
    if kind is None:
        report("missing property 'kind' (expected 'exclusion' or 'inclusion')")
    elif kind not in KINDS:
        report(f"kind {short(kind)} is not 'exclusion' or 'inclusion'")
    if props.get("name") is not None and not isinstance(props["name"], str):
        report(f"property 'name' must be a string, got {short(props['name'])}")


@dataclass
class SubjectRef:
    """The subjects file as zones see it: its name and ids (None: ids unknown, skip)."""

    file: str
    ids: set[str] | None

    def known(self) -> str:
        if not self.ids:
            return ""
        ids = sorted(self.ids)
        return f" (known: {', '.join(ids[:5])}{', ...' if len(ids) > 5 else ''})"


def _feature(
    name: str, i: int, raw: Any, subjects: SubjectRef, out: list[str]
) -> tuple[Zone | None, _Shape | None, str]:
    """One feature -> (Zone if valid, its shape if the geometry is valid, where it is)."""
    props = raw.get("properties") if isinstance(raw, dict) else None
    zid = props.get("id") if isinstance(props, dict) else None
    report = Report(
        f"{name} feature {i} ({'id ' + repr(zid) if non_empty_str(zid) else 'no id'})", out
    )
    if not isinstance(raw, dict) or raw.get("type") != "Feature":
        got = raw.get("type") if isinstance(raw, dict) else type(raw).__name__
        report(f"is not a GeoJSON Feature (type {got!r})")
        return None, None, report.where
    if props is not None and not isinstance(props, dict):
        report(f"properties must be an object, got {short(props)}")
        return None, None, report.where
    props = props or {}
    _properties(raw, report, subjects)
    shape = _geometry(raw.get("geometry"), report)
    is_point = isinstance(raw.get("geometry"), dict) and raw["geometry"].get("type") == "Point"
    radius = warn = None
    if props.get("radius_m") is not None:
        if is_point:
            radius = number(props, "radius_m", report, positive=True)
        else:
            report("radius_m applies only to Point geometry (a circle); remove it or use a Point")
    elif is_point:
        report("Point geometry needs radius_m > 0 (the circle's radius in metres)")
    if props.get("warn_m") is not None:
        warn = number(props, "warn_m", report, positive=False)
    schedule = schedule_windows(props.get("schedule"), report)
    valid_from, valid_until = read_validity(props, report)
    if not report.clean or shape is None or not isinstance(zid, str):
        return None, shape, report.where
    zone = Zone(
        id=zid,
        subject=props["subject"],
        kind=props["kind"],
        index=i,
        geometry=shape.geometry,
        center=shape.center,
        radius_m=radius,
        warn_m=warn or 0.0,
        name=props.get("name"),
        schedule=schedule,
        valid_from=valid_from,
        valid_until=valid_until,
    )
    return zone, shape, report.where


def swapped_rows(pts: NDArray[np.float64]) -> NDArray[np.intp]:
    """Rows of `pts` ((n, 2) lon, lat: where each feature is) far from the bulk of the file
    that would sit among the others with lon and lat swapped: almost certainly written
    [lat, lon] (in range, so nothing else sees it)."""
    none = np.zeros(0, dtype=np.intp)
    if pts.shape[0] < 3:
        return none
    dist = np.abs(pts - np.median(pts, axis=0)).max(axis=1)  # degrees, Chebyshev
    far = dist > max(10.0, 3.0 * float(np.median(dist)))
    if not far.any() or far.all():
        return none
    lo, hi = pts[~far].min(axis=0) - 0.5, pts[~far].max(axis=0) + 0.5
    swapped = pts[:, ::-1]
    return np.flatnonzero(far & np.all((swapped >= lo) & (swapped <= hi), axis=1))


def _swapped_outliers(shapes: dict[str, _Shape], out: list[str]) -> None:
    wheres = [w for w, s in shapes.items() if s.first is not None]
    pts = np.array([shapes[w].first for w in wheres]).reshape(-1, 2)  # (n, 2) lon, lat
    for k in swapped_rows(pts):
        lon, lat = (float(v) for v in pts[k])
        out.append(
            f"{wheres[k]}: first position [{_fmt(lon)}, {_fmt(lat)}] is far from the file's "
            "other zones and would lie among them swapped; values look like [lat, lon]; "
            "GeoJSON is [lon, lat]"
        )


def read_zones(path: StrPath, subjects: SubjectRef) -> tuple[tuple[Zone, ...], list[str]]:
    name = str(path)
    out: list[str] = []
    text = read_text(path, out)
    if text is None:
        return (), out
    try:
        doc = json.loads(text, parse_int=_parse_int)
    except json.JSONDecodeError as e:
        return (), [f"{name}: not valid JSON: {e.msg} at line {e.lineno} column {e.colno}"]
    except RecursionError:  # a fuzzing find: it escaped as a RecursionError, not ZoneError
        return (), [f"{name}: not valid JSON: nested too deeply"]
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        got = doc.get("type") if isinstance(doc, dict) else f"a JSON {type(doc).__name__}"
        return (), [f"{name}: top level must be a GeoJSON FeatureCollection, got {got!r}"]
    if bad := _lone_surrogates(doc):
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        return (), [
            f"{name}: {bad[0]} contains a lone UTF-16 surrogate escape such as \\ud800, "
            f"which is not Unicode text{more}"
        ]
    features = doc.get("features")
    if not isinstance(features, list):
        return (), [f"{name}: 'features' must be a list, got {short(features)}"]
    zones: list[Zone] = []
    shapes: dict[str, _Shape] = {}
    first_by_id: dict[str, int] = {}
    for i, raw in enumerate(features):
        zone, shape, where = _feature(name, i, raw, subjects, out)
        if shape is not None:
            shapes[where] = shape
        if zone is not None:
            zones.append(zone)
        props = raw.get("properties") if isinstance(raw, dict) else None
        zid = props.get("id") if isinstance(props, dict) else None
        if isinstance(zid, str) and zid.strip():
            if zid in first_by_id:
                out.append(
                    f"{name} feature {i} (id {zid!r}): duplicate zone id (also feature "
                    f"{first_by_id[zid]})"
                )
            first_by_id.setdefault(zid, i)
    _swapped_outliers(shapes, out)
    return tuple(zones), out


def _lone_surrogates(doc: Any) -> list[str]:
    """JSON paths of strings (or keys) holding a lone surrogate; positions are not read.
    Iterative: a document may be nested as deep as the JSON parser allows."""
    out: list[str] = []
    stack: list[tuple[Any, str]] = [(doc, "")]
    while stack and len(out) < 10:
        v, path = stack.pop()
        if isinstance(v, str):
            if _SURROGATE.search(v):
                out.append(path)
        elif isinstance(v, dict):
            for k, x in reversed(v.items()):
                if _SURROGATE.search(k):
                    out.append(f"a key in {path or 'the top level'}")
                elif k != "coordinates" or not isinstance(x, list):
                    stack.append((x, f"{path}.{k}" if path else str(k)))
        elif isinstance(v, list):
            stack.extend((x, f"{path}[{i}]") for i, x in reversed(list(enumerate(v))))
    return out
