"""Ground truth for scenario families: true episodes judged from the true paths at 1 s
resolution, each labelled material or ambiguous by one written rule.

Labelling rule (written once, here, and applied to every true episode):

* **material** when the true path went at least `MATERIAL_DEPTH_M` (20 m) deep (into an
  exclusion zone, out of an active curfew zone, within a protected radius) **and** either
  stayed in breach for at least `MATERIAL_INTERVALS` (2) fix intervals (a *dwell*) or
  crossed: entered and left at points at least `TRANSIT_SPAN_M` (60 m) apart (a *transit*,
  e.g. a drive-through with no fix inside);
* **ambiguous** otherwise (*shallow*: less than 20 m deep, e.g. barely clipped the edge;
  *brief*: deep but short and not a crossing), and also whenever the tag reported only
  cell fixes (acc hundreds of metres) throughout the episode (*cell_only*): nothing in the
  data could show it. Ambiguous episodes earn neither credit nor penalty when scored."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from devices.motion.paths import TruePath
from devices.sim.truth import Episode, ZoneProbe
from devices.world.city import PhoneSpec, ZoneSpec
from devices.world.clock import active_mask
from devices.world.geo import LocalFrame

FloatArray = NDArray[np.float64]
MATERIAL_DEPTH_M = 20.0
MATERIAL_INTERVALS = 2.0
TRANSIT_SPAN_M = 60.0


@dataclass(frozen=True, order=True)
class TrueEpisode(Episode):
    """One true episode (the simulator's truth record plus family and the rule applied)."""

    family: str
    label: str  # dwell | transit | shallow | brief | cell_only

    def record(self) -> dict[str, Any]:
        return super().record() | {"family": self.family, "label": self.label}


def label(depth: float, duration: float, span: float, interval: float, cell_only: bool) -> str:
    """The labelling rule of this module's docstring, as one word."""
    if cell_only:
        return "cell_only"
    if depth < MATERIAL_DEPTH_M:
        return "shallow"
    if duration >= MATERIAL_INTERVALS * interval:
        return "dwell"
    if span >= TRANSIT_SPAN_M:
        return "transit"
    return "brief"


def _runs(mask: NDArray[np.bool_]) -> list[tuple[int, int]]:
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


@dataclass
class Judge:
    """Judges one episode's true paths at 1 s resolution into TrueEpisodes."""

    family: str
    subject: str
    tag: str
    interval: float
    cell_only: list[tuple[float, float]] = field(default_factory=list)

    def episodes(
        self,
        kind: str,
        zone: str,
        ts: FloatArray,
        breach: NDArray[np.bool_],
        depth: FloatArray,
        rx: FloatArray,
        ry: FloatArray,
    ) -> list[TrueEpisode]:
        out = []
        for a, b in _runs(breach):
            start = float(ts[a])
            end = float(ts[b]) if b < len(ts) else float(ts[-1])
            deepest = float(depth[a:b].max())
            span = math.hypot(float(rx[b - 1] - rx[a]), float(ry[b - 1] - ry[a]))
            hidden = any(c0 <= start and end <= c1 for c0, c1 in self.cell_only)
            word = label(deepest, end - start, span, self.interval, hidden)
            material = word in ("dwell", "transit")
            out.append(
                TrueEpisode(
                    start,
                    self.subject,
                    kind,
                    zone,
                    self.tag,
                    end,
                    deepest,
                    material,
                    self.family,
                    word,
                )
            )
        return out

    def zones(
        self, frame: LocalFrame, zones: list[ZoneSpec], path: TruePath, t0: float, t1: float
    ) -> list[TrueEpisode]:
        ts = t0 + np.arange(math.floor(t1 - t0) + 1, dtype=np.float64)
        lat, lon = frame.to_latlon(*path.at(ts))
        out: list[TrueEpisode] = []
        for z in zones:
            active = active_mask(z.schedule, ts) if z.schedule else np.ones(len(ts), bool)
            probe = ZoneProbe(z, lat, lon)
            inside = probe.inside()
            breach = active & (inside if z.kind == "exclusion" else ~inside)
            kind = "zone_breach" if z.kind == "exclusion" else "curfew_breach"
            out += self.episodes(kind, z.id, ts, breach, probe.depth(breach), probe.x, probe.y)
        return out

    def proximity(
        self, phone: PhoneSpec, path: TruePath, phone_path: TruePath, t0: float, t1: float
    ) -> list[TrueEpisode]:
        ts = t0 + np.arange(math.floor(t1 - t0) + 1, dtype=np.float64)
        (sx, sy), (px, py) = path.at(ts), phone_path.at(ts)
        rx, ry = sx - px, sy - py
        close = phone.radius_m - np.hypot(rx, ry)
        return self.episodes("proximity", phone.device, ts, close > 0, close, rx, ry)
