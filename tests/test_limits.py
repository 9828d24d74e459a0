"""Input limits that need the engine's clock (engine/core/intake/admission.py): far-future and far-past
event times, and a per-device rate limit; through `Pipeline.process` (live and replay) and
end to end through `tagwatch replay` with a dead-letter store."""

from __future__ import annotations

import json
import math
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.cli.main import main
from engine.core.intake.admission import Admission
from engine.core.pipeline import Pipeline
from engine.settings import Settings
from engine.store.sqlite import SqliteStore
from engine.wire.decode import Limits
from engine.wire.records import FIX_DTYPE, EventRecord, FixRecord, Record
from tests.helpers import fix, offset, write_world
from zones.load import load

T0 = 1_790_000_000.0  # 2026-09-21T14:13:20Z
DAY = 86400.0
YEAR = 365.25 * DAY
TWO = '[[subjects]]\nid = "S1"\ntags = ["T1"]\n\n[[subjects]]\nid = "S2"\ntags = ["T2"]\n'


def _pipeline(tmp_path: Path, settings: Settings | None = None) -> Pipeline:
    zones, subjects = write_world(tmp_path, subjects_toml=TWO)
    return Pipeline(load(zones, subjects), settings or Settings())


def _fx(dev: str, seq: int, t: float, dx: float = 2000.0) -> FixRecord:
    return FixRecord(dev, seq, t, *offset(dx, 0.0), 5.0)


def _reasons(p: Pipeline, recs: list[Record], wall: float | None = None) -> list[str]:
    return [d.reason for d in p.process(recs, origin="test", wall=wall).dead]


# -- time, replay ----------------------------------------------------------------------------


@pytest.mark.kernel
def test_replay_far_future_and_far_past_are_dead_letters_that_move_no_clock(
    tmp_path: Path,
) -> None:
    p = _pipeline(tmp_path)
    assert _reasons(p, [_fx("T1", 0, T0), _fx("T2", 0, T0 + 5)]) == []
    clock = p.clock.now
    (why,) = _reasons(p, [_fx("T2", 1, 1_924_992_000.0)])  # 2031-01-01
    assert why == (
        "t 2031-01-01T00:00:00Z is 4.3 years ahead of the replay clock 2026-09-21T14:13:25Z "
        "(limit 3600 s, clock_max_jump_s)"
    )
    (why,) = _reasons(p, [_fx("T1", 1, T0 - 1024 * 7 * DAY)])  # GPS week-number rollover
    assert "19.6 years behind the replay clock" in why and "(limit 30.0 days, max_past_s)" in why
    assert p.clock.now == clock  # neither moved the clock silence is measured on
    assert p.admission.clk[0] == T0 + 5
    # the rejected seqs are still new: nothing remembered them
    ok = p.process([_fx("T2", 1, T0 + 60), _fx("T1", 1, T0 + 60)])
    assert ok.dead == [] and ok.duplicates == 0 and ok.fixes == 2


@pytest.mark.kernel
def test_replay_accepts_a_store_and_forward_backlog_and_a_quiet_hour(tmp_path: Path) -> None:
    p = _pipeline(tmp_path)
    assert _reasons(p, [_fx("T1", 0, T0), _fx("T2", 0, T0 + 5)]) == []
    backlog = [_fx("T1", 1 + i, T0 - 29 * DAY + 60 * i) for i in range(1500)]
    assert _reasons(p, backlog) == []  # 29 days old, one upload
    assert _reasons(p, [_fx("T2", 1, T0 + 3500)]) == []  # the fleet was quiet for an hour


@pytest.mark.kernel
def test_replay_before_a_second_device_confirms_the_clock_nothing_is_judged(
    tmp_path: Path,
) -> None:
    p = _pipeline(tmp_path)
    recs: list[Record] = [_fx("T1", i, T0 + i * 2 * YEAR) for i in range(3)]
    assert _reasons(p, recs) == []  # a one-device file has no clock to disagree with
    p = _pipeline(tmp_path)
    # a wild first record: two devices far behind it correct the clock, then it holds
    recs = [_fx("T1", 0, T0 + 5 * YEAR), _fx("T2", 0, T0), _fx("T1", 1, T0 + 10)]
    assert _reasons(p, recs) == []
    assert p.admission.clk[0] == T0 + 10
    (why,) = _reasons(p, [_fx("T1", 2, T0 + 5 * YEAR)])
    assert "ahead of the replay clock" in why


@pytest.mark.kernel
def test_replay_a_jump_the_fleet_makes_together_costs_at_most_one_record(
    tmp_path: Path,
) -> None:
    steady = [_fx(d, i, T0 + 60 * i) for i in range(5) for d in ("T1", "T2")]
    later = T0 + 200 * DAY  # e.g. a file that concatenates March and October
    jump = [_fx(d, 10 + i, later + 60 * i) for i in range(5) for d in ("T2", "T1")]
    p = _pipeline(tmp_path)
    dead = _reasons(p, steady + jump)
    assert len(dead) == 1 and "ahead of the replay clock" in dead[0]  # T2's first
    assert p.admission.clk[0] == later + 240
    # devices never heard before bring the jump: nothing lost
    p = _pipeline(tmp_path)
    assert _reasons(p, [_fx("T1", i, T0 + 60 * i) for i in range(5)]) == []
    assert _reasons(p, [_fx("T2", 0, later), _fx("T1", 9, later + 1)]) == []


@pytest.mark.kernel
def test_replay_one_wild_device_never_drags_the_clock(tmp_path: Path) -> None:
    p = _pipeline(tmp_path)
    recs: list[Record] = []
    for i in range(20):
        recs.append(_fx("T1", i, T0 + 60 * i))
        recs.append(_fx("T2", i, T0 + 60 * i + (10 * YEAR if i % 3 == 1 else 0)))
    dead = _reasons(p, recs)
    assert len(dead) == 7 and all("ahead of the replay clock" in d for d in dead)
    assert p.clock.now == p.admission.clk[0] == T0 + 60 * 19


def test_replay_admission_is_the_same_whatever_the_batch_size(tmp_path: Path) -> None:
    rng = random.Random(5)
    recs: list[Record] = []
    t = T0
    seqs = {"T1": 0, "T2": 0}
    for _ in range(3000):
        dev = rng.choice(("T1", "T2"))
        t += rng.choice((0.0, 0.01, 0.1, 1.0, 30.0)) if rng.random() < 0.998 else 200 * DAY
        wild = rng.random()
        x = t + (8 * YEAR if wild < 0.01 else -40 * DAY if wild < 0.02 else -rng.random() * 600)
        seqs[dev] += 1
        recs.append(_fx(dev, seqs[dev], x))
    st = Settings(rate_burst=20, rate_max_per_s=0.05)
    runs = []
    for size in (1, 7, 5000):
        p = _pipeline(tmp_path, st)
        dead = [
            d.reason for i in range(0, len(recs), size) for d in p.process(recs[i : i + size]).dead
        ]
        runs.append(dead)
    assert runs[0] == runs[1] == runs[2]
    kinds = {r.split(" ")[0] for r in runs[0]}
    assert len(runs[0]) > 50 and kinds == {"t", "rate"}


# -- time, live ------------------------------------------------------------------------------


@pytest.mark.kernel
def test_live_limits_are_on_wall_time(tmp_path: Path) -> None:
    p = _pipeline(tmp_path)
    wall = T0
    assert _reasons(p, [_fx("T1", 0, wall - 5), _fx("T2", 0, wall - 2)], wall) == []
    assert _reasons(p, [_fx("T1", 1, wall + 290), _fx("T2", 1, wall - 29 * DAY)], wall) == []
    future, past = _reasons(p, [_fx("T1", 2, wall + 400), _fx("T2", 2, wall - 31 * DAY)], wall)
    assert future == (
        "t 2026-09-21T14:20:00Z is 6.7 min ahead of the engine clock 2026-09-21T14:13:20Z "
        "(limit 300 s, max_future_s)"
    )
    assert past.startswith("t 2026-08-21T14:13:20Z is 31.0 days behind the engine clock")
    assert "(limit 30.0 days, max_past_s)" in past
    # an event with a wild time is judged like a fix
    (why,) = _reasons(p, [EventRecord("T1", 3, wall + YEAR, "strap_open")], wall)
    assert "ahead of the engine clock" in why


@pytest.mark.kernel
def test_live_the_first_record_heard_is_judged_on_wall_time(tmp_path: Path) -> None:
    """Live, the host's wall time is the clock from the very first record: an unconfirmed
    event clock is no excuse to admit a tag dated a year ahead (or 200 days behind)."""
    p = _pipeline(tmp_path)
    (why,) = _reasons(p, [_fx("T1", 0, T0 + YEAR)], wall=T0)
    assert (
        why.startswith("t 2027-09-21T20:13:20Z") and "365.2 days ahead of the engine clock" in why
    )
    assert "(limit 300 s, max_future_s)" in why
    (why,) = _reasons(p, [_fx("T2", 0, T0 - 200 * DAY)], wall=T0)
    assert "200.0 days behind the engine clock" in why
    assert _reasons(p, [_fx("T1", 1, T0 - 5), _fx("T2", 1, T0 + 5)], wall=T0) == []
    # a host clock 30 min off dead-letters the fleet: wall time must be kept by NTP
    assert len(_reasons(p, [_fx("T1", 2, T0 + 1800), _fx("T2", 2, T0 + 1803)], wall=T0)) == 2


@pytest.mark.kernel
def test_live_fleet_clock_admits_warped_or_historical_time(tmp_path: Path) -> None:
    """Only with live_clock = "fleet" (simulators, tests): when the whole fleet disagrees
    with the host's wall clock, the fleet's own clock is the second witness and only a
    device that disagrees with both is rejected."""
    fleet = Settings(live_clock="fleet")
    p = _pipeline(tmp_path, fleet)
    real = T0 + 1800  # the host's clock is 30 min slow
    for k in range(10):
        recs = [_fx("T1", k, real + 60 * k), _fx("T2", k, real + 60 * k + 3)]
        assert _reasons(p, recs, wall=T0 + 60 * k) == []
    (why,) = _reasons(p, [_fx("T2", 99, real + 3 * DAY)], wall=T0 + 600)
    assert "ahead of the engine clock" in why
    # historical data (a test harness): months behind wall, accepted as a whole
    p = _pipeline(tmp_path, fleet)
    old = T0 - 200 * DAY
    recs = [_fx(d, i, old + 60 * i) for i in range(10) for d in ("T1", "T2")]
    assert _reasons(p, recs, wall=T0) == []


@pytest.mark.kernel
def test_a_seq_without_a_successor_is_a_dead_letter_not_a_crash(tmp_path: Path) -> None:
    p = _pipeline(tmp_path)
    assert _reasons(p, [_fx("T1", 5, T0)]) == []
    (why,) = _reasons(p, [_fx("T1", 2**63 - 1, T0 + 60)])  # decode accepts it
    assert (
        why
        == "seq 9223372036854775807 is beyond the 9223372036854775806 the engine can order (2^63-2)"
    )
    assert _reasons(p, [_fx("T1", 2**63 - 2, T0 + 120)]) == []
    p.finish()


@pytest.mark.kernel
def test_records_built_without_decode_get_a_time_check(tmp_path: Path) -> None:
    p = _pipeline(tmp_path)
    for t in (math.nan, math.inf, 0.0, 5e9):
        (why,) = _reasons(p, [_fx("T1", 0, t)])
        assert why.startswith(f"t {t!r} is not a time between 2000-01-01 and 2100-01-01")


# -- rate --------------------------------------------------------------------------------


@pytest.mark.kernel
def test_a_full_backlog_upload_passes_and_a_flood_is_cut(tmp_path: Path) -> None:
    st = Settings()
    assert st.rate_burst >= 5 * Limits().max_batch
    for wall in (None, T0 + 60):
        p = _pipeline(tmp_path)
        assert _reasons(p, [_fx("T2", 0, T0)], wall) == []
        for k in range(5):  # five full /fixes uploads back to back: a week of 1-min fixes
            upload = [
                _fx("T1", 1 + k * 2000 + i, T0 - 7 * DAY + 60 * (k * 2000 + i)) for i in range(2000)
            ]
            assert _reasons(p, upload, wall) == [], k
        dead = _reasons(p, [_fx("T1", 20_000 + i, T0 + 1) for i in range(50)], wall)
        assert len(dead) == 50  # no token left, none refilled (the clock stood still)
        assert dead[0] == (
            "rate limit: tag T1 sent more than 10000 records in 0 s (limit: 10000 at once, then "
            "2 a second; rate_burst, rate_max_per_s)"
        )
        # T2 has its own bucket
        assert _reasons(p, [_fx("T2", 1 + i, T0 + 1) for i in range(100)], wall) == []


@pytest.mark.kernel
def test_the_bucket_refills_on_the_clock(tmp_path: Path) -> None:
    st = Settings(rate_burst=10, rate_max_per_s=2.0)
    p = _pipeline(tmp_path, st)
    wall = T0
    assert len(_reasons(p, [_fx("T1", i, wall) for i in range(15)], wall)) == 5
    wall += 2.0  # 4 tokens
    dead = _reasons(p, [_fx("T1", 100 + i, wall) for i in range(6)], wall)
    assert len(dead) == 2 and "sent more than 14 records in 2 s" in dead[0]
    wall += 100.0  # full again, not more
    assert len(_reasons(p, [_fx("T1", 200 + i, wall) for i in range(12)], wall)) == 2
    # replay: the clock is event time; a steady 1 Hz tag never touches the limit
    p = _pipeline(tmp_path, st)
    recs: list[Record] = [_fx("T1", i, T0 + i) for i in range(5000)]
    assert _reasons(p, recs) == []


@pytest.mark.kernel
def test_engine_downtime_credit_lets_the_queued_backlog_through(tmp_path: Path) -> None:
    st = Settings(rate_burst=100, rate_max_per_s=1.0)
    p = _pipeline(tmp_path, st)
    assert _reasons(p, [_fx("T1", 0, T0)], T0) == []
    p.admission.credit(3600.0)  # down an hour: the broker queued what the tag sent
    queued = [_fx("T1", 1 + i, T0 + i) for i in range(3000)]
    assert _reasons(p, queued, T0 + 3601) == []


def test_admission_state_survives_a_snapshot(tmp_path: Path) -> None:
    p = _pipeline(tmp_path, Settings(rate_burst=5))
    p.process([_fx("T1", i, T0) for i in range(5)], wall=T0)
    q = pickle.loads(pickle.dumps(p.admission))
    assert isinstance(q, Admission)
    arr = np.zeros(1, dtype=FIX_DTYPE)
    arr["t"] = T0
    keep, why = q.admit(arr, T0)
    assert not keep[0] and why[0][1].startswith("rate limit: tag T1")


# -- end to end: tagwatch replay ---------------------------------------------------------


def _write(path: Path, lines: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))


def _run(
    tmp: Path, name: str, lines: list[dict[str, Any]], zones: Path, subjects: Path
) -> tuple[bytes, list[Any]]:
    src = tmp / f"{name}.jsonl"
    _write(src, lines)
    out, db = tmp / f"{name}.alerts.jsonl", tmp / f"{name}.db"
    args = ["replay", str(src), "--zones", str(zones), "--subjects", str(subjects)]
    assert main([*args, "--out", str(out), "--db", str(db), "-q"]) == 0
    with SqliteStore(db) as st:
        dead = st.dead_letters()
    return out.read_bytes(), dead


def test_tagwatch_replay_dead_letters_wild_clocks_and_a_flood_and_still_alerts(
    tmp_path: Path,
) -> None:
    zones, subjects = write_world(tmp_path, subjects_toml=TWO)
    clean: list[dict[str, Any]] = []
    for i in range(40):  # T1 walks into Z1 at minute 20; T2 reports far away
        clean.append({"tag": "T1", **fix(i, T0 + 60 * i, 2000.0 if i < 20 else 0.0, 0.0)})
        clean.append({"tag": "T2", **fix(i, T0 + 60 * i + 7, 4000.0, 0.0)})
    bad = list(clean)
    bad.insert(9, {"tag": "T2", **fix(500, 1_924_992_000.0, 4000.0, 0.0)})  # 2031
    bad.insert(21, {"tag": "T1", **fix(501, T0 - 40 * DAY, 2000.0, 0.0)})  # 40 days old
    bad.insert(31, {"tag": "T2", **fix(502, T0 - 1024 * 7 * DAY, 4000.0, 0.0)})  # rollover
    bad.insert(
        41, {"tag": "T1", "type": "event", "seq": 503, "t": T0 + 30 * DAY, "event": "strap_open"}
    )

    want, none = _run(tmp_path, "clean", clean, zones, subjects)
    assert none == [] and b'"zone_breach"' in want
    got, dead = _run(tmp_path, "bad", bad, zones, subjects)
    assert got == want  # the rejected lines changed nothing else
    reasons = [d.reason for d in dead]
    assert len(reasons) == 4
    assert reasons[0].startswith("t 2031-01-01T00:00:00Z is 4.3 years ahead of the replay clock")
    assert "40.0 days behind the replay clock" in reasons[1]
    assert "19.6 years behind the replay clock" in reasons[2]
    assert "30.0 days ahead of the replay clock" in reasons[3]
    assert [json.loads(d.payload)["seq"] for d in dead] == [500, 501, 502, 503]
    assert all(d.origin == "bad.jsonl" for d in dead)

    # a flood: T2 sends 10 500 fixes within 10 s; the burst takes 10 000 (+ 2/s)
    flood = [
        {"tag": "T2", **fix(1000 + k, T0 + 1300 + k / 1050, 4000.0, 0.0)} for k in range(10_500)
    ]
    flooded = clean[:44] + flood + clean[44:]
    got, dead = _run(tmp_path, "flood", flooded, zones, subjects)
    # every one counted: 50 rows (the dead-letter budget), one summary for the rest
    assert sum(d.count for d in dead) == 10_500 - 10_000 - 20 and len(dead) == 51
    assert all(d.reason.startswith("rate limit: tag T2 sent more than 100") for d in dead[:50])
    assert dead[50].reason.startswith("430 more dead letters from T2 in the last")
    assert "rate limit: tag T2 sent more than 100" in dead[50].reason
    assert b'"zone_breach"' in got and b'"S1"' in got
    again, dead2 = _run(tmp_path, "flood2", flooded, zones, subjects)
    assert again == got and [d.reason for d in dead2] == [d.reason for d in dead]  # deterministic
