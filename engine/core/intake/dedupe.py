"""Per-device (tag, seq) duplicate filter: a sliding bitmap window per device slot."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from zones.jit import njit

if TYPE_CHECKING:
    from engine.core.remap import Remap


@njit
def _dedupe_kernel(
    slot: np.ndarray, seq: np.ndarray, hwm: np.ndarray, bits: np.ndarray, keep: np.ndarray
) -> int:
    """Mark keep[i] for records not seen before; returns how many were older than the
    window (kept: they cannot be told apart from new ones here, and late data must not
    be dropped). bits[s, w] bit b records seq hwm[s] - (64*w + b)."""
    nwords = bits.shape[1]
    width = nwords * 64
    beyond = 0
    for i in range(slot.shape[0]):
        s = slot[i]
        q = seq[i]
        h = hwm[s]
        if q > h:
            shift = q - h
            if h < 0 or shift >= width:
                for w in range(nwords):
                    bits[s, w] = np.uint64(0)
            else:
                ws = shift // 64
                bs = np.uint64(shift % 64)
                for w in range(nwords - 1, -1, -1):
                    src = w - ws
                    v = np.uint64(0)
                    if src >= 0:
                        v = bits[s, src] << bs
                        if bs != 0 and src - 1 >= 0:
                            v |= bits[s, src - 1] >> (np.uint64(64) - bs)
                    bits[s, w] = v
            hwm[s] = q
            bits[s, 0] |= np.uint64(1)
            keep[i] = True
        else:
            d = h - q
            if d >= width:
                keep[i] = True
                beyond += 1
            else:
                w = d // 64
                b = np.uint64(d % 64)
                if (bits[s, w] >> b) & np.uint64(1):
                    keep[i] = False
                else:
                    bits[s, w] |= np.uint64(1) << b
                    keep[i] = True
    return beyond


class SeqDeduper:
    """Remembers which (slot, seq) pairs were seen within `window` of each slot's
    highest seq. Memory: window/8 bytes per slot (1024 -> 128 B)."""

    def __init__(self, n_slots: int, window: int = 1024) -> None:
        nwords = max(1, (window + 63) // 64)
        self.hwm = np.full(n_slots, -1, dtype=np.int64)
        self.bits = np.zeros((n_slots, nwords), dtype=np.uint64)
        self.beyond_window = 0

    def filter(self, slot: np.ndarray, seq: np.ndarray) -> np.ndarray:
        """Boolean mask of records to keep, in the given order (first occurrence wins)."""
        keep = np.zeros(slot.shape[0], dtype=np.bool_)
        if slot.shape[0]:
            self.beyond_window += int(
                _dedupe_kernel(
                    np.ascontiguousarray(slot, dtype=np.int64),
                    np.ascontiguousarray(seq, dtype=np.int64),
                    self.hwm,
                    self.bits,
                    keep,
                )
            )
        return keep

    # -- state as data (snapshots, configuration reloads: engine/core/remap.py) ----------
    def export_state(self) -> dict[str, Any]:
        return {"hwm": self.hwm, "bits": self.bits, "beyond_window": self.beyond_window}

    def import_state(self, d: dict[str, Any], m: Remap) -> None:
        """ValueError when the window changed size (the caller rebuilds from the ledger)."""
        self.hwm = m.rows(d["hwm"], self.hwm)
        self.bits = m.rows(d["bits"], self.bits)
        self.beyond_window = int(d["beyond_window"])
