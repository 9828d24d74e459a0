"""Observations: a fix's depth (metres, > 0 inside a zone or, for a curfew, away from home)
with its standard deviation; how consecutive ones combine under correlated GPS error; and
how a run into a zone is judged against the track before it (a steady level beside the
zone, the track's course, how the run came in). The trackers are `engine.core.decide`'s."""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.core.episodes import prob_below
from engine.settings import Settings

# A track's depth rate is smoothed over about this long (observe.depth_rate)
RATE_S = 60.0
# ...and a run that came in at more than this times that rate (and steady_leap_mps) leapt
LEAP_FACTOR = 2.0
# A track going deeper or shallower this fast (m/s) is walking, not standing: GPS error
# wanders slower (canyon error, 25 m correlated over 2 minutes, drifts ~0.2 m/s)
WALK_MPS = 0.5


@dataclass(frozen=True, slots=True)
class Obs:
    """One observation: depth in metres (> 0 inside) and its standard deviation."""

    t: float
    depth: float
    sigma: float
    tag: str
    seq: int

    @property
    def p_in(self) -> float:
        return prob_below(self.depth, self.sigma)

    @property
    def p_in_radial(self) -> float:
        """P(inside) bounded with the 2-D (Rayleigh) error tail, for "is it out for sure":
        a 2-D error puts a fix 2.4 sigma from the truth 6 % of the time, the 1-D normal
        only 1 %. Matters for coarse fixes beside a small zone (a cell fix 1 km out)."""
        if self.depth >= 0.0:
            return self.p_in
        return max(self.p_in, math.exp(-0.5 * (self.depth / self.sigma) ** 2))


def combined(obs: list[Obs], corr_s: float) -> tuple[float, float, int]:
    """Weighted mean depth, its sigma allowing for correlated error, and fixes inside."""
    w = [1.0 / (o.sigma * o.sigma) for o in obs]
    depths = [o.depth for o in obs]
    sw = sum(w)
    mean = sum(map(operator.mul, w, depths)) / sw
    n = len(obs)
    span = obs[-1].t - obs[0].t
    n_eff = min(float(n), 1.0 + max(span, 0.0) / corr_s)
    sigma = math.sqrt(1.0 / sw) * math.sqrt(n / n_eff)
    return mean, sigma, len([d for d in depths if d > 0])


def steady_level(
    recent: list[Obs], t0: float, s: Settings, min_fixes: int, min_span_s: float, window_s: float
) -> tuple[float, float, float] | None:
    """Where the track has steadily been before t0: (its depth level, the robust spread of
    its depths about that level, the baseline's decorrelated length), or None when it was
    not steady outside the zone (too few fixes, too short, too spread, trending, or not
    outside). `recent`: the track, oldest first; at least `min_fixes` over `min_span_s`
    in the `window_s` before t0. Settings: steady_*."""
    if s.steady_window_s <= 0.0:
        return None
    base = [o for o in recent if t0 - window_s <= o.t < t0]
    n = len(base)
    if n < max(min_fixes, 2) or base[-1].t - base[0].t < min_span_s:
        return None
    depths = sorted(o.depth for o in base)
    level = _median(depths)
    sigma = _median(sorted(o.sigma for o in base))
    spread = max(1.4826 * _median(sorted(abs(d - level) for d in depths)), sigma)
    half = n // 2
    early = _median(sorted(o.depth for o in base[:half]))
    drift = abs(_median(sorted(o.depth for o in base[half:])) - early)
    if level >= 0.0 or spread > s.steady_max_spread_m or drift > s.steady_drift_spreads * spread:
        return None
    if _walks(base, sigma, s):
        return None
    return level, spread, 1.0 + (base[-1].t - base[0].t) / s.steady_corr_s


def _walks(base: list[Obs], sigma: float, s: Settings) -> bool:
    """Whether the depths of `base` (oldest first, at least two, over a positive span) go
    somewhere at a walker's pace: their robust (Theil-Sen) slope is at least WALK_MPS and
    takes them more than steady_drift_spreads x their robust spread about that line (at
    least `sigma`, their median sigma) over the span. Judged about a line, not about the median: a
    walk towards the zone spreads its depths about their median as widely as it moves and
    could pass for a struggling receiver's level; the error's slow wander is slower."""
    t = np.fromiter((o.t for o in base), np.float64, len(base))
    d = np.fromiter((o.depth for o in base), np.float64, len(base))
    i, j = np.triu_indices(len(base), 1)
    dt = t[j] - t[i]
    ok = dt > 0.0
    if not ok.any():
        return False
    slope = float(np.median((d[j] - d[i])[ok] / dt[ok]))
    if abs(slope) < WALK_MPS:
        return False
    resid = d - slope * (t - t[0])
    spread = max(1.4826 * float(np.median(np.abs(resid - np.median(resid)))), sigma)
    return abs(slope) * (t[-1] - t[0]) > s.steady_drift_spreads * spread


def steady_explains(run: list[Obs], level: tuple[float, float, float], s: Settings) -> bool:
    """Whether `run` (a breach's evidence, from its first fix inside) is within what GPS
    error does about a steady `level` (steady_level's): its mean is not deeper than the
    level by steady_sigmas x the spread, scaled by both decorrelated lengths."""
    depth, spread, n_base = level
    mean, _, _ = combined(run, s.error_corr_s)
    n_run = 1.0 + max(run[-1].t - run[0].t, 0.0) / s.steady_corr_s
    return mean - depth < s.steady_sigmas * spread * math.sqrt(1.0 / n_run + 1.0 / n_base)


def steady_jump(
    first: Obs, short: tuple[float, float, float] | None, s: Settings
) -> tuple[float, float] | None:
    """Whether a run into the zone that begins with `first` jumped from the steady level
    `short` (steady_level over steady_burst_min_*, within burst_max_s) as a multipath
    burst does: by at least burst_jump_m and steady_jump_spreads x its spread, at most
    steady_burst_max_m. Then (the level, its spread); else None."""
    if short is None:
        return None
    depth, spread, _ = short
    jump = first.depth - depth
    if not max(s.burst_jump_m, s.steady_jump_spreads * spread) <= jump <= s.steady_burst_max_m:
        return None
    return depth, spread


def _anchor(recent: list[Obs], first: Obs, s: Settings, least: int) -> list[Obs] | None:
    """The track's last burst_anchor_fixes fixes before `first`, when there are at least
    `least` of them and the last is within burst_max_s of it (the course a run into the
    zone is judged against: course_jump, seen_coming); else None."""
    anchor = [r for r in recent if r.t < first.t][-s.burst_anchor_fixes :]
    if len(anchor) < least or first.t - anchor[-1].t > s.burst_max_s:
        return None
    return anchor


def course_jump(recent: list[Obs], first: Obs, s: Settings) -> float | None:
    """The depth the track's recent course predicts for `first` (a run's first fix inside)
    when `first` is at least burst_jump_m deeper: a straight line through the depths of its
    last burst_anchor_fixes fixes within burst_max_s, none more than burst_still_m off it,
    the prediction outside the zone. A jump no walk or drive the track was on explains;
    None when there is no such course or no such jump."""
    anchor = _anchor(recent, first, s, min(3, s.burst_anchor_fixes))
    if anchor is None:
        return None
    line = course(anchor, first.t, s.burst_still_m)
    if line is None or line[0] >= 0.0 or first.depth - line[0] < s.burst_jump_m:
        return None
    return line[0]


def course_burst(
    recent: list[Obs], first: Obs, last: Obs, held: tuple[float, float] | None, s: Settings
) -> tuple[float, float] | None:
    """Whether the run into the zone from `first` to `last` may be a multipath burst: its
    first fix is at least burst_jump_m deeper than the track's recent course predicts
    (course_jump) and the run is no longer than a burst lasts (burst_max_fixes,
    burst_max_s). Returns the burst held: (its first fix's time, the depth at or below
    which a fix is back where the track stood), None when the run outlasted one, else
    `held` (the one held so far, if any): the run is a burst when it starts at `first`."""
    run = sum(1 for r in recent if r.t >= first.t)
    if run > s.burst_max_fixes or last.t - first.t > s.burst_max_s:
        return None
    if held is not None and held[0] == first.t:
        return held
    predicted = course_jump(recent, first, s)
    return held if predicted is None else (first.t, predicted + 0.5 * s.burst_jump_m)


def steady_judge(
    recent: list[Obs], run: list[Obs], t: float, s: Settings, came_in: bool
) -> tuple[str | None, bool, float]:
    """Judge a run into the zone (its first fix inside first, latest at t) against where the
    track has steadily been: ("burst", _, back) for a jump from a steady level where the receiver
    struggles (steady_burst_spread_m), its last fix outside still at the level (within
    steady_jump_spreads), that has lasted no longer than a burst
    (steady_burst_fixes, steady_burst_s); ("drift", _) for a run the level's spread explains
    (held at most steady_hold_s); (None, _) otherwise. The flag: the run began beside a
    steady track or jumped off the track's course, so it may still be a burst or the error's
    slow wander (confident only after steady_confident_s). `back`: a burst is over, and was
    one, at a fix no deeper than this (the level, steady_jump_spreads spreads allowed); a
    fix outside but short of it is a walk out, and the run was a step in. `came_in`: the
    run's first fix was watched (or seen coming) and is no leap (Entry: it need not wait)."""
    first = run[0]
    near = steady_level(
        recent, first.t, s, s.steady_burst_min_fixes, s.steady_burst_min_span_s, s.burst_max_s
    )
    prev = next((r for r in reversed(recent) if r.t < first.t), None)
    # the track had left its level already (its last fix outside steady_jump_spreads
    # spreads towards the zone): walking in, not a jump from it; and when the run came in
    # as a walk (`came_in`: watched, or seen coming, and no leap: Entry), it did not begin
    # beside a steady track
    left = (
        prev is not None
        and near is not None
        and prev.depth - near[0] >= s.steady_jump_spreads * near[1]
    )
    wary = (near is not None and not (left and came_in)) or course_jump(
        recent, first, s
    ) is not None
    jump = None if left else steady_jump(first, near, s)
    if jump is not None and (
        jump[1] >= s.steady_burst_spread_m
        and len(run) <= s.steady_burst_fixes
        and t - first.t <= s.steady_burst_s
    ):
        return "burst", wary, min(jump[0] + s.steady_jump_spreads * jump[1], 0.0)
    if t - first.t > s.steady_hold_s:
        return None, wary, 0.0  # held long enough: a real step in is never held longer
    level = steady_level(
        recent, first.t, s, s.steady_min_fixes, s.steady_min_span_s, s.steady_window_s
    )
    drift = level is not None and steady_explains(run, level, s)
    return ("drift" if drift else None), wary, 0.0


def _watched(last: Obs | None, o: Obs, s: Settings) -> float | None:
    """Seconds from `last` to `o` when `last` watched `o` come (at most steady_watch_s
    before it); else None."""
    gap = math.inf if last is None else o.t - last.t
    return gap if 0.0 < gap <= s.steady_watch_s else None


def depth_rate(last: Obs | None, rate: float | None, o: Obs, s: Settings) -> float | None:
    """How fast (m/s) the track has been going deeper, as of `o`: the rate from `last` to
    `o` smoothed over about a minute with the one before (`rate`); None when unknown (no
    fix within steady_watch_s before `o`)."""
    gap = _watched(last, o, s)
    if last is None or gap is None:
        return None
    now = (o.depth - last.depth) / gap
    return now if rate is None else rate + (now - rate) * min(gap / RATE_S, 1.0)


def entry_wait(last: Obs | None, rate: float | None, first: Obs, s: Settings) -> tuple[float, bool]:
    """How long a run into the zone that begins with `first` must last before it is
    confident, and whether that is because nobody watched it come. `last`: the fix before
    it; `rate`: the track's depth rate before that (depth_rate). steady_leap_s when it
    leapt in (from a fix at most steady_watch_s before, at least burst_jump_m deeper,
    faster than steady_leap_mps and twice the rate the track was going: a multipath burst
    jumps, a walker is seen walking); steady_unwatched_s when nobody watched it come (no
    fix that close before it); 0 when no burst could have put it there (the fix before was
    farther out than steady_burst_max_m, or it is deeper than that)."""
    if last is None or last.depth < -s.steady_burst_max_m or first.depth > s.steady_burst_max_m:
        return 0.0, False
    gap = _watched(last, first, s)
    if gap is None:
        return s.steady_unwatched_s, True
    jump = first.depth - last.depth
    leapt = jump >= s.burst_jump_m and jump / gap > max(
        s.steady_leap_mps, LEAP_FACTOR * (rate or 0.0)
    )
    return (s.steady_leap_s if leapt else 0.0), False


def seen_coming(recent: list[Obs], first: Obs, s: Settings) -> bool:
    """Whether a run into the zone that begins unwatched with `first` was seen coming: the
    track's last burst_anchor_fixes fixes before it (at least three, the last within
    burst_max_s) lie within steady_burst_spread_m of a straight line (a receiver that is
    not struggling) going deeper at a walker's pace (WALK_MPS) or more, and `first` is no
    jump off that line (less than burst_jump_m deeper than it predicts): the walk that the
    gap hid is the one the track was on."""
    anchor = _anchor(recent, first, s, 3)  # its fixes are all before `first`
    if anchor is None:
        return False
    line = course(anchor, first.t, s.steady_burst_spread_m)
    return line is not None and line[1] >= WALK_MPS and first.depth - line[0] < s.burst_jump_m


def walked_on(last: Obs | None, o: Obs, t0: float, first: float, s: Settings) -> bool:
    """Whether a run that began unwatched at depth `first` (time t0) is seen walking on in:
    within steady_progress_s of its start, two consecutive fixes (`last`, `o`) average
    steady_progress_m deeper than it (a burst stays where it jumped)."""
    if last is None or o.t - t0 > s.steady_progress_s:
        return False
    return 0.5 * (last.depth + o.depth) - first >= s.steady_progress_m


class Entry:
    """How a zone breach tracker's current run into the zone came in: the fix before each
    fix (`last`) and the track's depth rate till then (`rate`, depth_rate); for the run,
    how long it must last before it is confident (`wait`, entry_wait) and, when nobody
    watched it come, its first fix's depth (`unseen`, walked_on)."""

    __slots__ = ("last", "rate", "unseen", "wait")

    def __init__(self) -> None:
        self.last: Obs | None = None
        self.rate: float | None = None
        self.wait = 0.0
        self.unseen: float | None = None

    def see(
        self, o: Obs, starts: bool, run_from: float | None, s: Settings, recent: list[Obs]
    ) -> None:
        """`o`: the tracker's next fix; `starts`: it starts a run inside, whose first fix
        was at `run_from` (None: o is outside); `recent`: the track before it."""
        if starts:
            self.wait, unwatched = entry_wait(self.last, self.rate, o, s)
            if unwatched and s.steady_seen_coming and seen_coming(recent, o, s):
                self.wait, unwatched = 0.0, False
            self.unseen = o.depth if unwatched else None
        elif (
            self.unseen is not None
            and run_from is not None
            and walked_on(self.last, o, run_from, self.unseen, s)
        ):
            self.wait, self.unseen = 0.0, None  # seen walking on in: no burst in the gap
        elif run_from is not None:
            # a leap within the run (a burst that began one fix after drift took the track
            # just inside) waits as one at the run's start does, from the leap
            wait, unwatched = entry_wait(self.last, self.rate, o, s)
            if wait > 0.0 and not unwatched:
                self.wait = max(self.wait, o.t - run_from + wait)
        self.last, self.rate = o, depth_rate(self.last, self.rate, o, s)

    @property
    def walked(self) -> bool:
        """The run came in as a walk: watched or seen coming, and no leap (nothing to wait)."""
        return self.wait <= 0.0 and self.unseen is None

    def data(self) -> list[Any]:
        last = None if self.last is None else obs_data(self.last)
        return [last, self.rate, self.wait, self.unseen]

    @classmethod
    def from_data(cls, d: list[Any] | None) -> Entry:
        e = cls()
        if d:  # older snapshots: none
            e.last = None if d[0] is None else obs_from(d[0])
            e.rate, e.wait, e.unseen = d[1], float(d[2]), d[3]
        return e


# The highest confidence evidence gives a breach (BreachTracker._confidence's top cap)
SURE = 0.999


def saturated(conf: float, pending: list[Obs], run_from: float | None, s: Settings) -> bool:
    """Whether an open breach at `conf` (SURE or more) stays there whatever a next fix inside
    shows (BreachTracker._observe_open), so what it computes need not be: every ceiling
    in the settings is below SURE (graded_cap stays within an ulp of its top), and the
    settings, the evidence `pending` and its run's start `run_from` (finite times, sigmas
    within 1e+-100) keep that computation from raising or grading by NaN."""
    tops = (
        s.single_fix_confidence_max, s.two_fix_confidence_max, s.wary_confidence_max,
        s.possible_confidence_max, s.likely_confidence_min,
    )  # fmt: skip
    return (
        conf >= SURE
        and all(top < SURE - 1e-9 for top in tops)
        and s.error_corr_s > 0.0
        and s.confident_span_s > 0.0
        and s.confident_fixes > 0
        and s.confident_min_depth_m > 0.0
        and bool(pending)
        and (run_from is None or math.isfinite(run_from))
        and all(math.isfinite(o.t) and 1e-100 <= o.sigma <= 1e100 for o in pending)
    )


def graded_cap(s: Settings, top: float, way: float) -> float:
    """A confidence ceiling graded from likely_confidence_min up to `top` as the evidence
    goes `way` (0..1) towards what would make it surer: how it ranks among likely ones."""
    lo = min(s.likely_confidence_min, top)
    return lo + (top - lo) * way


def _median(xs: list[float]) -> float:
    """Median of a sorted, non-empty list."""
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def course(track: list[Obs], t: float, tolerance: float) -> tuple[float, float] | None:
    """The depth a straight line (least squares over time) through `track` predicts at t
    and its slope (m/s), or None when a fix of the track is more than `tolerance` metres
    off that line."""
    n = len(track)
    mt = sum(o.t - t for o in track) / n
    md = sum(o.depth for o in track) / n
    var = sum((o.t - t - mt) ** 2 for o in track)
    slope = 0.0 if var <= 0.0 else sum((o.t - t - mt) * (o.depth - md) for o in track) / var
    at0 = md - slope * mt
    if max(abs(o.depth - (at0 + slope * (o.t - t))) for o in track) > tolerance:
        return None
    return at0, slope


def obs_data(o: Obs) -> list[Any]:
    return [o.t, o.depth, o.sigma, o.tag, o.seq]


def obs_from(d: list[Any]) -> Obs:
    return Obs(float(d[0]), float(d[1]), float(d[2]), str(d[3]), int(d[4]))
