"""Reorderer: per-tag seq ordering against a plain-Python oracle, properties, named cases."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.intake.ordering import Released, Reorderer, _in_order_pass

# slot, seq, t, uid: uid tells rows apart; `x` proves other fields ride along intact.
Row = tuple[int, int, float, int]
DT = np.dtype(
    [("slot", np.int32), ("seq", np.int64), ("t", np.float64), ("uid", np.int64), ("x", "f4")]
)


def arr(rows: Iterable[Row]) -> np.ndarray:
    return np.array([(s, q, t, u, u * 0.5) for s, q, t, u in rows], dtype=DT)


def tup(a: np.ndarray) -> list[Row]:
    assert a.dtype == DT
    assert np.array_equal(a["x"], (a["uid"] * 0.5).astype("f4"))
    return [(int(r["slot"]), int(r["seq"]), float(r["t"]), int(r["uid"])) for r in a]


def seqs(a: np.ndarray, slot: int | None = None) -> list[int]:
    return [int(r["seq"]) for r in a if slot is None or r["slot"] == slot]


# -- the oracle ---------------------------------------------------------------------------


class NaiveReorderer:
    """The rules of engine.core.intake.ordering.Reorderer, one row at a time, with dicts and lists."""

    def __init__(
        self, ordered: Sequence[bool], hold_max: int, hold_s: float, reset_gap: int
    ) -> None:
        self.ordered = list(ordered)
        self.hold_max, self.hold_s, self.reset_gap = hold_max, hold_s, reset_gap
        self.nxt: dict[int, int] = {}
        self.last_t: dict[int, float] = {}
        self.released_t: dict[int, list[float]] = {}
        self.held: dict[int, dict[int, tuple[Row, float]]] = {}  # slot -> seq -> (row, arrival)
        self.gaps_filled = self.gaps_given_up = self.late = self.resets = 0

    @property
    def held_count(self) -> int:
        return sum(len(h) for h in self.held.values())

    def stats(self) -> tuple[int, int, int, int]:
        return self.gaps_filled, self.gaps_given_up, self.late, self.resets

    def admit(self, rows: list[Row], arrival: float) -> tuple[list[Row], list[Row]]:
        out: dict[int, list[Row]] = {}
        late: list[Row] = []
        phones = [r for r in rows if not self.ordered[r[0]]]
        for s in sorted({r[0] for r in rows if self.ordered[r[0]]}):
            mine = sorted((r for r in rows if r[0] == s), key=lambda r: r[1])
            runs: list[list[Row]] = []
            for r in mine:
                if not runs or r[1] - runs[-1][-1][1] > self.reset_gap:
                    runs.append([])
                runs[-1].append(r)
            runs.sort(key=lambda run: run[0][2])
            for run in runs:
                for r in run:
                    self._take(r, arrival, out.setdefault(s, []), late)
        return self._order(out, phones), sorted(late, key=lambda r: (r[0], r[1]))

    def give_up(self, slots: Iterable[int]) -> tuple[list[Row], list[Row]]:
        out: dict[int, list[Row]] = {}
        for s in sorted(set(slots)):
            if self.held.get(s):
                self._give_up(s, out.setdefault(s, []))
        return self._order(out, []), []

    def expire(self, now: float, wall: float) -> tuple[list[Row], list[Row]]:
        return self.give_up(
            s for s, h in self.held.items() if h and now - min(a for _, a in h.values()) > wall
        )

    def flush(self) -> tuple[list[Row], list[Row]]:
        return self.give_up(list(self.held))

    def _take(self, r: Row, arrival: float, out: list[Row], late: list[Row]) -> None:
        s, q, t, _ = r
        held = self.held.setdefault(s, {})
        self.nxt.setdefault(s, q)
        nxt = self.nxt[s]
        if q == nxt:
            self._release(r, out)
            if self.nxt[s] in held:
                while self.nxt[s] in held:
                    self._release(held.pop(self.nxt[s])[0], out)
                self.gaps_filled += 1
        elif q > nxt and q not in held:
            held[q] = (r, arrival)
        elif q < nxt - self.reset_gap and all(
            t > u for u in self.released_t[s] + [h[0][2] for h in held.values()]
        ):
            if held:
                self._give_up(s, out)
            self.resets += 1
            self._release(r, out)
        else:
            late.append(r)
            self.late += 1
        if held:
            newest = max(h[0][2] for h in held.values())
            if len(held) > self.hold_max or newest - self.last_t[s] >= self.hold_s:
                self._give_up(s, out)

    def _release(self, r: Row, out: list[Row]) -> None:
        out.append(r)
        self.nxt[r[0]] = r[1] + 1
        self.last_t[r[0]] = r[2]
        self.released_t.setdefault(r[0], []).append(r[2])

    def _give_up(self, s: int, out: list[Row]) -> None:
        held = self.held[s]
        for q in sorted(held):
            self._release(held[q][0], out)
        held.clear()
        self.gaps_given_up += 1

    @staticmethod
    def _order(out: dict[int, list[Row]], phones: list[Row]) -> list[Row]:
        keyed: list[tuple[float, int, int, Row]] = []
        for s, rows in out.items():
            m = -math.inf
            for i, r in enumerate(rows):
                m = max(m, r[2])
                keyed.append((m, s, i, r))
        for i, r in enumerate(phones):  # in arrival order
            keyed.append((r[2], r[0], i, r))
        return [k[3] for k in sorted(keyed, key=lambda k: k[:3])]


def check_same(got: Released, want: tuple[list[Row], list[Row]]) -> None:
    assert tup(got.ready) == want[0]
    assert tup(got.late) == want[1]


# -- strategies ---------------------------------------------------------------------------


@st.composite
def tracks(draw: st.DrawFn, max_rows: int = 25) -> list[list[Row]]:
    """Per slot: rows with contiguous seqs from a random base and increasing t."""
    n_slots = draw(st.integers(1, 4))
    uid = 0
    out = []
    for s in range(n_slots):
        m = draw(st.integers(1, max_rows))
        q0 = draw(st.integers(0, 1000))
        t = draw(st.floats(0, 100))
        rows = []
        for k in range(m):
            t += draw(st.floats(0.5, 60))
            rows.append((s, q0 + k, t, uid))
            uid += 1
        out.append(rows)
    return out


def on_time(track: list[list[Row]]) -> list[Row]:
    return sorted((r for rows in track for r in rows), key=lambda r: (r[2], r[0], r[1]))


def split(units: list[list[Row]], cuts: set[int]) -> list[list[Row]]:
    """Group consecutive units into admit() calls, cutting before the unit indices in cuts."""
    calls: list[list[Row]] = [[]]
    for i, u in enumerate(units):
        if i in cuts and calls[-1]:
            calls.append([])
        calls[-1].extend(u)
    return calls


# -- properties ---------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(track=tracks(), mode=st.sampled_from(["on_time", "withheld", "shuffled"]), data=st.data())
def test_any_arrival_order_releases_each_tag_in_seq_order(
    track: list[list[Row]], mode: str, data: st.DataObject
) -> None:
    """On time, a withheld window delivered later as one batch, bounded shuffling, any
    split into calls: each slot's ready rows are its rows in seq order, none late."""
    timely = on_time(track)
    n = len(timely)
    hold_max, hold_s = 8, 600.0
    units: list[list[Row]] = [[r] for r in timely]
    if mode == "withheld" and any(len(rows) >= 2 for rows in track):
        s = data.draw(st.sampled_from([i for i, rows in enumerate(track) if len(rows) >= 2]))
        a = data.draw(st.integers(1, len(track[s]) - 1))  # the first row sets the frontier
        b = data.draw(st.integers(a + 1, len(track[s])))
        window = track[s][a:b]
        base = [r for r in timely if r not in window]
        earliest = sum(1 for r in base if timely.index(r) < timely.index(window[0]))
        p = data.draw(st.integers(earliest, len(base)))
        batch = data.draw(st.permutations(window))
        units = [[r] for r in base[:p]] + [list(batch)] + [[r] for r in base[p:]]
        hold_max, hold_s = n, 1e12
    elif mode == "shuffled":
        w = data.draw(st.integers(1, 6))
        off = data.draw(st.lists(st.integers(0, w), min_size=n, max_size=n))
        order = sorted(range(n), key=lambda i: i + off[i])
        arrived = [timely[i] for i in order]
        for rows in track:  # a slot's first row must come first: it sets the frontier
            first = min(arrived.index(r) for r in rows)
            j = arrived.index(rows[0])
            arrived[first], arrived[j] = arrived[j], arrived[first]
        units = [[r] for r in arrived]
        hold_max = w
    cuts = set(data.draw(st.lists(st.integers(1, max(1, len(units) - 1)), max_size=10)))
    r = Reorderer(np.ones(len(track), dtype=bool), hold_max=hold_max, hold_s=hold_s)
    ready: list[Row] = []
    for arrival, call in enumerate(split(units, cuts)):
        rel = r.admit(arr(call), float(arrival))
        assert rel.late.shape[0] == 0
        ready.extend(tup(rel.ready))
    ready.extend(tup(r.flush().ready))
    for rows in track:
        assert [x for x in ready if x[0] == rows[0][0]] == rows
    assert sorted(ready, key=lambda x: x[3]) == sorted(timely, key=lambda x: x[3])
    assert r.held_count == 0 and r.late == 0 and r.gaps_given_up == 0
    if mode == "on_time":
        assert ready == timely  # nothing held: the output order is the event-time order


@settings(max_examples=150, deadline=None)
@given(
    hold_max=st.integers(0, 5),
    a=st.integers(1, 4),
    k=st.integers(1, 5),
    extra=st.integers(0, 4),
    data=st.data(),
)
def test_window_withheld_past_hold_max_comes_back_late(
    hold_max: int, a: int, k: int, extra: int, data: st.DataObject
) -> None:
    """Rows after a withheld window wait until more than hold_max are held, are then
    released in seq order; the window, when it comes, is late, in seq order."""
    after = hold_max + 1 + extra
    rows = [(0, q, 10.0 * q, q) for q in range(a + k + after)]
    window, later = rows[a : a + k], rows[a + k :]
    other = [(1, q, 10.0 * q + 5, 1000 + q) for q in range(after + 1)]
    r = Reorderer(np.array([True, True]), hold_max=hold_max, hold_s=1e12)
    assert tup(r.admit(arr(rows[:a] + other[:1])).ready) == sorted(
        rows[:a] + other[:1], key=lambda x: x[2]
    )
    ready: list[Row] = []
    for j, row in enumerate(later):
        rel = r.admit(arr([row, other[j + 1]]))
        assert rel.late.shape[0] == 0
        got = tup(rel.ready)
        assert [x for x in got if x[0] == 1] == [other[j + 1]]  # other tags never wait
        mine = [x for x in got if x[0] == 0]
        if j < hold_max:
            assert mine == [] and r.held_count == j + 1
        elif j == hold_max:
            assert mine == later[: hold_max + 1] and r.held_count == 0
        else:
            assert mine == [row]
        ready.extend(mine)
    rel = r.admit(arr(data.draw(st.permutations(window))))
    assert rel.ready.shape[0] == 0
    assert tup(rel.late) == window
    assert sorted(ready + rows[:a] + tup(rel.late)) == sorted(rows)
    assert (r.gaps_given_up, r.late, r.gaps_filled) == (1, k, 0)


@settings(max_examples=150, deadline=None)
@given(dt=st.floats(10, 100), hold_s=st.floats(1, 300), a=st.integers(1, 3), k=st.integers(1, 3))
def test_window_withheld_past_hold_s_comes_back_late(
    dt: float, hold_s: float, a: int, k: int
) -> None:
    """With hold_max out of reach, the held rows go when the newest is hold_s (event time)
    after the last released row."""
    n_after = int(hold_s / dt) + 3
    rows = [(0, q, dt * q, q) for q in range(a + k + n_after)]
    window, later = rows[a : a + k], rows[a + k :]
    r = Reorderer(np.array([True]), hold_max=10_000, hold_s=hold_s)
    r.admit(arr(rows[:a]))
    last_released_t = rows[a - 1][2]
    gave_up_at = next(j for j, x in enumerate(later) if x[2] - last_released_t >= hold_s)
    for j, row in enumerate(later):
        got = tup(r.admit(arr([row])).ready)
        if j < gave_up_at:
            assert got == []
        elif j == gave_up_at:
            assert got == later[: j + 1]
        else:
            assert got == [row]
    rel = r.admit(arr(window[::-1]))
    assert tup(rel.late) == window and rel.ready.shape[0] == 0


@st.composite
def messy(draw: st.DrawFn) -> tuple[list[bool], list[Row], int]:
    """Rows with gaps, backwards clocks and seq resets; unique (slot, seq)."""
    n_slots = draw(st.integers(1, 4))
    ordered = draw(st.lists(st.booleans(), min_size=n_slots, max_size=n_slots))
    reset_gap = draw(st.sampled_from([2, 5, 1000]))
    rows: list[Row] = []
    for s in range(n_slots):
        q = draw(st.integers(0, 30))
        t = draw(st.floats(0, 100))
        used: set[int] = set()
        for _ in range(draw(st.integers(0, 20))):
            step = draw(st.sampled_from([1, 1, 1, 1, 2, 3, -40]))
            q = max(0, q + step) if step > 0 else draw(st.integers(0, 3))
            t += draw(st.sampled_from([10.0, 10.0, 30.0, -15.0, 0.0]))
            if q not in used:
                used.add(q)
                rows.append((s, q, t, len(rows)))
    return ordered, rows, reset_gap


@settings(max_examples=300, deadline=None)
@given(case=messy(), data=st.data())
def test_matches_oracle(case: tuple[list[bool], list[Row], int], data: st.DataObject) -> None:
    """Random arrival orders, call splits, hold limits, give_up/expire between calls."""
    ordered, rows, reset_gap = case
    arrival_order = data.draw(st.sampled_from(["as_taken", "by_t", "shuffled"]))
    if arrival_order == "shuffled":
        rows = data.draw(st.permutations(rows))
    elif arrival_order == "by_t":  # a backwards clock puts a tag's seqs out of order
        rows = on_time([rows])
    hold_max = data.draw(st.integers(0, 5))
    hold_s = data.draw(st.sampled_from([1.0, 25.0, 100.0, 1e12]))
    cuts = set(data.draw(st.lists(st.integers(1, max(1, len(rows) - 1)), max_size=8)))
    r = Reorderer(np.array(ordered), hold_max=hold_max, hold_s=hold_s, reset_gap=reset_gap)
    o = NaiveReorderer(ordered, hold_max, hold_s, reset_gap)
    now = 0.0
    for call in split([[x] for x in rows], cuts):
        now += data.draw(st.sampled_from([0.5, 1.0, 3.0]))
        check_same(r.admit(arr(call), now), o.admit(call, now))
        op = data.draw(st.sampled_from(["none", "none", "give_up", "expire"]))
        if op == "give_up":
            slots = data.draw(st.lists(st.integers(0, len(ordered) - 1), max_size=3))
            check_same(r.give_up(slots), o.give_up(slots))
        elif op == "expire":
            wall = data.draw(st.sampled_from([0.0, 1.0, 2.5]))
            check_same(r.expire(now, wall), o.expire(now, wall))
        assert r.held_count == o.held_count
        assert (r.gaps_filled, r.gaps_given_up, r.late, r.resets) == o.stats()
    check_same(r.flush(), o.flush())
    assert r.held_count == 0
    assert (r.gaps_filled, r.gaps_given_up, r.late, r.resets) == o.stats()


# -- named cases --------------------------------------------------------------------------


def test_first_row_defines_the_frontier() -> None:
    r = Reorderer(np.array([True]))
    # The smallest seq of the first call sets the frontier; the rest wait behind gaps.
    rel = r.admit(arr([(0, 9, 3.0, 0), (0, 5, 1.0, 1), (0, 7, 2.0, 2)]))
    assert seqs(rel.ready) == [5] and r.held_count == 2
    assert int(r.next_seq[0]) == 6
    # Something before the first row can never be waited for: it is late.
    rel = r.admit(arr([(0, 4, 0.5, 3)]))
    assert seqs(rel.late) == [4] and rel.ready.shape[0] == 0
    rel = r.admit(arr([(0, 8, 2.5, 4), (0, 6, 1.5, 5)]))
    assert seqs(rel.ready) == [6, 7, 8, 9]
    assert (r.gaps_filled, r.gaps_given_up, r.late) == (2, 0, 1)  # gaps at 6 and 8


def test_seq_reset_after_reboot() -> None:
    r = Reorderer(np.array([True]), reset_gap=100)
    assert seqs(r.admit(arr([(0, q, float(q), q) for q in range(1000, 1005)])).ready) == [
        1000,
        1001,
        1002,
        1003,
        1004,
    ]
    r.admit(arr([(0, 1006, 1006.0, 6)]))  # held behind a gap at 1005
    # Reboot: seq restarts at 0 with a later clock. The held row is given up first.
    rel = r.admit(arr([(0, 1, 2001.0, 8), (0, 0, 2000.0, 7)]))
    assert seqs(rel.ready) == [1006, 0, 1] and rel.late.shape[0] == 0
    assert (r.resets, r.gaps_given_up) == (1, 1)
    assert int(r.next_seq[0]) == 2
    # Far below the frontier but not later in time: a late row, not a reboot.
    r2 = Reorderer(np.array([True]), reset_gap=100)
    r2.admit(arr([(0, 500, 50.0, 0)]))
    rel = r2.admit(arr([(0, 3, 40.0, 1)]))
    assert seqs(rel.late) == [3] and r2.resets == 0
    # Below the frontier but within reset_gap: late, whatever its time.
    rel = r2.admit(arr([(0, 450, 60.0, 2)]))
    assert seqs(rel.late) == [450] and r2.resets == 0


def test_reboot_inside_one_call_keeps_pre_reboot_rows_first() -> None:
    r = Reorderer(np.array([True]))
    pre = [(0, 250_000 + k, float(k), k) for k in range(3)]
    post = [(0, k, 100.0 + k, 10 + k) for k in range(3)]
    rel = r.admit(arr(post + pre))
    assert tup(rel.ready) == pre + post
    assert r.resets == 1 and r.held_count == 0 and rel.late.shape[0] == 0


def test_unordered_slots_pass_through() -> None:
    r = Reorderer(np.array([True, False]), hold_max=0)
    phone = [(1, 1_700_000_050, 50.0, 0), (1, 1_700_000_010, 10.0, 1), (1, 5, 30.0, 2)]
    tag = [(0, 3, 20.0, 3)]
    rel = r.admit(arr(phone + tag))
    assert tup(rel.ready) == [phone[1], tag[0], phone[2], phone[0]]
    rel = r.admit(arr([(1, 1, 5.0, 4)]))  # far behind: still released, never late
    assert seqs(rel.ready) == [1] and rel.late.shape[0] == 0
    assert r.held_count == 0 and int(r.next_seq[1]) == -1
    assert (r.gaps_filled, r.gaps_given_up, r.late, r.resets) == (0, 0, 0, 0)


def test_expire_uses_arrival_times() -> None:
    r = Reorderer(np.array([True, True]), hold_max=100, hold_s=1e9)
    r.admit(arr([(0, 0, 0.0, 0), (1, 0, 0.0, 1)]), arrival=90.0)
    r.admit(arr([(0, 2, 2.0, 2)]), arrival=100.0)
    r.admit(arr([(1, 3, 3.0, 3)]), arrival=103.0)
    r.admit(arr([(0, 4, 4.0, 4)]), arrival=105.0)
    assert r.held_count == 3
    assert r.expire(now=108.0, hold_wall_s=8.0).ready.shape[0] == 0  # exactly 8 s: waits
    rel = r.expire(now=110.0, hold_wall_s=8.0)  # slot 0's oldest held arrived at 100
    assert tup(rel.ready) == [(0, 2, 2.0, 2), (0, 4, 4.0, 4)]
    assert r.held_count == 1 and int(r.next_seq[0]) == 5
    assert seqs(r.expire(now=111.5, hold_wall_s=8.0).ready) == [3]
    assert r.gaps_given_up == 2 and r.held_count == 0
    rel = r.admit(arr([(0, 1, 1.0, 5), (0, 5, 5.0, 6)]), arrival=112.0)
    assert seqs(rel.late) == [1] and seqs(rel.ready) == [5]


def test_backwards_clock_keeps_seq_order() -> None:
    r = Reorderer(np.array([True, True]))
    tag = [(0, q, t, q) for q, t in enumerate([10.0, 20.0, 15.0, 25.0, 30.0])]
    other = [(1, q, t, 10 + q) for q, t in enumerate([12.0, 17.0, 22.0])]
    rel = r.admit(arr(other + tag[::-1]))
    # Keys for slot 0 are the running max [10, 20, 20, 25, 30]: the step back to 15 stays
    # behind seq 1 and other tags interleave by time around it.
    want = [tag[0], other[0], other[1], tag[1], tag[2], other[2], tag[3], tag[4]]
    assert tup(rel.ready) == want
    # The same rows arriving in seq order take the one-pass path: same order.
    r_in_order = Reorderer(np.array([True, True]))
    assert tup(r_in_order.admit(arr(tag + other)).ready) == want
    # Same through the slow path: a gap filled by a row whose clock stepped back.
    r.admit(arr([(0, 6, 40.0, 6)]))
    rel = r.admit(arr([(0, 5, 50.0, 5), (1, 3, 45.0, 13)]))
    assert tup(rel.ready) == [(1, 3, 45.0, 13), (0, 5, 50.0, 5), (0, 6, 40.0, 6)]
    assert r.gaps_filled == 1


def test_give_up_and_flush() -> None:
    r = Reorderer(np.array([True, True, True]))
    r.admit(arr([(0, 0, 0.0, 0), (0, 2, 2.0, 1), (1, 0, 0.0, 2), (1, 5, 1.0, 3), (2, 0, 0.0, 4)]))
    assert r.give_up([0, 2]).ready["seq"].tolist() == [2]  # slot 2 holds nothing
    assert r.held_count == 1
    rel = r.flush()
    assert tup(rel.ready) == [(1, 5, 1.0, 3)]
    assert r.flush().ready.shape[0] == 0 and r.gaps_given_up == 2
    empty = Reorderer(np.array([True])).flush()
    assert empty.ready.shape[0] == 0 and "seq" in (empty.ready.dtype.names or ())


def test_contiguous_batches_take_the_fast_path_state() -> None:
    """The vectorised path keeps the same per-slot state as the row-by-row rules."""
    r = Reorderer(np.array([True, True]))
    r.admit(arr([(0, 10, 1.0, 0), (0, 11, 3.0, 1), (1, 4, 2.0, 2)]))
    r.admit(arr([(0, 12, 2.5, 3), (1, 5, 4.0, 4), (1, 6, 5.0, 5)]))
    assert r.next_seq.tolist() == [13, 7]
    assert r.last_t.tolist() == [2.5, 5.0] and r.max_t.tolist() == [3.0, 5.0]
    assert r.admit(arr([])).ready.dtype == DT


def test_held_duplicate_is_late_not_lost() -> None:
    """Outside the contract (dedupe runs first), but a repeat of a held seq is kept."""
    r = Reorderer(np.array([True]))
    r.admit(arr([(0, 0, 0.0, 0), (0, 2, 2.0, 1)]))
    rel = r.admit(arr([(0, 2, 2.0, 2)]))
    assert tup(rel.late) == [(0, 2, 2.0, 2)] and r.held_count == 1


def test_bad_input_is_refused() -> None:
    r = Reorderer(np.array([True]))
    with pytest.raises(TypeError, match="lack"):
        r.admit(np.zeros(1, dtype=[("slot", "i4"), ("seq", "i8")]))
    with pytest.raises(ValueError, match="slot out of range"):
        r.admit(arr([(1, 0, 0.0, 0)]))
    with pytest.raises(ValueError, match="slot out of range"):
        r.admit(arr([(-1, 0, 0.0, 0)]))
    r.admit(arr([(0, 0, 0.0, 0)]))
    with pytest.raises(TypeError, match="changed dtype"):
        r.admit(np.zeros(1, dtype=[("slot", "i4"), ("seq", "i8"), ("t", "f8")]))
    with pytest.raises(ValueError, match="hold_max"):
        Reorderer(np.array([True]), hold_max=-1)


def test_hold_s_after_a_fill_counts_only_rows_still_held() -> None:
    """A fill that drains the held row with the latest t leaves a newer-seq row held; its
    hold_s clock is its own t against the last released row (clock stepped back)."""
    r = Reorderer(np.array([True]), hold_max=100, hold_s=100.0)
    r.admit(arr([(0, 0, 50.0, 0)]))
    assert r.admit(arr([(0, 2, 140.0, 2), (0, 3, 0.0, 3), (0, 5, 10.0, 5)])).ready.shape[0] == 0
    rel = r.admit(arr([(0, 1, 45.0, 1)]))
    assert sorted(seqs(rel.ready)) == [1, 2, 3] and r.held_count == 1
    assert r.gaps_given_up == 0 and r.gaps_filled == 1


def test_in_order_pass_kinds() -> None:
    """The one-pass kernel: 0 = released in order, 1 = slot path, 2 = unordered slot."""
    ordered = np.array([True, True, True, False])
    next_seq = np.array([-1, 5, 5, -1], dtype=np.int64)
    last_t = np.full(4, np.nan)
    max_t = np.full(4, -np.inf)
    touch = np.full(4, -1, dtype=np.int32)
    slot = np.array([0, 1, 0, 2, 3, 1, 2], dtype=np.int64)
    seq = np.array([7, 5, 8, 5, 9, 7, 6], dtype=np.int64)
    t = np.array([1.0, 2.0, 0.5, 3.0, 4.0, 5.0, 6.0])
    kind = np.empty(7, dtype=np.int8)
    key = np.empty(7)
    held = np.array([2], dtype=np.int64)
    _in_order_pass(slot, seq, t, ordered, held, next_seq, last_t, max_t, touch, kind, key)
    # slot 0 new and in order; slot 1 skips 6; slot 2 holds rows; slot 3 is a phone
    assert kind.tolist() == [0, 1, 0, 1, 2, 1, 1]
    assert key[[0, 2, 4]].tolist() == [1.0, 1.0, 4.0]  # running max of slot 0; phone: t
    assert next_seq.tolist() == [9, 5, 5, -1]
    assert last_t[0] == 0.5 and max_t[0] == 1.0 and np.isnan(last_t[1])
    assert (touch == -1).all()
