"""The pack's map picture, drawn as vector graphics on the PDF page: the zone (polygons
with their holes, a circle as a circle of its radius), the track line, each fix's
accuracy circle, the evidence fixes highlighted and numbered by seq, the deciding fix,
a scale bar and a north arrow.

Projected in a local equirectangular frame around the picture's centre (metres east and
north; true to well under 1% over the few kilometres a picture spans). No tiles, no
network: the picture is made only of what the pack holds."""

from __future__ import annotations

import itertools
import math
from typing import Any

from reportlab.lib import colors
from reportlab.pdfgen.canvas import FILL_EVEN_ODD, Canvas

from engine.evidence.geojson import fixes
from engine.evidence.pack import Evidence

M_PER_DEG = 6371008.8 * math.pi / 180.0
_EXCL = (colors.Color(1.0, 0.86, 0.86), colors.Color(0.75, 0.1, 0.1))
_INCL = (colors.Color(0.86, 0.92, 1.0), colors.Color(0.1, 0.3, 0.75))
_TRACK = colors.Color(0.3, 0.3, 0.45)
_EVID = colors.Color(0.85, 0.1, 0.1)


def zone_shapes(zone: dict[str, Any] | None) -> tuple[list[list[list[list[float]]]], list[Any]]:
    """(polygons as lists of rings of [lon, lat], circles as (lon, lat, radius_m))."""
    if zone is None:
        return [], []
    g = zone.get("geometry") or {}
    props = zone.get("properties") or {}
    if g.get("type") == "Polygon":
        return [g["coordinates"]], []
    if g.get("type") == "MultiPolygon":
        return list(g["coordinates"]), []
    if g.get("type") == "Point" and props.get("radius_m"):
        lon, lat = g["coordinates"][:2]
        return [], [(float(lon), float(lat), float(props["radius_m"]))]
    return [], []


class Frame:
    """Local equirectangular projection fitted into a box of the page (points)."""

    def __init__(
        self, lonlats: list[tuple[float, float, float]], box: tuple[float, float, float, float]
    ) -> None:
        lons = [p[0] for p in lonlats] or [0.0]
        lats = [p[1] for p in lonlats] or [0.0]
        self.lon0 = (min(lons) + max(lons)) / 2
        self.lat0 = (min(lats) + max(lats)) / 2
        self.kx = M_PER_DEG * math.cos(math.radians(self.lat0))
        xs = [self._m(p[0], p[1])[0] for p in lonlats] or [0.0]
        ys = [self._m(p[0], p[1])[1] for p in lonlats] or [0.0]
        pad = [p[2] for p in lonlats] or [0.0]
        ex = max(max(abs(x) + r for x, r in zip(xs, pad, strict=True)), 50.0) * 2.2
        ey = max(max(abs(y) + r for y, r in zip(ys, pad, strict=True)), 50.0) * 2.2
        x, y, w, h = box
        self.box = box
        self.scale = min(w / ex, h / ey)  # points per metre
        self.cx, self.cy = x + w / 2, y + h / 2

    def _m(self, lon: float, lat: float) -> tuple[float, float]:
        return (lon - self.lon0) * self.kx, (lat - self.lat0) * M_PER_DEG

    def xy(self, lon: float, lat: float) -> tuple[float, float]:
        mx, my = self._m(lon, lat)
        return self.cx + mx * self.scale, self.cy + my * self.scale


def _nice(metres: float) -> float:
    """The largest 1, 2 or 5 x 10^k not over `metres`."""
    k = 10 ** math.floor(math.log10(max(metres, 1e-9)))
    return max(m * k for m in (1, 2, 5) if m * k <= metres)


def _zone(c: Canvas, fr: Frame, ev: Evidence) -> None:
    polys, circles = zone_shapes(ev.zone)
    kind = ((ev.zone or {}).get("properties") or {}).get("kind")
    fill, stroke = _INCL if kind == "inclusion" else _EXCL
    c.setFillColor(fill)
    c.setStrokeColor(stroke)
    c.setLineWidth(1.2)
    for rings in polys:
        p = c.beginPath()
        for ring in rings:
            pts = [fr.xy(float(q[0]), float(q[1])) for q in ring]
            p.moveTo(*pts[0])
            for q in pts[1:]:
                p.lineTo(*q)
            p.close()
        c.drawPath(p, stroke=1, fill=1, fillMode=FILL_EVEN_ODD)  # holes stay empty
    for lon, lat, r in circles:
        x, y = fr.xy(lon, lat)
        c.circle(x, y, r * fr.scale, stroke=1, fill=1)


def _track(c: Canvas, fr: Frame, ev: Evidence) -> None:
    pts = fixes(ev)
    c.setLineWidth(0.4)
    c.setStrokeColor(colors.Color(0.55, 0.55, 0.7))
    for f in pts:  # accuracy circles
        x, y = fr.xy(f.lon, f.lat)
        c.circle(x, y, max(f.acc * fr.scale, 0.5), stroke=1, fill=0)
    tag = ev.latest.get("tag")
    line = [fr.xy(f.lon, f.lat) for f in pts if f.tag == tag]
    if len(line) >= 2:
        c.setStrokeColor(_TRACK)
        c.setLineWidth(0.9)
        p = c.beginPath()
        p.moveTo(*line[0])
        for q in line[1:]:
            p.lineTo(*q)
        c.drawPath(p, stroke=1, fill=0)
    c.setFont("Helvetica", 6)
    for f in pts:
        x, y = fr.xy(f.lon, f.lat)
        if f.evidence:
            c.setFillColor(_EVID)
            c.circle(x, y, 2.6, stroke=0, fill=1)
            c.drawString(x + 3.5, y + 2.5, f"#{f.seq}")
        else:
            c.setFillColor(_TRACK)
            c.circle(x, y, 1.3, stroke=0, fill=1)


def _decided(c: Canvas, fr: Frame, detail: dict[str, Any] | None) -> None:
    if not detail or "lat" not in detail:
        return
    x, y = fr.xy(float(detail["lon"]), float(detail["lat"]))
    if "from_lat" in detail:  # decided on the route between two fixes
        route = [fr.xy(float(detail["from_lon"]), float(detail["from_lat"]))]
        if "turn_lat" in detail:  # onward: straight on from the first fix, then a turn
            route.append(fr.xy(float(detail["turn_lon"]), float(detail["turn_lat"])))
        route.append((x, y))
        c.setDash(3, 2)
        c.setStrokeColor(_EVID)
        for (ax, ay), (bx, by) in itertools.pairwise(route):
            c.line(ax, ay, bx, by)
        c.setDash()
    c.setStrokeColor(colors.black)
    c.setLineWidth(1.0)
    c.line(x - 6, y - 6, x + 6, y + 6)
    c.line(x - 6, y + 6, x + 6, y - 6)
    c.setFillColor(colors.black)
    c.setFont("Helvetica-Bold", 7)
    c.drawString(x + 7, y - 9, "decided here")


def _furniture(c: Canvas, fr: Frame) -> None:
    x, y, w, h = fr.box
    metres = _nice(w / 4 / fr.scale)
    bar = metres * fr.scale
    c.setFillColor(colors.black)
    c.setStrokeColor(colors.black)
    c.setLineWidth(1)
    c.rect(x + 10, y + 10, bar, 3, stroke=1, fill=1)
    c.setFont("Helvetica", 7)
    label = f"{metres:g} m" if metres < 1000 else f"{metres / 1000:g} km"
    c.drawString(x + 10, y + 16, label)
    ax, ay = x + w - 18, y + h - 34
    p = c.beginPath()
    p.moveTo(ax, ay + 20)
    p.lineTo(ax - 6, ay)
    p.lineTo(ax, ay + 5)
    p.lineTo(ax + 6, ay)
    p.close()
    c.drawPath(p, stroke=1, fill=1)
    c.setFont("Helvetica-Bold", 8)
    c.drawCentredString(ax, ay + 23, "N")


def draw_map(c: Canvas, ev: Evidence, box: tuple[float, float, float, float]) -> None:
    """The map of `ev` inside `box` (x, y, width, height in points), framed and clipped."""
    polys, circles = zone_shapes(ev.zone)
    pts: list[tuple[float, float, float]] = [
        (float(q[0]), float(q[1]), 0.0) for rings in polys for q in rings[0]
    ]
    pts += [(lon, lat, r) for lon, lat, r in circles]
    pts += [(f.lon, f.lat, f.acc) for f in fixes(ev)]
    det = ev.latest.get("detail") or {}
    for la, lo in (("lat", "lon"), ("from_lat", "from_lon"), ("turn_lat", "turn_lon")):
        if la in det and lo in det:
            pts.append((float(det[lo]), float(det[la]), 0.0))
    fr = Frame(pts, box)
    x, y, w, h = box
    c.saveState()
    c.setStrokeColor(colors.black)
    c.setLineWidth(0.6)
    c.rect(x, y, w, h, stroke=1, fill=0)
    clip = c.beginPath()
    clip.rect(x, y, w, h)
    c.clipPath(clip, stroke=0, fill=0)
    _zone(c, fr, ev)
    _track(c, fr, ev)
    _decided(c, fr, det)
    _furniture(c, fr)
    c.restoreState()
