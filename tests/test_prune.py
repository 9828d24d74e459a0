"""Work the batch walk is spared must change nothing: the pipeline run with each pruning
switch on and off gives the same alert records, byte for byte, on random tracks about
protected devices (near and far, stale phones, late and reordered fixes, tagging periods,
curfews and exclusion zones) and on seeded simulated runs. Each case also checks that the
pruning did spare something, so the comparison is not empty."""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely.geometry import Polygon

import engine.core.fences as fences
import engine.core.health.battery as battery
import engine.core.health.monitor as monitor
import engine.core.pipeline as pipeline
import engine.core.victims as victims
from devices.families.catalog import build_family, write_family
from engine.core.pipeline import Pipeline
from engine.replay import replay
from engine.settings import Settings
from engine.wire.alerts import encode_alert
from engine.wire.records import EventRecord, FixRecord, Record
from tests.helpers import offset, square
from zones.load import load
from zones.model import Protected, Subject, Window, Zone, ZoneSet

T0 = 1_774_710_000.0  # 2026-03-28 15:00 UTC
EXAMPLES = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# (module, switch name) of every pruning the walk does
SWITCHES = [(victims, "PRUNE"), (fences, "PRUNE"), (battery, "SKIP"), (monitor, "SKIP")]


@contextmanager
def pruning(on: bool) -> Iterator[dict[str, int]]:
    """Every switch set to `on`; counts the proximity rows found quiet and the rows whose
    zone steps were found idle."""
    saved = [getattr(mod, name) for mod, name in SWITCHES]
    for mod, name in SWITCHES:
        setattr(mod, name, on)
    counts = {"quiet": 0, "rows": 0, "idle": 0}
    quiet, idle = victims.Proximity.quiet, pipeline.Pipeline._idle

    def counting(self: victims.Proximity, *a: Any) -> np.ndarray:
        got = quiet(self, *a)
        counts["rows"] += got.shape[0]
        counts["quiet"] += int(got.sum())
        return got

    def idling(self: pipeline.Pipeline, *a: Any) -> np.ndarray:
        got = idle(self, *a)
        counts["idle"] += int(got.sum())
        return got

    victims.Proximity.quiet = counting  # type: ignore[method-assign,assignment]
    pipeline.Pipeline._idle = idling  # type: ignore[method-assign,assignment]
    try:
        yield counts
    finally:
        victims.Proximity.quiet = quiet  # type: ignore[method-assign]
        pipeline.Pipeline._idle = idle  # type: ignore[method-assign]
        for (mod, name), v in zip(SWITCHES, saved, strict=True):
            setattr(mod, name, v)


def both(run: Callable[[], bytes]) -> tuple[bytes, bytes, dict[str, int]]:
    with pruning(False):
        plain = run()
    with pruning(True) as counts:
        pruned = run()
    return plain, pruned, counts


# -- random tracks about protected devices ----------------------------------------------------


def _world(period: tuple[float, float], sub_curfew: bool) -> ZoneSet:
    w = Window(frozenset(range(7)), 15 * 60 + 20, 16 * 60, "UTC")  # 15:20-16:00 UTC
    zones = [Zone("Z1", "S1", "exclusion", 0, geometry=Polygon(square(80, 600, 0)), warn_m=50)]
    if sub_curfew:
        zones.append(
            Zone("HOME", "S2", "inclusion", 1, geometry=Polygon(square(60)), schedule=(w,))
        )
    subjects = (
        Subject("S1", ("T1",), protected=(Protected("P1", 150, 200), Protected("P2", 100))),
        Subject("S2", ("T2", "T3"), protected=(Protected("P1", 120, 0),),
                valid_from=period[0], valid_until=period[1]),
        Subject("S3", ("T4",)),
    )  # fmt: skip
    return ZoneSet(tuple(zones), subjects)


@st.composite
def tracks(draw: st.DrawFn) -> tuple[ZoneSet, list[Record], list[int]]:
    """Tags walking about (now and then right beside a phone), phones that move and fall
    silent, fixes delivered late and out of order, cut into random batches."""
    n = draw(st.integers(20, 90))
    devs = ["T1", "T2", "T3", "T4", "P1", "P2"]
    pos = {d: [draw(st.floats(-3000, 3000)), draw(st.floats(-3000, 3000))] for d in devs}
    seq = dict.fromkeys(devs, 0)
    recs: list[Record] = []
    t = T0
    for _ in range(n):
        t += draw(st.sampled_from([5.0, 20.0, 60.0, 400.0, 1000.0]))
        d = draw(st.sampled_from(devs))
        move = draw(st.sampled_from(["step", "jump", "to_phone", "home"]))
        if move == "step":
            pos[d][0] += draw(st.floats(-300, 300))
            pos[d][1] += draw(st.floats(-300, 300))
        elif move == "jump":
            pos[d] = [draw(st.floats(-4000, 4000)), draw(st.floats(-4000, 4000))]
        elif move == "home":  # S2's curfew zone is a 120 m square about the origin
            pos[d] = [draw(st.floats(-150, 150)), draw(st.floats(-150, 150))]
        elif d.startswith("T"):
            ph = pos[draw(st.sampled_from(["P1", "P2"]))]
            r = draw(st.sampled_from([100.0, 360.0, 700.0]))  # inside, at the edge, beyond
            pos[d] = [ph[0] + draw(st.floats(-r, r)), ph[1] + draw(st.floats(-r, r))]
        lat, lon = offset(*pos[d])
        acc = draw(st.sampled_from([3.0, 8.0, 30.0, 600.0]))
        seq[d] += draw(st.sampled_from([1, 1, 1, 2]))
        batt = draw(st.sampled_from([None, 4, 9, 12, 18, 22, 27, 60, 100]))
        if d.startswith("T") and draw(st.integers(0, 9)) == 0:  # charging, now and then
            event = draw(st.sampled_from(["charging_on", "charging_off", "no_gps"]))
            recs.append(EventRecord(d, seq[d], t, event, batt))
            continue
        recs.append(FixRecord(d, seq[d], t, lat, lon, acc, batt))
    # late and reordered delivery: some records move later in arrival order
    order = list(range(n))
    for _ in range(draw(st.integers(0, n // 4))):
        i = draw(st.integers(0, n - 1))
        j = min(n - 1, i + draw(st.integers(1, 12)))
        order.insert(j, order.pop(i))
    recs = [recs[i] for i in order]
    cuts = sorted(set(draw(st.lists(st.integers(1, n - 1), max_size=8))))
    a = draw(st.floats(T0 - 100, T0 + 40 * 60))
    period = (a, a + draw(st.sampled_from([600.0, 3600.0, 1e9])))
    if draw(st.booleans()):
        period = (-math.inf, math.inf)  # S2's curfew then has no validity bounds
    return _world(period, draw(st.booleans())), recs, cuts


def _feed(zs: ZoneSet, recs: list[Record], cuts: list[int], st_: Settings) -> bytes:
    p = Pipeline(zs, st_)
    out = []
    for lo, hi in zip([0, *cuts], [*cuts, len(recs)], strict=True):
        out += p.process(recs[lo:hi]).alerts
    out += p.finish()
    return b"\n".join(encode_alert(a) for a in out)


@EXAMPLES
@given(tracks(), st.sampled_from([Settings(), Settings(victim_stale_s=300.0, exit_gap_s=60.0)]))
def test_pruned_walk_decides_the_same_on_random_tracks(
    case: tuple[ZoneSet, list[Record], list[int]], st_: Settings
) -> None:
    zs, recs, cuts = case
    plain, pruned, _ = both(lambda: _feed(zs, recs, cuts, st_))
    assert pruned == plain


def test_random_tracks_do_prune_and_do_alert() -> None:
    """The random worlds above are not vacuous: proximity alerts happen and rows prune."""
    rng = np.random.default_rng(5)
    zs = _world((T0, T0 + 1e9), True)
    recs: list[Record] = []
    for i in range(300):
        t = T0 + 30.0 * i
        recs.append(FixRecord("P1", i, t, *offset(0.0, 0.0), 8.0))
        x = 5000.0 if 100 <= i < 200 else float(rng.uniform(-100, 100))
        recs.append(FixRecord("T1", i, t + 1, *offset(x, 0.0), 5.0))
    plain, pruned, counts = both(lambda: _feed(zs, recs, [50, 120, 250, 400], Settings()))
    assert pruned == plain and b'"proximity"' in plain
    assert 0 < counts["quiet"] < counts["rows"]


def test_an_away_curfew_prunes_until_its_window_and_breaches() -> None:
    """S2 is away before the 15:20 curfew window (the tracker saw it away: idle steps) but
    for a moment at home (the tracker forgets it; the next fix away makes a new one), stays
    away into the window (a breach from its start), comes home, and goes out again after
    16:00; fixes of the window's first minutes arrive late, after later ones."""
    zs = _world((-math.inf, math.inf), True)
    recs: list[Record] = []
    for i in range(150):
        t = T0 + 30.0 * i + 7.0  # 15:00 to 16:15 (not on the window's start)
        x = 0.0 if 100 <= i < 125 else min(250.0, 60.0 * abs(i - 30))  # home at 15:15
        recs.append(FixRecord("T2", i, t, *offset(x, 0.0), 8.0))
        recs.append(FixRecord("T3", i, t + 3, *offset(x + 15.0, 0.0), 8.0))
    recs = recs[:70] + recs[90:110] + recs[70:90] + recs[110:]  # 15:17:30-15:22:30 late
    for cuts in ([40, 95, 140, 200], [1, 2, 3, 60, 61, 250]):
        plain, pruned, counts = both(lambda c=cuts: _feed(zs, recs, c, Settings()))  # type: ignore[misc]
        assert pruned == plain and b'"curfew_breach"' in plain
        assert counts["idle"] > 10


def test_a_jump_into_home_is_still_checked_as_an_outlier() -> None:
    """S2 5 km out until 14:19:30 (more than an hour before the 15:20 window: the zone is
    not followed, no tracker), at home 30 s later, 5 km out again 30 s after that (the
    window is within the hour: the zone is followed). The fix at home steps nothing (a
    fresh tracker forgets it), but it is an outlier: it must still be held and refuted."""
    zs = _world((-math.inf, math.inf), True)
    recs: list[Record] = []
    for i in range(40):
        x = 0.0 if i == 20 else 5000.0 + 3.0 * i
        recs.append(FixRecord("T2", i, T0 - 3000.0 + 30.0 * i, *offset(x, 0.0), 5.0))
    for cuts in ([20], [20, 30], [5, 20, 25]):
        plain, pruned, counts = both(lambda c=cuts: _feed(zs, recs, c, Settings()))  # type: ignore[misc]
        assert pruned == plain and b'"implausible_fix"' in plain
        assert counts["idle"] > 0


def test_no_location_opens_and_closes_within_a_batch_without_battery_levels() -> None:
    """Coarse fixes and no_gps events for 40 minutes, then usable fixes, none with a
    battery level: the health walk must not pass over the usable fix that closes it."""
    zs = _world((-math.inf, math.inf), False)
    recs: list[Record] = []
    for i in range(60):
        t = T0 + 60.0 * i
        if i % 5 == 4 and i < 40:
            recs.append(EventRecord("T4", i, t, "no_gps"))
        else:
            recs.append(FixRecord("T4", i, t, *offset(0.0, 0.0), 900.0 if i < 40 else 5.0))
    for cuts in ([30, 45], [10, 20]):
        plain, pruned, _ = both(lambda c=cuts: _feed(zs, recs, c, Settings()))  # type: ignore[misc]
        assert pruned == plain
        assert plain.count(b'"no_location"') == 2  # opened, closed


def test_a_late_fix_joins_the_phone_where_it_was_then() -> None:
    """A tag fix delivered after the phone moved away is judged against where the phone
    was at its time: the pruning must consider the track's older fixes, not the latest."""
    zs = _world((T0, T0 + 1e9), False)
    recs: list[Record] = [FixRecord("P1", 1, T0, *offset(0.0, 0.0), 5.0)]
    recs += [FixRecord("T1", i, T0 + 60.0 * i, *offset(5000.0, 0.0), 5.0) for i in range(1, 4)]
    recs += [FixRecord("P1", 2, T0 + 600.0, *offset(9000.0, 9000.0), 5.0)]
    recs += [FixRecord("T1", i, T0 + 60.0 * i, *offset(5000.0, 0.0), 5.0) for i in range(11, 13)]
    # held back, then uploaded: the tag was beside the phone's first position
    recs += [FixRecord("T1", i, T0 + 60.0 * i, *offset(20.0, 0.0), 5.0) for i in range(4, 8)]
    recs += [FixRecord("T1", i, T0 + 60.0 * i, *offset(5000.0, 0.0), 5.0) for i in range(13, 16)]
    plain, pruned, counts = both(lambda: _feed(zs, recs, [4, 5, 7, 11], Settings()))
    assert pruned == plain and b'"proximity"' in plain
    assert counts["quiet"] > 0


# -- seeded simulated runs ----------------------------------------------------------------------


def _replay(d: dict[str, Path], st_: Settings) -> bytes:
    zs = load(d["zones"], d["subjects"])
    out = io.BytesIO()
    replay(d["replay"], zs, out, settings=st_, progress=False)
    return out.getvalue()


@pytest.mark.parametrize(
    ("family", "batch"),
    [("victim_moving", 0), ("victim_moving", 1), ("late_batch", 0), ("reorder_dup", 0),
     ("curfew_dst", 0)],
)  # fmt: skip
def test_pruned_replay_of_families_is_identical(family: str, batch: int, tmp_path: Path) -> None:
    d = write_family(build_family(family, 7, 12), tmp_path / family)
    st_ = Settings(batch_max=batch) if batch else Settings()
    plain, pruned, counts = both(lambda: _replay(d, st_))
    assert pruned == plain
    if family == "victim_moving":
        assert counts["quiet"] > 0


@pytest.mark.parametrize("health", [False, True])
def test_pruned_replay_of_a_fleet_is_identical(health: bool, tmp_path: Path) -> None:
    from engine.cli.main import main

    args = ["simulate", "--subjects", "60", "--seed", "3", "--duration", "1h"]
    args += ["--health", "--noise", "urban"] if health else []
    assert main([*args, "--out-dir", str(tmp_path)]) == 0
    d = {k: tmp_path / f"{k}.{e}" for k, e in
         (("zones", "geojson"), ("subjects", "toml"), ("replay", "jsonl"))}  # fmt: skip
    plain, pruned, counts = both(lambda: _replay(d, Settings()))
    assert pruned == plain and counts["quiet"] > 0
