"""The pipeline live and replay share: resolve devices, dedupe, order by event time,
run the geofence kernels, and turn distances into alert episodes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec
import numpy as np

from engine.alerts import Alert, Severity
from engine.dedupe import SeqDeduper
from engine.episodes import EpisodeBook, prob_below, sigma_of
from engine.records import FIX_DTYPE, SRC_CODE, DeadLetter, EventRecord, FixRecord, Record
from engine.registry import Registry
from engine.settings import Settings
from zones.compile import ZoneTable, compile_zones
from zones.geofence import point_distance_m, signed_distance_by_subject
from zones.model import Window, ZoneSet
from zones.schedule import active_intervals

# Zone state machine values (per zone row; every zone binds exactly one subject)
OUTSIDE, APPROACH, BREACH, LEFT = 0, 1, 2, 3
_SCHEDULE_SPAN_S = 8 * 86400.0  # how far ahead schedule intervals are expanded at a time


@dataclass
class BatchResult:
    """What one batch produced: alert lifecycle records and dead letters, plus counts."""

    alerts: list[Alert] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    fixes: int = 0
    events: int = 0
    duplicates: int = 0


class _Schedules:
    """UTC active intervals of scheduled zones, expanded lazily around the times seen.

    Cached per distinct schedule (thousands of curfews share "Mon-Sun 19:00-07:00") over
    day-aligned spans, so a national deployment expands each schedule once a week."""

    def __init__(self, zoneset: ZoneSet, table: ZoneTable) -> None:
        self.schedule = {table.zone_index(z.id): z.schedule for z in zoneset.zones if z.schedule}
        self.cache: dict[tuple[Window, ...], tuple[float, float, np.ndarray]] = {}

    def active(self, zone: int, t: np.ndarray) -> np.ndarray:
        sched = self.schedule.get(zone)
        if sched is None:
            return np.ones(t.shape, dtype=np.bool_)
        lo, hi = float(t.min()), float(t.max())
        cached = self.cache.get(sched)
        if cached is None or lo < cached[0] or hi >= cached[1]:
            start = math.floor(lo / 86400.0) * 86400.0 - 86400.0
            end = start + max(_SCHEDULE_SPAN_S, math.ceil((hi - start) / 86400.0 + 1) * 86400.0)
            cached = (start, end, active_intervals(sched, start, end))
            self.cache[sched] = cached
        iv = cached[2]
        if iv.shape[0] == 0:
            return np.zeros(t.shape, dtype=np.bool_)
        k = np.searchsorted(iv[:, 0], t, side="right") - 1
        ok = k >= 0
        res = np.zeros(t.shape, dtype=np.bool_)
        res[ok] = t[ok] < iv[k[ok], 1]
        return res


class Pipeline:
    """Synchronous core. Feed it batches of decoded records with `process`."""

    def __init__(self, zoneset: ZoneSet, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.zoneset = zoneset
        self.table = compile_zones(zoneset)
        self.registry = Registry(zoneset, self.table.subject_ids)
        n = self.registry.n_slots
        self.dedupe = SeqDeduper(n, self.settings.dedupe_window)
        # Latest fix of every device slot (victim phones are joined on these)
        self.last_t = np.full(n, -np.inf)
        self.last_lat = np.full(n, np.nan)
        self.last_lon = np.full(n, np.nan)
        self.last_acc = np.full(n, np.nan)
        self.zone_state = np.zeros(len(self.table.zone_ids), dtype=np.int8)
        self.pair_state = np.zeros(len(self.registry.pairs), dtype=np.int8)
        self.schedules = _Schedules(zoneset, self.table)
        self.book = EpisodeBook(self.settings.evidence_max)
        self.is_inclusion = np.asarray(self.table.kind) == 1
        # Beyond this distance a zone is certainly not near: the kernel may skip it.
        self.cutoff = float(np.max(self.table.warn_m, initial=0.0)) + 1.0

    # -- public ------------------------------------------------------------------------
    def process(self, records: Sequence[Record], origin: str = "batch") -> BatchResult:
        res = BatchResult()
        fixes: list[FixRecord] = []
        for r in records:
            if isinstance(r, FixRecord):
                fixes.append(r)
            elif isinstance(r, EventRecord):
                if self.registry.slot(r.device) < 0:
                    res.dead.append(self._unknown(r, origin))
                else:
                    res.events += 1  # device-health decisions: issue 5
        if fixes:
            self._process_fixes(fixes, origin, res)
        res.alerts = self.book.drain()
        return res

    # -- internals ---------------------------------------------------------------------
    def _unknown(self, r: Record, origin: str) -> DeadLetter:
        return DeadLetter(
            origin,
            msgspec.json.encode(r),
            f"unknown device '{r.device}': not a tag or protected device in the subjects file",
        )

    def _process_fixes(self, fixes: list[FixRecord], origin: str, res: BatchResult) -> None:
        reg = self.registry
        arr = np.empty(len(fixes), dtype=FIX_DTYPE)
        n = 0
        for r in fixes:
            s = reg.slot(r.device)
            if s < 0:
                res.dead.append(self._unknown(r, origin))
                continue
            arr[n] = (s, r.seq, r.t, r.lat, r.lon, r.acc, -1 if r.batt is None else r.batt,
                      SRC_CODE.get(r.src, 255))  # fmt: skip
            n += 1
        arr = arr[:n]
        keep = self.dedupe.filter(arr["slot"], arr["seq"])
        res.duplicates += int(n - keep.sum())
        arr = arr[keep]
        # Event-time order across the batch (ties: slot, seq) so that a tag's fixes are
        # decided in the order they were taken and victim positions join on time.
        arr = arr[np.lexsort((arr["seq"], arr["slot"], arr["t"]))]
        res.fixes += arr.shape[0]
        if arr.shape[0] == 0:
            return
        subj = reg.subject_of_slot[arr["slot"]]
        is_tag = subj >= 0
        tag_rows = np.flatnonzero(is_tag)
        offsets, zidx, dist = signed_distance_by_subject(
            self.table,
            arr["lat"][tag_rows],
            arr["lon"][tag_rows],
            subj[tag_rows],
            cutoff=self.cutoff,
        )
        near = self._interesting_pairs(arr, tag_rows, offsets, zidx, dist)
        # Only rows that can change something are walked in Python, in time order:
        # fixes with a near (fix, zone) pair, victim fixes, and fixes of subjects who
        # have protected devices. Everything else is settled by the vectorised code.
        pair_row = tag_rows[np.repeat(np.arange(tag_rows.shape[0]), np.diff(offsets))]
        near_rows = pair_row[near]
        prox = np.zeros(arr.shape[0], dtype=np.bool_)
        if reg.pairs_of_subject:
            prox[tag_rows] = np.isin(subj[tag_rows], list(reg.pairs_of_subject))
        visit = np.union1d(near_rows, np.flatnonzero(~is_tag | prox))
        lo_hi = np.searchsorted(near_rows, np.stack([visit, visit + 1]))
        for j, i in enumerate(visit.tolist()):
            row = arr[i]
            if subj[i] < 0:
                self._victim_fix(int(row["slot"]), row)
                continue
            for p in near[lo_hi[0, j] : lo_hi[1, j]].tolist():
                self._zone_step(int(zidx[p]), float(dist[p]), row)
            if prox[i]:
                self._proximity_step(int(subj[i]), row)
        self._remember_last(arr[is_tag])

    def _remember_last(self, arr: np.ndarray) -> None:
        """Latest position per tag slot (arr is in time order: the last row wins)."""
        if arr.shape[0] == 0:
            return
        slots = arr["slot"][::-1]
        uniq, first = np.unique(slots, return_index=True)
        rows = arr[::-1][first]
        newer = rows["t"] >= self.last_t[uniq]
        u, rows = uniq[newer], rows[newer]
        self.last_t[u] = rows["t"]
        self.last_lat[u] = rows["lat"]
        self.last_lon[u] = rows["lon"]
        self.last_acc[u] = rows["acc"]

    def _interesting_pairs(
        self,
        arr: np.ndarray,
        tag_rows: np.ndarray,
        offsets: np.ndarray,
        zidx: np.ndarray,
        dist: np.ndarray,
    ) -> np.ndarray:
        """Indices of (fix, zone) pairs that can change some zone's state. Most fixes are
        far from every zone of their subject; they never reach Python-level decisions."""
        if zidx.shape[0] == 0:
            return np.zeros(0, dtype=np.int64)
        warn = np.asarray(self.table.warn_m)[zidx]
        incl = self.is_inclusion[zidx]
        cand = np.where(incl, dist > 0.0, dist <= warn)
        if incl.any():
            # A curfew matters only while its schedule is active.
            fix_of_pair = np.repeat(tag_rows, np.diff(offsets))
            t = arr["t"][fix_of_pair]
            for z in np.unique(zidx[incl]):
                m = zidx == z
                cand[m] &= self.schedules.active(int(z), t[m])
        touched = np.unique(zidx[cand])
        stateful = np.flatnonzero(self.zone_state != OUTSIDE)
        zones = np.union1d(touched, stateful)
        return np.flatnonzero(np.isin(zidx, zones))

    def _zone_step(self, z: int, sd: float, row: np.void) -> None:
        table, reg, book = self.table, self.registry, self.book
        slot = int(row["slot"])
        tag = reg.device_ids[slot]
        t, seq = float(row["t"]), int(row["seq"])
        s = int(table.subject[z])
        subject = reg.subject_ids[s]
        zone_id = table.zone_ids[z]
        sigma = sigma_of(float(row["acc"]))
        state = int(self.zone_state[z])
        if self.is_inclusion[z]:
            active = bool(self.schedules.active(z, np.array([t]))[0])
            outside = active and sd > 0.0
            ep = book.get(z, "curfew_breach")
            if outside:
                conf = prob_below(sd, sigma)  # P(true position outside)
                if ep is None:
                    book.open_episode(z, "curfew_breach", subject=subject, tag=tag,
                                      zone=zone_id, severity="high", confidence=conf,
                                      t=t, seq=seq)  # fmt: skip
                else:
                    book.add_evidence(ep, tag, seq, conf)
                self.zone_state[z] = BREACH
            else:
                if ep is not None:
                    book.close(z, "curfew_breach", t)
                self.zone_state[z] = OUTSIDE
            return
        warn = float(table.warn_m[z])
        conf_in = prob_below(-sd, sigma)  # P(true position inside)
        risk = int(reg.subject_risk[s])
        breach_sev: Severity = "critical" if risk >= self.settings.critical_risk else "high"
        if sd < 0.0:
            if state == APPROACH:
                book.close(z, "zone_approach", t)  # superseded by the breach
            ep = book.get(z, "zone_breach")
            if ep is None:
                book.open_episode(z, "zone_breach", subject=subject, tag=tag, zone=zone_id,
                                  severity=breach_sev, confidence=conf_in, t=t, seq=seq)  # fmt: skip
            else:
                book.add_evidence(ep, tag, seq, conf_in)
            self.zone_state[z] = BREACH
        elif sd <= warn:
            if state == BREACH:
                book.close(z, "zone_breach", t)
                self.zone_state[z] = LEFT
            elif state == OUTSIDE:
                book.open_episode(z, "zone_approach", subject=subject, tag=tag, zone=zone_id,
                                  severity="medium", confidence=prob_below(warn - sd, sigma),
                                  t=t, seq=seq)  # fmt: skip
                self.zone_state[z] = APPROACH
            elif state == APPROACH:
                ep = book.get(z, "zone_approach")
                if ep is not None:
                    book.add_evidence(ep, tag, seq, prob_below(warn - sd, sigma))
        else:
            if state == BREACH:
                book.close(z, "zone_breach", t)
            elif state == APPROACH:
                book.close(z, "zone_approach", t)
            self.zone_state[z] = OUTSIDE

    def _victim_fix(self, slot: int, row: np.void) -> None:
        if row["t"] >= self.last_t[slot]:
            self.last_t[slot] = row["t"]
            self.last_lat[slot] = row["lat"]
            self.last_lon[slot] = row["lon"]
            self.last_acc[slot] = row["acc"]

    def _proximity_step(self, s: int, row: np.void) -> None:
        reg, book = self.registry, self.book
        slot = int(row["slot"])
        tag = reg.device_ids[slot]
        t, seq = float(row["t"]), int(row["seq"])
        for k in reg.pairs_of_subject[s]:
            pr = reg.pairs[k]
            v = pr.device
            if not np.isfinite(self.last_lat[v]):
                continue  # no victim position yet: nothing to compare against
            d = float(
                point_distance_m(
                    np.array([row["lat"]]), np.array([row["lon"]]),
                    np.array([self.last_lat[v]]), np.array([self.last_lon[v]]),
                )[0]
            )  # fmt: skip
            sigma = math.hypot(sigma_of(float(row["acc"])), sigma_of(float(self.last_acc[v])))
            key = ("p", k)
            state = int(self.pair_state[k])
            subject = reg.subject_ids[s]
            if d < pr.radius_m:
                conf = prob_below(pr.radius_m - d, sigma)
                if state == APPROACH:
                    book.close(key, "proximity_approach", t)
                ep = book.get(key, "proximity")
                if ep is None:
                    book.open_episode(key, "proximity", subject=subject, tag=tag,
                                      zone=pr.device_id, severity="critical", confidence=conf,
                                      t=t, seq=seq)  # fmt: skip
                else:
                    book.add_evidence(ep, tag, seq, conf)
                self.pair_state[k] = BREACH
            elif d < pr.radius_m + pr.warn_m:
                conf = prob_below(pr.radius_m + pr.warn_m - d, sigma)
                if state == BREACH:
                    book.close(key, "proximity", t)
                    self.pair_state[k] = LEFT
                elif state == OUTSIDE:
                    book.open_episode(key, "proximity_approach", subject=subject, tag=tag,
                                      zone=pr.device_id, severity="high", confidence=conf,
                                      t=t, seq=seq)  # fmt: skip
                    self.pair_state[k] = APPROACH
                elif state == APPROACH:
                    ep = book.get(key, "proximity_approach")
                    if ep is not None:
                        book.add_evidence(ep, tag, seq, conf)
            else:
                if state == BREACH:
                    book.close(key, "proximity", t)
                elif state == APPROACH:
                    book.close(key, "proximity_approach", t)
                self.pair_state[k] = OUTSIDE
