"""SeqSpaces (device restarts) against a plain-Python oracle, properties over simulated
device streams (reboots, wraps, resent duplicates), named cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.intake.seqspace import Citer, SeqSpaces

pytestmark = pytest.mark.kernel

Row = tuple[int, int, float, int]  # slot, seq, t, boot (-1: none sent)


class NaiveSpaces:
    """The module's rules, one row at a time, with a list of spaces per slot."""

    def __init__(self, drop: int) -> None:
        self.drop = drop
        # per slot: spaces as dicts, the last one current; top = highest effective seq
        self.sp: dict[int, list[dict[str, float]]] = {}
        self.top: dict[int, int] = {}

    def one(self, s: int, q: int, t: float, b: int) -> int:
        spaces = self.sp.get(s)
        if spaces is None:
            self.sp[s] = [dict(first=q, base=0, t0=t, boot=b, hi=q, tmax=t)]
            self.top[s] = q
            return q
        cur = spaces[-1]
        if b >= 0 and b != cur["boot"]:
            old = [x for x in spaces if x["boot"] == b]
            if old:
                return self._into(s, old[-1], q)
            return self._new(s, q, t, b)
        if b < 0 and len(spaces) > 1 and t < cur["t0"]:
            before = [x for x in spaces if x["t0"] <= t] or spaces[:1]
            return self._into(s, before[-1], q)
        if t > cur["tmax"] and q <= cur["hi"] and (cur["hi"] - q >= self.drop or q <= 1):
            return self._new(s, q, t, b)
        cur["hi"] = max(cur["hi"], q)
        cur["tmax"] = max(cur["tmax"], t)
        return self._into(s, cur, q)

    def _into(self, s: int, sp: dict[str, float], q: int) -> int:
        e = int(sp["base"]) + q
        self.top[s] = max(self.top[s], e)
        return e

    def _new(self, s: int, q: int, t: float, b: int) -> int:
        e = self.top[s] + 1
        self.sp[s].append(dict(first=e, base=e - q, t0=t, boot=b, hi=q, tmax=t))
        self.top[s] = e
        return e


def run(sp: SeqSpaces, rows: list[Row]) -> list[int]:
    a = np.array(rows, dtype=np.float64).reshape(-1, 4)
    out = sp.map(
        a[:, 0].astype(np.int64), a[:, 1].astype(np.int64), a[:, 2], a[:, 3].astype(np.int64)
    )
    return [int(x) for x in out]


rows_st = st.lists(
    st.tuples(
        st.integers(0, 2),
        st.sampled_from([0, 1, 2, 3, 5, 60, 64, 65, 100, 200, 1000, 65535]),
        st.sampled_from([0.0, 10.0, 20.0, 30.0, 1000.0, 5000.0]),
        st.sampled_from([-1, -1, 0, 1, 7]),
    ),
    max_size=40,
)


@settings(max_examples=400, deadline=None)
@given(batches=st.lists(rows_st, min_size=1, max_size=4), drop=st.sampled_from([1, 16, 64]))
def test_matches_oracle_across_batches(batches: list[list[Row]], drop: int) -> None:
    sp, naive = SeqSpaces(3, drop), NaiveSpaces(drop)
    for b in batches:
        order = sorted(range(len(b)), key=lambda i: b[i][2])  # event-time order, stable
        want = [0] * len(b)
        for i in order:
            want[i] = naive.one(*b[i])
        assert run(sp, b) == want
    for s, spaces in naive.sp.items():
        assert int(sp.spaces[s]) == len(spaces)
        for x in spaces:  # every space's first record cites what the device sent
            q = int(x["first"] - x["base"])
            assert sp.cite(s, int(x["first"]))[0] == q


@st.composite
def device_stream(draw: st.DrawFn) -> tuple[list[Row], list[tuple[int, int]]]:
    """One tag in event-time order: runs of seqs, each run after a reboot (seq back to 0
    or 1) or a wrap, some records resent (true duplicates). Returns rows and each row's
    true identity (run index, seq)."""
    with_boot = draw(st.booleans())
    rows: list[Row] = []
    ident: list[tuple[int, int]] = []
    t = 0.0
    for run_i in range(draw(st.integers(1, 4))):
        start = draw(st.sampled_from([0, 1])) if run_i else draw(st.integers(0, 70_000))
        n = draw(st.integers(1, 150)) if run_i else draw(st.integers(70, 300))
        for q in range(start, start + n):
            t += 60.0
            rows.append((0, q, t, run_i if with_boot else -1))
            ident.append((run_i, q))
            if draw(st.integers(0, 9)) == 0:  # resent: the same record again
                k = draw(st.integers(0, len(rows) - 1))
                rows.append(rows[k])
                ident.append(ident[k])
    return rows, ident


@settings(max_examples=200, deadline=None)
@given(stream=device_stream())
def test_restarts_lose_nothing_and_duplicates_stay_duplicates(
    stream: tuple[list[Row], list[tuple[int, int]]],
) -> None:
    """Runs after the first start at 0 or 1 after at least 70 records (the first run is
    long enough to fall back from): one effective seq per true record, the same for its
    resends, and the effective seqs of a run increase with its seqs."""
    rows, ident = stream
    sp = SeqSpaces(1, 64)
    eseq = run(sp, rows)
    by_ident: dict[tuple[int, int], int] = {}
    for e, i in zip(eseq, ident, strict=True):
        assert by_ident.setdefault(i, e) == e, f"{i} mapped to {by_ident[i]} and {e}"
    assert len(set(by_ident.values())) == len(by_ident), "two true records share a seq"
    for (r, q), e in by_ident.items():
        seq, boot = sp.cite(0, e)
        assert seq == q
        if r > 0 or boot is not None:
            assert boot is not None


def test_named_cases() -> None:
    sp = SeqSpaces(2, 64)
    # 100 records, a reboot to 1 with time moving on: continues at 100
    out = run(sp, [(0, q, 60.0 * q, -1) for q in range(1, 101)] + [(0, 1, 7000.0, -1)])
    assert out[-1] == 101 and sp.restarts == 1
    assert sp.cite(0, 101) == (1, 1) and sp.cite(0, 100) == (100, 0)
    # a late pre-reboot record (earlier time) goes back into the first space
    assert run(sp, [(0, 50, 3000.0, -1)]) == [50]
    # a lower seq with an earlier time is late, not a restart
    assert run(sp, [(0, 2, 7060.0, -1), (0, 1, 7000.0, -1)]) == [102, 101]
    # a small fall back (< drop, not to 0/1) with later time is not a restart
    assert run(sp, [(1, 500, 0.0, -1), (1, 480, 10.0, -1)]) == [500, 480]
    assert sp.restarts == 1
    # a boot change starts a new space at once; a late record of the old boot goes back
    assert run(sp, [(1, 0, 20.0, 3), (1, 499, 5.0, -1)]) == [501, 499]
    assert run(sp, [(1, 1, 30.0, 3)]) == [502]


def test_a_shuffled_batch_across_a_reboot_starts_the_space_at_its_first_record() -> None:
    sp = SeqSpaces(1, 64)
    run(sp, [(0, q, 60.0 * q, -1) for q in range(1, 301)])
    after = [(0, q, 20_000.0 + 60 * q, -1) for q in range(1, 11)]
    got = run(sp, [after[6], after[2], after[0], after[9], *after[1:9]])
    assert sorted(set(got)) == list(range(301, 311)) and sp.restarts == 1


def test_citer_without_restarts_is_unchanged() -> None:
    sp = SeqSpaces(2)
    run(sp, [(0, 5, 0.0, -1), (1, 7, 0.0, 2)])
    cite = Citer({"T1": 0, "T2": 1}.__getitem__, sp)
    assert cite("T1", 5) == ("T1", 5)
    assert cite("T2", 7) == ("T2", 7, 2)


def test_bad_drop() -> None:
    with pytest.raises(ValueError):
        SeqSpaces(1, 0)
