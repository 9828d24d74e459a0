"""Proximity.step spares a fresh tracker it would forget at once (fences._keeps_nothing):
for every observation it says so of, a fresh proximity, approach-ring or stale-position
BreachTracker keeps nothing, and on random tracks about protected devices the pipeline
decides byte for byte what `step` as it was (a tracker made for every pair) decides,
leaving the same trackers alive in the same order."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine.core.victims as victims
from engine.core.decide import BreachTracker, Obs
from engine.core.episodes import EpisodeBook, TrackerKey, TrackerKind, Where
from engine.core.history import dist_m
from engine.core.pipeline import Pipeline
from engine.core.schedules import PERIOD_ENDED
from engine.core.trackers import Trackers
from engine.settings import Settings
from engine.wire.alerts import encode_alert
from engine.wire.records import FixRecord, Record
from tests.helpers import offset
from tests.test_prune import T0, _world, tracks
from zones.model import ZoneSet

DEPTHS = st.one_of(
    st.sampled_from([0.0, -0.0, 1e-9, -1e9, -1.0000001e9, math.nan, -math.inf, math.inf]),
    st.floats(-1e4, 1e3),
)
SIGMAS = st.one_of(
    st.sampled_from([1e-6, 9e-7, 0.5, 5.0, 1e6, math.nan, math.inf]),
    st.floats(1e-3, 1e4),
)
KINDS = st.sampled_from(["proximity", "proximity_approach", "victim_device_stale"])


@settings(max_examples=600, deadline=None)
@given(kind=KINDS, depth=DEPTHS, sigma=SIGMAS, t=st.floats(0.0, 1e9), tick=st.booleans())
def test_a_fresh_pair_tracker_keeps_nothing_of_what_it_is_spared(
    kind: str, depth: float, sigma: float, t: float, tick: bool
) -> None:
    s = Settings()
    if not victims._keeps_nothing(kind, depth, sigma, s):
        return
    book = EpisodeBook(50)
    tr = BreachTracker(book, s, TrackerKey(TrackerKind.PROXIMITY, 3), kind, "S1", "P1", "high")
    tr.observe(Obs(t, depth, sigma, "T1", 7), None)
    assert tr.idle and tr.episode is None and tr.burst is None
    assert book.drain() == [] and not book.open


def test_a_ring_under_an_open_breach_is_forgotten_at_once() -> None:
    """The ring's other shortcut: a breach with an episode supersedes a fresh ring."""
    s = Settings()
    trackers = Trackers(EpisodeBook(50), s, 0)
    key, ring = TrackerKey(TrackerKind.PROXIMITY, 0), TrackerKey(TrackerKind.PROXIMITY_APPROACH, 0)
    br = trackers.breach(key, "proximity", "S1", "P1", "critical")
    for i in range(20):
        br.observe(Obs(T0 + 10.0 * i, 100.0, 3.0, "T1", i), None)
    assert br.episode is not None
    trackers.approach(ring, "proximity_approach", "high", "S1", "P1", br,
                      Obs(T0 + 300.0, 150.0, 3.0, "T1", 30))  # fmt: skip
    trackers.forget_if_idle(ring)
    assert ring not in trackers


def _step_as_it_was(self: victims.Proximity, s: int, row: np.void, sigma: float) -> None:
    """Proximity.step before it spared trackers (a tracker made for every pair)."""
    reg, st_, trackers = self.registry, self.settings, self.trackers
    tag = reg.device_ids[int(row["slot"])]
    t, seq = float(row["t"]), int(row["seq"])
    subject = reg.subject_ids[s]
    if not reg.subject_from[s] <= t < reg.subject_until[s]:
        until = float(reg.subject_until[s])
        if t >= until:
            for k in reg.pairs_of_subject[s]:
                for kind, name in victims._PAIR_EPISODES:
                    trackers.end(TrackerKey(kind, k), name, until, PERIOD_ENDED)
        return
    for k in reg.pairs_of_subject[s]:
        pr = reg.pairs[k]
        track = self.victims.get(pr.device)
        pos = None if track is None else track.at(t, st_.victim_drift_mps, st_.acc_floor_m)
        if pos is None:
            continue
        d = dist_m(float(row["lat"]), float(row["lon"]), pos.lat, pos.lon)
        skey = TrackerKey(TrackerKind.VICTIM_STALE, k)
        stale = pos.age > st_.victim_stale_s
        if stale or skey in trackers:
            far = pr.radius_m + pr.warn_m - d if stale else -1e9
            tr = trackers.breach(skey, "victim_device_stale", reg.subject_ids[pr.subject],
                                 pr.device_id, "high")  # fmt: skip
            tr.observe(Obs(t, far, sigma, tag, seq))
            if not stale:
                tr.tick(t + st_.exit_gap_s)
            trackers.forget_if_idle(skey)
            if stale:
                continue
        sig = math.hypot(sigma, pos.sigma)
        at: Where = (row, "distance_m", d, pos.age)
        key = TrackerKey(TrackerKind.PROXIMITY, k)
        br = trackers.breach(key, "proximity", subject, pr.device_id, "critical")
        br.observe(Obs(t, pr.radius_m - d, sig, tag, seq), at)
        if pr.warn_m > 0.0:
            ring = TrackerKey(TrackerKind.PROXIMITY_APPROACH, k)
            near = Obs(t, pr.radius_m + pr.warn_m - d, sig, tag, seq)
            trackers.approach(ring, "proximity_approach", "high", subject, pr.device_id,
                              br, near, at)  # fmt: skip
            trackers.forget_if_idle(ring)
        trackers.forget_if_idle(key)


@contextmanager
def as_it_was(on: bool) -> Iterator[dict[str, int]]:
    """`step` as it was when `on`; counts the observations spared a fresh tracker."""
    counts = {"spared": 0}
    step, keeps = victims.Proximity.step, victims._keeps_nothing

    def counting(*a: Any) -> bool:
        got = keeps(*a)
        counts["spared"] += got
        return got

    if on:
        victims.Proximity.step = _step_as_it_was  # type: ignore[method-assign]
    victims._keeps_nothing = counting  # type: ignore[assignment]
    try:
        yield counts
    finally:
        victims.Proximity.step = step  # type: ignore[method-assign]
        victims._keeps_nothing = keeps


def _feed(zs: ZoneSet, recs: list[Record], cuts: list[int], st_: Settings) -> list[Any]:
    """Alert records, and the live tracker keys in order, after every batch."""
    p = Pipeline(zs, st_)
    out: list[Any] = []
    for lo, hi in zip([0, *cuts], [*cuts, len(recs)], strict=True):
        out += [encode_alert(a) for a in p.process(recs[lo:hi]).alerts]
        out.append(list(p.trackers.live))
    out += [encode_alert(a) for a in p.finish()]
    return out


def both(zs: ZoneSet, recs: list[Record], cuts: list[int], st_: Settings) -> tuple[Any, ...]:
    with as_it_was(True):
        plain = _feed(zs, recs, cuts, st_)
    with as_it_was(False) as counts:
        spared = _feed(zs, recs, cuts, st_)
    return plain, spared, counts["spared"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    tracks(),
    st.sampled_from([Settings(), Settings(victim_stale_s=300.0, exit_gap_s=60.0)]),
    st.booleans(),
)
def test_step_decides_as_it_did_on_random_tracks(
    case: tuple[ZoneSet, list[Record], list[int]], st_: Settings, prune: bool
) -> None:
    zs, recs, cuts = case
    saved = victims.PRUNE
    victims.PRUNE = prune  # off: every fix near a phone's subject is stepped
    try:
        plain, spared, _ = both(zs, recs, cuts, st_)
    finally:
        victims.PRUNE = saved
    assert spared == plain


def test_a_walk_past_a_phone_spares_and_alerts() -> None:
    """Not vacuous: observations are spared, proximity alerts happen, stale ones too."""
    rng = np.random.default_rng(7)
    zs = _world((T0, T0 + 1e9), False)
    recs: list[Record] = []
    for i in range(300):
        t = T0 + 30.0 * i
        if not 150 <= i < 200:  # the phone falls silent for a while
            recs.append(FixRecord("P1", i, t, *offset(0.0, 0.0), 8.0))
        x = float(rng.uniform(300, 600)) if i % 3 else float(rng.uniform(-100, 100))
        recs.append(FixRecord("T1", i, t + 1, *offset(x, 0.0), 5.0))
    st_ = dataclasses.replace(Settings(), victim_stale_s=300.0)
    saved = victims.PRUNE
    victims.PRUNE = False
    try:
        plain, spared, n = both(zs, recs, [50, 120, 250, 400], st_)
    finally:
        victims.PRUNE = saved
    text = b"".join(x for x in plain if isinstance(x, bytes))
    assert spared == plain and n > 0
    assert b'"proximity"' in text and b'"victim_device_stale"' in text
