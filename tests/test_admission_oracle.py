"""The admission kernel against a plain-Python oracle, in the regime where the oracle is
simple: a live engine on wall time (live_clock "wall", the default), so a record's time
is judged on wall time alone, and each device has a token bucket refilled on wall
time. Random batches of sane, far-future and far-past records from a few devices."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.intake.admission import Admission
from engine.core.pipeline import Pipeline
from engine.settings import Settings
from engine.wire.records import FIX_DTYPE
from tests.helpers import write_world
from zones.load import load

pytestmark = pytest.mark.kernel

WALL0 = 1_790_000_000.0
ST = Settings(max_future_s=300.0, max_past_s=3600.0, rate_max_per_s=0.5, rate_burst=5)
SUBJECTS = '[[subjects]]\nid = "S1"\ntags = ["T0", "T1", "T2", "T3"]\n'


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("adm")
    zones, subjects = write_world(d, subjects_toml=SUBJECTS)
    return Pipeline(load(zones, subjects), ST).registry


def oracle(batches: list[tuple[float, list[tuple[int, float]]]]) -> list[str]:
    tokens: dict[int, float] = {}
    last: dict[int, float] = {}
    out = []
    for wall, recs in batches:
        for s, x in recs:
            if x > wall + ST.max_future_s:
                out.append("future")
                continue
            if x < wall - ST.max_past_s:
                out.append("past")
                continue
            # refilled to wall time, kept only when the record is admitted (a refused one
            # leaves no trace)
            if s not in last:
                tk = float(ST.rate_burst)
            else:
                tk = min(ST.rate_burst, tokens[s] + max(0.0, wall - last[s]) * ST.rate_max_per_s)
            if tk >= 1.0:
                tokens[s], last[s] = tk - 1.0, max(wall, last.get(s, wall))
                out.append("admit")
            else:
                out.append("rate")
    return out


_kind = st.sampled_from(["near", "near", "near", "future", "past"])
_rec = st.tuples(st.integers(0, 3), _kind, st.floats(0.01, 0.99), st.floats(1.0, 1e7))
_batch = st.tuples(st.sampled_from([0.0, 0.5, 3.0, 30.0]), st.lists(_rec, max_size=12))


@pytest.mark.parametrize("confirmed", [True, False])
@settings(max_examples=200, deadline=None)
@given(st.lists(_batch, min_size=1, max_size=20))
def test_admission_matches_the_oracle_on_a_healthy_host(registry, confirmed, drawn) -> None:  # type: ignore[no-untyped-def]
    """Live on wall time (live_clock "wall", the default) the oracle holds from the very
    first record heard, whether or not two devices have confirmed an event clock yet."""
    wall = WALL0
    # Two devices heard at the host's time: the fleet confirms the clock.
    batches: list[tuple[float, list[tuple[int, float]]]] = (
        [(wall, [(0, wall), (1, wall)])] if confirmed else []
    )
    for dt, recs in drawn:
        wall += dt
        out = []
        for s, kind, u, far in recs:
            if kind == "near":
                x = wall - ST.max_past_s + 1 + u * (ST.max_past_s + ST.max_future_s - 2)
            elif kind == "future":
                x = wall + ST.max_future_s + far
            else:
                x = wall - ST.max_past_s - far
            out.append((s, x))
        batches.append((wall, out))
    adm = Admission(registry, ST)
    got: list[str] = []
    seq = [0, 0, 0, 0]
    for w, recs in batches:
        arr = np.zeros(len(recs), dtype=FIX_DTYPE)
        for i, (s, x) in enumerate(recs):
            arr[i]["slot"], arr[i]["seq"], arr[i]["t"] = s, seq[s], x
            seq[s] += 1
        keep, why = adm.admit(arr, w)
        reasons = dict(why)
        for i in range(len(recs)):
            r = reasons.get(i, "")
            got.append(
                "admit" if keep[i] else "rate" if r.startswith("rate limit")
                else "future" if "ahead of" in r else "past" if "behind" in r else r
            )  # fmt: skip
    assert got == oracle(batches)


@settings(max_examples=100, deadline=None)
@given(st.lists(_batch, min_size=1, max_size=20), st.booleans())
def test_leaving_out_traceless_refusals_judges_the_rest_the_same(registry, drawn, fleet) -> None:  # type: ignore[no-untyped-def]
    """What the live engine's ledger relies on: the batches again without the records
    refused leaving no trace give every other record the same verdict and end in the same
    state (live_clock "wall", and "fleet" where a far-future record may be a candidate)."""
    cfg = Settings(
        max_future_s=300.0, max_past_s=3600.0, rate_max_per_s=0.3, rate_burst=5,
        live_clock="fleet" if fleet else "wall",
    )  # fmt: skip
    wall = WALL0 + 0.123
    batches = []
    seq = [0, 0, 0, 0]
    for dt, recs in drawn:
        wall += dt * 1.37
        arr = np.zeros(len(recs), dtype=FIX_DTYPE)
        for i, (s, kind, u, far) in enumerate(recs):
            x = {"near": wall - 100 + u * 200, "future": wall + 300 + far}.get(
                kind, wall - 3600 - far
            )
            arr[i]["slot"], arr[i]["seq"], arr[i]["t"] = s, seq[s], x
            seq[s] += 1
        batches.append((wall, arr))
    full, kept = Admission(registry, cfg), Admission(registry, cfg)
    for w, arr in batches:
        keep, _, traceless = full.judge(arr, w)
        assert not (keep & traceless).any()
        rest = arr[~traceless]
        keep2, _, traceless2 = kept.judge(rest, w)
        assert np.array_equal(keep[~traceless], keep2)
        assert not traceless2.any()
        for name in ("tokens", "last", "full_t", "extra", "clk"):
            assert np.array_equal(getattr(full, name), getattr(kept, name), equal_nan=True), name
