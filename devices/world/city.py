"""The simulated world: streets around a city centre, and each subject's places and zones.

Per subject: a home, 1-3 exclusion zones around a victim's home, work and children's
school, an optional curfew at home and an optional victim phone."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Point, Polygon
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient

from devices.world import shapes
from devices.world.geo import LocalFrame
from devices.world.streets import StreetNetwork, build_streets

ZoneKind = Literal["exclusion", "inclusion"]
LONDON = (51.5074, -0.1278)
CURFEW_SCHEDULE: tuple[dict[str, str], ...] = (
    {"days": "Mon-Sun", "start": "19:00", "end": "07:00", "tz": "Europe/London"},
)
_ROLES = ("victim_home", "victim_work", "school")
_ROLE_NAMES = {
    "victim_home": "victim home",
    "victim_work": "victim workplace",
    "school": "children's school",
    "curfew": "curfew address",
}
_COORD_DP = 7  # ~1 cm: the written coordinates are the true geometry


@dataclass(frozen=True, eq=False)
class ZoneSpec:
    """One zone as written to zones.geojson, with its metric twin for planning."""

    id: str
    subject: str
    kind: ZoneKind
    role: str  # victim_home | victim_work | school | curfew
    area_xy: BaseGeometry  # city frame; circles as a fine polygon (planning only)
    geometry_ll: BaseGeometry | None  # lon/lat as written (Polygon | MultiPolygon)
    center_ll: tuple[float, float] | None  # (lon, lat) for circles
    radius_m: float | None
    warn_m: float | None
    deep_xy: tuple[float, float]  # city frame: a point well inside
    depth_m: float  # distance from deep_xy to the boundary
    schedule: tuple[dict[str, str], ...] = ()

    @property
    def name(self) -> str:
        return _ROLE_NAMES[self.role]

    @property
    def is_circle(self) -> bool:
        return self.center_ll is not None


@dataclass(frozen=True)
class PhoneSpec:
    """A victim's phone publishing OwnTracks: a mobile exclusion zone for its subject."""

    device: str  # "victim7/phone" -> topic owntracks/victim7/phone
    radius_m: float
    warn_m: float | None
    anchor_xy: tuple[float, float]
    roam_m: float  # 0: stationary; else walks slowly back and forth over this distance
    roam_angle: float

    @property
    def user(self) -> str:
        return self.device.split("/", 1)[0]


@dataclass(frozen=True, eq=False)
class SubjectSpec:
    """A monitored person: one tag, a home, own zones and possibly a victim phone."""

    id: str
    tag: str
    risk: int
    home_xy: tuple[float, float]
    zones: tuple[ZoneSpec, ...]
    phone: PhoneSpec | None

    @property
    def exclusions(self) -> tuple[ZoneSpec, ...]:
        return tuple(z for z in self.zones if z.kind == "exclusion")

    @property
    def curfew(self) -> ZoneSpec | None:
        return next((z for z in self.zones if z.kind == "inclusion"), None)


@dataclass(frozen=True, eq=False)
class World:
    """Everything fixed about a simulated city, independent of when it is run."""

    seed: int
    center: tuple[float, float]  # (lat, lon)
    frame: LocalFrame
    streets: StreetNetwork
    subjects: tuple[SubjectSpec, ...]

    @property
    def zones(self) -> tuple[ZoneSpec, ...]:
        return tuple(z for s in self.subjects for z in s.zones)

    def write(self, directory: str | Path) -> tuple[Path, Path]:
        """Write zones.geojson and subjects.toml into `directory`; return their paths."""
        from devices.world.files import write_world

        return write_world(self, Path(directory))


def _to_ll(frame: LocalFrame, geom: BaseGeometry) -> BaseGeometry:
    def tr(coords: np.ndarray) -> np.ndarray:
        lat, lon = frame.to_latlon(coords[:, 0], coords[:, 1])
        return np.round(np.stack([lon, lat], 1), _COORD_DP)

    out = shapely.transform(geom, tr)
    if isinstance(out, MultiPolygon):
        return MultiPolygon([orient(p, 1.0) for p in out.geoms])
    return orient(out, 1.0)


def _zone_shape(
    rng: np.random.Generator, cx: float, cy: float
) -> tuple[BaseGeometry | None, float | None]:
    """(polygon geometry, None) or (None, circle radius) for an exclusion zone."""
    kind = rng.choice(
        ["circle", "blob", "block", "hole", "split", "two"], p=[0.25, 0.3, 0.15, 0.15, 0.075, 0.075]
    )
    radius = float(rng.uniform(40.0, 200.0))
    if kind == "circle":
        return None, float(round(rng.uniform(50.0, 200.0) / 5) * 5)
    n = int(rng.integers(8, 31))
    if kind == "two":
        return shapes.two_sites(rng, cx, cy, max(radius, 80.0)), None
    base = (shapes.block if kind == "block" else shapes.blob)(rng, cx, cy, radius, n)
    if kind == "hole":
        return shapes.with_hole(rng, base) or base, None
    if kind == "split":
        return shapes.split_by_road(rng, base) or base, None
    return base, None


def _make_zone(
    rng: np.random.Generator,
    frame: LocalFrame,
    zid: str,
    subject: str,
    kind: ZoneKind,
    role: str,
    cx: float,
    cy: float,
    shape: tuple[BaseGeometry | None, float | None],
    warn_m: float | None,
    schedule: tuple[dict[str, str], ...] = (),
) -> ZoneSpec | None:
    geom, radius = shape
    if geom is None:
        assert radius is not None
        lat, lon = frame.to_latlon(cx, cy)
        center_ll = (round(float(lon), _COORD_DP), round(float(lat), _COORD_DP))
        return ZoneSpec(
            zid,
            subject,
            kind,
            role,
            Point(cx, cy).buffer(radius, 64),
            None,
            center_ll,
            radius,
            warn_m,
            (cx, cy),
            radius,
            schedule,
        )
    ll = _to_ll(frame, geom)
    if not (geom.is_valid and ll.is_valid) or ll.is_empty:
        return None
    dx, dy, depth = shapes.deep_point(geom)
    if kind == "exclusion" and depth < 30.0:
        return None  # a sliver: too thin for a court to draw, or for a tag to breach
    return ZoneSpec(
        zid, subject, kind, role, geom, ll, None, None, warn_m, (dx, dy), depth, schedule
    )


def _place_near(
    rng: np.random.Generator, origin: tuple[float, float], dmin: float, dmax: float, limit: float
) -> tuple[float, float] | None:
    for _ in range(50):
        ang = rng.uniform(0, 2 * math.pi)
        d = rng.uniform(dmin, dmax)
        x, y = origin[0] + d * math.cos(ang), origin[1] + d * math.sin(ang)
        if abs(x) <= limit and abs(y) <= limit:
            return x, y
    return None


def _street_point(
    rng: np.random.Generator, streets: StreetNetwork, limit: float
) -> tuple[float, float]:
    """A plausible address: a few tens of metres off a junction, inside `limit`."""
    inside = np.flatnonzero((np.abs(streets.nodes) <= limit).all(1))
    n = streets.nodes[int(rng.choice(inside))]
    ang = rng.uniform(0, 2 * math.pi)
    d = rng.uniform(10.0, 40.0)
    return float(n[0] + d * math.cos(ang)), float(n[1] + d * math.sin(ang))


def _build_subject(
    rng: np.random.Generator, frame: LocalFrame, streets: StreetNetwork, number: int
) -> SubjectSpec:
    sid, tag = f"S{number:04d}", f"T{number:04d}"
    limit = streets.half_size - 300.0
    for _ in range(200):
        home = _street_point(rng, streets, limit)
        zones: list[ZoneSpec] = []
        anchor = _place_near(rng, home, 900.0, 3000.0, limit)
        if anchor is None:
            continue
        n_excl = int(rng.integers(1, 4))
        for role in _ROLES[:n_excl]:
            if role == "victim_home":
                c: tuple[float, float] | None = anchor
            else:
                c = _place_near(rng, anchor, 350.0 if role == "school" else 500.0, 2000.0, limit)
            if c is None:
                break
            warn = float(rng.choice([50.0, 100.0, 150.0, 200.0])) if rng.random() < 0.5 else None
            z = _make_zone(
                rng,
                frame,
                f"{sid}-{role.split('_')[-1]}",
                sid,
                "exclusion",
                role,
                c[0],
                c[1],
                _zone_shape(rng, *c),
                warn,
            )
            if z is None or z.area_xy.distance(Point(home)) < 600.0:
                break
            zones.append(z)
        if len(zones) != n_excl:
            continue
        phone = None
        if rng.random() < 0.4:
            radius = float(rng.choice(np.arange(200.0, 501.0, 50.0)))
            warn = float(rng.choice([200.0, 300.0, 500.0])) if rng.random() < 0.6 else None
            if rng.random() < 0.5:
                p_anchor, roam = zones[0].deep_xy, 0.0
            else:
                z = zones[-1]
                p_anchor, roam = z.deep_xy, float(rng.uniform(100.0, 300.0))
            if math.dist(p_anchor, home) < radius + roam + 700.0:
                continue
            phone = PhoneSpec(
                f"victim{number}/phone",
                radius,
                warn,
                p_anchor,
                roam,
                float(rng.uniform(0, math.pi)),
            )
        if rng.random() < 0.6:
            r = float(round(rng.uniform(30.0, 60.0) / 5) * 5)
            shape: tuple[BaseGeometry | None, float | None] = (
                (None, r)
                if rng.random() < 0.5
                else (shapes.blob(rng, home[0], home[1], r, int(rng.integers(8, 17))), None)
            )
            cz = _make_zone(
                rng,
                frame,
                f"{sid}-curfew",
                sid,
                "inclusion",
                "curfew",
                home[0],
                home[1],
                shape,
                None,
                CURFEW_SCHEDULE,
            )
            if cz is None or not cz.area_xy.buffer(-10.0).contains(Point(home)):
                continue
            zones.append(cz)
        risk = int(rng.choice([1, 2, 3, 4], p=[0.2, 0.4, 0.3, 0.1]))
        return SubjectSpec(sid, tag, risk, home, tuple(zones), phone)
    raise RuntimeError(f"could not place subject {sid}; the city is too small")


def city_half_size(n_subjects: int) -> float:
    """Half the side of the simulated square city: grows with the fleet, 2-6 km."""
    return float(np.clip(2000.0 + 150.0 * math.sqrt(n_subjects), 2000.0, 6000.0))


def build_world(
    seed: int,
    n_subjects: int,
    center: tuple[float, float] = LONDON,
    half_size_m: float | None = None,
) -> World:
    """A seeded city around `center` (lat, lon) with `n_subjects` subjects S0001...

    Each subject's geography comes from its own random stream, so subject k's places
    depend only on the seed, k and the street network."""
    if n_subjects < 1:
        raise ValueError("n_subjects must be >= 1")
    frame = LocalFrame(*center)
    streets = build_streets(
        np.random.default_rng([seed, 0]), half_size_m or city_half_size(n_subjects)
    )
    subjects = tuple(
        _build_subject(np.random.default_rng([seed, 1, k]), frame, streets, k)
        for k in range(1, n_subjects + 1)
    )
    return World(seed, (float(center[0]), float(center[1])), frame, streets, subjects)


def polygon_parts(geom: BaseGeometry) -> list[Polygon]:
    """The polygons of a Polygon or MultiPolygon."""
    return list(geom.geoms) if isinstance(geom, MultiPolygon) else [geom]  # type: ignore[list-item]
