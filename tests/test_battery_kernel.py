"""`levels.walk` (the battery walk of Health.ordered) against a plain-Python oracle:
`Battery.observe` as it was, record by record, on a `_Battery` per slot with its sample
list, and its episode loop on a set of open (slot, level); the state after each batch (the
sample chains and the pool's free chain included) and the records that open or close an
episode, each with its slot's state as of it. Then the pipeline with the walk on and off:
the same alerts and the same exported state, with the records really walked in bulk."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine.core.health.battery as battery
from engine.core.health.battery import CHARGING_OFF, CHARGING_ON, _Battery
from engine.core.health.levels import Levels, walk
from engine.core.pipeline import Pipeline
from engine.settings import Settings
from engine.store import snapshot as snapfmt
from engine.wire.alerts import encode_alert
from engine.wire.records import EVENT_CODE, FIX_DTYPE, EventRecord, FixRecord, Record
from tests.helpers import offset
from zones.model import Subject, ZoneSet

pytestmark = pytest.mark.kernel

LOWS, HIGHS = (20, 10), (30, 20)
TREND = 600.0
N = 4
FROM = np.array([-math.inf, 100.0, -math.inf, 0.0])
UNTIL = np.array([math.inf, 5000.0, 300.0, math.inf])
CODES = [0, 0, 0, CHARGING_ON, CHARGING_OFF, EVENT_CODE["no_gps"]]
TIMES = st.one_of(st.sampled_from([0.0, 100.0, 700.0, math.nan]), st.floats(-1e3, 1e4))


def oracle(
    bats: dict[int, _Battery], open_: set[tuple[int, int]], recs: list[tuple[Any, ...]]
) -> list[tuple[int, _Battery]]:
    """`Battery.observe` as it was, per record; the records whose episode loop acts."""
    acts = []
    for i, (s, t, seq, b, code) in enumerate(recs):
        bat = bats.get(s)
        if bat is None:
            bat = bats[s] = _Battery()
        if code == CHARGING_ON:
            bat.charging, bat.last_charge_t = True, t
            bat.samples = []
        elif code == CHARGING_OFF:
            bat.charging, bat.last_charge_t = False, t
            bat.samples = []
        if b < 0:
            continue
        if bat.level >= 0 and b > bat.level + 2 and not bat.charging:
            bat.samples = []
            bat.last_charge_t = t
        bat.level, bat.seq = b, seq
        if not bat.charging:
            bat.samples.append((t, b))
            cut = t - TREND
            while len(bat.samples) > 2 and bat.samples[0][0] < cut:
                bat.samples.pop(0)
        act = False
        for lv, (low, high) in enumerate(zip(LOWS, HIGHS, strict=True)):
            if (s, lv) not in open_ and b <= low and FROM[s] <= t < UNTIL[s]:
                open_.add((s, lv))
                act = True
            elif (s, lv) in open_ and b >= high:
                open_.discard((s, lv))
                act = True
        if act:
            acts.append((i, _Battery(bat.level, bat.seq, list(bat.samples), bat.charging,
                                     bat.last_charge_t)))  # fmt: skip
    return acts


def _same(a: float, b: float) -> bool:
    return a == b or (a != a and b != b)


RECS = st.lists(
    st.tuples(st.integers(0, N - 1), TIMES, st.integers(0, 99),
              st.one_of(st.sampled_from([-1, 10, 11, 13, 20, 21, 22, 23, 30]),
                        st.integers(-1, 100)),
              st.sampled_from(CODES)),
    max_size=30,
)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(RECS, min_size=1, max_size=4))
def test_walk_is_the_record_by_record_observe(batches: list[list[tuple[Any, ...]]]) -> None:
    lv = Levels(N)
    open_lv = np.zeros((N, 2), dtype=np.bool_)
    bats: dict[int, _Battery] = {}
    open_: set[tuple[int, int]] = set()
    for recs in batches:
        rows = np.zeros(len(recs), dtype=FIX_DTYPE)  # strided columns, as the engine's
        for f, k in (("slot", 0), ("t", 1), ("seq", 2), ("batt", 3), ("event", 4)):
            rows[f] = [r[k] for r in recs]
        want = oracle(bats, open_, [tuple(r) for r in rows[["slot", "t", "seq", "batt", "event"]].tolist()])  # fmt: skip
        lv.reserve(len(recs))
        new, acts, ch, lt, off, snap_t, snap_b = walk(
            rows["slot"], rows["t"], rows["seq"], rows["batt"], rows["event"], CHARGING_ON,
            CHARGING_OFF, TREND, np.array(LOWS), np.array(HIGHS), FROM, UNTIL, open_lv,
            lv.level, lv.seq, lv.charging, lv.last_t, lv.seen, lv.head, lv.tail, lv.cnt,
            lv.pt, lv.pb, lv.nxt, lv.meta,
        )  # fmt: skip
        lv.order += new.tolist()
        assert lv.order == list(bats)  # the slots with a state, in the order they got it
        assert set(zip(*np.nonzero(open_lv), strict=True)) == open_
        assert acts.tolist() == [i for i, _ in want]
        for k, (i, bat) in enumerate(want):
            assert ch[k] == bat.charging and _same(lt[k], bat.last_charge_t)
            got = list(zip(snap_t[off[k] : off[k + 1]].tolist(), snap_b[off[k] : off[k + 1]].tolist(), strict=True))  # fmt: skip
            assert repr(got) == repr(bat.samples) and rows["batt"][i] == bat.level
        for s, bat in bats.items():
            assert (lv.level[s], lv.seq[s], lv.charging[s]) == (bat.level, bat.seq, bat.charging)
            assert _same(lv.last_t[s], bat.last_charge_t)
            assert repr(lv.samples(s)) == repr(bat.samples)  # NaN times and -0.0 included
        # every pool node is in exactly one chain: a slot's, or the free one
        chains = [lv.samples(s) for s in range(N)]
        free, node = 0, int(lv.meta[0])
        while node >= 0:
            free, node = free + 1, int(lv.nxt[node])
        assert free == lv.meta[1]
        assert free + sum(map(len, chains)) == lv.pt.shape[0]


# -- the pipeline with the walk on and off --------------------------------------------------

T0 = 1_774_710_000.0


def _records(rng: np.random.Generator) -> list[Record]:
    """Two tags draining, charging now and then (told or not), through both levels."""
    recs: list[Record] = []
    level = {"T1": 60.0, "T2": 35.0, "T3": 100.0}
    seq = dict.fromkeys(level, 0)
    for i in range(600):
        tag = ("T1", "T2", "T3")[i % 3]
        seq[tag] += 1
        t = T0 + 20.0 * i + float(rng.uniform(0, 5))
        level[tag] -= float(rng.uniform(0, 1.5))
        if rng.uniform() < 0.003:
            level[tag] = 100.0  # charged without telling us
        b = max(0, round(level[tag]))
        if rng.uniform() < 0.008:
            event = "charging_on" if rng.uniform() < 0.5 else "charging_off"
            recs.append(EventRecord(tag, seq[tag], t, event, b if rng.uniform() < 0.7 else None))
            if event == "charging_on":
                level[tag] = min(100.0, level[tag] + 40.0)
            continue
        lat, lon = offset(float(rng.uniform(-50, 50)), 0.0)
        recs.append(FixRecord(tag, seq[tag], t, lat, lon, 5.0, b if rng.uniform() < 0.9 else None))
    return recs


def _run(recs: list[Record], cuts: list[int], calls: dict[str, int]) -> tuple[bytes, bytes]:
    zs = ZoneSet((), (Subject("S1", ("T1", "T2")), Subject("S2", ("T3",))))
    p = Pipeline(zs, Settings())
    out = []
    for lo, hi in zip([0, *cuts], [*cuts, len(recs)], strict=True):
        out += p.process(recs[lo:hi]).alerts
        if hi == cuts[len(cuts) // 2]:  # a snapshot taken and restored halfway
            q = Pipeline(zs, Settings())
            q.import_state(p.export_state())
            p = q
    state = snapfmt.encode(p.export_state(), {})
    out += p.finish()
    return b"\n".join(encode_alert(a) for a in out), state


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_walk_decides_and_keeps_the_same(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    recs = _records(np.random.default_rng(seed))
    cuts = [7, 100, 101, 250, 400, 590]
    calls = {"bulk": 0, "one": 0}
    rows_of, one = battery.Battery.observe_rows, battery.Battery.observe

    def counting_rows(self: battery.Battery, slot: np.ndarray, *a: Any) -> Any:
        calls["bulk"] += slot.shape[0]
        return rows_of(self, slot, *a)

    def counting_one(self: battery.Battery, *a: Any) -> None:
        calls["one"] += 1
        one(self, *a)

    monkeypatch.setattr(battery.Battery, "observe_rows", counting_rows)
    monkeypatch.setattr(battery.Battery, "observe", counting_one)
    monkeypatch.setattr(battery, "SKIP", False)
    plain = _run(recs, cuts, calls)
    assert calls["one"] > 500 and calls["bulk"] == calls["one"]  # observe: a walk of one
    calls.update(bulk=0, one=0)
    monkeypatch.setattr(battery, "SKIP", True)
    walked = _run(recs, cuts, calls)
    assert calls["one"] == 0 and calls["bulk"] > 500
    assert walked == plain
    assert plain[0].count(b'"battery_low"') >= 2 and b'"battery_critical"' in plain[0]
