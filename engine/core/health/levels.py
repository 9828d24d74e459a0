"""Battery state as arrays, and the numba walk that takes a batch's battery records in one
call: per tag slot its level, seq, charging state, last charge and the samples since the
last charge (the drain trend's points), the samples as chains in one node pool.

`walk` is `Battery.observe` record by record (battery.py; tests/test_battery_kernel.py
holds it as a plain-Python oracle), state for every record, and it also says which records
open or close a battery episode: a slot's episodes are open or not as the walk left them
(`open_lv`), and a record acts where `observe`'s episode loop would. Those are few; each
comes back with a copy of its slot's state as of that record, for the alert's detail."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from zones.jit import njit

_FREE, _NFREE = 0, 1  # meta: the pool's free chain (head, length)


class Levels:
    """Per tag slot [0, n): level (-1: none), seq, charging, last_charge_t, and its samples
    (`head`, `tail`, `cnt`: a chain of pool nodes `pt`, `pb`, `nxt`, oldest first); `seen`
    slots have a battery state, `order` holds them in the order they got it."""

    def __init__(self, n: int) -> None:
        self.level = np.full(n, -1, dtype=np.int64)
        self.seq = np.full(n, -1, dtype=np.int64)
        self.charging = np.zeros(n, dtype=np.bool_)
        self.last_t = np.full(n, math.nan)
        self.seen = np.zeros(n, dtype=np.bool_)
        self.head = np.full(n, -1, dtype=np.int64)
        self.tail = np.full(n, -1, dtype=np.int64)
        self.cnt = np.zeros(n, dtype=np.int64)
        self.pt = np.zeros(0, dtype=np.float64)
        self.pb = np.zeros(0, dtype=np.int64)
        self.nxt = np.zeros(0, dtype=np.int64)
        self.meta = np.array([-1, 0], dtype=np.int64)
        self.order: list[int] = []

    def reserve(self, k: int) -> None:
        """At least k free nodes in the pool."""
        if self.meta[_NFREE] >= k:
            return
        p = self.pt.shape[0]
        q = max(2 * p, p + k, 1024)
        self.pt = np.concatenate([self.pt, np.zeros(q - p)])
        self.pb = np.concatenate([self.pb, np.zeros(q - p, dtype=np.int64)])
        new = np.arange(p + 1, q + 1, dtype=np.int64)
        new[-1] = self.meta[_FREE]
        self.nxt = np.concatenate([self.nxt, new])
        self.meta[_FREE] = p
        self.meta[_NFREE] += q - p

    def samples(self, s: int) -> list[tuple[float, int]]:
        """Slot s's samples, oldest first."""
        out = []
        node, nxt, pt, pb = int(self.head[s]), self.nxt, self.pt, self.pb
        for _ in range(int(self.cnt[s])):
            out.append((float(pt[node]), int(pb[node])))
            node = int(nxt[node])
        return out

    def all_samples(self, slots: list[int]) -> list[list[list[Any]]]:
        """`samples` of each slot, as lists of [t, level]."""
        s = np.asarray(slots, dtype=np.int64)
        t, b = gather(s, self.head, self.cnt, self.nxt, self.pt, self.pb)
        ends = np.cumsum(self.cnt[s]).tolist()
        pairs = [list(x) for x in zip(t.tolist(), b.tolist(), strict=True)]
        return [pairs[lo:hi] for lo, hi in zip([0, *ends], ends, strict=False)]

    def put(self, s: int, level: int, seq: int, samples: list[tuple[float, int]],
            charging: bool, last_t: float) -> None:  # fmt: skip
        """Slot s's state (import); slots are put once each, in their order."""
        self.reserve(len(samples))
        self.level[s], self.seq[s], self.charging[s], self.last_t[s] = level, seq, charging, last_t
        self.seen[s] = True
        self.order.append(s)
        for t, b in samples:
            append(s, t, b, self.head, self.tail, self.cnt, self.pt, self.pb, self.nxt, self.meta)


@njit
def append(s: int, t: float, b: int, head: np.ndarray, tail: np.ndarray, cnt: np.ndarray,
           pt: np.ndarray, pb: np.ndarray, nxt: np.ndarray, meta: np.ndarray) -> None:  # fmt: skip
    """A sample at the end of slot s's chain (a free node is there: `Levels.reserve`)."""
    node = meta[_FREE]
    meta[_FREE] = nxt[node]
    meta[_NFREE] -= 1
    pt[node], pb[node], nxt[node] = t, b, -1
    if cnt[s] == 0:
        head[s] = node
    else:
        nxt[tail[s]] = node
    tail[s] = node
    cnt[s] += 1


@njit
def _clear(s: int, head: np.ndarray, tail: np.ndarray, cnt: np.ndarray, nxt: np.ndarray,
           meta: np.ndarray) -> None:  # fmt: skip
    """Slot s's samples = []: its chain goes to the free chain whole."""
    if cnt[s] > 0:
        nxt[tail[s]] = meta[_FREE]
        meta[_FREE] = head[s]
        meta[_NFREE] += cnt[s]
    head[s], tail[s], cnt[s] = -1, -1, 0


@njit
def gather(slots: np.ndarray, head: np.ndarray, cnt: np.ndarray, nxt: np.ndarray,
           pt: np.ndarray, pb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The samples of each slot in turn, flat (t, level)."""
    n = 0
    for s in slots:
        n += cnt[s]
    t = np.empty(n, dtype=np.float64)
    b = np.empty(n, dtype=np.int64)
    k = 0
    for s in slots:
        node = head[s]
        for _ in range(cnt[s]):
            t[k], b[k] = pt[node], pb[node]
            k += 1
            node = nxt[node]
    return t, b


@njit
def walk(
    slot: np.ndarray, t: np.ndarray, seq: np.ndarray, batt: np.ndarray, code: np.ndarray,
    on: int, off: int, trend: float, lows: np.ndarray, highs: np.ndarray,
    from_t: np.ndarray, until_t: np.ndarray, open_lv: np.ndarray,
    level: np.ndarray, seqs: np.ndarray, charging: np.ndarray, last_t: np.ndarray,
    seen: np.ndarray, head: np.ndarray, tail: np.ndarray, cnt: np.ndarray,
    pt: np.ndarray, pb: np.ndarray, nxt: np.ndarray, meta: np.ndarray,
) -> tuple[np.ndarray, ...]:  # fmt: skip
    """Records (slot, t, seq, battery level or -1, event code) in processing order, as
    `Battery.observe` takes them, the arrays updated in place (`Levels.reserve` one node a
    record first). `open_lv[s, l]`: slot s's episode of level l (`lows`, `highs`) is open;
    `from_t`, `until_t`: per slot, its subject's tagging period (`Registry.monitored`).
    Returns the slots that got a state, in order; the records that open or close an
    episode, and for each of those its slot's charging and last_charge_t and its samples
    (offsets into flat t, level)."""
    n = slot.shape[0]
    new = np.empty(n, dtype=np.int64)
    acts = np.empty(n, dtype=np.int64)
    act_ch = np.empty(n, dtype=np.bool_)
    act_lt = np.empty(n, dtype=np.float64)
    n_new, n_act = 0, 0
    snap_off = np.zeros(n + 1, dtype=np.int64)
    snap_t = np.empty(16, dtype=np.float64)
    snap_b = np.empty(16, dtype=np.int64)
    for i in range(n):
        s, ti, b, c = slot[i], t[i], int(batt[i]), code[i]
        if not seen[s]:
            seen[s] = True
            new[n_new] = s
            n_new += 1
        if c == on or c == off:  # noqa: SIM109 (numba)
            charging[s], last_t[s] = c == on, ti
            _clear(s, head, tail, cnt, nxt, meta)
        if b < 0:
            continue
        if level[s] >= 0 and b > level[s] + 2 and not charging[s]:
            _clear(s, head, tail, cnt, nxt, meta)  # charged (or swapped) without telling us
            last_t[s] = ti
        level[s], seqs[s] = b, seq[i]
        if not charging[s]:
            append(s, ti, b, head, tail, cnt, pt, pb, nxt, meta)
            cut = ti - trend
            while cnt[s] > 2 and pt[head[s]] < cut:
                node = head[s]
                head[s] = nxt[node]
                nxt[node] = meta[_FREE]
                meta[_FREE] = node
                meta[_NFREE] += 1
                cnt[s] -= 1
        act = False
        for lv in range(lows.shape[0]):
            if not open_lv[s, lv] and b <= lows[lv] and from_t[s] <= ti < until_t[s]:
                open_lv[s, lv] = act = True
            elif open_lv[s, lv] and b >= highs[lv]:
                open_lv[s, lv], act = False, True
        if not act:
            continue
        acts[n_act], act_ch[n_act], act_lt[n_act] = i, charging[s], last_t[s]
        lo = snap_off[n_act]
        hi = lo + cnt[s]
        if hi > snap_t.shape[0]:
            m = max(2 * snap_t.shape[0], hi)
            grown_t, grown_b = np.empty(m, dtype=np.float64), np.empty(m, dtype=np.int64)
            grown_t[:lo], grown_b[:lo] = snap_t[:lo], snap_b[:lo]
            snap_t, snap_b = grown_t, grown_b
        node = head[s]
        for k in range(lo, hi):
            snap_t[k], snap_b[k] = pt[node], pb[node]
            node = nxt[node]
        n_act += 1
        snap_off[n_act] = hi
    return (new[:n_new], acts[:n_act], act_ch[:n_act], act_lt[:n_act], snap_off[: n_act + 1],
            snap_t, snap_b)  # fmt: skip
