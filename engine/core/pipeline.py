"""The pipeline live and replay share: resolve devices, dedupe, order by event time,
run the geofence kernels, and turn distances into alert episodes."""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec
import numpy as np

from engine.core.admission import Admission
from engine.core.decide import BreachTracker, CurfewTracker, Obs
from engine.core.dedupe import SeqDeduper
from engine.core.episodes import R68_PER_SIGMA as R68
from engine.core.episodes import EpisodeBook, prob_below
from engine.core.health.clock import ArrivalClock
from engine.core.health.monitor import Health
from engine.core.ordering import Released, Reorderer
from engine.core.registry import Registry
from engine.core.transit import detour_m, onward_paths
from engine.core.victims import VictimPosition, VictimTrack
from engine.settings import Settings
from engine.wire.alerts import Alert, Severity
from engine.wire.records import EVENT_CODE, FIX_DTYPE, SRC_CODE, DeadLetter, FixRecord, Record
from zones.compile import ZoneTable, compile_zones
from zones.geofence import point_distance_m, segment_depth, signed_distance_by_subject
from zones.model import Window, ZoneSet
from zones.schedule import active_intervals

_SCHEDULE_SPAN_S = 8 * 86400.0  # how far ahead schedule intervals are expanded at a time
HISTORY = 2  # previous fixes kept per tag


@dataclass
class BatchResult:
    """What one batch produced: alert lifecycle records and dead letters, plus counts."""

    alerts: list[Alert] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    fixes: int = 0
    events: int = 0
    duplicates: int = 0
    late: int = 0
    # Reporting-rate commands for tags: (tag, payload) for tagwatch/v1/tags/{tag}/cmd
    commands: list[tuple[str, dict[str, float]]] = field(default_factory=list)


# Episodes during which a tag is asked to report faster
FAST_KINDS = frozenset({"zone_approach", "zone_breach", "proximity", "proximity_approach"})


class _Schedules:
    """UTC active intervals of scheduled zones, expanded lazily around the times seen.

    Cached per distinct schedule (thousands of curfews share "Mon-Sun 19:00-07:00") over
    day-aligned spans, so a national deployment expands each schedule once a week."""

    def __init__(self, zoneset: ZoneSet, table: ZoneTable) -> None:
        self.schedule = {table.zone_index(z.id): z.schedule for z in zoneset.zones if z.schedule}
        self.cache: dict[tuple[Window, ...], tuple[float, float, np.ndarray]] = {}

    def _intervals(self, sched: tuple[Window, ...], lo: float, hi: float) -> np.ndarray:
        cached = self.cache.get(sched)
        if cached is None or lo < cached[0] or hi >= cached[1]:
            start = math.floor(lo / 86400.0) * 86400.0 - 86400.0
            end = start + max(_SCHEDULE_SPAN_S, math.ceil((hi - start) / 86400.0 + 1) * 86400.0)
            cached = (start, end, active_intervals(sched, start, end))
            self.cache[sched] = cached
        return cached[2]

    def active(self, zone: int, t: np.ndarray) -> np.ndarray:
        sched = self.schedule.get(zone)
        if sched is None:
            return np.ones(t.shape, dtype=np.bool_)
        iv = self._intervals(sched, float(t.min()), float(t.max()))
        if iv.shape[0] == 0:
            return np.zeros(t.shape, dtype=np.bool_)
        k = np.searchsorted(iv[:, 0], t, side="right") - 1
        ok = k >= 0
        res = np.zeros(t.shape, dtype=np.bool_)
        res[ok] = t[ok] < iv[k[ok], 1]
        return res

    def active_or_soon(self, zone: int, t: np.ndarray, ahead_s: float) -> np.ndarray:
        """Active at t, or starting within ahead_s after t (a curfew tracker must know
        where the subject was when the window opened)."""
        res = self.active(zone, t)
        sched = self.schedule.get(zone)
        if sched is None:
            return res
        iv = self._intervals(sched, float(t.min()), float(t.max()) + ahead_s)
        if iv.shape[0]:
            k = np.searchsorted(iv[:, 0], t, side="right")
            ok = k < iv.shape[0]
            res[ok] |= iv[k[ok], 0] - t[ok] <= ahead_s
        return res

    def window(self, zone: int, t: float) -> tuple[float, float, bool]:
        """(start, end, active): the active interval containing t, or else the last one
        that ended before t (so a breach can be closed at the window's end)."""
        sched = self.schedule.get(zone)
        if sched is None:
            return -math.inf, math.inf, True
        iv = self._intervals(sched, t, t)
        k = int(np.searchsorted(iv[:, 0], t, side="right")) - 1
        if k < 0:
            return -math.inf, -math.inf, False
        w0, w1 = float(iv[k, 0]), float(iv[k, 1])
        return w0, w1, t < w1


def _dist_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle metres between two points (the kernel, for one pair)."""
    a = np.array([[lat1, lon1, lat2, lon2]])
    return float(point_distance_m(a[:, 0], a[:, 1], a[:, 2], a[:, 3])[0])


@dataclass
class _Step:
    """One tag fix with everything the decisions need, so it can be held and applied later."""

    row: np.void
    subject: int
    sigma: float
    prev: np.ndarray
    pprev: np.ndarray
    zone_pairs: list[tuple[int, float]]
    transits: list[tuple[int, float, float, float]]
    prox: bool
    # (zone, depth, entry t, exit t) of a possible route from the previous fix into a zone
    onward: list[tuple[int, float, float, float]] = field(default_factory=list)


class Pipeline:
    """Synchronous core. Feed it batches of decoded records with `process`; call `finish`
    at the end of a replay so episodes whose tag was last seen outside are closed."""

    def __init__(self, zoneset: ZoneSet, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.zoneset = zoneset
        self.table = compile_zones(zoneset)
        self.registry = Registry(zoneset, self.table.subject_ids)
        n = self.registry.n_slots
        self.dedupe = SeqDeduper(n, self.settings.dedupe_window)
        # The last HISTORY accepted fixes of every tag slot, newest first (t, lat, lon, acc,
        # seq): transit needs the segment and the heading before it
        self.hist = np.full((n, HISTORY, 5), np.nan)
        self.victims: dict[int, VictimTrack] = {}
        self.suspects: dict[int, _Step] = {}  # tag slot -> a fix waiting for the next one
        ordered = np.arange(n) < self.registry.n_tags  # phones' seq is a timestamp
        st = self.settings
        self.reorder = Reorderer(ordered, hold_max=st.hold_max, hold_s=st.hold_s)
        self.schedules = _Schedules(zoneset, self.table)
        self.book = EpisodeBook(self.settings.evidence_max, watch=FAST_KINDS)
        self.trackers: dict[object, BreachTracker | CurfewTracker] = {}
        self.tracked = np.zeros(len(self.table.zone_ids), dtype=np.bool_)
        self.is_inclusion = np.asarray(self.table.kind) == 1
        self.warn = np.asarray(self.table.warn_m, dtype=np.float64)
        # Beyond this distance a zone cannot matter to any fix: the kernel may skip it.
        self.cutoff = float(np.max(self.table.warn_m, initial=0.0)) + 3000.0
        self.health = Health(self.registry, self.book, st)
        self.clock = ArrivalClock(st.clock_max_jump_s)
        self.fast: set[str] = set()  # tags asked to report every report_fast_s
        self.admission = Admission(self.registry, st)  # time and rate limits per record

    # -- public ------------------------------------------------------------------------
    def process(
        self,
        records: Sequence[Record],
        origin: str = "batch",
        arrival: float = 0.0,
        wall: float | None = None,
    ) -> BatchResult:
        """Decide one batch. `arrival` (live: a monotonic clock) bounds how long a record
        may be held behind a seq gap; replay leaves it 0 and relies on event-time bounds.
        `wall` (live: Unix time now) is the clock silence is measured on; replay leaves it
        None and the clock is the latest event time seen."""
        res = BatchResult()
        arr = self._to_array(records, origin, res, wall)
        if arr.shape[0]:
            if wall is None:
                clocks = self.clock.observe(arr["slot"], arr["t"])
            else:
                clocks = np.full(arr.shape[0], self.clock.set(wall))
            self.health.admit(arr, clocks, self._last_fix)
            self._release(self.reorder.admit(arr, arrival), res)
        elif wall is not None:
            self.clock.set(wall)
        self._after(res)
        return res

    def tick(self, now: float, wall: float | None = None) -> BatchResult:
        """Live: give up seq gaps held longer than hold_wall_s of arrival time, and let
        wall time pass for silence."""
        res = BatchResult()
        if wall is not None:
            self.clock.set(wall)
        self._release(self.reorder.expire(now, self.settings.hold_wall_s), res)
        self._after(res)
        return res

    def _after(self, res: BatchResult) -> None:
        """Health decisions that follow a batch, then the reporting-rate commands."""
        now = self.clock.now
        if math.isfinite(now):
            self.health.settle(list(self.book.out), self._silence_context)
            self.health.check(now, self._last_fix, self._silence_context)
        res.alerts = self.book.drain()
        st = self.settings
        for tag in self.book.take_changed():  # only tags whose fast episodes began or ended
            fast = tag in self.book.watched
            if fast != (tag in self.fast):
                rate = st.report_fast_s if fast else st.report_interval_s
                res.commands.append((tag, {"rate_s": rate}))
                (self.fast.add if fast else self.fast.discard)(tag)

    def _last_fix(self, slot: int) -> np.ndarray | None:
        row = self.hist[slot, 0]
        return row if np.isfinite(row[0]) else None

    def _silence_context(
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

    def _release(self, rel: Released, res: BatchResult) -> None:
        if rel.ready.shape[0]:
            self._decide_rows(rel.ready, res)
        if rel.late.shape[0]:
            # Older than what was already decided for their tag: still evidence, decided
            # now (raised_t says when), never dropped.
            self.book.decided_at = float(np.max(self.reorder.max_t[rel.late["slot"]]))
            try:
                self._decide_rows(rel.late, res)
            finally:
                self.book.decided_at = None
            res.late += int(rel.late.shape[0])

    def finish(self) -> list[Alert]:
        """End of input (replay): release everything held, then close episodes whose tag
        was last seen outside and settle suspect fixes."""
        res = BatchResult()
        self._release(self.reorder.flush(), res)
        for sus in self.suspects.values():
            self._apply(sus)  # no next fix to refute it: never silence a possible breach
        self.suspects.clear()
        for tr in self.trackers.values():
            if isinstance(tr, BreachTracker):
                tr.finish()
        self.health.finish()
        return self.book.drain()

    # -- internals ---------------------------------------------------------------------
    def _unknown(self, r: Record, origin: str) -> DeadLetter:
        return DeadLetter(
            origin,
            msgspec.json.encode(r),
            f"unknown device '{r.device}': not a tag or protected device in the subjects file",
        )

    def _to_array(
        self, records: Sequence[Record], origin: str, res: BatchResult, wall: float | None = None
    ) -> np.ndarray:
        reg = self.registry
        arr = np.empty(len(records), dtype=FIX_DTYPE)
        n = 0
        nan = math.nan
        rows: list[int] = []  # index in `records` of each row
        for i, r in enumerate(records):
            s = reg.slot(r.device)
            if s < 0:
                res.dead.append(self._unknown(r, origin))
                continue
            rows.append(i)
            batt = -1 if r.batt is None else r.batt
            if isinstance(r, FixRecord):
                arr[n] = (s, r.seq, r.t, r.lat, r.lon, r.acc, batt, SRC_CODE.get(r.src, 255), 0)
            else:
                arr[n] = (s, r.seq, r.t, nan, nan, nan, batt, 255, EVENT_CODE.get(r.event, 255))
            n += 1
        arr = arr[:n]
        # Time and rate limits, before dedupe: a rejected record changes no state
        ok, why = self.admission.admit(arr, wall)
        if why:
            for k, reason in why:
                res.dead.append(DeadLetter(origin, msgspec.json.encode(records[rows[k]]), reason))
            arr = arr[ok]
            n = arr.shape[0]
        keep = self.dedupe.filter(arr["slot"], arr["seq"])
        res.duplicates += int(n - keep.sum())
        return arr[keep]

    def _decide_rows(self, rows: np.ndarray, res: BatchResult) -> None:
        """Rows arrive in processing order (per tag in seq order, across tags by time)."""
        is_event = rows["event"] != 0
        res.events += int(is_event.sum())
        tag_mask = rows["slot"] < self.registry.n_tags
        if tag_mask.any():
            trows = rows[tag_mask]
            usable = (
                (trows["event"] == 0) & np.isfinite(trows["lat"]) & np.isfinite(trows["lon"])
                & (trows["acc"] <= self.settings.no_location_acc_m)
            )  # fmt: skip
            self.health.ordered(trows, usable)
        arr = rows[~is_event]
        res.fixes += arr.shape[0]
        if arr.shape[0] == 0:
            return
        reg = self.registry
        subj = reg.subject_of_slot[arr["slot"]]
        is_tag = subj >= 0
        tag_rows = np.flatnonzero(is_tag)
        tags = arr[tag_rows]
        cur = np.stack([tags["t"], tags["lat"], tags["lon"], tags["acc"], tags["seq"]], axis=1)
        hist = self._previous(tags["slot"], cur)
        prev, pprev = hist[:, 0], hist[:, 1]
        lat, lon = tags["lat"], tags["lon"]
        offsets, zidx, dist = signed_distance_by_subject(
            self.table, lat, lon, subj[tag_rows], cutoff=self.cutoff
        )
        pair_fix = np.repeat(np.arange(tag_rows.shape[0]), np.diff(offsets))
        sigma = np.maximum(tags["acc"].astype(np.float64), self.settings.acc_floor_m) / R68
        near = self._near_pairs(tags, pair_fix, zidx, dist, sigma[pair_fix])
        transit = self._transit_pairs(tags, prev, pair_fix, zidx, dist)
        onward = self._onward_rows(cur, hist, subj[tag_rows])
        pair_row = tag_rows[pair_fix]
        prox = np.zeros(arr.shape[0], dtype=np.bool_)
        if reg.pairs_of_subject:
            prox[tag_rows] = np.isin(subj[tag_rows], list(reg.pairs_of_subject))
        # Only rows that can change something are walked in Python, in time order.
        visit = np.union1d(
            np.union1d(pair_row[near], pair_row[transit[0]]), np.flatnonzero(~is_tag | prox)
        )
        if onward:
            visit = np.union1d(visit, tag_rows[list(onward)])
        if self.suspects:  # a tag with a suspect fix: its next fix settles it
            visit = np.union1d(visit, np.flatnonzero(np.isin(arr["slot"], list(self.suspects))))
        near_rows, tr_rows = pair_row[near], pair_row[transit[0]]
        tag_pos = np.full(arr.shape[0], -1, dtype=np.int64)
        tag_pos[tag_rows] = np.arange(tag_rows.shape[0])
        heap = visit.tolist()  # sorted: a valid heap; rows may be added while walking
        seen: set[int] = set()
        while heap:
            i = heapq.heappop(heap)
            if i in seen:
                continue
            seen.add(i)
            row = arr[i]
            slot = int(row["slot"])
            if subj[i] < 0:
                self._victim_fix(slot, row)
                continue
            k = int(tag_pos[i])
            lo, hi = np.searchsorted(near_rows, [i, i + 1])
            zone_pairs = [(int(zidx[p]), float(dist[p])) for p in near[lo:hi].tolist()]
            lo, hi = np.searchsorted(tr_rows, [i, i + 1])
            depth, f_in, f_out = transit[1:]
            transits = [
                (int(zidx[transit[0][j]]), float(depth[j]), float(f_in[j]), float(f_out[j]))
                for j in range(lo, hi)
            ]
            step = _Step(row, int(subj[i]), float(sigma[k]), prev[k], pprev[k], zone_pairs,
                         transits, bool(prox[i]), onward.get(k, []))  # fmt: skip
            if slot in self.suspects and not self._settle(self.suspects.pop(slot), step):
                step.transits = []  # its previous fix was an outlier: no segment from it
                step.onward = []
            if self._is_suspect(step):
                self.suspects[slot] = step
                later = np.flatnonzero(arr["slot"][i + 1 :] == slot)
                if later.shape[0]:
                    heapq.heappush(heap, i + 1 + int(later[0]))
                continue
            self._apply(step)
        self._remember(tags)

    def _apply(self, st: _Step) -> None:
        # The fix's own evidence first: a fix deep inside decides by itself; a straight-line
        # entry from the previous fix matters only when it did not.
        for z, sd in st.zone_pairs:
            self._zone_step(z, sd, st.sigma, st.row)
        for z, depth, f_in, f_out in st.transits:
            self._transit_step(st.row, st.prev, st.pprev, z, depth, f_in, f_out)
        for z, depth, t_in, t_out in st.onward:
            self._onward_step(st.row, st.prev, z, depth, t_in, t_out)
        if st.prox:
            self._proximity_step(st.subject, st.row, st.sigma)

    def _speed(self, a: np.ndarray, b: np.ndarray) -> float:
        """Implied speed (m/s) between two fixes (t, lat, lon, acc), beyond their accuracy."""
        if not (np.isfinite(a[0]) and np.isfinite(b[0])):
            return math.nan
        d = _dist_m(float(a[1]), float(a[2]), float(b[1]), float(b[2]))
        return max(0.0, d - float(a[3]) - float(b[3])) / max(abs(float(b[0] - a[0])), 1.0)

    def _jump_limit(self, st: _Step) -> float:
        """Speed beyond which a fix is suspect, given how fast the track was going."""
        recent = self._speed(st.pprev, st.prev)
        recent = 0.0 if math.isnan(recent) else recent
        s = self.settings
        return max(s.jump_speed_floor_mps, s.jump_speed_factor * recent + 2.0)

    def _is_suspect(self, st: _Step) -> bool:
        """A fix that would put the tag inside a zone, reached at a speed the track does not
        allow: held until the next fix says whether the tag really went there."""
        if not any(sd < 0.0 for _, sd in st.zone_pairs):
            return False
        cur = np.array([st.row["t"], st.row["lat"], st.row["lon"], st.row["acc"]], dtype=float)
        v = self._speed(st.prev, cur)
        return not math.isnan(v) and v > self._jump_limit(st)

    def _settle(self, sus: _Step, nxt: _Step) -> bool:
        """Decide a suspect fix with the fix after it: if the next fix is where the tag could
        have got to from before the jump but not from the suspect (in and back), the jump was
        an artefact (implausible_fix, not a breach); otherwise the tag really moved.
        Returns True when the suspect is accepted."""
        cur = np.array([nxt.row["t"], nxt.row["lat"], nxt.row["lon"], nxt.row["acc"]], float)
        limit = self._jump_limit(sus)
        back = self._speed(sus.prev, cur)
        sus_fix = np.array([sus.row["t"], sus.row["lat"], sus.row["lon"], sus.row["acc"]], float)
        onward = self._speed(sus_fix, cur)
        if not math.isnan(back) and back <= limit and onward > limit:
            self._implausible(sus)
            nxt.prev, nxt.pprev = sus.prev, sus.pprev
            return False
        self.book.decided_at = float(nxt.row["t"])
        try:
            self._apply(sus)
        finally:
            self.book.decided_at = None
        return True

    def _implausible(self, st: _Step) -> None:
        reg, table = self.registry, self.table
        slot = int(st.row["slot"])
        tag, seq, t = reg.device_ids[slot], int(st.row["seq"]), float(st.row["t"])
        z = min(st.zone_pairs, key=lambda p: p[1])[0]
        key = ("j", slot, seq)
        self.book.open_episode(
            key, "implausible_fix", subject=reg.subject_ids[st.subject], tag=tag,
            zone=table.zone_ids[z], severity="low", confidence=0.9, t=t, seq=seq,
        )  # fmt: skip
        self.book.close(key, "implausible_fix", t)

    def _previous(self, slot: np.ndarray, cur: np.ndarray) -> np.ndarray:
        """For each tag row: its HISTORY previous fixes of the same tag, newest first, from
        this batch or earlier ones, shape (rows, HISTORY, 5) (NaN when unknown). `cur`: the
        rows' own (t, lat, lon, acc, seq)."""
        out = np.full((cur.shape[0], HISTORY, 5), np.nan)
        order = np.argsort(slot, kind="stable")
        slots = slot[order].tolist()
        run = 0  # rows of the same slot before this one in the batch
        for k, i in enumerate(order.tolist()):
            run = run + 1 if k and slots[k - 1] == slots[k] else 0
            m = min(run, HISTORY)
            for d in range(m):
                out[i, d] = cur[order[k - 1 - d]]
            out[i, m:] = self.hist[slots[k], : HISTORY - m]
        return out

    def _near_pairs(
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
        cand = np.where(incl, dist > -margin, dist <= self.warn[zidx] + margin)
        if incl.any():
            t = tags["t"][pair_fix]
            for z in np.unique(zidx[incl]):
                m = zidx == z
                cand[m] &= self.schedules.active_or_soon(int(z), t[m], 3600.0)
        # A zone touched anywhere in the batch, or already being tracked, is followed for
        # every fix of the batch: later far fixes are what closes its episode.
        zones = np.union1d(np.unique(zidx[cand]), np.flatnonzero(self.tracked))
        return np.flatnonzero(np.isin(zidx, zones))

    def _transit_pairs(
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

    def _remember(self, tags: np.ndarray) -> None:
        """Latest fixes per tag slot (rows are in time order: the last ones win)."""
        for row in tags[np.argsort(tags["slot"], kind="stable")]:
            s = int(row["slot"])
            if not row["t"] >= self.hist[s, 0, 0] and not np.isnan(self.hist[s, 0, 0]):
                continue
            self.hist[s, 1:] = self.hist[s, :-1]
            self.hist[s, 0] = (row["t"], row["lat"], row["lon"], row["acc"], row["seq"])

    def _onward_rows(
        self, b: np.ndarray, hist: np.ndarray, subj: np.ndarray
    ) -> dict[int, list[tuple[int, float, float, float]]]:
        """Tag row B (t, lat, lon, acc, seq) -> (zone, depth, entry t, exit t) for exclusion zones that a tag moving
        at speed may have gone into between fix A and B while the straight segment does
        not: it kept going the way it was going (P -> A) as far as its speed allows, then
        turned for B (`onward_paths`). A possible breach, decided at B."""
        st = self.settings
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
        out: dict[int, list[tuple[int, float, float, float]]] = {}
        for j in np.flatnonzero(use).tolist():
            t_in = float(a[f[j], 0] + f_in[j] * dt[j])
            t_out = float(a[f[j], 0] + f_out[j] * dt[j])
            out.setdefault(int(rows[f[j]]), []).append((int(z[j]), float(depth[j]), t_in, t_out))
        return out

    def _breach(
        self, key: object, kind: str, subject: str, zone: str, sev: Severity
    ) -> BreachTracker:
        tr = self.trackers.get(key)
        if tr is None:
            tr = BreachTracker(self.book, self.settings, key, kind, subject, zone, sev)
            self.trackers[key] = tr
        assert isinstance(tr, BreachTracker)
        return tr

    def _curfew(self, key: object, subject: str, zone: str) -> CurfewTracker:
        tr = self.trackers.get(key)
        if tr is None:
            tr = CurfewTracker(self.book, self.settings, key, subject, zone)
            self.trackers[key] = tr
        assert isinstance(tr, CurfewTracker)
        return tr

    def _forget_if_idle(self, key: object, z: int | None = None) -> None:
        tr = self.trackers.get(key)
        if tr is not None and tr.idle:
            del self.trackers[key]
        if z is not None:
            self.tracked[z] = any(k in self.trackers for k in (("z", z), ("a", z), ("c", z)))

    def _zone_step(self, z: int, sd: float, sigma: float, row: np.void) -> None:
        table, reg, st = self.table, self.registry, self.settings
        tag = reg.device_ids[int(row["slot"])]
        t, seq = float(row["t"]), int(row["seq"])
        s = int(table.subject[z])
        subject, zone_id = reg.subject_ids[s], table.zone_ids[z]
        if self.is_inclusion[z]:
            w0, w1, active = self.schedules.window(z, t)
            cur = self._curfew(("c", z), subject, zone_id)
            cur.observe(Obs(t, sd, sigma, tag, seq), active, w0, w1)  # type: ignore[union-attr]
            self._forget_if_idle(("c", z), z)
            return
        risk = int(reg.subject_risk[s])
        sev: Severity = "critical" if risk >= st.critical_risk else "high"
        br = self._breach(("z", z), "zone_breach", subject, zone_id, sev)
        br.observe(Obs(t, -sd, sigma, tag, seq))
        warn = float(self.warn[z])
        if warn > 0.0:
            self._approach_step(("a", z), "zone_approach", "medium", subject, zone_id,
                                br, Obs(t, warn - sd, sigma, tag, seq))  # fmt: skip
        self._forget_if_idle(("z", z))
        self._forget_if_idle(("a", z), z)

    def _approach_step(self, key: object, kind: str, sev: Severity, subject: str, zone: str,
                       breach: BreachTracker, o: Obs) -> None:  # fmt: skip
        """Approach ring: an earlier, lower-severity alert, superseded by the breach."""
        ap = self._breach(key, kind, subject, zone, sev)
        if breach.episode is not None:
            if ap.episode is not None:
                self.book.close(key, kind, breach.episode.opened_t)
                ap.episode = None
            ap.pending.clear()
            ap.leaving_since = None
            return
        ap.observe(o)

    def _transit_step(
        self, row: np.void, prev: np.ndarray, pprev: np.ndarray, z: int,
        depth: float, f_in: float, f_out: float,
    ) -> None:  # fmt: skip
        st, table = self.settings, self.table
        t0, t1 = float(prev[0]), float(row["t"])
        dt = t1 - t0
        if not (0.0 < dt <= st.transit_max_gap_s):
            return
        a = (float(prev[1]), float(prev[2]))
        b = (float(row["lat"]), float(row["lon"]))
        sig = max(float(prev[3]), float(row["acc"]), st.acc_floor_m) / R68
        if depth < 2.0 * sig:
            return
        if np.isfinite(pprev[0]) and pprev[0] < t0:
            # The speed the tag was already going says how far it could drive in dt. If a
            # route round the zone fits in that, a straight-line crossing is not evidence
            # (a ring road, a corner); a drive-through needs a speed-up to avoid the zone.
            v_in = self._speed(pprev, prev)
            if np.isfinite(v_in) and v_in > 0.0:
                budget = v_in * dt * st.transit_speed_slack
                if detour_m(table, z, a, b) <= budget:
                    return
        conf = min(prob_below(float(depth), sig), st.transit_confidence_max)
        ends_inside = float(f_out) >= 1.0
        t_in, t_out = t0 + float(f_in) * dt, t0 + float(f_out) * dt
        self._route_breach(row, prev, z, sig, conf, t_in, t_out, ends_inside)

    def _onward_step(
        self, row: np.void, a: np.ndarray, z: int, depth: float, t_in: float, t_out: float
    ) -> None:
        """A possible route from fix A through the zone: a low-confidence breach."""
        st = self.settings
        sig = max(float(a[3]), float(row["acc"]), st.acc_floor_m) / R68
        conf = min(prob_below(depth, sig), st.possible_confidence_max)
        self._route_breach(row, a, z, sig, conf, t_in, t_out, False)

    def _route_breach(
        self, row: np.void, start: np.ndarray, z: int, sig: float, conf: float,
        t_in: float, t_out: float, ends_inside: bool,
    ) -> None:  # fmt: skip
        """A breach inferred from the route between fixes: from the fix `start` (outside)
        to an entry at t_in, decided at `row`."""
        st, reg, table = self.settings, self.registry, self.table
        tag = reg.device_ids[int(row["slot"])]
        s = int(table.subject[z])
        subject, zone_id = reg.subject_ids[s], table.zone_ids[z]
        risk = int(reg.subject_risk[s])
        sev: Severity = "critical" if risk >= st.critical_risk else "high"
        br = self._breach(("z", z), "zone_breach", subject, zone_id, sev)
        first = Obs(float(start[0]), -1.0, sig, tag, int(start[4]))
        last = Obs(float(row["t"]), -1.0, sig, tag, int(row["seq"]))
        br.transit(first, last, t_in, t_out, conf, ends_inside)
        self._forget_if_idle(("z", z), z)

    def _stale_step(
        self, k: int, pos: VictimPosition, row: np.void, sigma: float, d: float
    ) -> bool:
        """Past victim_stale_s the phone's position is not known: rather than pretend, say
        `victim_device_stale` while the subject is near where it was last seen. Returns
        True when the position is stale (no proximity decision is made from it)."""
        reg, st = self.registry, self.settings
        pr = reg.pairs[k]
        key = ("vs", k)
        stale = pos.age > st.victim_stale_s
        if not stale and key not in self.trackers:
            return False
        near = pr.radius_m + pr.warn_m - d if stale else -1e9  # a fresh fix ends it
        tr = self._breach(key, "victim_device_stale", reg.subject_ids[pr.subject], pr.device_id,
                          "high")  # fmt: skip
        tag = reg.device_ids[int(row["slot"])]
        tr.observe(Obs(float(row["t"]), near, sigma, tag, int(row["seq"])))
        if not stale:
            tr.tick(float(row["t"]) + st.exit_gap_s)
        self._forget_if_idle(key)
        return stale

    def _victim_fix(self, slot: int, row: np.void) -> None:
        track = self.victims.setdefault(slot, VictimTrack())
        track.add(float(row["t"]), float(row["lat"]), float(row["lon"]), float(row["acc"]))

    def _proximity_step(self, s: int, row: np.void, sigma: float) -> None:
        reg, st = self.registry, self.settings
        tag = reg.device_ids[int(row["slot"])]
        t, seq = float(row["t"]), int(row["seq"])
        subject = reg.subject_ids[s]
        for k in reg.pairs_of_subject[s]:
            pr = reg.pairs[k]
            track = self.victims.get(pr.device)
            pos = None if track is None else track.at(t, st.victim_drift_mps, st.acc_floor_m)
            if pos is None:
                continue  # no victim position yet: nothing to compare against
            d = _dist_m(float(row["lat"]), float(row["lon"]), pos.lat, pos.lon)
            if self._stale_step(k, pos, row, sigma, d):
                continue
            sig = math.hypot(sigma, pos.sigma)
            key = ("p", k)
            br = self._breach(key, "proximity", subject, pr.device_id, "critical")
            br.observe(Obs(t, pr.radius_m - d, sig, tag, seq))
            if pr.warn_m > 0.0:
                self._approach_step(("pa", k), "proximity_approach", "high", subject, pr.device_id,
                                    br, Obs(t, pr.radius_m + pr.warn_m - d, sig, tag, seq))  # fmt: skip
                self._forget_if_idle(("pa", k))
            self._forget_if_idle(key)
