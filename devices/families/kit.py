"""Building blocks for scenario families: episode context, zone construction and geometry
probes in an episode's metric frame, fix sampling, what a generator returns, the registry.

Ground truth and its labelling rule live in `devices.families.truth`."""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import shapely
from numpy.typing import NDArray
from shapely.geometry import LineString, Point, Polygon
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient

from devices.families.truth import TrueEpisode
from devices.motion.paths import TruePath
from devices.sensing.noise import FloatArray, on_dense_grid
from devices.sensing.sensor import FixColumns, NoiseModel, battery, fix_times
from devices.world.city import PhoneSpec, ZoneKind, ZoneSpec
from devices.world.geo import LocalFrame
from devices.world.shapes import deep_point

MIN = 60.0
FAST_S = 15.0  # what the engine asks a tag for near a zone (Settings.report_fast_s)
_DP = 7  # ~1 cm: written coordinates are the true geometry


@dataclass
class Ctx:
    """One episode being generated: its random stream, ids, metric frame and start time.

    `dense` > 1 (an obedient build, `devices.families.obedient`): the tag's fixes are
    sampled `dense` times per `interval` (every FAST_S seconds) and the tag later sends
    the subset its commanded rate asks for; index `at(k)` is the k-th fix at `interval`."""

    family: str
    k: int
    rng: np.random.Generator
    subject: str
    tag: str
    frame: LocalFrame
    t0: float
    interval: float = 60.0
    dense: int = 1

    def at(self, k: int) -> int:
        """The index of the k-th fix at the family's interval among the sampled fixes."""
        return k * self.dense

    def zone_id(self, name: str) -> str:
        return f"{self.subject}-{name}"

    def circle(
        self,
        name: str,
        cx: float,
        cy: float,
        r: float,
        *,
        kind: ZoneKind = "exclusion",
        warn: float | None = None,
        schedule: tuple[dict[str, str], ...] = (),
        role: str = "victim_home",
    ) -> ZoneSpec:
        lat, lon = self.frame.to_latlon(cx, cy)
        centre = (round(float(lon), _DP), round(float(lat), _DP))
        area = Point(cx, cy).buffer(r, 64)
        return ZoneSpec(
            self.zone_id(name),
            self.subject,
            kind,
            role,
            area,
            None,
            centre,
            float(r),
            warn,
            (cx, cy),
            float(r),
            schedule,
        )

    def polygon(
        self,
        name: str,
        geom: BaseGeometry,
        *,
        kind: ZoneKind = "exclusion",
        warn: float | None = None,
        schedule: tuple[dict[str, str], ...] = (),
        role: str = "victim_home",
    ) -> ZoneSpec:
        def tr(c: NDArray[np.float64]) -> NDArray[np.float64]:
            lat, lon = self.frame.to_latlon(c[:, 0], c[:, 1])
            return np.round(np.stack([lon, lat], 1), _DP).astype(np.float64)

        ll = shapely.transform(geom, tr)
        ll = (
            orient(ll, 1.0)
            if ll.geom_type == "Polygon"
            else shapely.MultiPolygon([orient(p, 1.0) for p in ll.geoms])
        )
        if not (geom.is_valid and ll.is_valid):
            raise ValueError(f"{self.family} episode {self.k}: invalid zone geometry")
        dx, dy, depth = deep_point(geom)
        return ZoneSpec(
            self.zone_id(name),
            self.subject,
            kind,
            role,
            geom,
            ll,
            None,
            None,
            warn,
            (dx, dy),
            depth,
            schedule,
        )

    def sample(
        self,
        path: TruePath,
        t0: float,
        t1: float,
        noise: NoiseModel,
        interval: float | None = None,
        whole_seconds: bool = False,
        tag: bool = True,
    ) -> FixColumns:
        """The device's fixes along `path` in [t0, t1), one per interval, with `noise`
        (a tag's on the dense grid when `dense` > 1; `tag=False`: a phone, never)."""
        t = fix_times(self.rng, t0, t1, interval or self.interval, whole_seconds)
        return self.sample_at(path, t, noise, t1 if tag else None, tag)

    def sample_at(
        self,
        path: TruePath,
        t: FloatArray,
        noise: NoiseModel,
        until: float | None = None,
        tag: bool = True,
    ) -> FixColumns:
        """The device's fixes along `path` at the given times, with `noise`. A tag's, when
        `dense` > 1: each time and `dense` - 1 more every interval / dense seconds after it
        (before `until`), with the noise's bursts kept in seconds (`on_dense_grid`)."""
        if tag and self.dense > 1:
            step = self.interval / self.dense
            t = (t[:, None] + step * np.arange(self.dense)[None, :]).ravel()
            t = np.round(t[t < until] if until is not None else t, 3)
            noise = on_dense_grid(noise, self.dense)
        tx, ty = path.at(t)
        x, y, acc, src = noise.perturb(self.rng, t, tx, ty)
        src = np.asarray(src).astype("<U4")
        return FixColumns(t, x, y, acc, battery(self.rng, t, float(t[0]) if len(t) else 0.0), src)


# -- geometry in the episode frame ---------------------------------------------------------


def depth_at(geom: BaseGeometry, x: float, y: float) -> float:
    """Signed depth: metres to the boundary, positive inside, negative outside."""
    p = Point(x, y)
    d = float(geom.boundary.distance(p))
    return d if geom.contains(p) else -d


def along_ray(
    geom: BaseGeometry, origin: tuple[float, float], theta: float, target: float, reach: float
) -> tuple[float, float]:
    """The point on the ray from `origin` (inside geom) at angle theta whose signed depth is
    `target` (negative: outside), by bisection over [0, reach] metres."""
    dx, dy = math.cos(theta), math.sin(theta)
    lo, hi = 0.0, reach
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if depth_at(geom, origin[0] + mid * dx, origin[1] + mid * dy) > target:
            lo = mid
        else:
            hi = mid
    s = 0.5 * (lo + hi)
    return origin[0] + s * dx, origin[1] + s * dy


def line_depth(geom: BaseGeometry, a: tuple[float, float], b: tuple[float, float]) -> float:
    """How deep the straight segment a-b goes into geom (negative: its clearance outside)."""
    seg = LineString([a, b])
    inner = seg.intersection(geom)
    if inner.is_empty:
        return -float(seg.distance(geom))
    pieces = [g for g in getattr(inner, "geoms", [inner]) if g.geom_type == "LineString"]
    if not pieces:
        return 0.0
    pts = []
    for piece in pieces:
        n = max(2, int(piece.length) + 1)
        d = np.linspace(0.0, piece.length, n)
        pts.append(shapely.line_interpolate_point(piece, d))
    return float(shapely.distance(geom.boundary, np.concatenate(pts)).max())


def chord_at_depth(
    geom: BaseGeometry, centre: tuple[float, float], theta: float, target: float, span: float
) -> tuple[tuple[float, float], tuple[float, float]]:
    """A straight line of direction theta, `span` metres each side of its foot, offset
    sideways from `centre` so that it goes `target` metres deep (negative: passes that far
    outside). Bisection on the sideways offset."""
    dx, dy = math.cos(theta), math.sin(theta)
    nx, ny = -dy, dx

    def line(o: float) -> tuple[tuple[float, float], tuple[float, float]]:
        fx, fy = centre[0] + o * nx, centre[1] + o * ny
        return (fx - span * dx, fy - span * dy), (fx + span * dx, fy + span * dy)

    lo, hi = 0.0, span
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if line_depth(geom, *line(mid)) > target:
            lo = mid
        else:
            hi = mid
    return line(0.5 * (lo + hi))


def blob_shape(rng: np.random.Generator, r: float) -> Polygon:
    """A smooth irregular outline about 2r across, centred on the frame origin."""
    from devices.world.shapes import blob, block

    maker = blob if rng.random() < 0.6 else block
    return maker(rng, 0.0, 0.0, r, int(rng.integers(10, 25)))


def exclusion_zone(
    ctx: Ctx, r: tuple[float, float], warn_p: float = 0.5, circle_p: float = 0.4
) -> ZoneSpec:
    """A victim-home exclusion zone at the episode origin: a circle or an irregular polygon,
    with an approach ring half the time."""
    rng = ctx.rng
    radius = float(rng.uniform(*r))
    warn = float(rng.choice([50.0, 100.0, 150.0])) if rng.random() < warn_p else None
    if rng.random() < circle_p:
        return ctx.circle("home", 0.0, 0.0, round(radius / 5) * 5, warn=warn)
    for _ in range(20):
        g = blob_shape(rng, radius)
        if g.is_valid and deep_point(g)[2] >= 0.6 * radius:
            return ctx.polygon("home", g, warn=warn)
    return ctx.circle("home", 0.0, 0.0, round(radius / 5) * 5, warn=warn)


def reach(z: ZoneSpec) -> float:
    """A distance from the deep point certainly beyond the zone."""
    minx, miny, maxx, maxy = z.area_xy.bounds
    return 2.0 * math.hypot(maxx - minx, maxy - miny) + 10.0


# -- what a family generator returns, and the registry -------------------------------------

Expect = Literal["negative", "material", "ambiguous"]


@dataclass
class Outcome:
    """One generated episode: zones, true paths, the fixes devices took and how they are
    delivered. `expect` is checked against the truth; a mismatch redraws the episode."""

    variant: str
    expect: Expect
    zones: list[ZoneSpec]
    path: TruePath
    fixes: FixColumns
    t1: float  # end of the episode: truth is judged over [ctx.t0, t1]
    phone: PhoneSpec | None = None
    phone_path: TruePath | None = None
    phone_fixes: FixColumns | None = None
    late_span: tuple[float, float] | None = None  # fixes taken here arrive as a late batch
    late_after: int = 2  # ... after this many resumed live fixes
    shuffle_s: float = 0.0  # bounded reordering: arrivals delayed by up to this
    dup_p: float = 0.0  # share of publications re-sent later
    cell_only: list[tuple[float, float]] = field(default_factory=list)
    risk: int = 2

    def check(self, truth: list[TrueEpisode]) -> str | None:
        """Why the truth contradicts `expect`, or None when it agrees."""
        material = [e for e in truth if e.material]
        if self.expect == "negative" and truth:
            return f"negative variant {self.variant} has true episodes"
        if self.expect == "material" and not material:
            return f"material variant {self.variant} has no material episode"
        if self.expect == "ambiguous" and (material or not truth):
            return f"ambiguous variant {self.variant}: {[e.label for e in truth]}"
        return None


Generator = Callable[[Ctx, str], Outcome]


@dataclass(frozen=True)
class Family:
    """A registered scenario family: a generator, its variant cycle and how it is timed."""

    name: str
    make: Generator
    variants: tuple[str, ...]  # episode k plays variants[k % len]: every run gets each kind
    description: str
    code: int  # seeds the family's random streams (stable, independent of registry order)
    interval: float = 60.0
    # "core": the families bench/bench_decisions.py holds the engine to; "urban": the
    # harder world of issue 15 (devices/families/urban.py), scored by bench/quality.py
    suite: str = "core"


FAMILIES: dict[str, Family] = {}


def family(
    name: str,
    variants: tuple[str, ...],
    description: str,
    *,
    interval: float = 60.0,
    suite: str = "core",
) -> Callable[[Generator], Generator]:
    """Register `fn(ctx, variant) -> Outcome` as scenario family `name` (fixes every
    `interval` seconds)."""

    def deco(fn: Generator) -> Generator:
        code = zlib.crc32(name.encode()) & 0x7FFFFFFF
        FAMILIES[name] = Family(name, fn, variants, description, code, interval, suite)
        return fn

    return deco
