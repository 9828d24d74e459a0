"""Protected devices (victim phones): where one was at a given moment and how sure that is
(fixes joined on event time, as of the tag fix, not arrival; silence grows the
uncertainty), and the proximity decisions of a subject's fixes against them."""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.core.decide import BreachTracker, Obs
from engine.core.episodes import TrackerKey, TrackerKind, Where, sigma_of
from engine.core.fences import _keeps_nothing
from engine.core.history import dist_m
from engine.core.registry import Registry
from engine.core.schedules import PERIOD_ENDED
from engine.core.trackers import Trackers
from engine.settings import Settings
from engine.wire.records import ROW_LAT, ROW_LON, ROW_SEQ, ROW_SLOT, ROW_T
from zones.kernels.frame import haversine

if TYPE_CHECKING:
    from engine.core.remap import Remap

HISTORY = 64  # fixes kept per device: enough to bracket late tag fixes
# The episodes of one (subject, protected device) pair: (tracker kind, alert kind)
_PAIR_EPISODES = (
    (TrackerKind.PROXIMITY, "proximity"),
    (TrackerKind.PROXIMITY_APPROACH, "proximity_approach"),
    (TrackerKind.VICTIM_STALE, "victim_device_stale"),
)
# What `Proximity.step` reads of a subject: id, tagging period [from, until) and per pair
# the device's slot and id, radius and warn (m), the three trackers' keys, the pair's subject
_SubjectPairs = tuple[
    str, float, float,
    tuple[tuple[int, str, float, float, TrackerKey, TrackerKey, TrackerKey, str], ...],
]  # fmt: skip
# Whether `Proximity.quiet` may spare the walk the fixes whose proximity step provably
# changes nothing (off: every such fix is stepped; the tests compare the two)
PRUNE = True
# Whether `Proximity.quiet` builds its position lists subject by subject, as it did (its
# oracle; off: all at once, `_quiet`)
LISTS = False


@dataclass(frozen=True, slots=True)
class VictimPosition:
    lat: float
    lon: float
    sigma: float  # metres, per axis, including drift since the nearest fix
    age: float  # seconds from t to the nearest fix used


@dataclass
class VictimTrack:
    """Recent fixes of one protected device, sorted by event time."""

    t: list[float] = field(default_factory=list)
    fixes: list[tuple[float, float, float]] = field(default_factory=list)  # lat, lon, acc
    # t is strictly increasing without NaN: a later fix is appended (else bisect_left's
    # answer among NaNs is not "the end"; once False, stays False: `add` as it was)
    ordered: bool = field(init=False, default=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        ts = self.t
        self.ordered = all(a < b for a, b in itertools.pairwise(ts)) and (not ts or ts[0] == ts[0])

    def add(self, t: float, lat: float, lon: float, acc: float) -> None:
        ts = self.t
        # Later than the last of an ordered track: bisect_left's answer is len(ts)
        if self.ordered and ts and t > ts[-1]:
            ts.append(t)
            self.fixes.append((lat, lon, acc))
            if len(ts) > HISTORY:
                del ts[0], self.fixes[0]
            return
        i = bisect.bisect_left(ts, t)
        if i < len(ts) and ts[i] == t:
            return
        ts.insert(i, t)
        self.fixes.insert(i, (lat, lon, acc))
        if len(ts) > HISTORY:
            del ts[0], self.fixes[0]
        if t != t:
            self.ordered = False

    def at(self, t: float, drift_mps: float, acc_floor: float) -> VictimPosition | None:
        """Position as of event time t: the latest fix taken at or before t, with sigma
        grown by drift_mps x its age (the earliest fix after t when there is none before).

        An as-of join, not interpolation: what the engine concludes about a tag fix must
        not depend on whether the phone's next fix happened to arrive before it or after.
        None when there is no fix at all."""
        if not self.t:
            return None
        i = bisect.bisect_right(self.t, t)
        j = i - 1 if i > 0 else 0
        lat, lon, acc = self.fixes[j]
        age = abs(t - self.t[j])
        sig = math.hypot(sigma_of(max(acc, acc_floor)), drift_mps * age)
        return VictimPosition(lat, lon, sig, age)


class Proximity:
    """Every protected device's recent fixes by slot, and the proximity and stale-position
    trackers of the (subject, protected device) pairs."""

    def __init__(self, registry: Registry, settings: Settings, trackers: Trackers) -> None:
        self.registry = registry
        self.settings = settings
        self.trackers = trackers
        self.victims: dict[int, VictimTrack] = {}
        self._reach: tuple[list[float], list[int]] | None = None  # quiet's, made once
        self._table: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._subjects: dict[int, _SubjectPairs] = {}  # step's, subject by subject

    def victim_fix(self, slot: int, row: np.void) -> None:
        """A fix of a protected device."""
        self.add_fix(slot, float(row["t"]), float(row["lat"]), float(row["lon"]), float(row["acc"]))

    def add_fix(self, slot: int, t: float, lat: float, lon: float, acc: float) -> None:
        """`victim_fix`, given the row's fields."""
        track = self.victims.get(slot)
        if track is None:
            track = self.victims[slot] = VictimTrack()
        track.add(t, lat, lon, acc)

    def step(self, s: int, row: np.void, sigma: float) -> None:
        """A fix of subject s against each protected device of theirs."""
        subject, t_from, t_until, pairs = self._subjects.get(s) or self._subject(s)
        f = row.item()  # every field at once (FIX_DTYPE): cheaper than three by name
        t = f[ROW_T]
        if not t_from <= t < t_until:
            self._end_period(s, t)
            return  # outside the tagging period: no proximity decisions
        st, trackers, victims = self.settings, self.trackers, self.victims
        live = trackers.live
        drift, floor, stale_s = st.victim_drift_mps, st.acc_floor_m, st.victim_stale_s
        tag, seq, lat, lon = (
            self.registry.device_ids[f[ROW_SLOT]],
            f[ROW_SEQ],
            f[ROW_LAT],
            f[ROW_LON],
        )
        for device, device_id, radius, warn, key, ring, skey, s_subject in pairs:
            track = victims.get(device)
            pos = None if track is None else track.at(t, drift, floor)
            if pos is None:
                continue  # no victim position yet: nothing to compare against
            age = pos.age
            d = dist_m(lat, lon, pos.lat, pos.lon)
            stale = age > stale_s
            if (stale or skey in live) and self._stale_obs(
                skey, s_subject, device_id, stale, radius + warn - d, sigma, tag, t, seq
            ):
                continue
            sig = math.hypot(sigma, pos.sigma)
            # The subject's fix, never the protected device's position: alert records go to
            # every monitor, a victim's whereabouts only to who is allowed and logged
            at: Where = (row, "distance_m", d, age)
            # A tracker made for a fix it keeps nothing of would be forgotten at once
            br: BreachTracker | None = None
            if key in live or not _keeps_nothing("proximity", radius - d, sig, st):
                br = trackers.breach(key, "proximity", subject, device_id, "critical")
                br.observe(Obs(t, radius - d, sig, tag, seq), at)
            if warn > 0.0:
                near = radius + warn - d
                if ring in live or not (
                    (br is not None and br.episode is not None)  # supersedes a fresh ring
                    or _keeps_nothing("proximity_approach", near, sig, st)
                ):
                    trackers.approach(ring, "proximity_approach", "high", subject, device_id,
                                      br, Obs(t, near, sig, tag, seq), at)  # fmt: skip
                    trackers.forget_if_idle(ring)
            trackers.forget_if_idle(key)

    def _subject(self, s: int) -> _SubjectPairs:
        """What `step` reads of subject s (kept in `_subjects`): its id, tagging period and
        per pair: the device's slot and id, radius, warn ring (m), the keys of the pair's
        proximity, approach and stale trackers, and the id of the pair's own subject."""
        reg = self.registry
        pairs = []
        for k in reg.pairs_of_subject[s]:
            pr = reg.pairs[k]
            pairs.append((
                pr.device, pr.device_id, pr.radius_m, pr.warn_m,
                TrackerKey(TrackerKind.PROXIMITY, k), TrackerKey(TrackerKind.PROXIMITY_APPROACH, k),
                TrackerKey(TrackerKind.VICTIM_STALE, k), reg.subject_ids[pr.subject],
            ))  # fmt: skip
        got = (
            reg.subject_ids[s], float(reg.subject_from[s]), float(reg.subject_until[s]),
            tuple(pairs),
        )  # fmt: skip
        self._subjects[s] = got
        return got

    def quiet(
        self, arr: np.ndarray, rows: np.ndarray, subj: np.ndarray, sigma: np.ndarray,
        busy: set[int],
    ) -> np.ndarray:  # fmt: skip
        """Of the batch `arr`'s tag rows `rows` (increasing; their subjects have protected
        devices; `sigma` theirs; `subj`: every row's subject, -1: a protected device's), those whose
        `step`, whenever the walk reaches them, provably changes no state, so the walk may
        skip them: in its subject's tagging period, the fix is beyond radius + warn (by a
        metre, for rounding) of every position `at` can give each of the subject's devices
        for it (from the track, its latest fix at or before the batch's first row time and
        those after; the batch's fixes of the device), while none of the subject's pair
        trackers lives, the subject is not in `busy` (a suspect fix held from before steps
        when it is settled) and no earlier row of the subject in the batch is not quiet
        (its step might make a tracker). A fresh tracker shown a finite depth <= 0 (any
        sigma > 0; stale or not) keeps nothing (BreachTracker.observe: it is confidently
        outside, or pending starts only at a fix inside) and is forgotten at once."""
        quiet = np.zeros(rows.shape[0], dtype=np.bool_)
        if not PRUNE or rows.shape[0] == 0:
            return quiet
        if not LISTS:
            return self._quiet(arr, rows, subj, sigma, busy)
        return self._quiet_lists(arr, rows, subj, sigma, busy)

    def _quiet(
        self, arr: np.ndarray, rows: np.ndarray, subj: np.ndarray, sigma: np.ndarray,
        busy: set[int],
    ) -> np.ndarray:  # fmt: skip
        """`quiet` in numpy, but for the tails of the devices' tracks: every (row, position
        of one of its subject's devices) pair at once, in no particular order."""
        reg = self.registry
        t = arr["t"][rows]
        tmin = float(t.min())
        reach, device, ptr, of_subject = self._pair_table()
        rs = subj[rows]
        us, u_of = np.unique(rs, return_inverse=True)
        # The subjects' pairs, and those with a pair tracker alive, or busy
        lo, n_k = ptr[us], ptr[us + 1] - ptr[us]
        pair = of_subject[_ranges(lo, n_k)]
        kinds = {kind for kind, _ in _PAIR_EPISODES}
        tracked = np.zeros(reach.shape[0], dtype=np.bool_)
        tracked[[key.idx for key in self.trackers.live if key.kind in kinds]] = True
        ok = np.bincount(np.repeat(np.arange(us.shape[0]), n_k)[tracked[pair]],
                         minlength=us.shape[0]) == 0  # fmt: skip
        if busy:
            ok &= ~np.isin(us, list(busy))
        # Per device of those pairs: its track's latest fix at or before the batch's first
        # row time and those after, then the batch's fixes of the device
        devs = np.unique(device[pair])
        victims = self.victims
        tail: list[tuple[float, float, float]] = []
        n_tail = []
        for dev in devs.tolist():
            track = victims.get(dev)
            if track is not None and track.t:
                j = bisect.bisect_right(track.t, tmin) - 1
                fixes = track.fixes[j if j > 0 else 0 :]
                tail += fixes
                n_tail.append(len(fixes))
            else:
                n_tail.append(0)
        n_t = np.asarray(n_tail, dtype=np.int64)
        vict = np.flatnonzero(subj < 0)
        vict = vict[np.argsort(arr["slot"][vict], kind="stable")]
        vslots = arr["slot"][vict]
        v_lo = np.searchsorted(vslots, devs, side="left")
        n_v = np.searchsorted(vslots, devs, side="right") - v_lo
        tails = np.asarray(tail, dtype=np.float64).reshape(-1, 3)
        plat = np.concatenate([tails[:, 0], arr["lat"][vict].astype(np.float64)])
        plon = np.concatenate([tails[:, 1], arr["lon"][vict].astype(np.float64)])
        t_lo = np.cumsum(n_t) - n_t
        v_lo += tails.shape[0]
        # Every (row, pair of its subject), then every (row, position of the pair's device)
        k_of_row = n_k[u_of]
        rk_row = np.repeat(np.arange(rows.shape[0]), k_of_row)
        rk_pair = of_subject[_ranges(lo[u_of], k_of_row)]
        d = np.searchsorted(devs, device[rk_pair])
        rr, cc, kk = [], [], []
        for start, cnt in ((t_lo[d], n_t[d]), (v_lo[d], n_v[d])):
            own = np.repeat(np.arange(d.shape[0]), cnt)
            rr.append(rk_row[own])
            cc.append(_ranges(start, cnt))
            kk.append(rk_pair[own])
        r_, c_, k_ = (np.concatenate(x) for x in (rr, cc, kk))
        return _quiet_rows(
            arr, rows, (r_, c_), plat, plon, reach[k_], (reg, rs, us, u_of, ok, t, sigma)
        )

    def _quiet_lists(
        self, arr: np.ndarray, rows: np.ndarray, subj: np.ndarray, sigma: np.ndarray,
        busy: set[int],
    ) -> np.ndarray:  # fmt: skip
        """`quiet` as it was, position lists built subject by subject (the oracle of
        `_quiet`: tests/test_prune.py)."""
        reg, live = self.registry, self.trackers.live
        t = arr["t"][rows]
        tmin = float(t.min())
        vict = np.flatnonzero(subj < 0)
        vict = vict[np.argsort(arr["slot"][vict], kind="stable")]
        vslots, at = np.unique(arr["slot"][vict], return_index=True)
        ends = np.append(at[1:], vict.shape[0])[: at.shape[0]]
        span = dict(zip(vslots.tolist(), zip(at.tolist(), ends.tolist(), strict=True), strict=True))
        vlat, vlon = arr["lat"][vict].tolist(), arr["lon"][vict].tolist()
        rs = subj[rows]
        us, u_of = np.unique(rs, return_inverse=True)
        # Per subject: the positions its devices can be given, each with its pair's reach
        lat: list[float] = []
        lon: list[float] = []
        reach: list[float] = []
        start = [0]
        bad: list[int] = []  # subjects with a pair tracker alive, or busy
        kinds = {kind for kind, _ in _PAIR_EPISODES}
        tracked = {key.idx for key in live if key.kind in kinds}  # pairs with a tracker
        victims, of_subject, none = self.victims, reg.pairs_of_subject, (0, 0)
        reach_of, device_of = self._pair_reach()
        for u, s in enumerate(us.tolist()):
            ks = of_subject[s]
            if s in busy or any(k in tracked for k in ks):
                bad.append(u)
            for k in ks:
                r, dev = reach_of[k], device_of[k]
                track = victims.get(dev)
                if track is not None and track.t:
                    j = bisect.bisect_right(track.t, tmin) - 1
                    fixes = track.fixes[j if j > 0 else 0 :]
                    lat += [f[0] for f in fixes]
                    lon += [f[1] for f in fixes]
                    reach += [r] * len(fixes)
                lo, hi = span.get(dev, none)  # the batch's fixes of the device
                lat += vlat[lo:hi]
                lon += vlon[lo:hi]
                reach += [r] * (hi - lo)
            start.append(len(lat))
        ok = np.ones(us.shape[0], dtype=np.bool_)
        ok[bad] = False
        # Every (row, position) of the row's subject
        n = np.diff(start)
        per_row = n[u_of]
        rr = np.repeat(np.arange(rows.shape[0]), per_row)
        cc = np.arange(rr.shape[0]) - np.repeat(np.cumsum(per_row) - per_row, per_row)
        cc += np.asarray(start)[u_of][rr]
        clat, clon = np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)
        reach_c = np.asarray(reach, dtype=np.float64)[cc]
        return _quiet_rows(
            arr, rows, (rr, cc), clat, clon, reach_c, (reg, rs, us, u_of, ok, t, sigma)
        )

    def _pair_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """`_pair_reach` as arrays, and each subject's pairs: of_subject[ptr[s]:ptr[s+1]]."""
        if self._table is None:
            reach, device = self._pair_reach()
            of = self.registry.pairs_of_subject
            n = np.zeros(len(self.registry.subject_ids) + 1, dtype=np.int64)
            for s, ks in of.items():
                n[s + 1] = len(ks)
            pairs = [k for s in sorted(of) for k in of[s]]
            self._table = (
                np.asarray(reach, dtype=np.float64), np.asarray(device, dtype=np.int64),
                np.cumsum(n), np.asarray(pairs, dtype=np.int64),
            )  # fmt: skip
        return self._table

    def _pair_reach(self) -> tuple[list[float], list[int]]:
        """Per proximity pair: radius + warn (+ 1 m for rounding), and its device's slot."""
        if self._reach is None:
            pairs = self.registry.pairs
            self._reach = (
                [p.radius_m + max(p.warn_m, 0.0) + 1.0 for p in pairs],
                [p.device for p in pairs],
            )
        return self._reach

    def _end_period(self, s: int, t: float) -> None:
        """Close subject s's pair episodes once t is past their tagging period."""
        until = float(self.registry.subject_until[s])
        if t >= until:
            for k in self.registry.pairs_of_subject[s]:
                for kind, name in _PAIR_EPISODES:
                    self.trackers.end(TrackerKey(kind, k), name, until, PERIOD_ENDED)

    def _stale_obs(
        self, key: TrackerKey, subject: str, device_id: str, stale: bool, near: float,
        sigma: float, tag: str, t: float, seq: int,
    ) -> bool:  # fmt: skip
        """Past victim_stale_s the phone's position is not known: rather than pretend, say
        `victim_device_stale` while the subject is near where it was last seen (`near`:
        radius + warn - distance). Called when `stale` or the pair's stale tracker `key`
        lives; returns `stale` (no proximity decision is made from a stale position)."""
        st, trackers = self.settings, self.trackers
        near = near if stale else -1e9  # a fresh fix ends it
        if key not in trackers.live and _keeps_nothing("victim_device_stale", near, sigma, st):
            return stale  # a fresh tracker would keep nothing of it (stale: not a fresh fix)
        tr = trackers.breach(key, "victim_device_stale", subject, device_id, "high")
        tr.observe(Obs(t, near, sigma, tag, seq))
        if not stale:
            tr.tick(t + st.exit_gap_s)
        trackers.forget_if_idle(key)
        return stale

    # -- state as data (snapshots, configuration reloads: engine/core/remap.py) ----------
    def export_state(self) -> dict[str, Any]:
        """Each protected device's recent fixes, by device id."""
        ids = self.registry.device_ids
        return {
            ids[s]: {"t": list(tr.t), "fixes": [list(f) for f in tr.fixes]}
            for s, tr in self.victims.items()
        }

    def import_state(self, d: dict[str, Any], m: Remap) -> None:
        self.victims = {}
        for dev, tr in d.items():
            s = m.device(dev, tag=False)
            if s >= 0:
                fixes = [(float(a), float(b), float(c)) for a, b, c in tr["fixes"]]
                self.victims[s] = VictimTrack([float(t) for t in tr["t"]], fixes)


def _ranges(start: np.ndarray, n: np.ndarray) -> np.ndarray:
    """The ranges [start[i], start[i] + n[i]) one after another."""
    before = np.cumsum(n) - n
    return np.arange(int(n.sum()), dtype=np.int64) + np.repeat(start - before, n)


def _quiet_rows(
    arr: np.ndarray, rows: np.ndarray, pairs: tuple[np.ndarray, np.ndarray], plat: np.ndarray,
    plon: np.ndarray, reach: np.ndarray, ctx: tuple[Any, ...],
) -> np.ndarray:  # fmt: skip
    """The end of both quiet tests: of rows `rows` of `arr`, given (row, position) pairs
    with each pair's reach, those beyond reach of every position of theirs, in their
    subject's tagging period with sigma > 0 and a usable subject (ok), up to their
    subject's first row that is not."""
    reg, rs, us, u_of, ok, t, sigma = ctx
    r_, c_ = pairs
    rlat, rlon = arr["lat"][rows].astype(np.float64), arr["lon"][rows].astype(np.float64)
    far = haversine(rlat[r_], rlon[r_], plat[c_], plon[c_]) > reach
    near = np.bincount(r_[~far], minlength=rows.shape[0]) > 0
    s_from, s_until = reg.subject_from[rs], reg.subject_until[rs]
    quiet = ~near & ok[u_of] & (s_from <= t) & (t < s_until) & (sigma > 0.0)
    # ...and only before the subject's first row that is not quiet
    first = np.full(us.shape[0], rows.shape[0], dtype=np.int64)
    loud = np.flatnonzero(~quiet)
    np.minimum.at(first, u_of[loud], loud)
    return quiet & (np.arange(rows.shape[0]) < first[u_of])  # type: ignore[no-any-return]
