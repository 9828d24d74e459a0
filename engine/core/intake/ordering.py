"""Per-tag seq ordering: hold records behind a seq gap, release each tag's records in seq order."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from zones.jit import njit

if TYPE_CHECKING:
    from engine.core.remap import Remap

# Dtype of the empty arrays returned before any row has been admitted.
_MIN_DTYPE = np.dtype([("slot", np.int32), ("seq", np.int64), ("t", np.float64)])
_REQUIRED = ("slot", "seq", "t")


@dataclass(frozen=True, slots=True)
class Released:
    """What one Reorderer call lets go of.

    `ready`: rows to process now, in processing order (see `Reorderer`).
    `late`: rows whose slot's frontier had already passed them (their gap was given up),
    in (slot, seq) order; the caller decides what a late record may still do."""

    ready: np.ndarray
    late: np.ndarray


@dataclass(slots=True)
class _Held:
    rows: np.ndarray  # sorted by seq, all above the slot's frontier
    arrival: np.ndarray  # float64, the `arrival` of the admit call that brought each row


def _take(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """a[idx] for a contiguous structured array, copied as raw bytes (numpy's per-field
    copy of packed structured rows is ~10x slower)."""
    out: np.ndarray = a.view(np.dtype((np.void, a.dtype.itemsize)))[idx].view(a.dtype)
    return out


def _cat(parts: list[np.ndarray], dtype: np.dtype) -> np.ndarray:
    if not parts:
        return np.empty(0, dtype=dtype)
    if len(parts) == 1:
        return parts[0]
    v = np.dtype((np.void, dtype.itemsize))
    return np.concatenate([np.ascontiguousarray(p).view(v) for p in parts]).view(dtype)


@njit
def _running_max_by_segment(t: np.ndarray, seg_start: np.ndarray) -> np.ndarray:
    """Running max of t, restarting where seg_start is True (NaN never becomes the max)."""
    out = np.empty_like(t)
    m = np.nan
    for i in range(t.shape[0]):
        v = t[i]
        if seg_start[i] or v > m or m != m:
            m = v
        out[i] = m
    return out


@njit
def _in_order_pass(
    slot: np.ndarray,
    seq: np.ndarray,
    t: np.ndarray,
    ordered: np.ndarray,
    held_slots: np.ndarray,
    next_seq: np.ndarray,
    last_t: np.ndarray,
    max_t: np.ndarray,
    touch: np.ndarray,
    kind: np.ndarray,
    key: np.ndarray,
) -> None:
    """One pass in arrival order. kind[i]: 0 = released (its ordered slot's rows arrived
    exactly contiguous from the frontier, nothing held; the slot's state is committed and
    key[i] is the running max of t over the slot's rows in this call), 1 = needs the slot
    path, 2 = unordered slot (key[i] = t[i]). touch is per-slot scratch, all -1 between
    calls."""
    n = slot.shape[0]
    for j in range(held_slots.shape[0]):
        touch[held_slots[j]] = -2
    k_slot = np.empty(n, np.int64)
    expect = np.empty(n, np.int64)
    ok = np.empty(n, np.bool_)
    run = np.empty(n, np.float64)
    last = np.empty(n, np.float64)
    top = np.empty(n, np.float64)
    nt = 0
    for i in range(n):
        s = slot[i]
        if not ordered[s]:
            kind[i] = 2
            key[i] = t[i]
            continue
        k = touch[s]
        if k < 0:
            ok[nt] = k == -1  # -2: the slot holds rows
            k = nt
            nt += 1
            k_slot[k] = s
            touch[s] = k
            expect[k] = next_seq[s] if next_seq[s] >= 0 else seq[i]
            run[k] = np.nan
            top[k] = max_t[s]
        v = t[i]
        if ok[k] and seq[i] == expect[k]:
            expect[k] += 1
            if v > run[k] or run[k] != run[k]:
                run[k] = v
            key[i] = run[k]
            last[k] = v
            if v > top[k] or top[k] != top[k]:
                top[k] = v
        else:
            ok[k] = False
    for i in range(n):
        s = slot[i]
        if ordered[s]:
            kind[i] = 0 if ok[touch[s]] else 1
    for k in range(nt):
        s = k_slot[k]
        if ok[k]:
            next_seq[s] = expect[k]
            last_t[s] = last[k]
            max_t[s] = top[k]
        touch[s] = -1
    for j in range(held_slots.shape[0]):
        touch[held_slots[j]] = -1


class Reorderer:
    """Releases each ordered slot's rows in seq order, holding rows behind a seq gap.

    Each ordered slot (a tag: one increasing seq shared by its fixes and events) has a
    frontier `next_seq[slot]`, the seq it expects next (-1: nothing seen yet).

    * Within one `admit` call a slot's rows are taken in seq order (a store-and-forward
      batch may arrive shuffled), except that runs separated by a seq jump of more than
      `reset_gap` are taken in order of their first row's t: a batch that straddles a
      reboot puts the pre-reboot rows first.
    * The first row ever taken for a slot sets its frontier.
    * A row at the frontier is released and the frontier advances; held rows that become
      contiguous are released with it (`gaps_filled` counts each such fill).
    * A row above the frontier is held.
    * After each row, a slot that holds more than `hold_max` rows, or whose newest held row
      (by t) is `hold_s` or more after the t of its last released row, gives up its gap:
      every held row is released in seq order and the frontier moves past the highest
      (`gaps_given_up`). Event time keeps replay deterministic; the wall-clock limit is
      `expire`, called by the live loop. `give_up` and `flush` give up on demand.
    * A row below the frontier is late (duplicates are removed upstream, so it belonged to
      a gap that was given up) unless it is a seq reset (tag reboot): seq below
      `next_seq - reset_gap` and t later than every t taken for the slot (released or
      held). Then any held rows are given up, the frontier restarts at that seq
      (`resets`) and the row is released. A seq already held is late too, never lost.
    * Unordered slots (phones, whose seq is a timestamp) release every row at once.

    Processing order of `ready`: across slots by event time, and within a slot exactly in
    release order (seq order), even when a tag's clock steps backwards. Each row's sort key
    is the running max of t over its slot's rows in release order within the call; rows
    are sorted by (key, slot, release order); an unordered slot's key is its t (ties: order
    of arrival). Sorting on t alone would put a backwards
    clock's fix before fixes taken earlier; the running max keeps the slot's order and
    still interleaves slots by time (a backwards step rides along with its predecessor).

    Memory: three per-slot arrays (frontier, last released t, max released t) plus the
    held rows of slots that currently have a gap. The common call (every slot's rows
    contiguous from its frontier, nothing held) takes one pass in arrival order (a numba
    kernel) and one sort for the processing order; a slot whose rows are complete but
    shuffled is sorted and released in bulk; only slots with gaps, holds or late rows are
    taken row by row in Python."""

    def __init__(
        self,
        ordered: np.ndarray,
        *,
        hold_max: int = 8,
        hold_s: float = 600.0,
        reset_gap: int = 100_000,
    ) -> None:
        self.ordered = np.array(ordered, dtype=np.bool_, copy=True)
        if self.ordered.ndim != 1:
            raise ValueError(f"ordered must be one bool per slot, got shape {self.ordered.shape}")
        if hold_max < 0 or hold_s < 0 or reset_gap < 1:
            raise ValueError(
                f"need hold_max >= 0, hold_s >= 0, reset_gap >= 1; "
                f"got {hold_max}, {hold_s}, {reset_gap}"
            )
        n = self.ordered.shape[0]
        self.hold_max = int(hold_max)
        self.hold_s = float(hold_s)
        self.reset_gap = int(reset_gap)
        self.next_seq = np.full(n, -1, dtype=np.int64)
        self.last_t = np.full(n, np.nan)  # t of the last released row
        self.max_t = np.full(n, -np.inf)  # largest t released
        self._touch = np.full(n, -1, dtype=np.int32)  # scratch for _in_order_pass
        self._held: dict[int, _Held] = {}
        self._dtype: np.dtype | None = None
        self.gaps_filled = 0
        self.gaps_given_up = 0
        self.late = 0
        self.resets = 0

    # -- public ------------------------------------------------------------------------
    @property
    def held_count(self) -> int:
        """Rows currently held behind a gap."""
        return sum(h.rows.shape[0] for h in self._held.values())

    def admit(self, rows: np.ndarray, arrival: float = 0.0) -> Released:
        """Take a batch of rows (any order; `arrival` is the wall-clock time it came in,
        used only by `expire`) and return what can be processed now."""
        rows = self._check(rows)
        n = rows.shape[0]
        kind = np.empty(n, dtype=np.int8)
        key = np.empty(n, dtype=np.float64)
        _in_order_pass(
            np.ascontiguousarray(rows["slot"], dtype=np.int64),
            np.ascontiguousarray(rows["seq"], dtype=np.int64),
            np.ascontiguousarray(rows["t"], dtype=np.float64),
            self.ordered,
            np.fromiter(self._held, dtype=np.int64, count=len(self._held)),
            self.next_seq,
            self.last_t,
            self.max_t,
            self._touch,
            kind,
            key,
        )
        if not kind.any():  # the common call: every slot in order, no phones
            return self._released(rows, key, [], [])
        first = np.flatnonzero(kind == 0)
        phones = np.flatnonzero(kind == 2)
        parts, late = self._slot_path(_take(rows, np.flatnonzero(kind == 1)), arrival)
        return self._released(
            _take(rows, np.concatenate([first, phones])),
            np.concatenate([key[first], key[phones]]),
            parts,
            late,
        )

    def give_up(self, slots: Iterable[int]) -> Released:
        """Declare these slots' gaps missing: release all their held rows in seq order."""
        parts = []
        for s in sorted({int(x) for x in slots}):
            h = self._held.pop(s, None)
            if h is not None:
                rows = h.rows
                self.next_seq[s] = int(rows["seq"][-1]) + 1
                self.last_t[s] = rows["t"][-1]
                self.max_t[s] = np.fmax(self.max_t[s], np.fmax.reduce(rows["t"]))
                self.gaps_given_up += 1
                parts.append(rows)
        return self._released(self._empty(), np.empty(0), parts, [])

    def expire(self, now: float, hold_wall_s: float) -> Released:
        """Live only: give up slots whose oldest held row arrived more than `hold_wall_s`
        (wall clock) before `now`."""
        return self.give_up(
            s for s, h in self._held.items() if now - float(h.arrival.min()) > hold_wall_s
        )

    def credit(self, seconds: float) -> None:
        """The engine was down this long (restart): held rows have not waited that time
        for their gap, since the broker was holding what might fill it."""
        for h in self._held.values():
            h.arrival = h.arrival + seconds

    def flush(self) -> Released:
        """Release everything held (end of replay, shutdown)."""
        return self.give_up(list(self._held))

    # -- state as data (snapshots, configuration reloads: engine/core/remap.py) ----------
    def export_state(self, device_ids: list[str]) -> dict[str, Any]:
        """Frontiers by slot; the rows held behind a gap by device id."""
        return {
            "next_seq": self.next_seq, "last_t": self.last_t, "max_t": self.max_t,
            "held": {device_ids[s]: {"rows": h.rows, "arrival": h.arrival}
                     for s, h in self._held.items()},
            "dtype": None if self._dtype is None else np.empty(0, dtype=self._dtype),
            "counts": [self.gaps_filled, self.gaps_given_up, self.late, self.resets],
        }  # fmt: skip

    def import_state(self, d: dict[str, Any], m: Remap) -> None:
        self.next_seq = m.rows(d["next_seq"], self.next_seq)
        self.last_t = m.rows(d["last_t"], self.last_t)
        self.max_t = m.rows(d["max_t"], self.max_t)
        self._held = {}
        for dev, h in d["held"].items():
            s = m.device(dev)
            rows = np.ascontiguousarray(h["rows"])
            if s < 0 or rows.shape[0] == 0:
                continue
            rows = rows.copy()
            rows["slot"] = s
            self._held[s] = _Held(rows, np.asarray(h["arrival"], dtype=np.float64).copy())
        self._dtype = None if d["dtype"] is None else np.asarray(d["dtype"]).dtype
        self.gaps_filled, self.gaps_given_up, self.late, self.resets = (int(x) for x in d["counts"])

    # -- internals ---------------------------------------------------------------------
    def _check(self, rows: np.ndarray) -> np.ndarray:
        names = getattr(getattr(rows, "dtype", None), "names", None)
        if not isinstance(rows, np.ndarray) or names is None or rows.ndim != 1:
            raise TypeError("Reorderer needs a 1-d numpy structured array")
        missing = [f for f in _REQUIRED if f not in names]
        if missing:
            raise TypeError(f"Reorderer rows lack field(s) {missing}; have {list(names)}")
        if rows.shape[0]:
            lo, hi = int(rows["slot"].min()), int(rows["slot"].max())
            if lo < 0 or hi >= self.ordered.shape[0]:
                raise ValueError(f"slot out of range [0, {self.ordered.shape[0]}): saw {lo}..{hi}")
        if self._dtype is None:
            self._dtype = rows.dtype
        elif rows.dtype != self._dtype:
            raise TypeError(f"Reorderer rows changed dtype: {rows.dtype} after {self._dtype}")
        return np.ascontiguousarray(rows)

    def _empty(self) -> np.ndarray:
        return np.empty(0, dtype=self._dtype if self._dtype is not None else _MIN_DTYPE)

    def _slot_path(
        self, o: np.ndarray, arrival: float
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Ordered rows whose slots were not simply in order: sort by (slot, seq); slots
        that are then contiguous from the frontier with nothing held are released in bulk,
        the rest go row by row through `_settle`. Returns (released parts, each slot's rows
        contiguous and in release order; late parts)."""
        parts: list[np.ndarray] = []
        late: list[np.ndarray] = []
        if o.shape[0] == 0:
            return parts, late
        srt = _take(o, np.lexsort((o["seq"], o["slot"])))
        slot, seq, t = srt["slot"], srt["seq"], srt["t"]
        n = srt.shape[0]
        new_group = np.ones(n, dtype=np.bool_)
        new_group[1:] = slot[1:] != slot[:-1]
        starts = np.flatnonzero(new_group)
        ends = np.append(starts[1:], n)
        gslot = slot[starts].astype(np.int64)
        step_ok = new_group.copy()
        step_ok[1:] |= np.diff(seq) == 1
        frontier = self.next_seq[gslot]
        bulk = np.logical_and.reduceat(step_ok, starts) & (
            (frontier < 0) | (frontier == seq[starts])
        )
        if self._held:
            held_slots = np.fromiter(self._held, dtype=np.int64, count=len(self._held))
            bulk &= ~np.isin(gslot, held_slots)
        if bulk.any():
            bs, be = gslot[bulk], ends[bulk] - 1
            self.next_seq[bs] = seq[be] + 1
            self.last_t[bs] = t[be]
            self.max_t[bs] = np.fmax(self.max_t[bs], np.fmax.reduceat(t, starts)[bulk])
            parts.append(_take(srt, np.flatnonzero(np.repeat(bulk, ends - starts))))
        for g in np.flatnonzero(~bulk).tolist():
            rel, lt = self._settle(int(gslot[g]), srt[starts[g] : ends[g]], arrival)
            parts.append(rel)
            late.append(lt)
        return parts, late

    def _settle(self, s: int, new: np.ndarray, arrival: float) -> tuple[np.ndarray, np.ndarray]:
        """The rule-by-rule path for one slot: `new` is its rows of this call in seq order.
        Returns (released rows in release order, late rows)."""
        h = self._held.pop(s, None)
        n_old = 0 if h is None else h.rows.shape[0]
        pool = new if h is None else _cat([h.rows, new], new.dtype)
        pool_arrival = np.full(pool.shape[0], arrival)
        if h is not None:
            pool_arrival[:n_old] = h.arrival
        seqs: list[int] = pool["seq"].tolist()
        ts: list[float] = pool["t"].tolist()

        # Take order: seq order, but runs split by a jump > reset_gap go by first t.
        blocks: list[list[int]] = []
        for i in range(n_old, len(seqs)):
            if not blocks or seqs[i] - seqs[i - 1] > self.reset_gap:
                blocks.append([])
            blocks[-1].append(i)
        if len(blocks) > 1:
            blocks.sort(key=lambda b: ts[b[0]])

        nxt = int(self.next_seq[s])
        last_t = float(self.last_t[s])
        max_t = float(self.max_t[s])
        held = {seqs[i]: i for i in range(n_old)}
        held_max_t = max((ts[i] for i in range(n_old)), default=-np.inf)
        out: list[int] = []
        late: list[int] = []
        filled = given_up = resets = 0

        def release(i: int) -> None:
            nonlocal nxt, last_t, max_t
            out.append(i)
            nxt = seqs[i] + 1
            last_t = ts[i]
            if ts[i] > max_t:
                max_t = ts[i]

        def give_up_held() -> None:
            nonlocal given_up, held_max_t
            for q in sorted(held):
                release(held[q])
            held.clear()
            held_max_t = -np.inf
            given_up += 1

        for i in (i for b in blocks for i in b):
            q, t = seqs[i], ts[i]
            if nxt < 0:
                nxt = q
            if q == nxt:
                release(i)
                if nxt in held:
                    while nxt in held:
                        release(held.pop(nxt))
                    filled += 1
                    held_max_t = max((ts[j] for j in held.values()), default=-np.inf)
            elif q > nxt and q not in held:
                held[q] = i
                if t > held_max_t:
                    held_max_t = t
            elif q < nxt - self.reset_gap and t > max_t and t > held_max_t:
                if held:
                    give_up_held()
                resets += 1
                release(i)
            else:
                late.append(i)
            if held and (len(held) > self.hold_max or held_max_t - last_t >= self.hold_s):
                give_up_held()

        self.next_seq[s] = nxt
        self.last_t[s] = last_t
        self.max_t[s] = max_t
        self.gaps_filled += filled
        self.gaps_given_up += given_up
        self.resets += resets
        self.late += len(late)
        if held:
            keep = [held[q] for q in sorted(held)]
            self._held[s] = _Held(_take(pool, np.array(keep)), pool_arrival[keep])
        return _take(pool, np.array(out, dtype=np.intp)), _take(pool, np.array(late, dtype=np.intp))

    def _released(
        self, first: np.ndarray, key: np.ndarray, parts: list[np.ndarray], late: list[np.ndarray]
    ) -> Released:
        """Assemble a Released. `first`: rows whose sort key is already in `key` (slots in
        order, and phones), each slot's rows in release order; `parts`: rows from the slot
        path, each slot's rows contiguous and in release order."""
        dtype = first.dtype
        if parts:
            mid = _cat(parts, dtype)
            seg_start = np.ones(mid.shape[0], dtype=np.bool_)
            seg_start[1:] = mid["slot"][1:] != mid["slot"][:-1]
            mid_key = _running_max_by_segment(
                np.ascontiguousarray(mid["t"], dtype=np.float64), seg_start
            )
            first = _cat([first, mid], dtype)
            key = np.concatenate([key, mid_key])
        ready = first.copy() if first.shape[0] < 2 else first  # never the caller's array
        if ready.shape[0] > 1:  # lexsort is stable: ties keep each slot's release order
            ready = _take(ready, np.lexsort((ready["slot"], key)))
        late_rows = _cat(late, dtype)
        if late_rows.shape[0] > 1:
            late_rows = _take(late_rows, np.lexsort((late_rows["seq"], late_rows["slot"])))
        return Released(ready, late_rows)
