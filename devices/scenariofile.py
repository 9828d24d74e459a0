"""Scenario files: a run, its zones, subjects and their scripted timelines, in one TOML file.

`load_scenario(path)` reads and checks a file; every mistake is a `ScenarioError` naming the
file, the entry and the field. `run_scenario(scenario)` plans, senses and judges it into the
same `SimRun` the fleet simulator makes, so `devices.output.write_run` writes its
zones.geojson, subjects.toml, replay.jsonl and truth.jsonl. `check_expectations` holds a run
to the episodes the file's `[[expect]]` entries promise. The format: devices/README.md."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Point, Polygon
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient

from devices.clock import parse_days
from devices.geo import LocalFrame
from devices.healthtruth import HEALTH_KINDS, health_truth
from devices.noise import OPEN_SKY, PHONE, STREET, URBAN
from devices.planner import Move, ScriptedPath, ScriptError, offset_text, scripted_plan
from devices.sensor import FixColumns, NoiseModel, SimpleGpsNoise, sample_fixes
from devices.shapes import deep_point
from devices.sim import (
    DEFAULT_EPOCH,
    ScriptedHealth,
    ScriptedSpan,
    ScriptedTamper,
    SimConfig,
    SimRun,
    health_messages,
    phone_messages,
    scripted_health,
)
from devices.streets import build_streets
from devices.truth import compute_truth
from devices.world import PhoneSpec, SubjectSpec, World, ZoneSpec
from engine.errors import TagwatchError

LatLon = tuple[float, float]
XY = tuple[float, float]
NOISE: dict[str, NoiseModel] = {
    "open_sky": OPEN_SKY,
    "street": STREET,
    "urban": URBAN,
    "phone": PHONE,
    "simple": SimpleGpsNoise(),
    "none": SimpleGpsNoise(0.0, (5.0, 5.0)),
}
MAX_FROM_CENTRE_M = 15_000.0  # one city: the metric frame is good to ~0.1 % over this
TRUTH_KINDS = ("zone_breach", "curfew_breach", "proximity", *HEALTH_KINDS)
TAMPER_KINDS = ("strap", "case", "body", "power")
_TOP = ("run", "places", "zones", "subjects", "expect")
_RUN = ("seed", "start", "duration", "fix_interval", "phone_interval", "center", "noise",
        "phone_noise")  # fmt: skip
_SUBJECT = ("id", "tags", "risk", "start", "noise", "timeline", "protected")
_SPAN = ("for", "until")
_GO = ("route", "speed_kmh")
# the fields each timeline entry may have, besides `do` and `at`
_SUBJECT_STEPS: dict[str, tuple[str, ...]] = {
    "dwell": ("place", *_SPAN, "radius_m"),
    "walk_to": ("place", "via", "arrive", *_GO),
    "cycle_to": ("place", "via", "arrive", *_GO),
    "drive_to": ("place", "via", "arrive", *_GO),
    "enter_zone": ("zone", "depth_m", *_SPAN, "bearing", "leave", "mode", *_GO, "radius_m"),
    "drive_through": ("zone", "depth_m", "speed_kmh", "beyond_m"),
    "lurk": ("zone", "distance_m", *_SPAN, "bearing", "mode", *_GO, "radius_m"),
    "tamper": ("kind", *_SPAN, "toggles", "body"),
    "coverage_gap": _SPAN,
    "indoor": (*_SPAN, "cell_share", "cell_acc_m"),
    "battery": ("start_pct", "drain_pct_h", "charge_pct_h", "charge", "forget_to_charge",
                "flat_at", "recharge_after", "recharge_for"),
}  # fmt: skip
_PHONE_STEPS: dict[str, tuple[str, ...]] = {
    "stationary": ("place", *_SPAN, "radius_m"),
    "moving": ("to", "via", "arrive", "mode", *_GO),
    "backgrounded": _SPAN,
}
_MODES = {"walk_to": "walk", "cycle_to": "cycle", "drive_to": "drive"}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_HHMM = re.compile(r"([01]\d|2[0-3]):[0-5]\d")
_MISSING: Any = object()


class ScenarioError(TagwatchError):
    """A scenario file that cannot be read or run as written: the message names the file,
    the entry and the field, on one line."""


# -- the parsed scenario -------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ScenarioZone(ZoneSpec):
    """A zone from a scenario file: its `name` is the file's label, not a role."""

    label: str = ""

    @property
    def name(self) -> str:
        return self.label


@dataclass(frozen=True)
class DeviceEvent:
    """A scripted device event (tamper, coverage_gap, indoor, backgrounded) of a timeline.
    Times are seconds after the run's start; `at` None: when the previous move ended."""

    index: int
    do: str
    at: float | None
    seconds: float | None  # `for`; else until - at
    until: float | None
    kind: str = ""  # tamper
    toggles: int = 0
    body: bool = False
    cell_share: float = 0.5  # indoor
    cell_acc_m: float = 600.0


Step = Move | DeviceEvent


@dataclass(frozen=True)
class Battery:
    """A tag's battery script (times in seconds after the run's start)."""

    start_pct: float = 90.0
    drain_pct_h: float = 1.5
    charge_pct_h: float = 30.0
    charging: tuple[tuple[float, float], ...] = ()
    recharge: tuple[float, float] | None = None  # after running flat: (delay, duration)


@dataclass(frozen=True, eq=False)
class ScriptedPhone:
    """A victim's phone publishing OwnTracks, with its own timeline."""

    device: str
    radius_m: float
    warn_m: float | None
    start: XY
    steps: tuple[Step, ...]
    where: str


@dataclass(frozen=True, eq=False)
class ScriptedSubject:
    """A subject with one tag, its zones, a timeline and possibly a victim phone."""

    id: str
    tag: str
    risk: int
    start: XY
    zones: tuple[ZoneSpec, ...]
    steps: tuple[Step, ...]
    battery: Battery
    noise: NoiseModel
    phone: ScriptedPhone | None
    where: str


@dataclass(frozen=True)
class Expectation:
    """A promised truth episode (`absent`: promised not to happen); seconds after start."""

    index: int
    kind: str
    subject: str
    zone: str | None
    start: float | None
    end: float | None
    material: bool | None
    within: float | None
    absent: bool


@dataclass(frozen=True, eq=False)
class Scenario:
    """A checked scenario file, ready to run."""

    path: str
    seed: int
    start_t: float
    duration_s: float
    fix_interval_s: float
    phone_interval_s: float
    center: LatLon
    frame: LocalFrame
    half_size_m: float  # the street grid: [-h, h]^2 around the centre
    noise: NoiseModel
    phone_noise: NoiseModel
    zones: tuple[ZoneSpec, ...]
    subjects: tuple[ScriptedSubject, ...]
    expect: tuple[Expectation, ...] = field(default=())


# -- typed access with errors that say where -----------------------------------------------


def _named(what: str, i: int, v: object, key: str) -> str:
    """How an entry is named in errors: by its id once it has one, else by number."""
    name = v.get(key) if isinstance(v, dict) else None
    return f"{what} {name!r}" if isinstance(name, str) and name else f"{what} {i}"


def _what(v: object) -> str:
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
        raise ValueError(f'not a duration: {_what(text)} (try "90m", "1h30m", "45s")')
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
        raise ValueError(f'not a time: {_what(value)} (RFC 3339, like "2026-03-28T19:40:00Z")')
    if value.tzinfo is None:
        raise ValueError(f"{value.isoformat()} needs a UTC offset (Z, +01:00)")
    return value.timestamp()


class _Entry:
    """One table of the file: checks its keys and reads typed fields, raising a
    ScenarioError that names the file, this entry and the field."""

    def __init__(self, src: str, where: str, data: object, known: Iterable[str]) -> None:
        self.src, self.where = src, where
        if not isinstance(data, dict):
            raise self.fail(None, f"must be a table, got {_what(data)}")
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
                key, f"must be a non-empty string, got {repr(v) if v == '' else _what(v)}"
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
            raise self.fail(key, f"must be an array of tables, got {_what(v)}")
        return v


# -- places and zones ----------------------------------------------------------------------


class _Places:
    """Named places (lat, lon); in the city frame once the centre is known."""

    def __init__(self) -> None:
        self.ll: dict[str, LatLon] = {}
        self.frame: LocalFrame | None = None
        self.zones: dict[str, ZoneSpec] = {}
        self.extent = 0.0  # the farthest any place is from the centre, east or north

    def latlon(self, e: _Entry, key: str, v: object) -> LatLon:
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

    def xy(self, e: _Entry, key: str, v: object) -> XY:
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
    def _table(e: _Entry, key: str, v: object) -> _Entry:
        if not isinstance(v, dict):
            raise e.fail(
                key,
                "must be a place name, { lat, lon } or { from, east_m, north_m }, "
                f"got {_what(v)}",
            )
        keys = ("from", "east_m", "north_m") if "from" in v else ("lat", "lon")
        return _Entry(e.src, f"{e.where}, in '{key}'", v, keys)

    def near(self, e: _Entry, key: str, p: XY) -> XY:
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


def _ring(e: _Entry, key: str, ring: object, n: int) -> list[tuple[float, float]]:
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


def _polygon(e: _Entry, key: str, rings: object) -> Polygon:
    if not isinstance(rings, list) or not rings:
        raise e.fail(key, "must be GeoJSON Polygon coordinates: [outer ring, holes...]")
    parts = [_ring(e, key, r, i + 1) for i, r in enumerate(rings)]
    return Polygon(parts[0], parts[1:])


def _schedule(e: _Entry, windows: object) -> tuple[dict[str, str], ...]:
    if not isinstance(windows, list):
        raise e.fail("schedule", f"must be an array of windows, got {_what(windows)}")
    out = []
    for j, w in enumerate(windows, 1):
        sub = _Entry(e.src, f"{e.where}, schedule window {j}", w, ("days", "start", "end", "tz"))
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
class _RawZone:
    entry: _Entry
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


def _raw_zone(src: str, i: int, v: object, places: _Places, subjects: set[str]) -> _RawZone:
    keys = ("id", "subject", "kind", "name", "center", "radius_m", "polygon", "multipolygon",
            "warn_m", "schedule")  # fmt: skip
    e = _Entry(src, _named("zone", i, v, "id"), v, keys)
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
    return _RawZone(e, zid, subject, kind, e.text("name", zid), warn, sched, center, radius, geom)


def _zone_spec(z: _RawZone, places: _Places) -> ZoneSpec:
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


# -- timelines -----------------------------------------------------------------------------


@dataclass
class _Ctx:
    src: str
    t0: float
    t1: float
    places: _Places
    zones: dict[str, ZoneSpec]  # this subject's own


def _span(e: _Entry, ctx: _Ctx, at: float | None) -> tuple[float | None, float | None]:
    if e.has("for") and e.has("until"):
        raise e.fail("until", "give 'for' or 'until', not both")
    if not (e.has("for") or e.has("until")):
        raise e.fail("for", "missing (how long: 'for', or till when: 'until')")
    seconds = e.duration("for", None)
    until = e.time("until", ctx.t0, ctx.t1)
    if until is not None and at is not None and until <= at:
        raise e.fail("until", f"{offset_text(until)} is not after 'at' ({offset_text(at)})")
    return seconds, until


def _speed(e: _Entry) -> float | None:
    kmh = e.number("speed_kmh", None, above=0.0)
    return None if kmh is None else kmh / 3.6


def _zone_of(e: _Entry, ctx: _Ctx) -> ZoneSpec:
    name = e.text("zone")
    if name not in ctx.zones:
        raise e.fail(
            "zone",
            f"no zone {name!r} of this subject (its zones: {', '.join(ctx.zones) or 'none'})",
        )
    return ctx.zones[name]


def _move(e: _Entry, ctx: _Ctx, i: int, do: str, at: float | None) -> Move:
    xy = ctx.places.xy
    kw: dict[str, Any] = {"index": i, "do": do, "at": at}
    kw["mode"] = _MODES.get(do) or e.text("mode", "walk", ("walk", "cycle", "drive"))
    if e.has("radius_m"):
        kw["radius_m"] = e.number("radius_m", above=0.0)
    if e.has("route"):
        kw["route"] = e.text("route", choices=("streets", "straight"))
    if e.has("speed_kmh"):
        kw["speed"] = _speed(e)
    if do in ("dwell", "stationary", "lurk") or (do == "enter_zone" and e.has("until")):
        kw["seconds"], kw["until"] = _span(e, ctx, at)
    elif do == "enter_zone":
        kw["seconds"] = e.duration("for", 300.0)
    if do in ("dwell", "stationary") and e.has("place"):
        kw["place"] = xy(e, "place", e.get("place"))
    if do in ("walk_to", "cycle_to", "drive_to", "moving"):
        key = "to" if do == "moving" else "place"
        kw["place"] = xy(e, key, e.get(key))
        via = e.get("via", [])
        if not isinstance(via, list):
            raise e.fail("via", f"must be an array of places, got {_what(via)}")
        kw["via"] = tuple(xy(e, "via", p) for p in via)
        if e.has("arrive"):
            if at is not None:
                raise e.fail("arrive", "give 'at' (set off then) or 'arrive', not both")
            kw["arrive"] = e.time("arrive", ctx.t0, ctx.t1)
        if "speed" in kw:  # a speed of one's own means a straight line
            if kw.get("route") == "streets":
                raise e.fail(
                    "speed_kmh",
                    'street routes set their own speeds; use route = "straight" to set one',
                )
            kw["route"] = "straight"
    if do in ("enter_zone", "drive_through", "lurk"):
        z = _zone_of(e, ctx)
        kw["zone"] = z
        if e.has("depth_m"):
            kw["depth_m"] = e.number("depth_m", above=0.0)
            if kw["depth_m"] >= z.depth_m:
                raise e.fail(
                    "depth_m",
                    f"{kw['depth_m']:g} m is deeper than zone {z.id} goes "
                    f"({z.depth_m:.0f} m at its deepest point)",
                )
        if e.has("bearing"):
            kw["bearing"] = e.number("bearing", lo=0.0, hi=360.0)
        # the way to the zone's edge: by street from elsewhere, straight from here
        kw.setdefault("route", "streets" if e.has("bearing") else "straight")
    if do == "enter_zone":
        kw["leave"] = e.flag("leave", True)
    elif do == "lurk":
        kw["distance_m"] = e.number("distance_m", 30.0, above=0.0)
    elif do == "drive_through":
        kw["mode"] = "drive"
        kw.setdefault("speed", 40.0 / 3.6)
        kw["beyond_m"] = e.number("beyond_m", 200.0, lo=0.0)
    return Move(**kw)


def _event(e: _Entry, ctx: _Ctx, i: int, do: str, at: float | None) -> DeviceEvent:
    seconds, until = _span(e, ctx, at)
    kw: dict[str, Any] = {}
    if do == "tamper":
        kw["kind"] = e.text("kind", choices=TAMPER_KINDS)
        kw["toggles"] = e.integer("toggles", 0, 0, 10)
        kw["body"] = e.flag("body", False)
        if kw["body"] and kw["kind"] != "strap":
            raise e.fail("body", "only a strap tamper can also lose body contact")
    if do == "indoor":
        kw["cell_share"] = e.number("cell_share", 0.5, lo=0.0, hi=1.0)
        kw["cell_acc_m"] = e.number("cell_acc_m", 600.0, lo=300.0, hi=5000.0)
    return DeviceEvent(i, do, at, seconds, until, **kw)


def _battery(e: _Entry, ctx: _Ctx) -> Battery:
    drain = e.number("drain_pct_h", 1.5, above=0.0, hi=100.0)
    charge = e.number("charge_pct_h", 30.0, above=0.0, hi=200.0)
    forget = e.flag("forget_to_charge", False)
    sessions: list[tuple[float, float]] = []
    for j, s in enumerate(e.table_list("charge"), 1):
        sub = _Entry(e.src, f"{e.where}, charge session {j}", s, ("at", "for", "until"))
        if forget:
            raise e.fail("charge", "forget_to_charge means no charge sessions")
        a = sub.time("at", ctx.t0, ctx.t1)
        if a is None:
            raise sub.fail("at", "missing (when it is plugged in)")
        seconds, until = _span(sub, ctx, a)
        sessions.append((ctx.t0 + a, ctx.t0 + (until if until is not None else a + (seconds or 0))))
    sessions.sort()
    for (_, b), (a, _) in itertools.pairwise(sessions):
        if a < b:
            raise e.fail("charge", "charge sessions overlap")
    if e.has("flat_at"):
        if not forget:
            raise e.fail("flat_at", "only with forget_to_charge = true")
        if e.has("start_pct"):
            raise e.fail("start_pct", "give start_pct or flat_at, not both")
        flat = e.time("flat_at", ctx.t0, ctx.t1) or 0.0
        start = drain * flat / 3600.0
        if not 0 < start <= 100:
            raise e.fail(
                "flat_at",
                f"draining {drain:g} %/h it would start at {start:.0f} %; "
                "lower drain_pct_h or flat earlier",
            )
    else:
        start = e.number("start_pct", 90.0, above=0.0, hi=100.0)
    recharge = None
    if e.has("recharge_after") or e.has("recharge_for"):
        if not forget:
            raise e.fail("recharge_after", "only with forget_to_charge = true")
        recharge = (e.duration("recharge_after", 3600.0), e.duration("recharge_for", 7200.0))
    return Battery(start, drain, charge, tuple(sessions), recharge)


def _timeline(
    owner: _Entry, ctx: _Ctx, steps: dict[str, tuple[str, ...]]
) -> tuple[list[Step], Battery | None, object | None]:
    """(steps, battery, first dwell place) of an owner's `timeline`."""
    out: list[Step] = []
    battery: Battery | None = None
    first_place: object | None = None
    for i, v in enumerate(owner.table_list("timeline"), 1):
        do = v.get("do") if isinstance(v, dict) else None
        where = f"{owner.where}, timeline entry {i}"
        if not isinstance(do, str) or do not in steps:
            e = _Entry(ctx.src, where, v, (*v.keys(),) if isinstance(v, dict) else ())
            raise e.fail(
                "do",
                f"{do!r} is not one of: {', '.join(steps)}"
                if do is not None
                else "missing (what happens: " + ", ".join(steps) + ")",
            )
        allowed = ("do", *steps[do]) if do == "battery" else ("do", "at", *steps[do])
        e = _Entry(ctx.src, f"{where} ({do})", v, allowed)
        at = e.time("at", ctx.t0, ctx.t1)
        if do == "battery":
            if battery is not None:
                raise e.fail("do", "one battery entry per subject")
            battery = _battery(e, ctx)
        elif do in ("tamper", "coverage_gap", "indoor", "backgrounded"):
            out.append(_event(e, ctx, i, do, at))
        else:
            if not out and do in ("dwell", "stationary") and e.has("place"):
                first_place = e.get("place")
            out.append(_move(e, ctx, i, do, at))
    return out, battery, first_place


def _start(e: _Entry, ctx: _Ctx, first_place: object | None) -> XY:
    if e.has("start"):
        return ctx.places.xy(e, "start", e.get("start"))
    if first_place is None:
        raise e.fail(
            "start",
            "missing (where it is when the run starts; or begin the "
            "timeline with a dwell/stationary at a place)",
        )
    return ctx.places.xy(e, "start", first_place)


def _phone(e: _Entry, ctx: _Ctx, i: int) -> ScriptedPhone:
    keys = ("device", "radius_m", "warn_m", "start", "timeline")
    v = e.data["protected"][i - 1]
    p = _Entry(ctx.src, f"{e.where}, {_named('protected', i, v, 'device')}", v, keys)
    device = p.text("device")
    if device.count("/") != 1 or not all(device.split("/")):
        raise p.fail("device", f"{device!r} must be an OwnTracks id 'user/device'")
    radius = p.number("radius_m", above=0.0)
    warn = p.number("warn_m", None, above=0.0)
    steps, _, first = _timeline(p, ctx, _PHONE_STEPS)
    return ScriptedPhone(device, radius, warn, _start(p, ctx, first), tuple(steps), p.where)


def _subject(
    src: str, i: int, v: object, ctx: _Ctx, noise: NoiseModel, tags: set[str]
) -> ScriptedSubject:
    e = _Entry(src, _named("subject", i, v, "id"), v, _SUBJECT)
    sid = e.text("id")
    tag_list = e.get("tags")
    if not (
        isinstance(tag_list, list)
        and len(tag_list) == 1
        and isinstance(tag_list[0], str)
        and tag_list[0]
    ):
        raise e.fail("tags", f'a scenario subject wears one tag: tags = ["T1"], got {tag_list!r}')
    tag = tag_list[0]
    if tag in tags:
        raise e.fail("tags", f"tag {tag!r} is already worn by another subject")
    tags.add(tag)
    risk = e.integer("risk", 2, 0, 100)
    if e.has("noise"):
        noise = NOISE[e.text("noise", choices=NOISE)]
    steps, battery, first = _timeline(e, ctx, _SUBJECT_STEPS)
    protected = e.table_list("protected")
    if len(protected) > 1:
        raise e.fail("protected", "one protected device per subject in a scenario")
    phone = _phone(e, ctx, 1) if protected else None
    return ScriptedSubject(
        sid, tag, risk, _start(e, ctx, first), tuple(ctx.zones.values()), tuple(steps),
        battery or Battery(), noise, phone, e.where,
    )  # fmt: skip


def _expectation(src: str, i: int, v: object, sc: dict[str, Any]) -> Expectation:
    keys = ("kind", "subject", "zone", "start", "end", "material", "within", "absent")
    e = _Entry(src, f"expect {i}", v, keys)
    kind = e.text("kind", choices=TRUTH_KINDS)
    subject = e.text("subject", choices=sc["subjects"])
    zone = e.text("zone", None)
    absent = e.flag("absent", False)
    start = e.time("start", sc["t0"], sc["t1"])
    if start is None and not absent:
        raise e.fail("start", "missing (when the episode starts; or absent = true)")
    end = e.time("end", sc["t0"], sc["t1"])
    material = e.get("material", None)
    if material is not None and not isinstance(material, bool):
        raise e.fail("material", f"must be true or false, got {material!r}")
    return Expectation(
        i, kind, subject, zone, start, end, material, e.duration("within", None), absent
    )


# -- loading -------------------------------------------------------------------------------


def _read(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such file") from None
    except OSError as e:
        raise ScenarioError(f"{path}: cannot read it: {e.strerror or e}") from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ScenarioError(f"{path}: not a UTF-8 text file") from None
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{path}: not valid TOML: {e}") from None


def load_scenario(path: str | Path) -> Scenario:
    """Read and check a scenario file (ScenarioError naming file, entry and field)."""
    path = Path(path)
    src = str(path)
    top = _Entry(src, "top level", _read(path), _TOP)
    run = _Entry(src, "[run]", top.get("run", {}), _RUN)
    seed = run.integer("seed", 1, 0)
    try:
        t0 = parse_instant(run.get("start")) if run.has("start") else DEFAULT_EPOCH
    except ValueError as e:
        raise run.fail("start", str(e)) from None
    duration = run.duration("duration", 3 * 3600.0)
    fix_interval = run.duration("fix_interval", 60.0)
    phone_interval = run.duration("phone_interval", 60.0)
    if phone_interval < 2:
        raise run.fail("phone_interval", "OwnTracks reports whole seconds: at least 2s")
    noise = NOISE[run.text("noise", "street", NOISE)]
    phone_noise = NOISE[run.text("phone_noise", "phone", NOISE)]
    t1 = t0 + duration

    places = _Places()
    given = top.get("places", {})
    place_table = _Entry(src, "[places]", given, given.keys() if isinstance(given, dict) else ())
    for name, v in place_table.data.items():
        places.ll[name] = places.latlon(place_table, name, v)

    subject_list = top.table_list("subjects")
    if not subject_list:
        raise top.fail("subjects", "missing: a scenario needs at least one [[subjects]]")
    ids: dict[str, int] = {}
    for i, s in enumerate(subject_list, 1):
        sid = _Entry(src, _named("subject", i, s, "id"), s, _SUBJECT).text("id")
        if sid in ids:
            raise ScenarioError(f"{src}: subject {i}, field 'id': {sid!r} is already subject "
                                f"{ids[sid]}")  # fmt: skip
        ids[sid] = i
    raw_zones = [
        _raw_zone(src, i, z, places, set(ids)) for i, z in enumerate(top.table_list("zones"), 1)
    ]
    seen: set[str] = set()
    for z in raw_zones:
        if z.id in seen:
            raise z.entry.fail("id", f"zone id {z.id!r} is used twice")
        if z.id in places.ll:
            raise z.entry.fail("id", f"{z.id!r} is also a place name; names must differ")
        seen.add(z.id)

    if run.has("center"):
        center = places.latlon(run, "center", run.get("center"))
    else:
        pts = list(places.ll.values()) + [z.anchor for z in raw_zones]
        if not pts:
            raise run.fail("center", "missing (no places or zones to centre the city on)")
        # the median: one stray point (a polygon in [lat, lon] order) is then the one flagged
        center = (float(np.median([p[0] for p in pts])), float(np.median([p[1] for p in pts])))
    places.frame = LocalFrame(*center)
    for name, ll in places.ll.items():
        x, y = places.frame.to_xy(*ll)
        places.near(place_table, name, (float(x), float(y)))
    zones = [_zone_spec(z, places) for z in raw_zones]
    places.zones = {z.id: z for z in zones}

    subjects: list[ScriptedSubject] = []
    tags: set[str] = set()
    devices: set[str] = set()
    for i, s in enumerate(subject_list, 1):
        sid = s.get("id") if isinstance(s, dict) else None
        own = {z.id: z for z in zones if z.subject == sid}
        ctx = _Ctx(src, t0, t1, places, own)
        subj = _subject(src, i, s, ctx, noise, tags)
        if subj.phone is not None:
            if subj.phone.device in devices or subj.phone.device in tags:
                raise ScenarioError(f"{src}: {subj.phone.where}, field 'device': used twice")
            devices.add(subj.phone.device)
        subjects.append(subj)

    sc = {"subjects": list(ids), "t0": t0, "t1": t1}
    expect = tuple(_expectation(src, i, v, sc) for i, v in enumerate(top.table_list("expect"), 1))
    extent = max([places.extent, *(abs(c) for z in zones for c in z.area_xy.bounds)])
    half = float(np.clip(extent + 1000.0, 1500.0, MAX_FROM_CENTRE_M + 1000.0))
    return Scenario(
        src, seed, t0, duration, fix_interval, phone_interval, center, places.frame, half, noise,
        phone_noise, tuple(zones), tuple(subjects), expect,
    )  # fmt: skip


# -- running -------------------------------------------------------------------------------


def _script_error(where: str, steps: tuple[Step, ...], src: str, e: ScriptError) -> ScenarioError:
    do = next((s.do for s in steps if s.index == e.index), "?")
    return ScenarioError(f"{src}: {where}, timeline entry {e.index} ({do}), field '{e.field}': {e}")


def _follow(
    where: str, steps: tuple[Step, ...], sp: ScriptedPath, src: str
) -> list[tuple[DeviceEvent, float, float]]:
    """Run a timeline's moves on `sp`; its events with their (start, end) in Unix time."""
    out = []
    try:
        for s in steps:
            if isinstance(s, Move):
                sp.do(s)
                continue
            a = sp.now if s.at is None else sp.t0 + s.at
            if a >= sp.t1:
                raise ScriptError(
                    s.index,
                    "at",
                    f"starts at {sp.rel(a)}, not before the run ends ({sp.rel(sp.t1)})",
                )
            b = a + s.seconds if s.seconds is not None else sp.t0 + (s.until or 0.0)
            if b <= a:
                raise ScriptError(
                    s.index, "until", f"{sp.rel(b)} is not after it starts ({sp.rel(a)})"
                )
            out.append((s, a, b))
    except ScriptError as e:
        raise _script_error(where, steps, src, e) from None
    return out


def _health_script(
    s: ScriptedSubject, events: list[tuple[DeviceEvent, float, float]], t0: float
) -> ScriptedHealth:
    tamper, gaps, indoor = [], [], []
    for ev, a, b in events:
        if ev.do == "tamper":
            tamper.append(ScriptedTamper(ev.index, ev.kind, a, b - a, ev.toggles, ev.body))
        elif ev.do == "coverage_gap":
            gaps.append(ScriptedSpan(ev.index, a, b))
        else:
            indoor.append(ScriptedSpan(ev.index, a, b, ev.cell_share, ev.cell_acc_m))
    gaps.sort(key=lambda g: g.start_t)
    for g, later in itertools.pairwise(gaps):
        if later.start_t < g.end_t:
            raise ScriptError(later.index, "at", f"overlaps coverage gap entry {g.index}")
    bat = s.battery
    return ScriptedHealth(
        tuple(tamper), tuple(gaps), tuple(indoor), bat.start_pct, bat.drain_pct_h,
        bat.charge_pct_h, tuple((t0 + a, t0 + b) for a, b in bat.charging), bat.recharge,
    )  # fmt: skip


def _without(cols: FixColumns, spans: list[tuple[float, float]]) -> FixColumns:
    keep = np.ones(len(cols), dtype=bool)
    for a, b in spans:
        keep &= ~((cols.t >= a) & (cols.t < b))
    return FixColumns(
        cols.t[keep], cols.x[keep], cols.y[keep], cols.acc[keep], cols.batt[keep], cols.src[keep]
    )


def run_scenario(
    scenario: Scenario, *, seed: int | None = None, start_t: float | None = None
) -> SimRun:
    """Plan, sense and judge a scenario: the SimRun `write_run` and `run_live` take. `seed`
    and `start_t` override the file's (a later start moves every scripted time with it)."""
    sc = scenario
    seed = sc.seed if seed is None else seed
    t0 = sc.start_t if start_t is None else float(start_t)
    t1 = t0 + sc.duration_s
    streets = build_streets(np.random.default_rng([seed, 0]), sc.half_size_m)
    specs = tuple(
        SubjectSpec(s.id, s.tag, s.risk, s.start, s.zones, None if s.phone is None else
                    PhoneSpec(s.phone.device, s.phone.radius_m, s.phone.warn_m, s.phone.start,
                              0.0, 0.0))
        for s in sc.subjects
    )  # fmt: skip
    world = World(seed, sc.center, sc.frame, streets, specs)
    plans, messages, healths = [], [], []
    for k, (s, spec) in enumerate(zip(sc.subjects, specs, strict=True), 1):
        sp = ScriptedPath(world, spec, np.random.default_rng([seed, 3, k]), t0, t1, s.start)
        events = _follow(s.where, s.steps, sp, sc.path)
        phone_sp = None
        quiet: list[tuple[float, float]] = []  # the phone's app backgrounded: no reports
        if s.phone is not None:
            phone_rng = np.random.default_rng([seed, 5, k])
            phone_sp = ScriptedPath(world, None, phone_rng, t0, t1, s.phone.start)
            quiet = [(a, b) for _, a, b in _follow(s.phone.where, s.phone.steps, phone_sp, sc.path)]
        plan = scripted_plan(spec, sp, phone_sp)
        plans.append(plan)
        rng = np.random.default_rng([seed, 4, k])
        cols = sample_fixes(rng, plan.path, t0, t1, sc.fix_interval_s, s.noise)
        try:
            script = _health_script(s, events, t0)
            h = scripted_health(
                script, np.random.default_rng([seed, 8, k]), s.id, s.tag, plan.path, cols, t0,
                t1, sc.fix_interval_s,
            )  # fmt: skip
        except ScriptError as e:
            raise _script_error(s.where, s.steps, sc.path, e) from None
        healths.append(h)
        messages += health_messages(h, world)
        if s.phone is not None and plan.phone_path is not None:
            pcols = sample_fixes(
                rng, plan.phone_path, t0, t1, sc.phone_interval_s, sc.phone_noise,
                whole_seconds=True,
            )  # fmt: skip
            messages += phone_messages(s.phone.device, world, _without(pcols, quiet))
    messages.sort(key=lambda m: (m.t, m.device))
    truth = compute_truth(world, plans, t0, t1, sc.fix_interval_s)
    truth = sorted([*truth, *health_truth(healths, t1)])
    config = SimConfig(
        duration_s=sc.duration_s, fix_interval_s=sc.fix_interval_s, start_t=t0,
        breach_fraction=0.0, phone_interval_s=sc.phone_interval_s, seed=seed, noise=sc.noise,
        phone_noise=sc.phone_noise,
    )  # fmt: skip
    return SimRun(world, config, tuple(plans), tuple(messages), tuple(truth), tuple(healths))


def check_expectations(scenario: Scenario, run: SimRun) -> list[str]:
    """What the run's truth does not keep of the file's `[[expect]]` promises (empty: all)."""
    t0 = run.start_t
    problems = []
    for x in scenario.expect:
        cands = [
            e
            for e in run.truth
            if e.kind == x.kind and e.subject == x.subject and x.zone in (None, e.zone)
        ]
        what = f"{x.kind} of {x.subject}" + (f" in {x.zone}" if x.zone else "")
        seen = "; truth has " + (
            ", ".join(
                f"{offset_text(e.start_t - t0)}-{offset_text(e.end_t - t0)}"
                f"{'' if e.material else ' (ambiguous)'}"
                for e in cands
            )
            or "none"
        )
        if x.absent:
            if cands:
                problems.append(f"expect {x.index}: no {what} promised{seen}")
            continue
        tol = x.within if x.within is not None else run.config.fix_interval_s
        assert x.start is not None
        ok = [
            e
            for e in cands
            if abs(e.start_t - t0 - x.start) <= tol
            and (x.end is None or abs(e.end_t - t0 - x.end) <= tol)
            and (x.material is None or e.material == x.material)
        ]
        if not ok:
            span = offset_text(x.start) + (f"-{offset_text(x.end)}" if x.end is not None else "")
            problems.append(f"expect {x.index}: {what} at {span} (±{tol:g} s){seen}")
    return problems
