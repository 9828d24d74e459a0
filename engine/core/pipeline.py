"""The pipeline live and replay share, and its batch loop: admission (time and rate
limits) -> dedupe -> ordering by event time -> measure (the geofence kernels) -> decide
(trackers) -> episodes (alert records), with device health alongside."""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.core.episodes import EpisodeBook, book_state, load_book
from engine.core.fences import Fences
from engine.core.health.clock import ArrivalClock
from engine.core.health.monitor import Health
from engine.core.history import FixHistory
from engine.core.intake.admission import Admission
from engine.core.intake.columns import routes, usual_columns
from engine.core.intake.dedupe import SeqDeduper
from engine.core.intake.ordering import Released, Reorderer
from engine.core.intake.seqspace import Citer, SeqSpaces
from engine.core.measure import Measure, Measured, Step
from engine.core.outliers import Outliers
from engine.core.registry import Registry
from engine.core.remap import Ids, Remap
from engine.core.schedules import Schedules
from engine.core.trackers import Trackers
from engine.core.transit import Routes
from engine.core.victims import Proximity
from engine.settings import Settings
from engine.wire.alerts import Alert, Evidence
from engine.wire.decode import GatewayBook
from engine.wire.fastpath import FixColumns, FixLines
from engine.wire.records import (
    EVENT_CODE,
    FIX_DTYPE,
    SRC_CODE,
    DeadLetter,
    FixRecord,
    Record,
    record_json,
)
from zones.compile import compile_zones
from zones.model import ZoneSet


@dataclass
class BatchResult:
    """What one batch produced: alert lifecycle records and dead letters, plus counts."""

    alerts: list[Alert] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    fixes: int = 0
    events: int = 0
    duplicates: int = 0
    late: int = 0
    elsewhere: int = 0  # records of devices another shard owns (zones/shard.py), dropped
    # Records refused without changing any state (unknown device; over the rate limit,
    # out of time: admission.TRACELESS), as indices into the batch: a step stored without
    # them replays to the same state, so they cost the evidence ledger nothing
    traceless: list[int] = field(default_factory=list)
    # Reporting-rate commands: (tag, rate_s) for tagwatch/v1/tags/{tag}/cmd (the payload
    # is engine.wire.commands.encode_rate_command(rate_s))
    commands: list[tuple[str, float]] = field(default_factory=list)


# Episodes during which a tag is asked to report faster
FAST_KINDS = frozenset({"zone_approach", "zone_breach", "proximity", "proximity_approach"})


class Pipeline:
    """Synchronous core. Feed it batches of decoded records with `process`; call `finish`
    at the end of a replay so episodes whose tag was last seen outside are closed."""

    def __init__(self, zoneset: ZoneSet, settings: Settings | None = None) -> None:
        self.settings = st = settings or Settings()
        self.zoneset = zoneset
        # What each gateway may speak for (decoding checks a gateway batch against it)
        self.gateways = GatewayBook({g.id: g.tags for g in zoneset.gateways}, zoneset.elsewhere)
        self.table = compile_zones(zoneset)
        self.registry = reg = Registry(zoneset, self.table.subject_ids)
        self._route = routes(reg.slot_of, zoneset.elsewhere)  # (intake/columns.py)
        n = reg.n_slots
        self.admission = Admission(reg, st)  # time and rate limits per record
        self.spaces = SeqSpaces(n, st.restart_seq_drop)  # device restarts: seq spaces
        self.dedupe = SeqDeduper(n, st.dedupe_window)
        ordered = np.arange(n) < reg.n_tags  # phones' seq is a timestamp
        self.reorder = Reorderer(ordered, hold_max=st.hold_max, hold_s=st.hold_s)
        self.schedules = Schedules(zoneset, self.table, reg)
        self.book = EpisodeBook(st.evidence_max, watch=FAST_KINDS)
        self.book.cite = Citer(reg.slot, self.spaces)
        self.trackers = Trackers(self.book, st, len(self.table.zone_ids))
        self.history = FixHistory(n)
        self.fences = Fences(self.table, reg, st, self.schedules, self.trackers)
        binds = self.schedules.binds if self.schedules.excl_sched else None
        self.routes = Routes(self.table, reg, st, self.trackers, self.fences.is_inclusion, binds)
        self.proximity = Proximity(reg, st, self.trackers)
        self.outliers = Outliers(self.table, reg, st, self.book)
        self.outliers.binds = binds
        self.measure = Measure(self.table, reg, st, self.history, self.fences, self.routes)
        self.health = Health(reg, self.book, st)
        self.clock = ArrivalClock(st.clock_max_jump_s)
        self.fast: set[str] = set()  # tags asked to report every report_fast_s
        # Rows the last intake refused for their time (too far ahead or behind): clock_fault
        self._time_refused: np.ndarray | None = None

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
        arr = self._intake(records, origin, res, wall)
        if self._witnessed(wall):
            self._clock_witness(arr, float(wall))  # type: ignore[arg-type]
        if arr.shape[0]:
            if wall is None:
                clocks = self.clock.observe(arr["slot"], arr["t"])
            else:
                clocks = np.full(arr.shape[0], self.clock.set(wall))
            self.health.admit(arr, clocks, self.history.last)
            self._release(self.reorder.admit(arr, arrival), res)
        elif wall is not None:
            self.clock.set(wall)
        self._after(res)
        return res

    def _witnessed(self, wall: float | None) -> bool:
        """Live on wall time, which witnesses records' arrival (clock_fault judges it)."""
        return wall is not None and self.settings.live_clock == "wall" and self.health.clock.enabled

    def _clock_witness(self, arr: np.ndarray, wall: float) -> None:
        """Live on wall time: every record's event time against its arrival (clock_fault),
        those refused for being too far ahead or behind first."""
        refused, self._time_refused = self._time_refused, None
        slots, t = arr["slot"], arr["t"]
        n = 0
        if refused is not None:
            n = refused.shape[0]
            slots = np.concatenate([refused["slot"], slots])
            t = np.concatenate([refused["t"], t])
        reg, cite = self.registry, self.book.cite

        def evidence(i: int) -> Evidence:
            if i < n:  # never admitted: its own seq, as the device sent it
                return (reg.device_ids[int(slots[i])], int(refused["seq"][i]))  # type: ignore[index]
            return cite(reg.device_ids[int(slots[i])], int(arr["seq"][i - n]))

        self.health.clock.observe(slots, t, wall, evidence)

    def tick(self, now: float, wall: float | None = None) -> BatchResult:
        """Live: give up seq gaps held longer than hold_wall_s of arrival time, and let
        wall time pass for silence."""
        res = BatchResult()
        if wall is not None:
            self.clock.set(wall)
        self._release(self.reorder.expire(now, self.settings.hold_wall_s), res)
        self._after(res)
        return res

    def finish(self) -> list[Alert]:
        """End of input (replay): release everything held, then close episodes whose tag
        was last seen outside and settle suspect fixes."""
        res = BatchResult()
        self._release(self.reorder.flush(), res)
        for sus in self.outliers.suspects.values():
            self._apply(sus)  # no next fix to refute it: never silence a possible breach
        self.outliers.suspects.clear()
        self.trackers.finish()
        self.health.finish()
        return self.book.drain()

    # -- state as data (snapshots, configuration reloads: engine/core/remap.py) ----------
    def ids(self) -> Ids:
        """What this configuration's slots, subjects, zones and pairs stand for."""
        reg, table = self.registry, self.table
        subj = reg.subject_ids
        return Ids(
            tuple(reg.device_ids), reg.n_tags, tuple(subj), tuple(table.zone_ids),
            tuple(subj[int(s)] for s in table.subject), tuple(int(k) for k in table.kind),
            tuple((subj[p.subject], p.device_id) for p in reg.pairs),
        )  # fmt: skip

    def export_state(self) -> dict[str, Any]:
        """Everything the pipeline has learnt, as plain data keyed by ids (between steps)."""
        ids = self.ids()
        dev = list(ids.devices)
        return {
            "ids": ids.data(),
            "admission": self.admission.export_state(),
            "spaces": self.spaces.export_state(dev),
            "dedupe": self.dedupe.export_state(),
            "reorder": self.reorder.export_state(dev),
            "schedules": self.schedules.export_state(),
            "book": book_state(self.book, ids),
            "trackers": self.trackers.export_state(ids),
            "history": self.history.export_state(),
            "proximity": self.proximity.export_state(),
            "outliers": self.outliers.export_state(),
            "health": self.health.export_state(ids),
            "clock": self.clock.export_state(dev),
            "fast": sorted(self.fast),
        }

    def import_state(self, d: dict[str, Any], take: bool = False) -> Remap:
        """Load exported state into this freshly built pipeline, mapped by ids onto its
        configuration (which may differ: devices, zones and pairs that are gone are dropped,
        new ones start empty). ValueError or KeyError when `d` is not such state.

        `take`: `d` was made for this call alone (a decoded snapshot) and nothing uses it
        afterwards; on an unchanged configuration its arrays then become this pipeline's
        own, each replacing (and freeing) the fresh one, instead of being copied into it."""
        m = Remap.of(d["ids"], self.ids(), take)
        self.admission.import_state(d["admission"], m)
        self.spaces.import_state(d["spaces"], m)
        self.dedupe.import_state(d["dedupe"], m)
        self.reorder.import_state(d["reorder"], m)
        self.schedules.import_state(d["schedules"])
        load_book(self.book, d["book"], m)
        self.trackers.import_state(d["trackers"], m)  # after the book: open episodes
        self.history.import_state(d["history"], m)
        self.proximity.import_state(d["proximity"], m)
        self.outliers.import_state(d["outliers"], m)
        self.health.import_state(d["health"], m)
        self.clock.import_state(d["clock"], m)
        self.fast = {str(t) for t in d["fast"] if self.registry.slot(str(t)) >= 0}
        return m

    # -- stages ------------------------------------------------------------------------
    def _intake(
        self, records: Sequence[Record], origin: str, res: BatchResult, wall: float | None = None
    ) -> np.ndarray:
        """Records -> fix rows of known devices that pass admission and are not duplicates;
        the rest become dead letters (or are counted as duplicates)."""
        reg = self.registry
        slot_of = reg.slot_of
        nan = math.nan
        taken: list[int] = []  # the record path's rows
        rows: Sequence[int] = taken  # index in `records` of each row
        # The rows' fields, column by column (FIX_DTYPE's order), and each one's boot
        cols: tuple[list[Any], ...] = ([], [], [], [], [], [], [], [], [])
        slots, seqs, ts, lats, lons, accs, batts, srcs, events = cols
        boots: list[int] = []
        if isinstance(records, FixLines):
            records = records.batch()
        if isinstance(records, FixColumns):  # other shards' elements a gateway sent, skipped
            res.elsewhere += records.skipped
        usual = usual_columns(records, self._route)
        if usual is not None:
            rows, cols, boots, elsewhere = usual
            res.elsewhere += len(elsewhere)  # another shard's (a gateway's batch): no trace
            res.traceless.extend(elsewhere)
        for i, r in enumerate(() if usual is not None else records):
            s = slot_of.get(r.device, -1)
            if s < 0:
                if r.device in self.zoneset.elsewhere:  # another shard's: not bad input
                    res.elsewhere += 1
                else:
                    res.dead.append(_unknown(r, origin))
                res.traceless.append(i)
                continue
            taken.append(i)
            slots.append(s)
            seqs.append(r.seq)
            ts.append(r.t)
            batts.append(-1 if r.batt is None else r.batt)
            boots.append(-1 if r.boot is None else r.boot)
            if isinstance(r, FixRecord):
                lats.append(r.lat)
                lons.append(r.lon)
                accs.append(r.acc)
                srcs.append(SRC_CODE.get(r.src, 255))
                events.append(0)
            else:
                lats.append(nan)
                lons.append(nan)
                accs.append(nan)
                srcs.append(255)
                events.append(EVENT_CODE.get(r.event, 255))  # type: ignore[union-attr]
        n = len(rows)
        arr = np.empty(n, dtype=FIX_DTYPE)
        for name, col in zip(FIX_DTYPE.names, cols, strict=True):  # type: ignore[arg-type]
            arr[name] = col
        boot = np.array(boots, dtype=np.int64)
        # Time and rate limits, before dedupe: a rejected record changes no state
        ok, why, traceless = self.admission.judge(arr, wall)
        timing = self.admission.verdict_of_time
        self._time_refused = None
        if timing is not None and self._witnessed(wall):
            # The clock_fault witness learns from them: they leave a trace and stay stored
            self._time_refused = arr[timing]
            traceless = traceless & ~timing
        if why:
            for k, reason in why:
                r = records[rows[k]]
                res.dead.append(DeadLetter(origin, record_json(r), reason, device=r.device))
            res.traceless.extend(rows[k] for k in np.flatnonzero(traceless).tolist())
            res.traceless.sort()
            arr, boot = arr[ok], boot[ok]
            n = arr.shape[0]
        # A tag's seq spaces (boots, restarts) become one effective seq; phones' seq is time
        tags = arr["slot"] < reg.n_tags
        if tags.all():
            arr["seq"] = self.spaces.map(arr["slot"], arr["seq"], arr["t"], boot)
        elif tags.any():
            arr["seq"][tags] = self.spaces.map(
                arr["slot"][tags], arr["seq"][tags], arr["t"][tags], boot[tags]
            )
        if self.spaces.restarted:
            for restart in self.spaces.restarted:
                self.health.restarted(*restart)
            self.spaces.restarted.clear()
        keep = self.dedupe.filter(arr["slot"], arr["seq"])
        res.duplicates += int(n - keep.sum())
        return arr[keep]

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
        m = self.measure.batch(arr)
        self.history.heading(m.tags["slot"], m.tags["t"], m.ahead, self.settings.ahead_s)
        suspects = self.outliers.suspects
        visit = m.visit
        prox = np.flatnonzero(m.prox)
        quiet = np.zeros(arr.shape[0], dtype=np.bool_)  # proximity steps that change nothing
        busy = {sus.subject for sus in suspects.values()}  # with a fix held from before
        if prox.shape[0]:  # fixes that may be near a protected device (or follow one that was)
            q = self.proximity.quiet(arr, prox, m.subj, m.sigma[m.tag_pos[prox]], busy)
            visit = np.union1d(visit, prox[~q])
            quiet[prox[q]] = True
        if suspects:  # a tag with a suspect fix: its next fix settles it
            visit = np.union1d(visit, np.flatnonzero(np.isin(arr["slot"], list(suspects))))
        idle = self._idle(m, quiet, busy)
        # rows with a zone pair inside: the outlier check may hold them as suspects
        inside = np.zeros(arr.shape[0], dtype=np.bool_)
        inside[m.near_rows[m.dist[m.near] < 0.0]] = True
        heap = visit.tolist()  # sorted: a valid heap; rows may be added while walking
        if not heap:
            self.history.remember(m.tags)
            return
        seen: set[int] = set()
        # The walked rows' values: whole columns when many rows are walked, else each read
        # when walked (a gateway's batch of thousands usually walks a handful)
        cols = (arr["slot"], m.subj, arr["t"], arr["lat"], arr["lon"], arr["acc"])
        many = len(heap) * 3 >= arr.shape[0]
        slots, subj, t, lat, lon, acc = (c.tolist() if many else _Items(c) for c in cols)
        while heap:
            i = heapq.heappop(heap)
            if i in seen:
                continue
            seen.add(i)
            slot = slots[i]
            if subj[i] < 0:  # Proximity.victim_fix
                self.proximity.add_fix(slot, t[i], lat[i], lon[i], acc[i])
                continue
            held = slot in suspects
            if idle[i] and not held and not inside[i]:  # no suspect: its steps would
                for z in m.zones_at(i):  # change nothing but the schedule cache
                    self.fences.touch(z, t[i])
                continue
            step = m.step(i)
            if held and not self.outliers.settle(suspects.pop(slot), step, self._apply):
                step.transits = []  # its previous fix was an outlier: no segment from it
                step.onward = []
            if self.outliers.is_suspect(step):
                suspects[slot] = step
                later = np.flatnonzero(arr["slot"][i + 1 :] == slot)
                if later.shape[0]:
                    heapq.heappush(heap, i + 1 + int(later[0]))
                continue
            if idle[i] and not held:  # not a suspect after all
                for z in m.zones_at(i):
                    self.fences.touch(z, t[i])
                continue
            if quiet[i]:  # walked for its zones; as of now (not held) no proximity step
                step.prox = False
            self._apply(step)
        self.history.remember(m.tags)

    def _idle(self, m: Measured, quiet: np.ndarray, busy: set[int]) -> np.ndarray:
        """Rows whose walk changes nothing but the schedule cache: every zone pair of theirs
        idle (Fences.idle_rows), no route, no proximity step (or a quiet one), and no
        suspect of their subject held from before (it may step the same zones first)."""
        n = m.arr.shape[0]
        if m.near.shape[0] == 0:
            return np.zeros(n, dtype=np.bool_)
        rows = m.near_rows
        pairs = self.fences.idle_rows(
            m.arr, rows, m.zidx[m.near], m.dist[m.near], m.sigma[m.tag_pos[rows]]
        )
        idle = np.bincount(rows[pairs], minlength=n) == np.bincount(rows, minlength=n)
        idle &= (np.bincount(rows, minlength=n) > 0) & (~m.prox | quiet)
        idle[m.transit_rows] = False
        idle[m.tags_onward()] = False
        if busy:
            idle &= ~np.isin(m.subj, list(busy))
        return idle

    def _apply(self, st: Step) -> None:
        # The fix's own evidence first: a fix deep inside decides by itself; a straight-line
        # entry from the previous fix matters only when it did not.
        for z, sd in st.zone_pairs:
            self.fences.step(z, sd, st.sigma, st.row)
        for z, depth, f_in, f_out in st.transits:
            self.routes.transit_step(st.row, st.prev, st.pprev, z, depth, f_in, f_out)
        for z, _ in st.zone_pairs:  # a short run inside that opened a breach, followed
            self.routes.crossing_step(st.row, st.prev, st.pprev, z)
        for z, depth, t_in, t_out, *turn in st.onward:  # turn: absent in older snapshots
            self.routes.onward_step(st.row, st.prev, z, depth, t_in, t_out, turn)
        if st.prox:
            self.proximity.step(st.subject, st.row, st.sigma)

    def _after(self, res: BatchResult) -> None:
        """Health decisions that follow a batch, then the reporting-rate commands."""
        now = self.clock.now
        if math.isfinite(now):
            self.health.settle(list(self.book.out), self.fences.silence_context)
            self.health.check(now, self.history.last, self.fences.silence_context)
            # Episodes about a zone or subject whose validity has ended by now close at
            # its valid_until, even when their tag has nothing more to say
            if now >= self.schedules.first_end:
                for key, kind, until, reason in self.schedules.ended(list(self.book.open), now):
                    self.trackers.end(key, kind, until, reason)
        res.alerts = self.book.drain()
        st = self.settings
        # only tags whose fast episodes began or ended, or that began or stopped heading for
        # a zone (FixHistory.heading)
        changed = self.book.take_changed()
        if self.history.turned:
            ids = self.registry.device_ids
            changed = sorted({*changed, *(ids[s] for s in self.history.take_turned())})
        for tag in changed:
            fast = tag in self.book.watched or bool(self.history.ahead[self.registry.slot(tag)])
            if fast != (tag in self.fast):
                res.commands.append((tag, st.report_fast_s if fast else st.report_interval_s))
                (self.fast.add if fast else self.fast.discard)(tag)


def _unknown(r: Record, origin: str) -> DeadLetter:
    return DeadLetter(
        origin,
        record_json(r),
        f"unknown device '{r.device}': not a tag or protected device in the subjects file",
        device=r.device,
    )


class _Items:
    """A column read one Python value at a time (`ndarray.item`: what `tolist` gives)."""

    __slots__ = ("item",)

    def __init__(self, col: np.ndarray) -> None:
        self.item = col.item

    def __getitem__(self, i: int) -> Any:
        return self.item(i)
