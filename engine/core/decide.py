"""Breach decisions from uncertain evidence: a tracker per (subject, zone) for exclusion
zones and victim proximity, and one per curfew, turning observations into episodes.

An observation is how deep a fix is (metres; > 0 inside the zone or within the protected
radius, < 0 outside) with the standard deviation of that depth. Trackers never see
geometry: the pipeline measures, the trackers decide. Rules, all thresholds in Settings:

- A single fix decides at once when it is deep and confident (depth >= decisive_depth_m
  and >= decisive_sigmas sigma). Its confidence is capped: one fix cannot rule out a
  multipath burst or a wild fix.
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
  where the segment started).

`Trackers` is the table of live trackers by `TrackerKey` (kind + zone or pair index): made
on first evidence, forgotten once idle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.core.episodes import Episode, EpisodeBook, TrackerKey, TrackerKind, prob_below, where_of
from engine.settings import Settings
from engine.wire.alerts import Severity

if TYPE_CHECKING:
    from engine.core.episodes import Where
    from engine.core.remap import Ids, Remap

# Crossing one of these re-publishes the open record: possible -> likely -> confident
ESCALATE_AT = (0.7, 0.9)


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


def _combined(obs: list[Obs], corr_s: float) -> tuple[float, float, int]:
    """Weighted mean depth, its sigma allowing for correlated error, and fixes inside."""
    w = [1.0 / (o.sigma * o.sigma) for o in obs]
    sw = sum(w)
    mean = sum(wi * o.depth for wi, o in zip(w, obs, strict=True)) / sw
    n = len(obs)
    span = obs[-1].t - obs[0].t
    n_eff = min(float(n), 1.0 + max(span, 0.0) / corr_s)
    sigma = math.sqrt(1.0 / sw) * math.sqrt(n / n_eff)
    return mean, sigma, sum(1 for o in obs if o.depth > 0)


class BreachTracker:
    """Decides one (subject, zone) or (subject, protected device) pair."""

    __slots__ = (
        "book", "episode", "key", "kind", "leaving_since", "n_inside", "pending", "s",
        "severity", "subject", "zone",
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

    @property
    def idle(self) -> bool:
        """Nothing open and nothing pending: the tracker can be forgotten."""
        return self.episode is None and not self.pending

    def observe(self, o: Obs, at: Where | None = None) -> None:
        """`at`: where the fix was, should it decide (it is never kept: only the
        observation being made ever decides)."""
        if not (math.isfinite(o.depth) and math.isfinite(o.sigma)):
            return  # a fix with no usable position is never evidence of anything
        s = self.s
        confident_out = o.p_in_radial <= s.outside_probability
        if self.episode is not None:
            self._observe_open(o, confident_out, at)
            return
        if confident_out:
            self.pending.clear()
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
        mean, sigma, _ = _combined(self.pending, s.error_corr_s)
        p = prob_below(mean, sigma)
        accumulated = (
            len(self.pending) >= 2 and p >= s.open_probability and mean >= s.open_min_depth_m
        )
        possible = p >= s.possible_probability and mean >= s.possible_min_depth_m
        if not (decisive or accumulated or possible):
            return
        first = self.pending[0]
        inside = [o for o in self.pending if o.depth > 0]
        self.n_inside = len(inside)
        if decisive or accumulated:
            conf = self._confidence(p if accumulated else last.p_in, self.pending)
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

    def _confidence(self, p: float, obs: list[Obs]) -> float:
        """P(inside) capped by how much time the inside fixes span: a wild fix fakes one, a
        multipath burst several consecutive fixes over a few minutes, rarely more."""
        s = self.s
        inside = [o for o in obs if o.depth > 0]
        span = inside[-1].t - inside[0].t if inside else 0.0
        if len(inside) <= 1:
            cap = s.single_fix_confidence_max
        elif span < s.confident_span_s:
            cap = s.two_fix_confidence_max
        else:
            cap = 0.999
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
            self.pending = self.pending[-8:]
        if o.depth > 0:
            self.leaving_since = None
            self.n_inside += 1
            mean, sigma, _ = _combined(self.pending, s.error_corr_s)
            p = prob_below(mean, sigma)
            if self._decisive(o) or (p >= s.open_probability and mean >= s.open_min_depth_m):
                conf = max(ep.confidence, self._confidence(p, self.pending))
            else:  # still only possible: shallow or uncertain evidence does not escalate
                conf = max(ep.confidence, min(p, s.possible_confidence_max))
            before = ep.confidence
            self.book.add_evidence(ep, o.tag, o.seq, conf)
            if any(before < level <= ep.confidence for level in ESCALATE_AT):
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
        if self.episode is not None:
            return
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
                self.book.add_evidence(self.episode, o.tag, o.seq, p_away)
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
        if far or o.t - began >= s.curfew_grace_s:
            first = self.away[0]
            conf = min(0.999, p_away if far else max(x.p_in for x in self.away))
            ep = self.book.open_episode(
                self.key, "curfew_breach", subject=self.subject, tag=first.tag, zone=self.zone,
                severity="high", confidence=conf, t=began, seq=first.seq, raised_t=o.t,
                detail=where_of(at),
            )  # fmt: skip
            for x in self.away[1:]:
                self.book.add_evidence(ep, x.tag, x.seq, conf)
            self.episode = ep
            self.away.clear()


# The trackers of one zone: while any of them lives, the zone is followed for every fix
_ZONE_KINDS = (TrackerKind.ZONE, TrackerKind.APPROACH, TrackerKind.CURFEW)


class Trackers:
    """Every live tracker by key. `tracked[z]`: zone z has a live tracker, so each fix of
    its subject is followed (a far fix is what closes an episode)."""

    def __init__(self, book: EpisodeBook, settings: Settings, n_zones: int) -> None:
        self.book = book
        self.settings = settings
        self.live: dict[TrackerKey, BreachTracker | CurfewTracker] = {}
        self.tracked = np.zeros(n_zones, dtype=np.bool_)

    def __contains__(self, key: TrackerKey) -> bool:
        return key in self.live

    def breach(
        self, key: TrackerKey, kind: str, subject: str, zone: str, sev: Severity
    ) -> BreachTracker:
        tr = self.live.get(key)
        if tr is None:
            tr = BreachTracker(self.book, self.settings, key, kind, subject, zone, sev)
            self.live[key] = tr
        assert isinstance(tr, BreachTracker)
        return tr

    def curfew(self, key: TrackerKey, subject: str, zone: str) -> CurfewTracker:
        tr = self.live.get(key)
        if tr is None:
            tr = CurfewTracker(self.book, self.settings, key, subject, zone)
            self.live[key] = tr
        assert isinstance(tr, CurfewTracker)
        return tr

    def forget_if_idle(self, key: TrackerKey, z: int | None = None) -> None:
        """Drop the tracker when it holds nothing; with `z`, refresh that zone's flag."""
        tr = self.live.get(key)
        if tr is not None and tr.idle:
            del self.live[key]
        if z is not None:
            self.tracked[z] = any(TrackerKey(k, z) in self.live for k in _ZONE_KINDS)

    def approach(
        self, key: TrackerKey, kind: str, sev: Severity, subject: str, zone: str,
        breach: BreachTracker, o: Obs, at: Where | None = None,
    ) -> None:  # fmt: skip
        """Approach ring: an earlier, lower-severity alert, superseded by the breach."""
        ap = self.breach(key, kind, subject, zone, sev)
        if breach.episode is not None:
            if ap.episode is not None:
                self.book.close(key, kind, breach.episode.opened_t)
                ap.episode = None
            ap.pending.clear()
            ap.leaving_since = None
            return
        ap.observe(o, at)

    def end(self, key: TrackerKey, kind: str, until: float, reason: str) -> None:
        """What the open episode (key, kind) is about stopped binding at `until` (a zone's
        validity, a tagging period): close it then, saying why, and let its tracker start
        afresh (nothing it held is evidence any more)."""
        ep = self.book.get(key, kind)
        if ep is None:
            return
        ep.detail = {**(ep.detail or {}), "closed_reason": reason, "valid_until": until}
        self.book.close(key, kind, until)
        tr = self.live.get(key)
        if isinstance(tr, BreachTracker):
            tr.episode, tr.leaving_since = None, None
            tr.pending.clear()
        elif isinstance(tr, CurfewTracker):
            tr.episode, tr.was_out = None, False
            tr.away.clear()
        if tr is not None:
            self.forget_if_idle(key, key.idx if key.kind in _ZONE_KINDS else None)

    def finish(self) -> None:
        """End of input: breach episodes whose tag was last seen outside are closed."""
        for tr in self.live.values():
            if isinstance(tr, BreachTracker):
                tr.finish()

    # -- state as data (snapshots, configuration reloads: engine/core/remap.py) ----------
    def export_state(self, ids: Ids) -> list[Any]:
        """Every live tracker in the order it was made; an open episode is the book's."""
        out: list[Any] = []
        for key, tr in self.live.items():
            if isinstance(tr, BreachTracker):
                d: dict[str, Any] = {
                    "type": "breach", "kind": tr.kind, "subject": tr.subject, "zone": tr.zone,
                    "severity": tr.severity, "pending": [_obs_data(o) for o in tr.pending],
                    "leaving_since": tr.leaving_since, "n_inside": tr.n_inside,
                }  # fmt: skip
            else:
                d = {"type": "curfew", "subject": tr.subject, "zone": tr.zone,
                     "away": [_obs_data(o) for o in tr.away], "was_out": tr.was_out}  # fmt: skip
            d["episode"] = tr.episode is not None
            out.append([ids.key_ref(key), d])
        return out

    def import_state(self, data: list[Any], m: Remap) -> None:
        """Trackers of keys still in the configuration; each re-linked to its open episode
        in the book (load the book first)."""
        self.live.clear()
        self.tracked[:] = False
        for ref, d in data:
            key = m.key(ref)
            if key is None:
                continue
            tr: BreachTracker | CurfewTracker
            if d["type"] == "breach":
                tr = BreachTracker(self.book, self.settings, key, str(d["kind"]),
                                   str(d["subject"]), str(d["zone"]), d["severity"])  # fmt: skip
                tr.pending = [_obs_from(o) for o in d["pending"]]
                ls = d["leaving_since"]
                tr.leaving_since = None if ls is None else float(ls)
                tr.n_inside = int(d["n_inside"])
                kind = tr.kind
            elif d["type"] == "curfew":
                tr = CurfewTracker(self.book, self.settings, key, str(d["subject"]), str(d["zone"]))
                tr.away = [_obs_from(o) for o in d["away"]]
                tr.was_out = bool(d["was_out"])
                kind = "curfew_breach"
            else:
                raise ValueError(f"unknown tracker type {d['type']!r} in state")
            if d["episode"]:
                tr.episode = self.book.get(key, kind)
            self.live[key] = tr
            if key.kind in _ZONE_KINDS:
                self.tracked[key.idx] = True


def _obs_data(o: Obs) -> list[Any]:
    return [o.t, o.depth, o.sigma, o.tag, o.seq]


def _obs_from(d: list[Any]) -> Obs:
    return Obs(float(d[0]), float(d[1]), float(d[2]), str(d[3]), int(d[4]))
