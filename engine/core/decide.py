"""Breach decisions from uncertain evidence: a tracker per (subject, zone) for exclusion
zones and victim proximity, and one per curfew, turning observations into episodes.

An observation is how deep a fix is (metres; > 0 inside the zone or within the protected
radius, < 0 outside) with the standard deviation of that depth. Trackers never see
geometry: the pipeline measures, the trackers decide. Rules, all thresholds in Settings:

- A single fix decides at once when it is deep and confident (depth >= decisive_depth_m
  and >= decisive_sigmas sigma). Its confidence is capped: one fix cannot rule out a
  multipath burst or a wild fix, until the fixes either side of a short run inside put
  the run on a straight track through the zone (a crossing: engine/core/transit.py).
- Otherwise evidence accumulates over consecutive fixes since the last confidently-outside
  one: the 1/sigma^2-weighted mean depth, whose uncertainty shrinks only with the number
  of *decorrelated* fixes (GPS error is correlated over error_corr_s), must be inside with
  P >= open_probability and at least open_min_depth_m deep.
- An open breach closes only after exit_gap_s of confident absence (hysteresis):
  re-entries within it extend the episode, and so does a fix that may well be inside
  (P >= stay_probability). closed_t is the first confident-outside fix.
- Weaker evidence (combined P >= possible_probability, mean >= possible_min_depth_m, even
  one fix) opens at once at no more than possible_confidence_max: a monitor hears of a
  possible breach early, and it escalates only on evidence that would have opened it.
- Confidence only rises while an episode is open; crossing 0.7 or 0.9 re-publishes the
  open record so monitors see the escalation.
- `detail` says where: the position of the fix the engine decided on (`at`, given with
  each observation), the one at raised_t: the fix that opened the episode, and after an
  escalation the fix that escalated it (a transit: the second fix of the segment, and
  where the segment started; a crossing: the fix after the run, and the fix before it).

`Trackers` (engine/core/trackers.py) is the table of live trackers by `TrackerKey` (kind +
zone or pair index): made on first evidence, forgotten once idle.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, NamedTuple

from engine.core.episodes import Episode, EpisodeBook, TrackerKey, prob_below, where_of
from engine.core.observe import (
    SURE,
    Entry,
    Obs,
    combined,
    course_burst,
    graded_cap,
    saturated,
    steady_judge,
)
from engine.settings import Settings
from engine.wire.alerts import Severity

if TYPE_CHECKING:
    from engine.core.episodes import Where

# Crossing one of these re-publishes the open record: possible -> likely -> confident
ESCALATE_AT = (0.7, 0.9)
# A zone breach tracker forgets the track it judges bursts against beyond this far out
BURST_FORGET_M = 200.0
# Away fixes a curfew tracker weighs while an absence is open (its latest)
ABSENCE_FIXES = 60


class Crossing(NamedTuple):
    """A short run inside that opened the open episode, followed while it keeps to a
    straight track (engine/core/transit.py, Routes.crossing_step)."""

    t: float  # the fix before the run: time, position and accuracy
    lat: float
    lon: float
    acc: float
    upto: float  # the time of the run's latest fix followed
    shift: float  # how far a burst may have shifted the track without the checks seeing it


class BreachTracker:
    """Decides one (subject, zone) or (subject, protected device) pair."""

    __slots__ = (
        "book", "burst", "crossing", "dismissed", "entry", "episode", "jumped", "key", "kind",
        "leaving_since", "n_inside", "pending", "recent", "run_from", "s", "severity",
        "subject", "zone",
    )  # fmt: skip

    def __init__(
        self,
        book: EpisodeBook,
        settings: Settings,
        key: TrackerKey,
        kind: str,
        subject: str,
        zone: str,
        severity: Severity,
    ) -> None:
        self.book = book
        self.s = settings
        self.key = key
        self.kind = kind
        self.subject = subject
        self.zone = zone
        self.severity: Severity = severity
        self.pending: list[Obs] = []
        self.episode: Episode | None = None
        self.leaving_since: float | None = None
        self.n_inside = 0
        # Zone breaches only: the track's recent observations (what a jump into the zone is
        # judged against), and the run being held as a possible multipath burst: (its first
        # fix's time, the depth at or below which a fix is back where the track stood)
        self.recent: list[Obs] = []
        self.burst: tuple[float, float] | None = None
        self.dismissed = (math.inf, math.inf)  # [from, to): the last run found to be a burst
        self.run_from: float | None = None  # first fix of the current run of fixes inside
        self.jumped = False  # the run that opened the episode jumped from a steady level
        self.entry = Entry()  # how the current run came in (zone breaches only)
        self.crossing: Crossing | None = None  # the run that opened it, followed so far

    @property
    def idle(self) -> bool:
        """Nothing open, pending or remembered: the tracker can be forgotten."""
        return self.episode is None and not self.pending and not self.recent

    def _remember(self, o: Obs) -> bool:
        """Keep `o` in the recent track (zone breaches, nothing open); end a held burst when
        `o` is back where the track stood: True when it did (its run is not evidence)."""
        s = self.s
        bursts = s.burst_max_fixes > 0 or s.steady_burst_fixes > 0
        if self.kind != "zone_breach" or not (bursts or s.steady_window_s > 0.0):
            return False
        if o.depth < -BURST_FORGET_M:  # far away: nothing here to judge a jump against
            self.recent.clear()
            self.burst = None
            return False
        self.recent.append(o)
        keep = max(s.steady_max_fixes, s.burst_anchor_fixes + s.burst_max_fixes + 1)
        horizon = o.t - s.steady_window_s - s.evidence_window_s
        del self.recent[:-keep]
        while self.recent[0].t < horizon:
            self.recent.pop(0)
        if not bursts:
            return False
        if self.burst is None or o.depth > self.burst[1]:
            return False
        start = self.burst[0]
        self.recent = [r for r in self.recent if r.t < start or r is o]
        self.pending.clear()
        self.burst = None
        self.dismissed = (start, o.t)
        return True

    def _burst_explains(self, last: Obs) -> bool:
        """Whether the inside run now pending may be a multipath burst (observe.course_burst)."""
        if self.kind != "zone_breach" or self.s.burst_max_fixes <= 0:
            return False
        first = self.pending[0]
        self.burst = course_burst(self.recent, first, last, self.burst, self.s)
        return self.burst is not None and self.burst[0] == first.t

    def _steady_holds(self, last: Obs) -> bool:
        """Whether the inside run pending is held as what GPS error does beside a steady
        track (observe.steady_judge); remembers whether it may still be a burst."""
        self.jumped = False
        if self.kind != "zone_breach":
            return False
        came_in = self.entry.walked
        why, self.jumped, back = steady_judge(self.recent, self.pending, last.t, self.s, came_in)
        if why == "burst":
            self.burst = (self.pending[0].t, back)  # back at the level within it: it was one
        return why is not None

    def observe(self, o: Obs, at: Where | None = None) -> None:
        """`at`: where the fix was, should it decide (never kept: only the fix at hand decides)."""
        if not (math.isfinite(o.depth) and math.isfinite(o.sigma)):
            return  # a fix with no usable position is never evidence of anything
        s = self.s
        confident_out = o.p_in_radial <= s.outside_probability
        starts = o.depth > 0.0 and self.run_from is None
        if o.depth <= 0.0:
            self.run_from = None
        elif starts:
            self.run_from = o.t
        if self.kind == "zone_breach":
            self.entry.see(o, starts, self.run_from, s, self.recent)
        if self.episode is not None:
            if starts and s.steady_rejudge and self.entry.walked and self.leaving_since is not None:
                self.jumped = False  # walked back in from confidently out: a new run (settings)
            self._observe_open(o, confident_out, at)
            return
        if self._remember(o) and o.depth <= 0.0:
            return  # the held run was a burst: the track is back where it stood
        if confident_out:
            self.pending.clear()
            self.burst = None
            return
        self.pending.append(o)
        while self.pending and o.t - self.pending[0].t > s.evidence_window_s:
            self.pending.pop(0)
        while self.pending and self.pending[0].depth <= 0:
            self.pending.pop(0)  # evidence starts at the first fix that looks inside
        if self.pending:
            self._maybe_open(o, at)

    def _maybe_open(self, last: Obs, at: Where | None) -> None:
        s = self.s
        decisive = self._decisive(last)
        mean, sigma, _ = combined(self.pending, s.error_corr_s)
        p = prob_below(mean, sigma)
        accumulated = (
            len(self.pending) >= 2 and p >= s.open_probability and mean >= s.open_min_depth_m
        )
        possible = p >= s.possible_probability and mean >= s.possible_min_depth_m
        if (
            not (decisive or accumulated or possible)
            or self._burst_explains(last)
            or self._steady_holds(last)
        ):
            return
        self.burst = None
        first = self.pending[0]
        inside = [o for o in self.pending if o.depth > 0]
        self.n_inside = len(inside)
        if decisive or accumulated:
            conf = self._confidence(p if accumulated else last.p_in, mean, self.pending)
        else:
            conf = min(p, s.possible_confidence_max)
        ep = self.book.open_episode(
            self.key, self.kind, subject=self.subject, tag=first.tag, zone=self.zone,
            severity=self.severity, confidence=conf, t=first.t, seq=first.seq, raised_t=last.t,
            detail=where_of(at),
        )  # fmt: skip
        for o in inside[1:]:
            self.book.add_evidence(ep, o.tag, o.seq, conf)
        self.episode = ep
        self.pending = self.pending[-8:]

    def _decisive(self, o: Obs) -> bool:
        """Deep and sure enough to decide by itself."""
        return o.depth >= self.s.decisive_depth_m and o.depth >= self.s.decisive_sigmas * o.sigma

    def _confidence(self, p: float, mean: float, obs: list[Obs]) -> float:
        """P(inside) capped by what the inside fixes cannot rule out: a wild fix fakes one,
        a multipath burst several consecutive fixes over a few minutes, rarely more than
        four, and slow drift beside buildings a run of shallow ones. Confident (>= 0.9)
        takes a run of fixes all inside (the latest ones) spanning confident_span_s, or
        confident_fixes of them over at least confident_min_span_s (a tag asked to report every 15 s
        gets there within minutes), with a weighted mean depth of at least
        confident_min_depth_m (`mean`: the weighted mean depth of `obs`, `combined`)."""
        s = self.s
        inside = [o for o in obs if o.depth > 0]
        # the fixes since the tag last reported outside: one run longer than a burst, not
        # two bursts with drift between them
        start = math.inf if self.run_from is None else self.run_from
        run = sum(1 for o in inside if o.t >= start)
        run_span = obs[-1].t - start if run else 0.0
        # a run that jumped from a steady level may be a burst until it outlasts one
        burst = run_span < max(s.steady_confident_s if self.jumped else 0.0, self.entry.wait)
        # ...and one that began beside a steady track or leapt in ranks below the rest
        wary = burst and (self.jumped or self.entry.unseen is None)
        # a run seen walking in (watched or seen coming, no leap, not from beside a steady
        # track) began as no burst does: it needs fewer fixes than the count that outlasts
        # a burst's
        walked = self.kind == "zone_breach" and self.entry.walked and not self.jumped
        fixes = min(s.confident_walked_fixes, s.confident_fixes) if walked else s.confident_fixes
        if len(inside) <= 1:
            cap = min(s.single_fix_confidence_max, s.wary_confidence_max if wary else 1.0)
        elif (
            burst
            or (
                run_span < s.confident_span_s
                and not (run >= fixes and run_span >= s.confident_min_span_s)
            )
            or mean < s.confident_min_depth_m
            or mean < s.confident_min_sigmas * sorted(o.sigma for o in inside)[len(inside) // 2]
        ):
            # graded on the way to confident: more of the run and deeper ranks higher
            way = max(run_span / s.confident_span_s, run / fixes)
            way = min(way, 1.0) * min(max(mean, 0.0) / s.confident_min_depth_m, 1.0)
            cap = graded_cap(s, s.wary_confidence_max if wary else s.two_fix_confidence_max, way)
        else:
            cap = SURE  # what `saturated` relies on
        return min(p, cap)

    def _observe_open(self, o: Obs, confident_out: bool, at: Where | None) -> None:
        ep = self.episode
        assert ep is not None
        s = self.s
        if not confident_out:
            # Every fix that may be inside weighs on the confidence, the slightly-outside
            # ones too: escalating on the inside fixes alone would count the drift at an
            # edge (a permitted corridor, a lurker) as evidence.
            self.pending.append(o)
            del self.pending[:-8]
        if o.depth > 0:
            self.leaving_since = None
            self.n_inside += 1
            if saturated(ep.confidence, self.pending, self.run_from, s):  # evidence only
                self.book.add_evidence(ep, o.tag, o.seq, ep.confidence)
                return
            mean, sigma, _ = combined(self.pending, s.error_corr_s)
            p = prob_below(mean, sigma)
            if self._decisive(o) or (p >= s.open_probability and mean >= s.open_min_depth_m):
                conf = max(ep.confidence, self._confidence(p, mean, self.pending))
            else:  # still only possible: shallow or uncertain evidence does not escalate
                conf = max(ep.confidence, min(p, s.possible_confidence_max))
            if self._cite(o, conf):
                self.book.republish(ep, raised_t=o.t, where=where_of(at))
            return
        if confident_out:
            if self.leaving_since is None:
                self.leaving_since = o.t
            self.tick(o.t)
        elif o.p_in >= s.stay_probability:
            # A fix that may well be inside (a 600 m cell fix, drift at the edge) means the
            # absence is not established: closing needs confident fixes all the way.
            self.leaving_since = None

    def tick(self, t: float) -> None:
        """Event time has reached t: close if the tag has been out long enough."""
        if (
            self.episode is not None
            and self.leaving_since is not None
            and t - self.leaving_since >= self.s.exit_gap_s
        ):
            self.book.close(self.key, self.kind, self.leaving_since)
            self.episode = None
            self.leaving_since = None
            self.pending.clear()

    def transit(
        self,
        first: Obs,
        last: Obs,
        t_in: float,
        t_out: float,
        confidence: float,
        ends_inside: bool = False,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """A straight-line entry between a fix outside and the next one: an episode from the
        interpolated entry time, decided at the second fix. When the second fix is outside
        too (a drive-through) it is closed at the interpolated exit; when it is inside the
        episode stays open and the fixes that follow extend or close it. `detail`: where
        (the route's, engine/core/transit.py)."""
        lo, hi = self.dismissed
        if (
            self.episode is not None
            or (ends_inside and self.burst is not None)
            or lo <= first.t < hi
        ):
            return  # open already; or a fix of it is in a run held or dismissed as a burst
        ep = self.book.open_episode(
            self.key, self.kind, subject=self.subject, tag=first.tag, zone=self.zone,
            severity=self.severity, confidence=confidence, t=t_in, seq=first.seq, raised_t=last.t,
            detail=detail,
        )  # fmt: skip
        self.pending.clear()
        if ends_inside:
            self.episode = ep
            return
        self.book.add_evidence(ep, last.tag, last.seq, confidence)
        self.book.close(self.key, self.kind, t_out)

    def crossing_run(self, t: float, max_fixes: int) -> bool:
        """Whether the fix at `t` is of the run of fixes inside that opened the open episode,
        a run of at most `max_fixes` so far that the fix at hand goes on or ends."""
        ep = self.episode
        return (
            ep is not None and self.n_inside <= max_fixes and ep.opened_t <= t
            and self.run_from in (None, ep.opened_t)
        )  # fmt: skip

    def corroborate(self, last: Obs, confidence: float, detail: dict[str, Any]) -> None:
        """The fix after the run inside that opened the open episode says it was a crossing
        (engine/core/transit.py, Routes.crossing_step): raise the confidence to
        `confidence`, never lower it; `last`: the fix that says so (cited as evidence)."""
        ep = self.episode
        assert ep is not None
        if confidence > ep.confidence and self._cite(last, confidence):
            self.book.republish(ep, raised_t=last.t, where=detail)

    def _cite(self, o: Obs, confidence: float) -> bool:
        """Cite `o` as evidence of the open episode at `confidence` (it never falls): True
        when that crossed 0.7 or 0.9, so the open record is published again."""
        ep = self.episode
        assert ep is not None
        before = ep.confidence
        self.book.add_evidence(ep, o.tag, o.seq, confidence)
        return any(before < level <= ep.confidence for level in ESCALATE_AT)

    def finish(self) -> None:
        """End of input: an episode whose tag was last seen confidently outside is closed."""
        if self.episode is not None and self.leaving_since is not None:
            self.book.close(self.key, self.kind, self.leaving_since)
            self.episode = None
            self.leaving_since = None


class CurfewTracker:
    """Decides one curfew (inclusion zone with a schedule): absence while the window is
    active is a breach after `curfew_grace_s`, at once when unambiguous (far and sure).

    Observations carry depth = metres *outside* the home zone (> 0 away)."""

    __slots__ = ("away", "book", "episode", "key", "s", "subject", "was_out", "zone")

    def __init__(
        self, book: EpisodeBook, settings: Settings, key: TrackerKey, subject: str, zone: str
    ) -> None:
        self.book = book
        self.s = settings
        self.key = key
        self.subject = subject
        self.zone = zone
        self.away: list[Obs] = []  # confident-away fixes of the current absence
        self.episode: Episode | None = None
        self.was_out = False  # last fix before the window was away

    @property
    def idle(self) -> bool:
        return self.episode is None and not self.away and not self.was_out

    def observe(
        self, o: Obs, active: bool, window_start: float, window_end: float, at: Where | None = None
    ) -> None:
        """`window_start`/`window_end`: the active interval containing o.t (when active);
        `at`: where the fix was (BreachTracker.observe)."""
        if not (math.isfinite(o.depth) and math.isfinite(o.sigma)):
            return
        s = self.s
        p_away = o.p_in  # depth is "outside" depth, so p_in is P(away)
        if not active:
            if self.episode is not None:
                self.book.close(self.key, "curfew_breach", min(window_end, o.t))
                self.episode = None
            self.away.clear()
            self.was_out = p_away >= 0.5
            return
        if self.episode is not None:
            if p_away <= 0.2:  # home again (more likely in than out, with margin)
                self.book.close(self.key, "curfew_breach", o.t)
                self.episode = None
                self.away.clear()
                self.was_out = False
            elif p_away >= 0.5:
                self.away.append(o)
                del self.away[:-ABSENCE_FIXES]
                self.book.add_evidence(self.episode, o.tag, o.seq, self._confidence(o, False))
            return
        if p_away < 0.9:
            if p_away < 0.5:
                self.away.clear()
                self.was_out = False
            return
        if not self.away:
            # Away when the window opened (or since before it): the breach began at the
            # window's start, not at the first fix that happens to arrive after it.
            start = window_start if (self.was_out and o.t >= window_start) else o.t
            self.away.append(Obs(start, o.depth, o.sigma, o.tag, o.seq))
        else:
            self.away.append(o)
        began = self.away[0].t
        far = o.depth >= s.curfew_far_m and p_away >= 0.999
        if not far and o.t - began < s.curfew_grace_s:
            return
        conf = self._confidence(o, far)
        if conf <= 0.0:
            return  # drift a small curfew zone's edge explains: not yet an absence
        first = self.away[0]
        ep = self.book.open_episode(
            self.key, "curfew_breach", subject=self.subject, tag=first.tag, zone=self.zone,
            severity="high", confidence=conf, t=began, seq=first.seq, raised_t=o.t,
            detail=where_of(at),
        )  # fmt: skip
        for x in self.away[1:]:
            self.book.add_evidence(ep, x.tag, x.seq, conf)
        self.episode = ep
        del self.away[:-ABSENCE_FIXES]

    def _confidence(self, o: Obs, far: bool) -> float:
        """How sure the absence so far (`away`) is, 0 when it should not open yet. GPS error
        beside buildings drifts 10-40 m for minutes and a receiver indoors claims better
        than it delivers, so around a home of 30-55 m the fixes alone are no proof: the
        absence is judged by how far out it is on average (1/sigma^2-weighted, correlated
        error allowed for), not by its most confident fix. Shallower than
        curfew_min_away_m, it opens only after curfew_shallow_s and as possible; short of
        curfew_sure_m, it stays below 0.9 (settings)."""
        s = self.s
        if far:
            return min(0.999, o.p_in)
        mean, sigma, _ = combined(self.away, s.error_corr_s)
        p = min(0.999, prob_below(mean, sigma))
        # drift stays within a couple of sigma of the truth for minutes at a time
        fix_sigma = sum(x.sigma for x in self.away) / len(self.away)
        drift = s.curfew_away_sigmas * fix_sigma
        if mean >= max(s.curfew_sure_m, 1.5 * drift):
            return p
        if mean >= max(s.curfew_min_away_m, drift):
            return min(p, s.curfew_unsure_confidence_max)
        if o.t - self.away[0].t >= s.curfew_shallow_s:
            return min(p, s.possible_confidence_max)
        return 0.0
