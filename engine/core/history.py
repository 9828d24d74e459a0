"""Each tag's recent fixes: the last HISTORY accepted fixes of every slot (transit needs
the segment and the heading before it), and the distance and implied speed between two."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from zones.geofence import point_distance_m
from zones.jit import njit
from zones.kernels.frame import EARTH_R

if TYPE_CHECKING:
    from engine.core.remap import Remap

HISTORY = 2  # previous fixes kept per tag
# Whether `FixHistory.remember` runs as the numba walk `remember_rows` (off: numpy and
# Python, its oracle; tests/test_history_kernel.py)
KERNEL = True


_RAD = math.pi / 180.0


def dist_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle metres between two points: the kernel's arithmetic for one pair
    (zones.kernels.frame.haversine), operation for operation in the same libm, so bit for
    bit the same (tests/test_prune.py), without the cost of calling it for one pair."""
    if math.isfinite(lat1 + lon1 + lat2 + lon2):  # else math.sin raises: the kernel's NaN
        p1 = lat1 * _RAD
        p2 = lat2 * _RAD
        sp = math.sin((p2 - p1) * 0.5)
        sl = math.sin((lon2 - lon1) * _RAD * 0.5)
        a = sp * sp + math.cos(p1) * math.cos(p2) * sl * sl
        if a >= 0.0:  # else math.sqrt raises (a latitude beyond a pole)
            s = math.sqrt(a)
            return 2.0 * EARTH_R * math.asin(1.0 if s > 1.0 else s)
    x = np.array([[lat1, lon1, lat2, lon2]])
    return float(point_distance_m(x[:, 0], x[:, 1], x[:, 2], x[:, 3])[0])


def speed(a: np.ndarray | Sequence[float], b: np.ndarray | Sequence[float]) -> float:
    """Implied speed (m/s) between two fixes (t, lat, lon, acc), beyond their accuracy."""
    ta, tb = float(a[0]), float(b[0])
    if not (math.isfinite(ta) and math.isfinite(tb)):
        return math.nan
    d = dist_m(float(a[1]), float(a[2]), float(b[1]), float(b[2]))
    return max(0.0, d - float(a[3]) - float(b[3])) / max(abs(tb - ta), 1.0)


def speeds(a: np.ndarray, b: np.ndarray, raw: np.ndarray | None = None) -> np.ndarray:
    """`speed` row by row over arrays of fixes (t, lat, lon, acc, ...); where `raw` (a
    mask) is set, the speed the two fixes imply as they are, accuracy not allowed for."""
    d = point_distance_m(a[:, 1], a[:, 2], b[:, 1], b[:, 2])
    slack = a[:, 3] + b[:, 3]
    if raw is not None:
        slack = np.where(raw, 0.0, slack)
    return np.maximum(d - slack, 0.0) / np.maximum(np.abs(b[:, 0] - a[:, 0]), 1.0)


class FixHistory:
    """`fixes[slot]`: that slot's last HISTORY accepted fixes, newest first, as rows of
    (t, lat, lon, acc, seq); NaN where there is none yet. `ahead[slot]`: whether it is
    heading for a zone as of its latest fix: a fix found it so (engine/core/measure.py,
    Measure.ahead) no more than the hold before (`until[slot]`: that fix's time + hold);
    `turned`: the slots whose flag changed since `take_turned`."""

    def __init__(self, n_slots: int) -> None:
        self.fixes = np.full((n_slots, HISTORY, 5), np.nan)
        self.ahead = np.zeros(n_slots, dtype=np.bool_)
        self.until = np.full(n_slots, -np.inf)
        self.turned: set[int] = set()

    def heading(self, slot: np.ndarray, t: np.ndarray, ahead: np.ndarray, hold: float) -> None:
        """Each slot's `ahead` flag as of its last row here (rows in processing order, at
        times `t`): set by a row found heading for a zone, held `hold` seconds after it.
        The hold carries a walker over the 15 s fixes it was asked for, each too short a
        step to say, beyond its accuracy, that it is moving at all."""
        if not (ahead.any() or self.ahead[slot].any()):
            return
        if ahead.any():
            np.maximum.at(self.until, slot[ahead], t[ahead] + hold)
        u, first = np.unique(slot[::-1], return_index=True)
        last = slot.shape[0] - 1 - first
        new = ahead[last] | (t[last] < self.until[u])
        changed = np.flatnonzero(self.ahead[u] != new)
        self.ahead[u[changed]] = new[changed]
        self.turned.update(u[changed].tolist())

    def take_turned(self) -> list[int]:
        out = sorted(self.turned)
        self.turned.clear()
        return out

    def last(self, slot: int) -> np.ndarray | None:
        """The slot's latest fix (t, lat, lon, acc, seq), or None."""
        row = self.fixes[slot, 0]
        return row if np.isfinite(row[0]) else None

    def previous(self, slot: np.ndarray, cur: np.ndarray) -> np.ndarray:
        """For each tag row: its HISTORY previous fixes of the same tag, newest first, from
        this batch or earlier ones, shape (rows, HISTORY, 5) (NaN when unknown). `cur`: the
        rows' own (t, lat, lon, acc, seq)."""
        n = cur.shape[0]
        out = np.full((n, HISTORY, 5), np.nan)
        if n == 0:
            return out
        order = np.argsort(slot, kind="stable")
        slots = slot[order]
        k = np.arange(n)
        first = np.ones(n, dtype=np.bool_)
        first[1:] = slots[1:] != slots[:-1]
        run = k - np.maximum.accumulate(np.where(first, k, 0))  # same-slot rows before
        for d in range(HISTORY):
            # the d-th previous fix: a row of the batch, or the slot's (d - run)-th kept one
            own = run > d
            out[order[own], d] = cur[order[k[own] - 1 - d]]
            out[order[~own], d] = self.fixes[slots[~own], d - run[~own]]
        return out

    def remember(self, tags: np.ndarray) -> None:
        """Latest fixes per tag slot (rows are in time order: the last ones win). A row is
        taken unless it is older than the slot's latest fix taken so far (the batch's own
        ones included); the last two taken per slot end up in `fixes`."""
        if tags.shape[0] == 0:
            return
        if not KERNEL:
            self._remember(tags)
            return
        remember_rows(tags["slot"], tags["t"], tags["lat"], tags["lon"], tags["acc"],
                      tags["seq"], self.fixes)  # fmt: skip

    def _remember(self, tags: np.ndarray) -> None:
        """`remember` in numpy and Python (the oracle of `remember_rows`)."""
        hist = self.fixes
        order = np.argsort(tags["slot"], kind="stable")
        slot = tags["slot"][order]
        slots, t = slot.tolist(), tags["t"][order].tolist()
        first_t = hist[slot, 0, 0].tolist()  # each row's slot's latest fix before the batch
        taken: list[int] = []
        last, t0 = -1, math.nan
        for j, s in enumerate(slots):
            if s != last:
                last, t0 = s, first_t[j]
            if t[j] >= t0 or t0 != t0:  # NaN: nothing before
                taken.append(j)
                t0 = t[j]
        if not taken:
            return
        k = np.asarray(taken, dtype=np.int64)
        rows = tags[order[k]]
        cur = np.stack(
            [rows["t"], rows["lat"], rows["lon"], rows["acc"].astype(np.float64),
             rows["seq"].astype(np.float64)], axis=1,
        )  # fmt: skip
        ks = slot[k]
        end = np.ones(k.shape[0], dtype=np.bool_)  # the slot's last row taken
        end[:-1] = ks[1:] != ks[:-1]
        two = np.zeros(k.shape[0], dtype=np.bool_)  # ...that follows another of its slot
        two[1:] = end[1:] & (ks[1:] == ks[:-1])
        one = end & ~two
        hist[ks[one], 1] = hist[ks[one], 0]
        hist[ks[end], 0] = cur[end]
        hist[ks[two], 1] = cur[np.flatnonzero(two) - 1]

    # -- state as data (snapshots, configuration reloads: engine/core/remap.py) ----------
    def export_state(self) -> dict[str, Any]:
        return {"fixes": self.fixes, "ahead": self.ahead, "until": self.until}

    def import_state(self, d: dict[str, Any], m: Remap) -> None:
        self.fixes = m.rows(d["fixes"], self.fixes)
        if "ahead" in d:  # older snapshots: none heading anywhere
            self.ahead = m.rows(d["ahead"], self.ahead)
        if "until" in d:  # older snapshots: no hold (the flag stands till the next fix)
            self.until = m.rows(d["until"], self.until)


@njit
def remember_rows(slot: np.ndarray, t: np.ndarray, lat: np.ndarray, lon: np.ndarray,
                  acc: np.ndarray, seq: np.ndarray, fixes: np.ndarray) -> None:  # fmt: skip
    """`FixHistory.remember` row by row: a row no older than its slot's latest fix (or
    with none: NaN) becomes that latest fix, the one before it the second."""
    for i in range(slot.shape[0]):
        s = slot[i]
        t0 = fixes[s, 0, 0]
        if t[i] >= t0 or t0 != t0:
            for f in range(5):
                fixes[s, 1, f] = fixes[s, 0, f]
            fixes[s, 0, 0] = t[i]
            fixes[s, 0, 1] = lat[i]
            fixes[s, 0, 2] = lon[i]
            fixes[s, 0, 3] = np.float64(acc[i])
            fixes[s, 0, 4] = np.float64(seq[i])
