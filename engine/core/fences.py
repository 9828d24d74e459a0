"""Zones against one fix: which (fix, zone) pairs of a batch can change a decision, what
each such pair tells the exclusion (breach, approach ring) and curfew trackers, and how
much a silence matters where a tag was last seen."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import cast

import numpy as np

from engine.core.decide import BURST_FORGET_M, BreachTracker, CurfewTracker, Obs
from engine.core.episodes import TrackerKey, TrackerKind, Where
from engine.core.registry import Registry
from engine.core.schedules import Schedules
from engine.core.trackers import Trackers
from engine.settings import Settings
from engine.wire.alerts import Severity
from engine.wire.records import ROW_SEQ, ROW_SLOT, ROW_T
from zones.compile import ZoneTable
from zones.geofence import signed_distance_by_subject

# Whether `Fences.idle_rows` may spare the walk the steps that provably change nothing
# (off: every such step is taken; tests/test_prune.py compares the two)
PRUNE = True
# The episodes of one zone: (tracker kind, alert kind)
_ZONE_EPISODES = (
    (TrackerKind.ZONE, "zone_breach"),
    (TrackerKind.APPROACH, "zone_approach"),
    (TrackerKind.CURFEW, "curfew_breach"),
)


@dataclass(eq=False)
class Fences:
    """The compiled zones as the decisions see them: inclusion (curfew) or exclusion, each
    exclusion zone's warn ring, and the trackers their evidence feeds."""

    table: ZoneTable
    registry: Registry
    settings: Settings
    schedules: Schedules
    trackers: Trackers
    is_inclusion: np.ndarray = field(init=False)
    warn: np.ndarray = field(init=False)
    cutoff: float = field(init=False)
    _zones: dict[int, tuple[bool, str, str, int, float, TrackerKey, TrackerKey]] = field(
        init=False, default_factory=dict, repr=False
    )

    def __post_init__(self) -> None:
        table = self.table
        self.is_inclusion = np.asarray(table.kind) == 1
        self.warn = np.asarray(table.warn_m, dtype=np.float64)
        # A zone breach tracker follows a track from this far out: a jump into the zone is
        # judged against the course or the steady level that led up to it (multipath
        # bursts, a steady track beside the zone: Settings.burst_*, steady_*)
        st = self.settings
        follow = st.burst_max_fixes > 0 or st.steady_window_s > 0.0
        self.lead = np.maximum(self.warn, BURST_FORGET_M if follow else 0.0)
        # Beyond this distance a zone cannot matter to any fix: the kernel may skip it.
        self.cutoff = float(np.max(table.warn_m, initial=0.0)) + 3000.0

    def near_pairs(
        self,
        tags: np.ndarray,
        pair_fix: np.ndarray,
        zidx: np.ndarray,
        dist: np.ndarray,
        sigma: np.ndarray,
    ) -> np.ndarray:
        """Indices of (fix, zone) pairs whose evidence can change a decision; most fixes are
        far from every zone of their subject and never reach Python-level decisions."""
        if zidx.shape[0] == 0:
            return np.zeros(0, dtype=np.int64)
        incl = self.is_inclusion[zidx]
        margin = 4.0 * sigma
        cand = np.where(incl, dist > -margin, dist <= self.lead[zidx] + margin)
        limited = self.schedules.limited
        if limited or incl.any():
            t = tags["t"][pair_fix]
        if limited:  # an exclusion zone counts only while it binds
            cand &= incl | self.schedules.binds_mask(zidx, t)
        if incl.any():
            cand[incl] &= self.schedules.active_or_soon_pairs(zidx[incl], t[incl], 3600.0)
        # A zone touched anywhere in the batch, or already being tracked, is followed for
        # every fix of the batch: later far fixes are what closes its episode.
        follow = self.trackers.tracked.copy()  # per zone (zidx indexes zones)
        follow[zidx[cand]] = True
        return np.flatnonzero(follow[zidx])

    def idle_rows(
        self, tags: np.ndarray, pair_row: np.ndarray, zidx: np.ndarray, sd: np.ndarray,
        sigma: np.ndarray,
    ) -> np.ndarray:  # fmt: skip
        """Of (fix, zone) pairs about to be stepped (`pair_row` increasing: each pair's fix
        row of `tags`; `sigma`: each pair's fix's), those whose `step`, whenever the walk
        reaches them, provably changes nothing but the schedule cache (`touch`), in curfew
        zones with no validity bounds:
        - the zone's tracker lives with nothing open or gathered, having seen the subject
          away (was_out), and the fix is away (sd >= 0, finite) outside the window: it
          leaves the tracker as it was (CurfewTracker.observe sets was_out again); or
        - the zone has no tracker, and the fix is inside (sd <= -1 µm, so P(away) < 0.5
          whatever the window): a fresh tracker keeps nothing and is forgotten;
        with sigma finite, > 0 and <= 1e6 m; and so for each pair of the zone until its
        first pair that is not one (in row order; a suspect held and applied later within
        the batch is one of these pairs too, or comes after one that is not). The fix of
        an inside pair may still be a suspect (Outliers.is_suspect): the walk asks."""
        out = np.zeros(zidx.shape[0], dtype=np.bool_)
        if not PRUNE or zidx.shape[0] == 0:
            return out
        live, bounds = self.trackers.live, self.schedules.bounds
        zs = np.unique(zidx[self.is_inclusion[zidx]]).tolist()
        away: list[int] = []
        none: list[int] = []
        curfew = TrackerKind.CURFEW
        for z in zs:
            if z not in bounds:
                tr = live.get(cast(TrackerKey, (curfew, z)))  # a tuple: finds the TrackerKey
                if tr is None:
                    none.append(z)
                elif _away(tr):
                    away.append(z)
        if not (away or none):
            return out
        sane = np.isfinite(sigma) & (sigma > 0.0) & (sigma <= 1e6)
        state = np.zeros(self.is_inclusion.shape[0], dtype=np.int8)  # per zone
        state[away] = 1
        state[none] = 2
        of = state[zidx]
        ok = (of == 1) & np.isfinite(sd) & (sd >= 0.0) & sane
        at = np.flatnonzero(ok)
        ok[at] = ~self.schedules.active_pairs(zidx[at], tags["t"][pair_row[at]])
        ok |= (of == 2) & (sd <= -1e-6) & sane
        # ...up to the zone's first pair that is not (pairs are in row order)
        order = np.argsort(zidx, kind="stable")
        bad = np.cumsum(~ok[order])  # pairs that are not, up to here (zone by zone)
        start = np.ones(order.shape[0], dtype=np.bool_)
        start[1:] = zidx[order][1:] != zidx[order][:-1]
        before = np.maximum.accumulate(np.where(start, np.arange(order.shape[0]), 0))
        out[order] = bad - bad[before] + ~ok[order][before] == 0
        return out

    def touch(self, z: int, t: float) -> None:
        """What `step` of an idle pair (idle_rows) does: the schedule cache lookup of its
        window (which may expand the cache, and the cache is state)."""
        sched = self.schedules.schedule.get(z)
        if sched is not None:
            self.schedules._intervals(sched, t, t)

    def step(self, z: int, sd: float, sigma: float, row: np.void) -> None:
        """One fix `row` at signed distance `sd` from zone z (< 0 inside)."""
        inclusion, subject, zone_id, risk, warn, key, ring = self._zones.get(z) or self._zone(z)
        trackers = self.trackers
        f = row.item()  # every field at once (FIX_DTYPE): cheaper than two by name
        tag, t, seq = self.registry.device_ids[f[ROW_SLOT]], f[ROW_T], f[ROW_SEQ]
        if self.schedules.limited and not self.schedules.binds(z, t):
            self.end_zone(z, t)
            if not inclusion:
                return  # a licence condition not (or no longer) in force: no evidence
        if inclusion:
            w0, w1, active = self.schedules.window(z, t)
            cur = trackers.curfew(key, subject, zone_id)
            # Seen away again outside the window: it stays as it was (as in idle_rows)
            if active or not (0.0 <= sd < math.inf and 0.0 < sigma <= 1e6 and _away(cur)):
                at: Where = (row, "depth_m", sd, math.nan)  # metres outside the curfew zone
                cur.observe(Obs(t, sd, sigma, tag, seq), active, w0, w1, at)
            trackers.forget_if_idle(key, z)
            return
        st, live = self.settings, trackers.live
        sev: Severity = "critical" if risk >= st.critical_risk else "high"
        # A tracker made for a fix it keeps nothing of would be forgotten at once
        br: BreachTracker | None = None
        if key in live or not _keeps_nothing("zone_breach", -sd, sigma, st):
            br = trackers.breach(key, "zone_breach", subject, zone_id, sev)
            br.observe(Obs(t, -sd, sigma, tag, seq), (row, "depth_m", -sd, math.nan))
        if warn > 0.0 and (
            ring in live
            or not (
                (br is not None and br.episode is not None)  # supersedes a fresh ring at once
                or _keeps_nothing("zone_approach", warn - sd, sigma, st)
            )
        ):
            out: Where = (row, "distance_m", sd, math.nan)  # metres outside the zone
            trackers.approach(ring, "zone_approach", "medium", subject, zone_id,
                              br, Obs(t, warn - sd, sigma, tag, seq), out)  # fmt: skip
        trackers.forget_if_idle(key)
        trackers.forget_if_idle(ring, z)

    def _zone(self, z: int) -> tuple[bool, str, str, int, float, TrackerKey, TrackerKey]:
        """What `step` reads of zone z (kept in `_zones`): whether it is a curfew, its
        subject and id, the subject's risk, its warn ring (m) and the keys of its trackers:
        the curfew's, or the breach's and the ring's."""
        table = self.table
        s = int(table.subject[z])
        inclusion = bool(self.is_inclusion[z])
        key = TrackerKey(TrackerKind.CURFEW if inclusion else TrackerKind.ZONE, z)
        got = (
            inclusion, self.registry.subject_ids[s], table.zone_ids[z],
            int(self.registry.subject_risk[s]), float(self.warn[z]), key,
            TrackerKey(TrackerKind.APPROACH, z),
        )  # fmt: skip
        self._zones[z] = got
        return got

    def end_zone(self, z: int, t: float) -> None:
        """Close zone z's episodes once t is past its validity (with the reason)."""
        until, reason = self.schedules.until_of(TrackerKey(TrackerKind.ZONE, z), t)
        if t >= until:
            for kind, name in _ZONE_EPISODES:
                self.trackers.end(TrackerKey(kind, z), name, until, reason)

    def silence_context(
        self, slot: int, lat: float, lon: float, now: float
    ) -> tuple[Severity, dict[str, object]]:
        """How much a silence matters where the tag was last seen: inside an exclusion zone
        critical; near one (its warn ring or silent_near_m) or during a curfew high."""
        st = self.settings
        s = int(self.registry.subject_of_slot[slot])
        _, zidx, dist = signed_distance_by_subject(
            self.table, np.array([lat]), np.array([lon]), np.array([s], dtype=np.int32)
        )
        sev: Severity = "medium"
        facts: dict[str, object] = {}
        best = math.inf
        for z, d in zip(zidx.tolist(), dist.tolist(), strict=True):
            if not self.schedules.binds(z, now):
                continue  # not in force: a silence there matters no more than anywhere
            zone = self.table.zone_ids[z]
            if self.is_inclusion[z]:
                if self.schedules.active(z, np.array([now]))[0]:
                    facts["curfew"] = zone
                    if sev == "medium":
                        sev = "high"
                continue
            if d < best:
                best = d
                facts["zone"], facts["distance_m"] = zone, round(d, 1)
            if d <= 0.0:
                sev = "critical"
            elif d <= max(st.silent_near_m, float(self.warn[z])) and sev == "medium":
                sev = "high"
        return sev, facts


def _away(tr: object) -> bool:
    """A curfew tracker with nothing open or gathered that last saw its subject away."""
    return isinstance(tr, CurfewTracker) and tr.episode is None and not tr.away and tr.was_out


def _keeps_nothing(kind: str, depth: float, sigma: float, s: Settings) -> bool:
    """Whether a fresh BreachTracker of `kind` shown an observation at `depth` (sigma)
    keeps nothing of it: its `observe` decides nothing and leaves it idle, to be forgotten.
    Not finite: never evidence. Outside (depth <= 0): evidence starts only at a fix inside,
    and only a zone breach's recent track (BreachTracker._remember) keeps one, within
    BURST_FORGET_M. The bounds on depth and sigma keep `observe`'s arithmetic from raising."""
    if not (math.isfinite(depth) and math.isfinite(sigma)):
        return True
    if not (-1e9 <= depth <= 0.0 and sigma >= 1e-6):
        return False
    remembers = s.burst_max_fixes > 0 or s.steady_burst_fixes > 0 or s.steady_window_s > 0.0
    return kind != "zone_breach" or not remembers or depth < -BURST_FORGET_M
