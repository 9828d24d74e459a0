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
            if s not in last:
                tokens[s], last[s] = float(ST.rate_burst), wall
            elif wall > last[s]:
                tokens[s] = min(ST.rate_burst, tokens[s] + (wall - last[s]) * ST.rate_max_per_s)
                last[s] = wall
            if tokens[s] >= 1.0:
                tokens[s] -= 1.0
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
