"""Each tag's recent fixes: the last HISTORY accepted fixes of every slot (transit needs
the segment and the heading before it), and the distance and implied speed between two."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from zones.geofence import point_distance_m

if TYPE_CHECKING:
    from engine.core.remap import Remap

HISTORY = 2  # previous fixes kept per tag


def dist_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle metres between two points (the kernel, for one pair)."""
    a = np.array([[lat1, lon1, lat2, lon2]])
    return float(point_distance_m(a[:, 0], a[:, 1], a[:, 2], a[:, 3])[0])


def speed(a: np.ndarray, b: np.ndarray) -> float:
    """Implied speed (m/s) between two fixes (t, lat, lon, acc), beyond their accuracy."""
    if not (np.isfinite(a[0]) and np.isfinite(b[0])):
        return math.nan
    d = dist_m(float(a[1]), float(a[2]), float(b[1]), float(b[2]))
    return max(0.0, d - float(a[3]) - float(b[3])) / max(abs(float(b[0] - a[0])), 1.0)


class FixHistory:
    """`fixes[slot]`: that slot's last HISTORY accepted fixes, newest first, as rows of
    (t, lat, lon, acc, seq); NaN where there is none yet."""

    def __init__(self, n_slots: int) -> None:
        self.fixes = np.full((n_slots, HISTORY, 5), np.nan)

    def last(self, slot: int) -> np.ndarray | None:
        """The slot's latest fix (t, lat, lon, acc, seq), or None."""
        row = self.fixes[slot, 0]
        return row if np.isfinite(row[0]) else None

    def previous(self, slot: np.ndarray, cur: np.ndarray) -> np.ndarray:
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
            out[i, m:] = self.fixes[slots[k], : HISTORY - m]
        return out

    def remember(self, tags: np.ndarray) -> None:
        """Latest fixes per tag slot (rows are in time order: the last ones win)."""
        hist = self.fixes
        for row in tags[np.argsort(tags["slot"], kind="stable")]:
            s = int(row["slot"])
            if not row["t"] >= hist[s, 0, 0] and not np.isnan(hist[s, 0, 0]):
                continue
            hist[s, 1:] = hist[s, :-1]
            hist[s, 0] = (row["t"], row["lat"], row["lon"], row["acc"], row["seq"])

    # -- state as data (snapshots, configuration reloads: engine/core/remap.py) ----------
    def export_state(self) -> dict[str, Any]:
        return {"fixes": self.fixes}

    def import_state(self, d: dict[str, Any], m: Remap) -> None:
        self.fixes = m.rows(d["fixes"], self.fixes)
