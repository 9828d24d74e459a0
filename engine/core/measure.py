"""The measure stage: a batch's fixes against the geometry, all at once in numpy (each
tag's previous fixes, distances to its subject's zones, straight and onward routes), then
one `Step` per fix that can change a decision, for the decisions to walk in time order."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.core.episodes import R68_PER_SIGMA as R68
from engine.core.fences import Fences
from engine.core.history import FixHistory, speeds
from engine.core.registry import Registry
from engine.core.transit import Onward, Routes
from engine.settings import Settings
from zones.compile import ZoneTable
from zones.geofence import segment_distance, signed_distance_by_subject


@dataclass
class Step:
    """One tag fix with everything the decisions need, so it can be held and applied later."""

    row: np.void
    subject: int
    sigma: float
    prev: np.ndarray
    pprev: np.ndarray
    zone_pairs: list[tuple[int, float]]
    transits: list[tuple[int, float, float, float]]
    prox: bool
    # (zone, depth, entry t, exit t, turn lat, turn lon) of a possible route into a zone
    onward: Onward = field(default_factory=list)


@dataclass
class Measured:
    """One batch's fix rows (`arr`, tags' and protected devices') as measured. Per row: its
    subject (-1: a protected device) and whether proximity is checked; per tag row (`tags`,
    `tag_pos[row]`): sigma, previous fixes, onward routes; per near (fix, zone) pair and
    straight-segment transit, the rows they belong to (sorted)."""

    arr: np.ndarray
    subj: np.ndarray
    tags: np.ndarray
    tag_pos: np.ndarray
    sigma: np.ndarray
    prev: np.ndarray
    pprev: np.ndarray
    zidx: np.ndarray
    dist: np.ndarray
    near: np.ndarray
    near_rows: np.ndarray
    transit: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    transit_rows: np.ndarray
    onward: dict[int, Onward]
    prox: np.ndarray
    visit: np.ndarray  # rows that can change something but for proximity, sorted
    ahead: np.ndarray  # per tag row: heading for an exclusion zone in force (Measure.ahead)

    # Per-batch lists the steps are read from (made on the first step)
    _lists: tuple[list[Any], ...] | None = field(default=None, init=False, repr=False)

    def _read(self) -> tuple[list[Any], ...]:
        """Per row: where its near pairs and its transits start (one more at the end);
        per near pair: zone, distance; per transit: zone, depth, f_in, f_out; per tag
        row: sigma; per row: subject, proximity, tag row; the (zone, distance) of each near
        pair and the (zone, depth, f_in, f_out) of each transit, as a step takes them."""
        rows = np.arange(self.arr.shape[0] + 1)
        pairs, depth, f_in, f_out = self.transit
        self._lists = (
            np.searchsorted(self.near_rows, rows).tolist(),
            np.searchsorted(self.transit_rows, rows).tolist(),
            self.zidx[self.near].tolist(), self.dist[self.near].tolist(),
            self.zidx[pairs].tolist(), depth.tolist(), f_in.tolist(), f_out.tolist(),
            self.sigma.tolist(), self.subj.tolist(), self.prox.tolist(), self.tag_pos.tolist(),
        )  # fmt: skip
        nz, nd, tz, td, tin, tout = self._lists[2:8]
        self._lists += (list(zip(nz, nd, strict=True)), list(zip(tz, td, tin, tout, strict=True)))
        return self._lists

    def tags_onward(self) -> np.ndarray:
        """The rows with a possible onward route."""
        return np.flatnonzero(self.tag_pos >= 0)[list(self.onward)]

    def zones_at(self, i: int) -> list[int]:
        """The zones of row i's near pairs, in order."""
        near_at, nz = (self._lists or self._read())[:3:2]
        return nz[near_at[i] : near_at[i + 1]]  # type: ignore[no-any-return]

    def step(self, i: int) -> Step:
        """Row i (a tag's fix) with its evidence."""
        near_at, transit_at, _, _, _, _, _, _, sigma, subj, prox, tag_pos, pairs, routes = (
            self._lists or self._read()
        )
        k = tag_pos[i]
        zone_pairs = pairs[near_at[i] : near_at[i + 1]]
        transits = routes[transit_at[i] : transit_at[i + 1]]
        return Step(self.arr[i], subj[i], sigma[k], self.prev[k], self.pprev[k], zone_pairs,
                    transits, prox[i], self.onward.get(k, []))  # fmt: skip


@dataclass(eq=False)
class Measure:
    """Measures batches of fix rows (processing order) for the decisions."""

    table: ZoneTable
    registry: Registry
    settings: Settings
    history: FixHistory
    fences: Fences
    routes: Routes
    _paired_of: np.ndarray | None = field(default=None, init=False, repr=False)

    def _paired(self) -> np.ndarray:
        """Per subject: whether they have protected devices."""
        if self._paired_of is None:
            paired = np.zeros(len(self.registry.subject_ids), dtype=np.bool_)
            paired[list(self.registry.pairs_of_subject)] = True
            self._paired_of = paired
        return self._paired_of

    def batch(self, arr: np.ndarray) -> Measured:
        reg = self.registry
        subj = reg.subject_of_slot[arr["slot"]]
        is_tag = subj >= 0
        tag_rows = np.flatnonzero(is_tag)
        tags = arr[tag_rows]
        cur = np.stack([tags["t"], tags["lat"], tags["lon"], tags["acc"], tags["seq"]], axis=1)
        hist = self.history.previous(tags["slot"], cur)
        prev = hist[:, 0]
        offsets, zidx, dist = signed_distance_by_subject(
            self.table, tags["lat"], tags["lon"], subj[tag_rows], cutoff=self.fences.cutoff
        )
        pair_fix = np.repeat(np.arange(tag_rows.shape[0]), np.diff(offsets))
        sigma = np.maximum(tags["acc"].astype(np.float64), self.settings.acc_floor_m) / R68
        near = self.fences.near_pairs(tags, pair_fix, zidx, dist, sigma[pair_fix])
        transit = self.routes.transit_pairs(tags, prev, pair_fix, zidx, dist)
        onward = self.routes.onward_rows(cur, hist, subj[tag_rows])
        pair_row = tag_rows[pair_fix]
        prox = np.zeros(arr.shape[0], dtype=np.bool_)
        if reg.pairs_of_subject:
            prox[tag_rows] = self._paired()[subj[tag_rows]]
        # Only rows that can change something are walked in Python, in time order (the
        # pipeline adds the `prox` rows whose proximity step is not quiet: victims.py)
        walked = ~is_tag
        walked[pair_row[near]] = True
        walked[pair_row[transit[0]]] = True
        if onward:
            walked[tag_rows[list(onward)]] = True
        visit = np.flatnonzero(walked)
        tag_pos = np.full(arr.shape[0], -1, dtype=np.int64)
        tag_pos[tag_rows] = np.arange(tag_rows.shape[0])
        return Measured(
            arr, subj, tags, tag_pos, sigma, prev, hist[:, 1], zidx, dist, near, pair_row[near],
            transit, pair_row[transit[0]], onward, prox, visit,
            self.ahead(cur, prev, tags["slot"], pair_fix, zidx, dist),
        )  # fmt: skip

    def ahead(
        self, cur: np.ndarray, prev: np.ndarray, slot: np.ndarray, pair_fix: np.ndarray,
        zidx: np.ndarray, dist: np.ndarray,
    ) -> np.ndarray:  # fmt: skip
        """Per tag row (`cur`, `prev`: its fix and the one before, t, lat, lon, acc, ...;
        `slot`: its tag's): whether the tag is heading for an exclusion zone in force.
        Moving at least ahead_min_speed_mps (beyond both fixes' accuracy; as the fixes are,
        while an earlier fix's finding holds: FixHistory.heading), its straight-on track
        for the next ahead_s at that speed passes within ahead_margin_m and two sigma of
        the zone."""
        st = self.settings
        out = np.zeros(cur.shape[0], dtype=np.bool_)
        if st.ahead_s <= 0.0 or zidx.shape[0] == 0:
            return out
        # per tag row first (a fix has a pair per zone of its subject within the cutoff)
        dt_row = cur[:, 0] - prev[:, 0]
        held = self.history.until[slot] > cur[:, 0]
        v_row = speeds(prev, cur, held if held.any() else None)
        moving = (dt_row > 0.0) & (dt_row <= st.transit_max_gap_s)
        moving &= v_row >= st.ahead_min_speed_mps  # NaN (no fix before) fails each test
        f, z, d = pair_fix, zidx, dist
        exclusion = ~self.fences.is_inclusion[z]
        schedules = self.fences.schedules

        def in_force(pairs: np.ndarray) -> np.ndarray:
            """The (fix, zone) pairs where `pairs` is set whose zone binds at the fix's time
            (validity and schedules)."""
            k = np.flatnonzero(pairs)
            if k.shape[0] and schedules.limited:
                k = k[schedules.binds_mask(z[k], cur[f[k], 0])]
            return k

        if st.watch_near_m > 0.0:  # near enough to step in unseen between two fixes
            out[f[in_force(exclusion & (d <= st.watch_near_m))]] = True
        if not moving.any():
            return out
        v, dt = v_row[f], dt_row[f]
        k = in_force(moving[f] & exclusion & (d <= v * st.ahead_s + st.ahead_margin_m))
        if k.shape[0] == 0:
            return out
        z, f = z[k], f[k]
        a, b = prev[f], cur[f]
        r = (st.ahead_s / dt[k])[:, None]
        end = b[:, 1:3] + (b[:, 1:3] - a[:, 1:3]) * r  # straight on at the same speed
        gap = segment_distance(self.table, b[:, 1], b[:, 2], end[:, 0], end[:, 1], z)
        sig = np.maximum(b[:, 3], st.acc_floor_m) / R68
        out[f[gap <= st.ahead_margin_m + 2.0 * sig]] = True
        return out
