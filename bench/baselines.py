"""Two baseline breach deciders the engine must beat, on the same replay lines and zones:
`naive` (per-fix point-in-zone) and `simple` (what a competent simple system does:
accuracy margin, 2-fix confirmation, curfew grace, straight-line transit test).

Both emit contract alert records (`engine.wire.alerts.Alert`, stable `alert_id`) for
`zone_breach`, `curfew_breach` and `proximity`, with confidence 1.0: they do not know how
sure they are. Deliberately plain: they are the yardstick, not a second engine."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from shapely.geometry import LineString
from shapely.geometry.base import BaseGeometry

from devices.world.geo import haversine_m
from engine.wire.alerts import Alert, AlertState, Severity, alert_id
from engine.wire.decode import decode_replay_line
from engine.wire.records import FixRecord
from zones.compile import compile_zones
from zones.geofence import signed_distance_by_subject
from zones.kernels.frame import M_PER_DEG_LAT
from zones.model import Protected, ZoneSet
from zones.schedule import is_active

CRITICAL_RISK = 3  # as engine.settings.Settings.critical_risk


@dataclass(frozen=True)
class SimpleSettings:
    """The simple baseline's thresholds."""

    confirm_fixes: int = 2  # consecutive inside fixes to open
    close_fixes: int = 2  # consecutive outside fixes to close
    curfew_grace_s: float = 300.0  # absent this long (while active) before a curfew breach
    transit_depth_m: float = 20.0  # straight line between fixes must go this deep (+ acc)
    transit_max_acc_m: float = 100.0  # fixes worse than this are not used for transit
    transit_max_gap_s: float = 300.0
    max_speed_mps: float = 40.0  # implied speed above this is not a plausible transit


def fixes_of(lines: Iterable[dict[str, Any] | bytes]) -> list[FixRecord]:
    """Decode replay lines (dicts or raw bytes) in arrival order; events and rejects skipped."""
    out: list[FixRecord] = []
    for i, ln in enumerate(lines):
        raw = ln if isinstance(ln, bytes) else json.dumps(ln).encode()
        recs, _ = decode_replay_line(raw, f"line:{i + 1}")
        out += [r for r in recs if isinstance(r, FixRecord)]
    return out


class World:
    """The zone set as the baselines see it: signed distances from the compiled table,
    metric shapely twins for the transit test, schedules, tags and protected devices."""

    def __init__(self, zoneset: ZoneSet) -> None:
        self.zoneset = zoneset
        self.table = compile_zones(zoneset)
        self.zones = list(zoneset.zones)
        self.row = {z.id: self.table.zone_index(z.id) for z in self.zones}
        self.by_row = {self.row[z.id]: z for z in self.zones}
        self.subject_of_tag = {t: s for s in zoneset.subjects for t in s.tags}
        self.protected_devices = {p.device for s in zoneset.subjects for p in s.protected}
        self._shrunk: dict[tuple[int, int], BaseGeometry] = {}
        self._metric: dict[int, BaseGeometry] = {}

    def signed(self, fixes: Sequence[FixRecord]) -> list[list[tuple[int, float]]]:
        """Per fix: (zone row, signed distance m, negative inside) for its subject's zones."""
        out: list[list[tuple[int, float]]] = [[] for _ in fixes]
        idx = [i for i, f in enumerate(fixes) if f.device in self.subject_of_tag]
        if not idx:
            return out
        subj = [self.table.subject_index(self.subject_of_tag[fixes[i].device].id) for i in idx]
        offsets, zidx, dist = signed_distance_by_subject(
            self.table,
            np.array([fixes[i].lat for i in idx]),
            np.array([fixes[i].lon for i in idx]),
            np.array(subj, dtype=np.int64),
        )
        zl, dl = zidx.tolist(), dist.tolist()
        for j, i in enumerate(idx):
            out[i] = list(
                zip(zl[offsets[j] : offsets[j + 1]], dl[offsets[j] : offsets[j + 1]], strict=True)
            )
        return out

    def _xy(self, row: int, lat: float, lon: float) -> tuple[float, float]:
        t = self.table.arrays
        x = (lon - float(t.origin_lon[row])) * float(t.m_per_deg_lon[row])
        return x, (lat - float(t.origin_lat[row])) * M_PER_DEG_LAT

    def _geometry(self, row: int) -> BaseGeometry:
        g = self._metric.get(row)
        if g is None:
            z = self.by_row[row]
            assert z.geometry is not None
            t = self.table.arrays
            lon0, lat0, k = (
                float(t.origin_lon[row]),
                float(t.origin_lat[row]),
                float(t.m_per_deg_lon[row]),
            )
            g = shapely.transform(
                z.geometry,
                lambda c: np.stack([(c[:, 0] - lon0) * k, (c[:, 1] - lat0) * M_PER_DEG_LAT], 1),
            )
            self._metric[row] = g
        return g

    def crosses(self, row: int, a: FixRecord, b: FixRecord, depth: float) -> bool:
        """Whether the straight segment a-b runs at least `depth` metres inside the zone."""
        pa, pb = self._xy(row, a.lat, a.lon), self._xy(row, b.lat, b.lon)
        t = self.table.arrays
        if bool(t.is_circle[row]):
            return _point_segment(0.0, 0.0, pa, pb) <= float(t.radius[row]) - depth
        key = (row, math.ceil(depth))
        inner = self._shrunk.get(key)
        if inner is None:
            inner = self._shrunk[key] = self._geometry(row).buffer(-float(key[1]))
        return not inner.is_empty and LineString([pa, pb]).intersects(inner)

    def active(self, row: int, t: float) -> bool:
        return is_active(self.by_row[row].schedule, t)


def _point_segment(px: float, py: float, a: tuple[float, float], b: tuple[float, float]) -> float:
    ax, ay = a
    dx, dy = b[0] - ax, b[1] - ay
    L2 = dx * dx + dy * dy
    s = 0.0 if L2 == 0 else max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / L2))
    return math.hypot(ax + s * dx - px, ay + s * dy - py)


@dataclass
class _Open:
    id: str
    opened_t: float
    raised_t: float
    evidence: list[tuple[str, int]] = field(default_factory=list)


class Book:
    """Open episodes per (subject, zone, kind); emits open/closed records in order."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.open: dict[tuple[str, str, str], _Open] = {}
        self.out: list[Alert] = []

    def _record(
        self,
        key: tuple[str, str, str],
        ep: _Open,
        tag: str,
        state: AlertState,
        closed: float | None,
    ) -> Alert:
        subject, zone, kind = key
        s = next(x for x in self.world.zoneset.subjects if x.id == subject)
        sev: Severity = "high"
        if kind == "proximity" or (kind == "zone_breach" and s.risk >= CRITICAL_RISK):
            sev = "critical"
        return Alert(
            id=ep.id,
            kind=kind,
            state=state,
            subject=subject,
            tag=tag,
            zone=zone,
            severity=sev,
            confidence=1.0,
            opened_t=ep.opened_t,
            raised_t=ep.raised_t,
            closed_t=closed,
            evidence=list(ep.evidence),
        )

    def is_open(self, key: tuple[str, str, str]) -> bool:
        return key in self.open

    def raise_(self, key: tuple[str, str, str], evidence: list[FixRecord], raised_t: float) -> None:
        if key in self.open:
            ep = self.open[key]
            if len(ep.evidence) < 50:
                ep.evidence.append((evidence[-1].device, evidence[-1].seq))
            return
        first = evidence[0]
        ep = _Open(
            alert_id(key[0], key[1], key[2], (first.device, first.seq)),
            first.t,
            raised_t,
            [(f.device, f.seq) for f in evidence],
        )
        self.open[key] = ep
        self.out.append(self._record(key, ep, first.device, "open", None))

    def close(self, key: tuple[str, str, str], t: float) -> None:
        ep = self.open.pop(key, None)
        if ep is not None:
            self.out.append(self._record(key, ep, ep.evidence[0][0], "closed", t))


def naive(lines: Iterable[dict[str, Any] | bytes], zoneset: ZoneSet) -> list[Alert]:
    """Per fix in arrival order (no dedupe, no ordering): inside the polygon (outside the
    active curfew zone, within the protected radius of the latest phone fix) opens an
    episode if none is open; anything else closes it."""
    world = World(zoneset)
    book = Book(world)
    fixes = fixes_of(lines)
    signed = world.signed(fixes)
    phone: dict[str, FixRecord] = {}
    for f, sds in zip(fixes, signed, strict=True):
        if f.device in world.protected_devices:
            phone[f.device] = f  # the latest to arrive
            continue
        s = world.subject_of_tag.get(f.device)
        if s is None:
            continue
        for row, sd in sds:
            z = world.by_row[row]
            on = world.active(row, f.t) if z.schedule else True
            breach = on and (sd < 0 if z.kind == "exclusion" else sd > 0)
            key = (s.id, z.id, "zone_breach" if z.kind == "exclusion" else "curfew_breach")
            if breach:
                book.raise_(key, [f], f.t)
            else:
                book.close(key, f.t)
        for p in s.protected:
            v = phone.get(p.device)
            if v is None:
                continue
            key = (s.id, p.device, "proximity")
            if float(haversine_m(f.lat, f.lon, v.lat, v.lon)) < p.radius_m:
                book.raise_(key, [f], f.t)
            else:
                book.close(key, f.t)
    return book.out


@dataclass
class _Streak:
    inside: list[FixRecord] = field(default_factory=list)
    outside: int = 0
    absent_from: FixRecord | None = None
    prev_inside: bool = False  # the tag's previous fix counted inside this zone


def simple(
    lines: Iterable[dict[str, Any] | bytes], zoneset: ZoneSet, cfg: SimpleSettings | None = None
) -> list[Alert]:
    """A competent simple system: drop duplicate and out-of-date fixes (older than the
    tag's latest); a fix is inside only when signed distance < -acc; open after
    `confirm_fixes` consecutive inside fixes or when the straight line from the previous
    fix runs `transit_depth_m` (+ acc) deep at a plausible speed; close after
    `close_fixes` fixes outside the polygon. Curfew: outside by more than acc for
    `curfew_grace_s` while active. Proximity: within radius minus both accuracies of the
    newest phone fix, confirmed the same way."""
    cfg = cfg or SimpleSettings()
    world = World(zoneset)
    book = Book(world)
    seen: set[tuple[str, int]] = set()
    last: dict[str, FixRecord] = {}
    phone: dict[str, FixRecord] = {}
    streak: dict[tuple[str, str], _Streak] = {}
    fixes = fixes_of(lines)
    for f, sds in zip(fixes, world.signed(fixes), strict=True):
        if (f.device, f.seq) in seen:
            continue
        seen.add((f.device, f.seq))
        if f.device in world.protected_devices:
            if f.device not in phone or f.t > phone[f.device].t:
                phone[f.device] = f
            continue
        s = world.subject_of_tag.get(f.device)
        prev = last.get(f.device)
        if s is None or (prev is not None and f.t <= prev.t):
            continue  # unknown, or older than what we already acted on
        last[f.device] = f
        for row, sd in sds:
            z = world.by_row[row]
            st = streak.setdefault((f.device, z.id), _Streak())
            if z.kind == "inclusion":
                _curfew(world, book, cfg, s.id, row, z.id, f, sd, st)
            else:
                _exclusion(world, book, cfg, s.id, row, z.id, f, sd, st, prev)
        for p in s.protected:
            v = phone.get(p.device)
            if v is not None:
                st = streak.setdefault((f.device, p.device), _Streak())
                _proximity(book, cfg, s.id, p, f, v, st)
    return book.out


def _confirm(
    book: Book,
    cfg: SimpleSettings,
    key: tuple[str, str, str],
    f: FixRecord,
    inside: bool,
    outside: bool,
    st: _Streak,
) -> None:
    if inside:
        st.inside.append(f)
        st.outside = 0
        if len(st.inside) >= cfg.confirm_fixes:
            book.raise_(key, st.inside, f.t)
            st.inside = st.inside[-1:]
    else:
        st.inside = []
        if outside:
            st.outside += 1
            if st.outside >= cfg.close_fixes:
                book.close(key, f.t)


def _exclusion(
    world: World,
    book: Book,
    cfg: SimpleSettings,
    subject: str,
    row: int,
    zone: str,
    f: FixRecord,
    sd: float,
    st: _Streak,
    prev: FixRecord | None,
) -> None:
    key = (subject, zone, "zone_breach")
    z = world.by_row[row]
    if z.schedule and not world.active(row, f.t):
        book.close(key, f.t)
        st.inside, st.outside = [], 0
        return
    inside = sd < -f.acc
    _confirm(book, cfg, key, f, inside, sd > 0, st)
    was_inside, st.prev_inside = st.prev_inside, inside
    if inside or was_inside or book.is_open(key) or prev is None:
        return  # the transit test is for two fixes that are both not inside
    gap = f.t - prev.t
    if not 0 < gap <= cfg.transit_max_gap_s or max(f.acc, prev.acc) > cfg.transit_max_acc_m:
        return
    dist = float(haversine_m(prev.lat, prev.lon, f.lat, f.lon))
    if dist / gap > cfg.max_speed_mps or sd > dist:
        return
    if world.crosses(row, prev, f, cfg.transit_depth_m + max(f.acc, prev.acc)):
        book.raise_(key, [prev, f], f.t)  # it must have crossed: a breach, already over
        book.close(key, f.t)


def _curfew(
    world: World,
    book: Book,
    cfg: SimpleSettings,
    subject: str,
    row: int,
    zone: str,
    f: FixRecord,
    sd: float,
    st: _Streak,
) -> None:
    key = (subject, zone, "curfew_breach")
    if not world.active(row, f.t):
        book.close(key, f.t)
        st.absent_from, st.outside = None, 0
        return
    if sd > f.acc:  # clearly away from home
        st.outside = 0
        if st.absent_from is None:
            st.absent_from = f
        if f.t - st.absent_from.t >= cfg.curfew_grace_s:
            book.raise_(key, [st.absent_from, f], f.t)
    elif sd <= 0:  # home
        st.absent_from = None
        st.outside += 1  # here: consecutive fixes back home
        if st.outside >= cfg.close_fixes:
            book.close(key, f.t)


def _proximity(
    book: Book,
    cfg: SimpleSettings,
    subject: str,
    p: Protected,
    f: FixRecord,
    v: FixRecord,
    st: _Streak,
) -> None:
    d = float(haversine_m(f.lat, f.lon, v.lat, v.lon))
    key = (subject, p.device, "proximity")
    _confirm(book, cfg, key, f, d < p.radius_m - (f.acc + v.acc), d > p.radius_m, st)
