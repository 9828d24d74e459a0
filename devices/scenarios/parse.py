"""Reading a scenario file's tables: typed fields, times and durations, places and zones,
every mistake a one-line `ScenarioError` naming the file, the entry and the field."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Point, Polygon
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient

from devices.motion.scripted import offset_text
from devices.world.city import ZoneSpec
from devices.world.clock import parse_days
from devices.world.geo import LocalFrame
from devices.world.shapes import deep_point
from engine.errors import TagwatchError

LatLon = tuple[float, float]
XY = tuple[float, float]
MAX_FROM_CENTRE_M = 15_000.0  # one city: the metric frame is good to ~0.1 % over this
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_HHMM = re.compile(r"([01]\d|2[0-3]):[0-5]\d")
_MISSING: Any = object()


class ScenarioError(TagwatchError):
    """A scenario file that cannot be read or run as written: the message names the file,
    the entry and the field, on one line."""


# -- typed access with errors that say where -----------------------------------------------


def entry_name(what: str, i: int, v: object, key: str) -> str:
    """How an entry is named in errors: by its id once it has one, else by number."""
    name = v.get(key) if isinstance(v, dict) else None
    return f"{what} {name!r}" if isinstance(name, str) and name else f"{what} {i}"


def describe(v: object) -> str:
    """How a wrong value is named in errors."""
    kinds = {dict: "a table", list: "an array", str: "a string", bool: "a boolean"}
    return kinds.get(type(v), repr(v) if isinstance(v, int | float) else f"{type(v).__name__} {v}")


def parse_duration(text: object, allow_zero: bool = False) -> float:
    """'1h30m', '90m', '45s', '2d' or a number of seconds -> seconds (ValueError if not)."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        seconds = float(text)
    elif isinstance(text, str):
        s = text.strip().lower().replace(" ", "")
        parts = _DURATION.findall(s)
        if not parts or "".join(n + u for n, u in parts) != s:
            raise ValueError(f"not a duration: {text!r} (try 90m, 1h30m, 45s)")
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    else:
        raise ValueError(f'not a duration: {describe(text)} (try "90m", "1h30m", "45s")')
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        raise ValueError(f"must be more than 0 s, got {text!r}")
    return seconds


def parse_instant(value: object) -> float:
    """An RFC 3339 time with a UTC offset (string or TOML datetime) -> Unix seconds."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f'not a time: {value!r} (RFC 3339, like "2026-03-28T19:40:00Z")'
            ) from None
    if not isinstance(value, dt.datetime):
        raise ValueError(f'not a time: {describe(value)} (RFC 3339, like "2026-03-28T19:40:00Z")')
    if value.tzinfo is None:
        raise ValueError(f"{value.isoformat()} needs a UTC offset (Z, +01:00)")
    return value.timestamp()


class Entry:
    """One table of the file: checks its keys and reads typed fields, raising a
    ScenarioError that names the file, this entry and the field."""

    def __init__(self, src: str, where: str, data: object, known: Iterable[str]) -> None:
        self.src, self.where = src, where
        if not isinstance(data, dict):
            raise self.fail(None, f"must be a table, got {describe(data)}")
        self.data: dict[str, Any] = data
        names = list(known)
        for k in data:
            if k not in names:
                raise self.fail(k, f"unknown field (known here: {', '.join(names)})")

    def fail(self, key: str | None, message: str) -> ScenarioError:
        at = f", field '{key}'" if key else ""
        return ScenarioError(f"{self.src}: {self.where}{at}: {message}")

    def has(self, key: str) -> bool:
        return key in self.data

    def get(self, key: str, default: Any = _MISSING) -> Any:
        if key in self.data:
            return self.data[key]
        if default is _MISSING:
            raise self.fail(key, "missing")
        return default

    def text(self, key: str, default: Any = _MISSING, choices: Iterable[str] = ()) -> Any:
        v = self.get(key, default)
        if v is default and default is not _MISSING:
            return v
        if not isinstance(v, str) or not v:
            raise self.fail(
                key, f"must be a non-empty string, got {repr(v) if v == '' else describe(v)}"
            )
        options = list(choices)
        if options and v not in options:
            raise self.fail(key, f"{v!r} is not one of: {', '.join(options)}")
        return v

    def number(
        self, key: str, default: Any = _MISSING, lo: float | None = None,
        hi: float | None = None, above: float | None = None,
    ) -> Any:  # fmt: skip
        v = self.get(key, default)
        if v is default and default is not _MISSING:
            return v
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise self.fail(key, f"must be a number, got {v!r}")
        if above is not None and not v > above:
            raise self.fail(key, f"must be more than {above:g}, got {v:g}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            span = " to ".join(f"{b:g}" for b in (lo, hi) if b is not None)
            limit = (
                span
                if lo is not None and hi is not None
                else f"at {'least' if lo is not None else 'most'} {span}"
            )
            raise self.fail(key, f"must be {limit}, got {v:g}")
        return float(v)

    def integer(self, key: str, default: Any, lo: int, hi: int | None = None) -> int:
        v = self.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
            span = f"{lo} to {hi}" if hi is not None else f"at least {lo}"
            raise self.fail(key, f"must be a whole number {span}, got {v!r}")
        return v

    def flag(self, key: str, default: bool) -> bool:
        v = self.get(key, default)
        if not isinstance(v, bool):
            raise self.fail(key, f"must be true or false, got {v!r}")
        return v

    def duration(self, key: str, default: Any = _MISSING) -> Any:
        v = self.get(key, default)
        if v is default and default is not _MISSING:
            return v
        try:
            return parse_duration(v)
        except ValueError as e:
            raise self.fail(key, str(e)) from None

    def time(self, key: str, t0: float, t1: float) -> float | None:
        """Seconds after the run's start: '+10m', '+1h30m' or an RFC 3339 time."""
        v = self.get(key, None)
        if v is None:
            return None
        try:
            if isinstance(v, str) and v.strip().startswith("+"):
                off = parse_duration(v.strip()[1:], allow_zero=True)
            else:
                off = parse_instant(v) - t0
        except ValueError as e:
            hint = "" if "UTC offset" in str(e) else '; or "+10m", "+1h30m" after the start'
            raise self.fail(key, f"{e}{hint}") from None
        if off < 0:
            raise self.fail(key, f"{offset_text(off)} is before the run starts")
        if off > t1 - t0:
            raise self.fail(
                key, f"{offset_text(off)} is after the run ends ({offset_text(t1 - t0)})"
            )
        return off

    def table_list(self, key: str) -> list[Any]:
        v = self.get(key, [])
        if not isinstance(v, list):
            raise self.fail(key, f"must be an array of tables, got {describe(v)}")
        return v


# -- places and zones ----------------------------------------------------------------------


class Places:
    """Named places (lat, lon); in the city frame once the centre is known."""

    def __init__(self) -> None:
        self.ll: dict[str, LatLon] = {}
        self.frame: LocalFrame | None = None
        self.zones: dict[str, ZoneSpec] = {}
        self.extent = 0.0  # the farthest any place is from the centre, east or north

    def latlon(self, e: Entry, key: str, v: object) -> LatLon:
        """A place name (defined above), { lat, lon } or { from = NAME, east_m, north_m }."""
        if isinstance(v, str):
            if v not in self.ll:
                known = ", ".join(self.ll) or "none"
                raise e.fail(key, f"no place {v!r} defined above (places: {known})")
            return self.ll[v]
        sub = self._table(e, key, v)
        if "from" not in sub.data:
            return sub.number("lat", lo=-85.0, hi=85.0), sub.number("lon", lo=-180.0, hi=180.0)
        base = self.latlon(sub, "from", sub.text("from"))
        lat, lon = LocalFrame(*base).to_latlon(
            sub.number("east_m", 0.0), sub.number("north_m", 0.0)
        )
        return float(lat), float(lon)

    def xy(self, e: Entry, key: str, v: object) -> XY:
        """As `latlon`, in the city frame; a name may also be a zone (its deepest point, a
        circle's centre)."""
        assert self.frame is not None
        if isinstance(v, str) and v not in self.ll:
            if v in self.zones:
                return self.zones[v].deep_xy
            places, zones = ", ".join(self.ll) or "none", ", ".join(self.zones) or "none"
            raise e.fail(key, f"no place or zone {v!r} (places: {places}; zones: {zones})")
        if isinstance(v, dict) and "from" in v:
            sub = self._table(e, key, v)
            bx, by = self.xy(sub, "from", sub.text("from"))
            east, north = sub.number("east_m", 0.0), sub.number("north_m", 0.0)
            return self.near(e, key, (bx + east, by + north))
        x, y = self.frame.to_xy(*self.latlon(e, key, v))
        return self.near(e, key, (float(x), float(y)))

    @staticmethod
    def _table(e: Entry, key: str, v: object) -> Entry:
        if not isinstance(v, dict):
            raise e.fail(
                key,
                "must be a place name, { lat, lon } or { from, east_m, north_m }, "
                f"got {describe(v)}",
            )
        keys = ("from", "east_m", "north_m") if "from" in v else ("lat", "lon")
        return Entry(e.src, f"{e.where}, in '{key}'", v, keys)

    def near(self, e: Entry, key: str, p: XY) -> XY:
        """p, checked to lie in the one city the streets are built for."""
        d = math.hypot(*p)
        if d > MAX_FROM_CENTRE_M:
            raise e.fail(
                key,
                f"{d / 1000:.1f} km from the run's centre; a scenario is one city "
                f"(within {MAX_FROM_CENTRE_M / 1000:.0f} km)",
            )
        self.extent = max(self.extent, abs(p[0]), abs(p[1]))
        return p


def _ring(e: Entry, key: str, ring: object, n: int) -> list[tuple[float, float]]:
    if not isinstance(ring, list) or len(ring) < 3:
        raise e.fail(key, f"ring {n} must be an array of at least 3 [lon, lat] positions")
    pts: list[tuple[float, float]] = []
    for p in ring:
        ok = (
            isinstance(p, list)
            and len(p) == 2
            and all(isinstance(c, int | float) and not isinstance(c, bool) for c in p)
        )
        if not ok or not (-180 <= p[0] <= 180 and -85 <= p[1] <= 85):
            raise e.fail(key, f"ring {n}: {p!r} is not a [lon, lat] position (GeoJSON order)")
        pts.append((float(p[0]), float(p[1])))
    if pts[0] != pts[-1]:
        pts.append(pts[0])  # GeoJSON closes rings; we do it for you
    if len(set(pts)) < 3:
        raise e.fail(key, f"ring {n} has fewer than 3 distinct positions")
    return pts


def _polygon(e: Entry, key: str, rings: object) -> Polygon:
    if not isinstance(rings, list) or not rings:
        raise e.fail(key, "must be GeoJSON Polygon coordinates: [outer ring, holes...]")
    parts = [_ring(e, key, r, i + 1) for i, r in enumerate(rings)]
    return Polygon(parts[0], parts[1:])


def _schedule(e: Entry, windows: object) -> tuple[dict[str, str], ...]:
    if not isinstance(windows, list):
        raise e.fail("schedule", f"must be an array of windows, got {describe(windows)}")
    out = []
    for j, w in enumerate(windows, 1):
        sub = Entry(e.src, f"{e.where}, schedule window {j}", w, ("days", "start", "end", "tz"))
        days = sub.text("days")
        try:
            parse_days(days)
        except (ValueError, IndexError):
            raise sub.fail("days", f"{days!r} is not days like Mon-Fri, Sat,Sun") from None
        for k in ("start", "end"):
            if not _HHMM.fullmatch(sub.text(k)):
                raise sub.fail(k, f"{sub.data[k]!r} is not a 24 h time like 19:00")
        tz = sub.text("tz")
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise sub.fail("tz", f"unknown time zone {tz!r} (e.g. Europe/London)") from None
        out.append({"days": days, "start": sub.data["start"], "end": sub.data["end"], "tz": tz})
    return tuple(out)


@dataclass
class RawZone:
    entry: Entry
    id: str
    subject: str
    kind: Literal["exclusion", "inclusion"]
    label: str
    warn_m: float | None
    schedule: tuple[dict[str, str], ...]
    center: LatLon | None
    radius_m: float | None
    geometry: BaseGeometry | None  # lon/lat

    @property
    def anchor(self) -> LatLon:
        """(lat, lon) standing for the zone: a circle's centre, a polygon's centroid."""
        if self.center is not None:
            return self.center
        assert self.geometry is not None
        c = self.geometry.centroid
        return float(c.y), float(c.x)


def read_zone(src: str, i: int, v: object, places: Places, subjects: set[str]) -> RawZone:
    keys = ("id", "subject", "kind", "name", "center", "radius_m", "polygon", "multipolygon",
            "warn_m", "schedule")  # fmt: skip
    e = Entry(src, entry_name("zone", i, v, "id"), v, keys)
    zid = e.text("id")
    subject = e.text("subject")
    if subject not in subjects:
        raise e.fail("subject", f"no subject {subject!r} (subjects: {', '.join(subjects)})")
    kind = e.text("kind", "exclusion", ("exclusion", "inclusion"))
    shapes = [k for k in ("center", "polygon", "multipolygon") if e.has(k)]
    if len(shapes) != 1:
        raise e.fail(
            shapes[1] if shapes else "center",
            "give one shape: center + radius_m (a circle), polygon or multipolygon",
        )
    center = radius = geom = None
    if shapes[0] == "center":
        center = places.latlon(e, "center", e.get("center"))
        radius = e.number("radius_m", above=0.0)
    else:
        if e.has("radius_m"):
            raise e.fail("radius_m", "only a circle (center) has a radius")
        if shapes[0] == "polygon":
            geom = orient(_polygon(e, "polygon", e.get("polygon")), 1.0)
        else:
            polys = e.get("multipolygon")
            if not isinstance(polys, list) or not polys:
                raise e.fail("multipolygon", "must be an array of GeoJSON Polygon coordinates")
            geom = MultiPolygon([orient(_polygon(e, "multipolygon", p), 1.0) for p in polys])
        if not geom.is_valid:
            raise e.fail(shapes[0], f"invalid geometry: {shapely.is_valid_reason(geom)}")
    warn = e.number("warn_m", None, above=0.0)
    sched = _schedule(e, e.get("schedule")) if e.has("schedule") else ()
    return RawZone(e, zid, subject, kind, e.text("name", zid), warn, sched, center, radius, geom)


@dataclass(frozen=True, eq=False)
class ScenarioZone(ZoneSpec):
    """A zone from a scenario file: its `name` is the file's label, not a role."""

    label: str = ""

    @property
    def name(self) -> str:
        return self.label


def zone_spec(z: RawZone, places: Places) -> ZoneSpec:
    frame = places.frame
    assert frame is not None
    role = "curfew" if z.kind == "inclusion" else "victim_home"
    if z.center is not None:
        assert z.radius_m is not None
        lat, lon = round(z.center[0], 7), round(z.center[1], 7)
        x, y = frame.to_xy(lat, lon)
        c = places.near(z.entry, "center", (float(x), float(y)))
        return ScenarioZone(
            z.id, z.subject, z.kind, role, Point(c).buffer(z.radius_m, 64), None, (lon, lat),
            z.radius_m, z.warn_m, c, z.radius_m, z.schedule, z.label,
        )  # fmt: skip
    assert z.geometry is not None

    def to_xy(c: np.ndarray) -> np.ndarray:
        x, y = frame.to_xy(c[:, 1], c[:, 0])
        return np.stack([x, y], 1)

    area = shapely.transform(z.geometry, to_xy)
    key = "polygon" if z.geometry.geom_type == "Polygon" else "multipolygon"
    minx, miny, maxx, maxy = area.bounds
    for corner in ((minx, miny), (maxx, maxy)):
        try:
            places.near(z.entry, key, corner)
        except ScenarioError as err:
            raise ScenarioError(f"{err} (positions are [lon, lat], GeoJSON order)") from None
    dx, dy, depth = deep_point(area)
    return ScenarioZone(
        z.id, z.subject, z.kind, role, area, z.geometry, None, None, z.warn_m, (dx, dy), depth,
        z.schedule, z.label,
    )  # fmt: skip
