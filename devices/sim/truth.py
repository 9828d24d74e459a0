"""Ground truth: every true breach episode, judged from the true paths, not the fixes.

Zones are taken exactly as written (rounded lon/lat) and each is measured in a metric
frame centred on itself, so the truth does not inherit the city frame's scale error."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from numpy.typing import NDArray

from devices.motion.planner import Plan
from devices.world.city import World, ZoneSpec
from devices.world.clock import active_mask
from devices.world.geo import LocalFrame

MATERIAL_DEPTH_M = 20.0  # an episode shallower than this is ambiguous for a GPS tag
MATERIAL_FIXES = 2  # ... and so is one shorter than this many fix intervals
STEP_S = 1.0  # truth resolution


@dataclass(frozen=True, order=True)
class Episode:
    """One true episode: the device was in breach from start_t until end_t (first sample
    back in compliance, or the end of the run if it never was)."""

    start_t: float
    subject: str
    kind: str  # zone_breach | curfew_breach | proximity
    zone: str  # zone id; for proximity the protected device id
    tag: str
    end_t: float
    depth_m: float  # deepest: metres inside the zone / outside the curfew / within radius
    material: bool

    def record(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "subject": self.subject,
            "tag": self.tag,
            "zone": self.zone,
            "start_t": round(self.start_t, 3),
            "end_t": round(self.end_t, 3),
            "material": self.material,
            "depth_m": round(self.depth_m, 1),
        }


def _runs(mask: NDArray[np.bool_]) -> list[tuple[int, int]]:
    """[start, stop) index ranges where mask is True."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _zone_frame(z: ZoneSpec) -> LocalFrame:
    if z.center_ll is not None:
        return LocalFrame(z.center_ll[1], z.center_ll[0])
    assert z.geometry_ll is not None
    c = z.geometry_ll.centroid
    return LocalFrame(c.y, c.x)


class ZoneProbe:
    """Positions (lat, lon arrays) against one zone, in the zone's own metric frame."""

    def __init__(self, z: ZoneSpec, lat: NDArray[np.float64], lon: NDArray[np.float64]):
        f = _zone_frame(z)
        self.x, self.y = f.to_xy(lat, lon)
        self.radius = z.radius_m
        self.geom = None
        if not z.is_circle:
            assert z.geometry_ll is not None

            def to_m(c: NDArray[np.float64]) -> NDArray[np.float64]:
                mx, my = f.to_xy(c[:, 1], c[:, 0])
                return np.stack([mx, my], 1)

            self.geom = shapely.transform(z.geometry_ll, to_m)
            shapely.prepare(self.geom)

    def inside(self) -> NDArray[np.bool_]:
        """Strictly inside (a point on the boundary is not)."""
        if self.geom is None:
            assert self.radius is not None
            return np.hypot(self.x, self.y) < self.radius
        return shapely.contains_xy(self.geom, self.x, self.y)

    def depth(self, where: NDArray[np.bool_]) -> NDArray[np.float64]:
        """Unsigned distance to the zone's boundary where `where`, else 0."""
        out = np.zeros(len(self.x))
        idx = np.flatnonzero(where)
        if len(idx) == 0:
            return out
        if self.geom is None:
            assert self.radius is not None
            out[idx] = np.abs(self.radius - np.hypot(self.x[idx], self.y[idx]))
        else:
            pts = shapely.points(self.x[idx], self.y[idx])
            out[idx] = shapely.distance(self.geom.boundary, pts)
        return out


def _episodes(
    kind: str,
    subject: str,
    tag: str,
    zone: str,
    ts: NDArray[np.float64],
    breach: NDArray[np.bool_],
    depth: NDArray[np.float64],
    fix_interval_s: float,
) -> Iterable[Episode]:
    for a, b in _runs(breach):
        end = float(ts[b]) if b < len(ts) else float(ts[-1])
        deepest = float(depth[a:b].max())
        material = end - float(ts[a]) >= MATERIAL_FIXES * fix_interval_s
        yield Episode(
            float(ts[a]),
            subject,
            kind,
            zone,
            tag,
            end,
            deepest,
            material and deepest >= MATERIAL_DEPTH_M,
        )


def compute_truth(
    world: World, plans: Iterable[Plan], t0: float, t1: float, fix_interval_s: float
) -> list[Episode]:
    """All true episodes in [t0, t1] at 1 s resolution, sorted (start, subject, kind, zone)."""
    n = math.floor((t1 - t0) / STEP_S) + 1
    ts = t0 + STEP_S * np.arange(n, dtype=np.float64)
    out: list[Episode] = []
    for plan in plans:
        s = plan.subject
        lat, lon = world.frame.to_latlon(*plan.path.at(ts))
        for z in s.zones:
            active = active_mask(z.schedule, ts) if z.schedule else np.ones(n, dtype=bool)
            probe = ZoneProbe(z, lat, lon)
            inside = probe.inside()
            # exclusion: inside while active; inclusion (curfew): outside while active
            breach = active & (inside if z.kind == "exclusion" else ~inside)
            kind = "zone_breach" if z.kind == "exclusion" else "curfew_breach"
            depth = probe.depth(breach)
            out.extend(_episodes(kind, s.id, s.tag, z.id, ts, breach, depth, fix_interval_s))
        if s.phone is not None and plan.phone_path is not None:
            plat, plon = world.frame.to_latlon(*plan.phone_path.at(ts))
            alat, alon = world.frame.to_latlon(*s.phone.anchor_xy)
            f = LocalFrame(float(alat), float(alon))  # the phone stays near its anchor
            (sx, sy), (px, py) = f.to_xy(lat, lon), f.to_xy(plat, plon)
            close = s.phone.radius_m - np.hypot(sx - px, sy - py)
            out.extend(
                _episodes(
                    "proximity", s.id, s.tag, s.phone.device, ts, close > 0, close, fix_interval_s
                )
            )
    out.sort()
    return out
