"""Did a tag cross a zone between two fixes? The straight segment's depth says it could
have; a route round the zone no longer than the tag could have driven at the speed it was
already going says it need not have. `Routes` turns both (and the onward route a fast tag
may have taken) into breach evidence, whose `detail` gives the route: the deciding (second)
fix, the fix it started from and, for an onward route, where it would have turned."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely

from engine.core.decide import BreachTracker, Crossing, Obs
from engine.core.episodes import R68_PER_SIGMA as R68
from engine.core.episodes import TrackerKey, TrackerKind, prob_below
from engine.core.history import speed
from engine.core.observe import graded_cap
from engine.core.registry import Registry
from engine.core.trackers import Trackers
from engine.settings import Settings
from engine.wire.alerts import Severity
from engine.wire.records import ROW_ACC, ROW_LAT, ROW_LON, ROW_T
from zones.compile import ZoneTable
from zones.geofence import point_distance_m, segment_depth, signed_distance_by_subject
from zones.jit import njit

R_EARTH = 6371008.8


def _xy(lat: float, lon: float, lat0: float, lon0: float) -> tuple[float, float]:
    k = math.pi / 180.0 * R_EARTH
    return (lon - lon0) * k * math.cos(math.radians(lat0)), (lat - lat0) * k


def zone_points(table: ZoneTable, zone: int) -> np.ndarray:
    """The zone's points in its local frame (metres), whose hull `detour_m` goes round: a
    circle's 64-gon or a polygon's vertices (every ring's)."""
    za = table.arrays
    if za.is_circle[zone]:
        r = float(za.radius[zone])
        ang = np.linspace(0.0, 2 * np.pi, 64, endpoint=False)
        return np.stack([r * np.cos(ang), r * np.sin(ang)], axis=1)
    rings = za.rings
    r0, r1 = int(rings.zone_ring_start[zone]), int(rings.zone_ring_start[zone + 1])
    v0, v1 = int(rings.ring_vert_start[r0]), int(rings.ring_vert_start[r1])
    return np.stack([rings.vx[v0:v1], rings.vy[v0:v1]], axis=1)


def detour_m(
    table: ZoneTable, zone: int, a: tuple[float, float], b: tuple[float, float],
    pts: np.ndarray | None = None,
) -> float:  # fmt: skip
    """Length of the shortest route from A to B that keeps outside the zone's convex hull:
    the shorter of the two chains of hull(zone + A + B) between A and B. The hull makes this
    an upper bound on going round the real zone, so it errs towards calling a crossing.
    `pts`: zone_points(table, zone), when the caller keeps them."""
    za = table.arrays
    lat0 = float(za.origin_lat[zone])
    lon0 = float(za.origin_lon[zone])
    ax, ay = _xy(*a, lat0, lon0)
    bx, by = _xy(*b, lat0, lon0)
    if pts is None:
        pts = zone_points(table, zone)
    allpts = np.vstack([pts, [[ax, ay], [bx, by]]])
    hull = shapely.convex_hull(shapely.multipoints(allpts))
    ring = np.asarray(hull.exterior.coords)[:-1] if hull.geom_type == "Polygon" else allpts
    ia = int(np.argmin(np.hypot(ring[:, 0] - ax, ring[:, 1] - ay)))
    ib = int(np.argmin(np.hypot(ring[:, 0] - bx, ring[:, 1] - by)))
    seg = np.hypot(*(np.roll(ring, -1, axis=0) - ring).T)
    n = ring.shape[0]
    lo, hi = sorted((ia, ib))
    one = float(seg[lo:hi].sum())
    other = float(seg.sum()) - one
    if hi == lo or n < 3:
        return math.hypot(bx - ax, by - ay)
    return min(one, other)


def onward_paths(
    p: np.ndarray, a: np.ndarray, b: np.ndarray, slack: float, turn_s: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The route from A to B that keeps going the way the tag was going for as long as it
    can: straight on from A on the heading it came in on (P -> A), then one turn to B,
    the whole route as long as the speed it came in at allows in the time to B (x slack).
    Where no fix says what happened in between, this is the route that would take a tag
    driving at a zone furthest into it. Rows of fixes (t, lat, lon, ...).

    A vehicle slows for a corner: a turn through angle phi costs turn_s * (1 - cos phi)
    seconds at the speed in (a right angle costs turn_s, a gentle bend almost nothing),
    so a route that needs a sharp turn to reach B cannot have gone as far on.

    Returns (turn lat, turn lon, metres A -> turn, route metres); NaN where there is no
    such route (a heading unknown, or B further than the tag could have got)."""
    lat0, lon0 = a[:, 1], a[:, 2]
    k = math.pi / 180.0 * R_EARTH
    cos0 = np.cos(np.radians(lat0))
    px, py = (p[:, 2] - lon0) * k * cos0, (p[:, 1] - lat0) * k
    bx, by = (b[:, 2] - lon0) * k * cos0, (b[:, 1] - lat0) * k
    run = np.hypot(px, py)
    ab = np.hypot(bx, by)
    speed = run / (a[:, 0] - p[:, 0])
    budget = speed * (b[:, 0] - a[:, 0]) * slack
    with np.errstate(invalid="ignore", divide="ignore"):
        ux, uy = -px / run, -py / run
        q = bx * ux + by * uy  # how far B is along the heading
        # s + |A + s u - B| = budget  =>  s = (budget^2 - |AB|^2) / (2 (budget - q))
        s = (budget**2 - ab**2) / (2.0 * (budget - q))
        ok = np.isfinite(s) & (budget > ab) & (run > 0.0)
        if turn_s > 0.0:
            s = _turn_bisect(bx, by, ux, uy, q, np.where(ok, s, 0.0), speed * turn_s, budget)
    s = np.where(ok, s, np.nan)
    return lat0 + s * uy / k, lon0 + s * ux / (k * cos0), s, np.where(ok, budget, np.nan)


@njit
def _turn_bisect(
    bx: np.ndarray,
    by: np.ndarray,
    ux: np.ndarray,
    uy: np.ndarray,
    q: np.ndarray,
    s_free: np.ndarray,
    cost: np.ndarray,
    budget: np.ndarray,
) -> np.ndarray:
    """Per row: the longest straight leg s in [0, s_free] whose route A -> K -> B plus the
    turn at K (cost x (1 - cos phi)) fits the budget. The spent length only grows with s
    (going further on makes the turn back sharper), so bisection finds it."""
    out = np.empty(bx.shape[0])
    for i in range(bx.shape[0]):
        lo, hi = 0.0, s_free[i]
        if not hi > 0.0:
            out[i] = 0.0
            continue
        for _ in range(48):
            mid = 0.5 * (lo + hi)
            tx, ty = bx[i] - mid * ux[i], by[i] - mid * uy[i]
            kb = math.sqrt(tx * tx + ty * ty)
            cos_phi = (q[i] - mid) / kb if kb > 0.0 else 1.0
            if mid + kb + cost[i] * (1.0 - cos_phi) > budget[i]:
                hi = mid
            else:
                lo = mid
        out[i] = lo
    return out


# (zone, depth, entry t, exit t, turn lat, turn lon) of a possible route from the previous
# fix into a zone
Onward = list[tuple[int, float, float, float, float, float]]


@dataclass(eq=False)
class Routes:
    """Breaches inferred from the route between two fixes of a tag, both outside: the
    straight segment through an exclusion zone (a drive-through), or an onward route."""

    table: ZoneTable
    registry: Registry
    settings: Settings
    trackers: Trackers
    is_inclusion: np.ndarray
    # Whether a zone is in force at a time (scheduled exclusion zones); None: always
    binds: Callable[[int, float], bool] | None = None
    # zone_points of the zones a detour went round
    _points: dict[int, np.ndarray] = field(init=False, default_factory=dict, repr=False)

    def transit_pairs(
        self,
        tags: np.ndarray,
        prev: np.ndarray,
        pair_fix: np.ndarray,
        zidx: np.ndarray,
        dist: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(pair index, depth, entry fraction, exit fraction) for exclusion-zone pairs whose
        straight segment from the previous fix goes into the zone."""
        empty = np.zeros(0, dtype=np.int64)
        if zidx.shape[0] == 0:
            return empty, np.zeros(0), np.zeros(0), np.zeros(0)
        p = prev[pair_fix]
        seg = point_distance_m(p[:, 1], p[:, 2], tags["lat"][pair_fix], tags["lon"][pair_fix])
        cand = np.flatnonzero(~self.is_inclusion[zidx] & np.isfinite(seg) & (dist < seg))
        if cand.shape[0] == 0:
            return empty, np.zeros(0), np.zeros(0), np.zeros(0)
        f = pair_fix[cand]
        depth, f_in, f_out = segment_depth(
            self.table, prev[f, 1], prev[f, 2], tags["lat"][f], tags["lon"][f], zidx[cand]
        )
        keep = depth >= self.settings.transit_min_depth_m
        return cand[keep], depth[keep], f_in[keep], f_out[keep]

    def onward_rows(self, b: np.ndarray, hist: np.ndarray, subj: np.ndarray) -> dict[int, Onward]:
        """Tag row B (t, lat, lon, acc, seq) -> (zone, depth, entry t, exit t, turn lat, turn
        lon) for exclusion zones that a tag moving at speed may have gone into between fix A
        and B while the straight segment does not: it kept going the way it was going
        (P -> A) as far as its speed allows, then turned for B at the turn (`onward_paths`).
        A possible breach, decided at B."""
        st = self.settings
        if not st.onward_routes:
            return {}
        p, a = hist[:, 1], hist[:, 0]
        gap = st.transit_max_gap_s
        ok = (
            np.isfinite(p[:, 0])
            & (a[:, 0] - p[:, 0] > 0) & (a[:, 0] - p[:, 0] <= gap)
            & (b[:, 0] - a[:, 0] > 0) & (b[:, 0] - a[:, 0] <= gap)
        )  # fmt: skip
        rows = np.flatnonzero(ok)
        if rows.shape[0] == 0:
            return {}
        p, a, b = p[rows], a[rows], b[rows]
        v_in = point_distance_m(p[:, 1], p[:, 2], a[:, 1], a[:, 2]) / (a[:, 0] - p[:, 0])
        v_ab = point_distance_m(a[:, 1], a[:, 2], b[:, 1], b[:, 2]) / (b[:, 0] - a[:, 0])
        moving = np.flatnonzero(
            (v_in >= st.onward_min_speed_mps) & (v_ab >= st.onward_min_speed_mps)
        )
        if moving.shape[0] == 0:
            return {}
        rows, p, a, b = rows[moving], p[moving], a[moving], b[moving]
        klat, klon, s_m, length = onward_paths(p, a, b, st.onward_speed_slack, st.onward_turn_s)
        keep = np.flatnonzero(np.isfinite(length))
        if keep.shape[0] == 0:
            return {}
        rows, a, b, klat, klon = rows[keep], a[keep], b[keep], klat[keep], klon[keep]
        s_m, length = s_m[keep], length[keep]
        reach = np.maximum(s_m, length - s_m)  # every point of the route is this near K
        offsets, zidx, dist = signed_distance_by_subject(
            self.table, klat, klon, subj[rows], cutoff=float(np.max(reach))
        )
        pair = np.repeat(np.arange(rows.shape[0]), np.diff(offsets))
        cand = np.flatnonzero(~self.is_inclusion[zidx] & (dist < reach[pair]))
        if cand.shape[0] == 0:
            return {}
        f, z = pair[cand], zidx[cand]
        d0, _, _ = segment_depth(self.table, a[f, 1], a[f, 2], b[f, 1], b[f, 2], z)
        # Only the straight-on leg counts: the turn back to B is where the route is made up
        depth, f_in, f_out = segment_depth(self.table, a[f, 1], a[f, 2], klat[f], klon[f], z)
        sig = np.maximum(np.maximum(a[f, 3], b[f, 3]), st.acc_floor_m) / R68
        use = (
            (depth >= st.transit_min_depth_m) & (depth >= 2.0 * sig)
            & ~(d0 >= st.transit_min_depth_m)  # the straight segment had its say
        )  # fmt: skip
        # Entry and exit along A -> K as fractions of the route A -> K -> B, then as times
        frac = s_m[f] / length[f]
        f_in, f_out = f_in * frac, f_out * frac
        dt = b[f, 0] - a[f, 0]
        out: dict[int, Onward] = {}
        for j in np.flatnonzero(use).tolist():
            t_in = float(a[f[j], 0] + f_in[j] * dt[j])
            t_out = float(a[f[j], 0] + f_out[j] * dt[j])
            turn = (float(klat[f[j]]), float(klon[f[j]]))
            out.setdefault(int(rows[f[j]]), []).append(
                (int(z[j]), float(depth[j]), t_in, t_out, *turn)
            )
        return out

    def transit_step(
        self, row: np.void, prev: np.ndarray, pprev: np.ndarray, z: int,
        depth: float, f_in: float, f_out: float,
    ) -> None:  # fmt: skip
        """The straight segment prev -> row goes `depth` metres into zone z."""
        st, table = self.settings, self.table
        f = row.item()  # every field at once (FIX_DTYPE): cheaper than two by name
        t0, t1 = float(prev[0]), f[ROW_T]
        dt = t1 - t0
        if not (0.0 < dt <= st.transit_max_gap_s):
            return
        a = (float(prev[1]), float(prev[2]))
        b = (f[ROW_LAT], f[ROW_LON])
        sig = max(float(prev[3]), f[ROW_ACC], st.acc_floor_m) / R68
        if depth < 2.0 * sig:
            return
        if self.binds is None:
            br = self.trackers.live.get(TrackerKey(TrackerKind.ZONE, z))
            if br is not None and br.episode is not None:
                # Open already: BreachTracker.transit ignores the route, and nothing on the
                # way to it has an effect (the zone is tracked while its tracker lives; a
                # schedule lookup may expand its cache, hence only with no schedules)
                return
        cap = st.transit_confidence_max
        way = 1.0  # how far towards the cap the speed-up a route round needs goes
        v_in = math.nan  # the speed the tag was going before the segment (unknown: NaN)
        if np.isfinite(pprev[0]) and pprev[0] < t0:
            # The speed the tag was already going says how far it could drive in dt. If a
            # route round the zone fits in that, a straight-line crossing is not evidence
            # (a ring road, a corner); a drive-through needs a speed-up to avoid the zone,
            # and the more it needs, the surer the crossing (graded from
            # likely_confidence_min at the budget to the cap at transit_speedup more)
            v_in = speed(pprev, prev)
            if np.isfinite(v_in) and v_in > 0.0:
                budget = v_in * dt * st.transit_speed_slack
                pts = self._points.get(z)
                if pts is None:
                    pts = self._points[z] = zone_points(table, z)
                detour = detour_m(table, z, a, b, pts)
                if detour <= budget:
                    return
                way = min((detour / budget - 1.0) / st.transit_speedup, 1.0)
                cap = graded_cap(st, cap, way)
        route = "segment"
        ends_inside = float(f_out) >= 1.0
        if ends_inside and not v_in >= st.transit_inside_min_speed_mps:
            # Ending inside, the segment says no more than its last fix does, which the
            # breach tracker has judged already (a burst, drift beside a steady track): from
            # a track not going at a vehicle's pace it is a possible breach, no more
            cap = min(cap, st.possible_confidence_max)
        if way >= 1.0 and not ends_inside and st.straight_crossings:
            # Seen both ways: `prev` lies on the straight, steady track from the fix before
            # it to `row`, so going round needed the speed-up above between two fixes of a
            # steady drive. Deeper than a transit must be and than a burst from `row` on
            # (unseen by that check) could have moved the segment: a crossing
            shift = _track_gap(pprev, prev, (t1, b[0], b[1], f[ROW_ACC]), st)
            need = max(st.transit_min_depth_m, 2.0 * sig)
            if math.isfinite(shift) and depth >= need + float(f_out) * min(
                shift, st.steady_burst_max_m
            ):
                cap, route = st.crossing_confidence_max, "crossing"
        conf = min(prob_below(float(depth), sig), cap)
        t_in, t_out = t0 + float(f_in) * dt, t0 + float(f_out) * dt
        where = _route(row, prev, depth, route)
        self._breach(row, prev, z, sig, conf, t_in, t_out, ends_inside, where)

    def crossing_step(self, row: np.void, prev: np.ndarray, pprev: np.ndarray, z: int) -> None:
        """When `prev` is a fix of the short run inside that opened zone z's open episode
        (at most crossing_max_fixes so far): while each fix of the run lies where the
        straight track through the fixes either side of it, at a steady speed, puts it
        (within crossing_sigmas combined sigmas), the run is followed (br.crossing); when
        `row`, the first fix after it, is outside and the straight track from the fix before
        the run to `row` is inside the zone all through the run, deeper than a transit must
        be and than a burst could have moved it, it was a crossing: confidence rises. A wild
        fix lands anywhere; a multipath burst off a track outside the zone stays off it."""
        st = self.settings
        br = self.trackers.live.get(TrackerKey(TrackerKind.ZONE, z))
        tf = float(prev[0])
        if not (isinstance(br, BreachTracker) and br.crossing_run(tf, st.crossing_max_fixes)):
            return
        ep = br.episode
        assert ep is not None
        f = row.item()
        tn = f[ROW_T]
        c = br.crossing
        first = tf == ep.opened_t  # the run's first fix: the track starts at the one before
        if first:
            c = Crossing(
                float(pprev[0]), float(pprev[1]), float(pprev[2]), float(pprev[3]), tf, 0.0
            )
        elif c is None or c.upto != tf:  # not followed up to here
            br.crossing = None
            return
        br.crossing = None
        b = (tn, f[ROW_LAT], f[ROW_LON], f[ROW_ACC])
        shift = _track_gap(pprev, prev, b, st)
        if not (tn - c.t <= st.transit_max_gap_s and math.isfinite(shift)):
            return
        if first:  # a burst shifting the run and all after it together passed unseen
            c = c._replace(shift=min(shift, st.steady_burst_max_m))
        if br.run_from is not None:  # `row` is inside: the run goes on
            br.crossing = c._replace(upto=tn)
            return
        d, f_in, f_out = segment_depth(
            self.table, [c.lat], [c.lon], [b[1]], [b[2]], np.array([z])
        )  # fmt: skip
        span = tn - c.t
        a0, a1 = (ep.opened_t - c.t) / span, (tf - c.t) / span
        depth = float(d[0])
        sig = max(c.acc, b[3], st.acc_floor_m) / R68
        # A burst that began after the fix before the run and still shifts the fix after it
        # moves the track at the run's last fix by up to a1 x that shift: deeper than that,
        # no burst of a track outside made it
        base = max(st.transit_min_depth_m, 2.0 * sig)
        need = base + a1 * c.shift
        if not (f_in[0] <= a0 and a1 <= f_out[0]) or depth < base:
            return
        cap = st.crossing_confidence_max
        if depth < need:
            # On the track and deep enough for a transit, but a burst shifting the run and
            # the fix after it together could have put a track outside there: from a tag at
            # a vehicle's pace (a person beside the zone does not draw a chord this deep)
            # it is likely, ranked by how much of that shift the depth rules out
            if not speed(c, b) >= st.crossing_likely_min_speed_mps:
                return
            cap = graded_cap(st, st.transit_confidence_max, (depth - base) / (need - base))
        conf = min(prob_below(depth, sig), cap)
        tag = self.registry.device_ids[int(row["slot"])]
        start = np.array(c[:4], dtype=np.float64)  # the fix before the run: t, lat, lon, acc
        br.corroborate(
            Obs(tn, -1.0, sig, tag, int(row["seq"])), conf, _route(row, start, depth, "crossing")
        )

    def onward_step(
        self, row: np.void, a: np.ndarray, z: int, depth: float, t_in: float, t_out: float,
        turn: list[float] | tuple[float, ...] = (),
    ) -> None:  # fmt: skip
        """A possible route from fix A through the zone: a low-confidence breach. `turn`:
        (lat, lon) where the route turns for the deciding fix."""
        st = self.settings
        sig = max(float(a[3]), float(row["acc"]), st.acc_floor_m) / R68
        conf = min(prob_below(depth, sig), st.possible_confidence_max)
        where = _route(row, a, depth, "onward")
        if len(turn) == 2:
            where.update(turn_lat=round(float(turn[0]), 6), turn_lon=round(float(turn[1]), 6))
        self._breach(row, a, z, sig, conf, t_in, t_out, False, where)

    def _breach(
        self, row: np.void, start: np.ndarray, z: int, sig: float, conf: float,
        t_in: float, t_out: float, ends_inside: bool, where: dict[str, Any],
    ) -> None:  # fmt: skip
        """A breach inferred from the route between fixes: from the fix `start` (outside)
        to an entry at t_in, decided at `row`; `where`: the record's detail."""
        st, reg, table = self.settings, self.registry, self.table
        if table.has_validity:
            # Decided on a fix while the zone binds, and only the part of the route inside
            # its validity is a breach of it (a route decided at or after valid_until is
            # not: the episode it would join has been closed at valid_until)
            lo, hi = float(table.valid_from[z]), float(table.valid_until[z])
            if not lo <= float(row["t"]) < hi or (t_out <= lo and not ends_inside):
                return
            t_in = max(t_in, lo)
        if self.binds is not None and not (self.binds(z, t_in) and self.binds(z, float(row["t"]))):
            # A scheduled exclusion zone: entered while it was not in force, or decided
            # after its window ended (the episode it would join was closed at the end)
            return
        tag = reg.device_ids[int(row["slot"])]
        s = int(table.subject[z])
        subject, zone_id = reg.subject_ids[s], table.zone_ids[z]
        risk = int(reg.subject_risk[s])
        sev: Severity = "critical" if risk >= st.critical_risk else "high"
        key = TrackerKey(TrackerKind.ZONE, z)
        br = self.trackers.breach(key, "zone_breach", subject, zone_id, sev)
        first = Obs(float(start[0]), -1.0, sig, tag, int(start[4]))
        last = Obs(float(row["t"]), -1.0, sig, tag, int(row["seq"]))
        br.transit(first, last, t_in, t_out, conf, ends_inside, where)
        self.trackers.forget_if_idle(key, z)


def _track_gap(a: Any, m: Any, b: Any, st: Settings) -> float:
    """If fix `m` lies within crossing_sigmas combined sigmas of where the straight track
    from fix `a` to fix `b` at a steady speed is at its time ((t, lat, lon, acc) each), the
    largest shift of `m` and `b` together (a multipath burst from `m` on) that would still
    pass this check; NaN when it does not lie there or the times are not in order."""
    ta, tm, tb = float(a[0]), float(m[0]), float(b[0])
    if not ta < tm < tb:
        return math.nan
    lat0, lon0 = float(m[1]), float(m[2])  # m is the origin
    ax, ay = _xy(float(a[1]), float(a[2]), lat0, lon0)
    bx, by = _xy(float(b[1]), float(b[2]), lat0, lon0)
    k = (tm - ta) / (tb - ta)
    sa, sm, sb = (max(float(x[3]), st.acc_floor_m) / R68 for x in (a, m, b))
    tol = st.crossing_sigmas * math.sqrt(((1.0 - k) * sa) ** 2 + (k * sb) ** 2 + sm**2)
    if math.hypot(ax + k * (bx - ax), ay + k * (by - ay)) > tol:
        return math.nan
    return tol / (1.0 - k)  # m and b shifted by d move m off the track by (1 - k) d


def _route(row: np.void, start: np.ndarray, depth: float, route: str = "segment") -> dict[str, Any]:
    """Where a route breach was decided: the deciding fix `row` (t, lat, lon, acc), how far
    the route goes into the zone (`depth_m`) and the fix it started from (`from_*`, a
    history row: t, lat, lon, acc). Rounded like engine.core.episodes.where_of."""
    return {
        "t": float(row["t"]), "lat": round(float(row["lat"]), 6),
        "lon": round(float(row["lon"]), 6), "acc": round(float(row["acc"]), 1),
        "depth_m": round(float(depth), 1), "route": route, "from_t": float(start[0]),
        "from_lat": round(float(start[1]), 6), "from_lon": round(float(start[2]), 6),
        "from_acc": round(float(start[3]), 1),
    }  # fmt: skip
