"""Device restarts: each tag's seq spaces (one per boot) mapped onto one increasing
effective seq, so that dedupe and ordering downstream see one counter per tag.

A tag's seq starts again after a reboot (flat battery, firmware update, watchdog) or
when its counter wraps. A new seq space starts at a record that

* carries a `boot` the tag has not sent before (a record of a boot already seen goes
  back into that boot's space), or
* (no `boot`, or the same one) falls back far (at least `drop` below the space's
  highest seq, or to 0 or 1, even from 1: a tag in a reboot loop) while its event time is
  later than every record of the space: only a restart or a wrap explains a newer fix
  with a much smaller seq (a resent record has the same time: a true duplicate).

The first record of a new space continues the effective seq exactly where the tag's
highest effective seq left off, so the reorderer sees no gap and dedupe no repeat; a
true duplicate (same boot, same seq) maps to the same effective seq and is still
dropped. A record without `boot` dated before the current space began belongs to the
space that was current at its time (a late pre-restart record).

`cite` turns an effective seq back into what the device sent: (seq, boot) where boot is
the device's own counter when it sends one, else the number of restarts recognised
before that space (None for the first space of a tag that sends no boot: evidence and
alert ids stay exactly as they were for streams without restarts)."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.wire.alerts import Evidence
from zones.jit import njit

if TYPE_CHECKING:
    from engine.core.remap import Remap


@njit
def _map_kernel(
    slot: np.ndarray,
    seq: np.ndarray,
    t: np.ndarray,
    boot: np.ndarray,
    start: int,
    drop: int,
    base: np.ndarray,
    hi: np.ndarray,
    tmax: np.ndarray,
    t0: np.ndarray,
    cur_boot: np.ndarray,
    spaces: np.ndarray,
    top: np.ndarray,
    out: np.ndarray,
) -> int:
    """Map rows from `start` in order while they stay in their slot's current space;
    returns the index of the first row that needs `SeqSpaces._special` (or n).
    Per slot: base (effective = base + seq), hi (highest seq of the space, -1: none yet),
    tmax (latest t of the space), t0 (first t of the space), cur_boot (-1: none sent),
    spaces (how many spaces so far), top (highest effective seq ever)."""
    for i in range(start, slot.shape[0]):
        s = slot[i]
        q = seq[i]
        v = t[i]
        b = boot[i]
        if hi[s] < 0:  # the slot's first record
            base[s] = 0
            hi[s] = q
            tmax[s] = v
            t0[s] = v
            cur_boot[s] = b
            spaces[s] = 1
        elif b >= 0 and b != cur_boot[s]:
            return i  # another boot
        elif b < 0 and spaces[s] > 1 and v < t0[s]:
            return i  # maybe from before the restart
        elif v > tmax[s] and q <= hi[s] and (hi[s] - q >= drop or q <= 1):
            return i  # fell back far while time moved on: a restart or a wrap
        else:
            if q > hi[s]:
                hi[s] = q
            if v > tmax[s]:
                tmax[s] = v
        e = base[s] + q
        out[i] = e
        if e > top[s]:
            top[s] = e
    return slot.shape[0]


@dataclass
class _Space:
    """A past or current seq space of one slot."""

    first: int  # lowest effective seq it was given (its first record's)
    base: int
    t0: float
    boot: int  # the device's boot, -1 when it sends none
    index: int  # spaces before it (0: the first)


@dataclass
class _Slot:
    spaces: list[_Space] = field(default_factory=list)  # in order of effective seq


class SeqSpaces:
    """Per-slot seq spaces; `map` gives each row its effective seq (see the module)."""

    def __init__(self, n_slots: int, drop: int = 64) -> None:
        if drop < 1:
            raise ValueError(f"restart seq drop must be >= 1, got {drop}")
        self.drop = int(drop)
        self.base = np.zeros(n_slots, dtype=np.int64)
        self.hi = np.full(n_slots, -1, dtype=np.int64)
        self.tmax = np.full(n_slots, -np.inf)
        self.t0 = np.full(n_slots, -np.inf)
        self.cur_boot = np.full(n_slots, -1, dtype=np.int64)
        self.spaces = np.zeros(n_slots, dtype=np.int64)
        self.top = np.full(n_slots, -1, dtype=np.int64)
        self._past: dict[int, _Slot] = {}  # only slots that restarted
        self.restarts = 0
        # (slot, t, effective seq, seq, the space's highest seq before, boot or -1): each
        # restart recognised, until the pipeline takes them
        self.restarted: list[tuple[int, float, int, int, int, int]] = []

    def map(self, slot: np.ndarray, seq: np.ndarray, t: np.ndarray, boot: np.ndarray) -> np.ndarray:
        """Effective seqs for a batch of rows (boot -1: the row has none). The rows are
        taken in event-time order (stable: ties in arrival order), so a store-and-forward
        batch that straddles a restart, shuffled, still starts the new space at its first
        record; without restarts the result does not depend on the order."""
        n = slot.shape[0]
        t = np.ascontiguousarray(t, dtype=np.float64)
        order = np.argsort(t, kind="stable")
        args = (
            np.ascontiguousarray(np.asarray(slot)[order], dtype=np.int64),
            np.ascontiguousarray(np.asarray(seq)[order], dtype=np.int64),
            t[order],
            np.ascontiguousarray(np.asarray(boot)[order], dtype=np.int64),
        )
        got = np.empty(n, dtype=np.int64)
        i = 0
        while i < n:
            i = _map_kernel(*args, i, self.drop, self.base, self.hi, self.tmax, self.t0,
                            self.cur_boot, self.spaces, self.top, got)  # fmt: skip
            if i < n:
                got[i] = self._special(int(args[0][i]), int(args[1][i]), float(args[2][i]),
                                       int(args[3][i]))  # fmt: skip
                i += 1
        out = np.empty(n, dtype=np.int64)
        out[order] = got
        return out

    def cite(self, slot: int, eseq: int) -> tuple[int, int | None]:
        """(seq, boot) the device sent for an effective seq (see the module)."""
        sl = self._past.get(slot)
        if sl is None:
            b = int(self.cur_boot[slot]) if slot < self.cur_boot.shape[0] else -1
            return eseq, (b if b >= 0 else None)
        firsts = [sp.first for sp in sl.spaces]
        sp = sl.spaces[max(0, bisect_right(firsts, eseq) - 1)]
        return eseq - sp.base, (sp.boot if sp.boot >= 0 else sp.index)

    # -- internals ---------------------------------------------------------------------
    def _slot(self, s: int) -> _Slot:
        sl = self._past.get(s)
        if sl is None:
            sl = self._past[s] = _Slot([_Space(0, 0, float(self.t0[s]), int(self.cur_boot[s]), 0)])
        return sl

    def _special(self, s: int, q: int, v: float, b: int) -> int:
        sl = self._slot(s)
        if b >= 0 and b != self.cur_boot[s]:
            known = [sp for sp in sl.spaces if sp.boot == b]
            if known:  # a late record of a boot already seen
                return self._into(s, known[-1], q)
            return self._new_space(s, sl, q, v, b)
        if b < 0 and v < self.t0[s] and int(self.spaces[s]) > 1:
            # the latest space begun by then (a boot change need not move time on)
            before = [sp for sp in sl.spaces if sp.t0 <= v] or sl.spaces[:1]
            return self._into(s, before[-1], q)
        return self._new_space(s, sl, q, v, b)

    def _into(self, s: int, sp: _Space, q: int) -> int:
        e = sp.base + q
        if e > self.top[s]:
            self.top[s] = e
        return e

    def _new_space(self, s: int, sl: _Slot, q: int, v: float, b: int) -> int:
        e = int(self.top[s]) + 1
        base = e - q
        sl.spaces.append(_Space(e, base, v, b, int(self.spaces[s])))
        self.restarts += 1
        self.restarted.append((s, v, e, q, int(self.hi[s]), b))
        self.base[s] = base
        self.hi[s] = q
        self.tmax[s] = v
        self.t0[s] = v
        self.cur_boot[s] = b
        self.spaces[s] += 1
        self.top[s] = e
        return e

    # -- state as data (snapshots, configuration reloads: engine/core/remap.py) ----------
    def export_state(self, device_ids: list[str]) -> dict[str, Any]:
        """Arrays by slot; the past spaces of the tags that restarted by device id."""
        return {
            "base": self.base, "hi": self.hi, "tmax": self.tmax, "t0": self.t0,
            "cur_boot": self.cur_boot, "spaces": self.spaces, "top": self.top,
            "past": {device_ids[s]: [[sp.first, sp.base, sp.t0, sp.boot, sp.index]
                                     for sp in sl.spaces] for s, sl in self._past.items()},
            "restarts": self.restarts,
        }  # fmt: skip

    def import_state(self, d: dict[str, Any], m: Remap) -> None:
        for name in ("base", "hi", "tmax", "t0", "cur_boot", "spaces", "top"):
            setattr(self, name, m.rows(d[name], getattr(self, name)))
        self._past = {}
        for dev, spaces in d["past"].items():
            s = m.device(dev)
            if s >= 0:
                self._past[s] = _Slot(
                    [_Space(int(a), int(b), float(c), int(e), int(f)) for a, b, c, e, f in spaces]
                )
        self.restarts = int(d["restarts"])
        self.restarted.clear()


class Citer:
    """What evidence cites for (tag, effective seq): (tag, seq), or (tag, seq, boot) once
    the tag sends a boot or has restarted."""

    def __init__(self, slot_of: Callable[[str], int], spaces: SeqSpaces) -> None:
        self.slot_of = slot_of
        self.spaces = spaces

    def __call__(self, tag: str, eseq: int) -> Evidence:
        s = self.slot_of(tag)
        if s < 0:
            return (tag, eseq)
        seq, boot = self.spaces.cite(s, eseq)
        return (tag, seq) if boot is None else (tag, seq, boot)
