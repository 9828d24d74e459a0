"""Scores alerts against ground truth: recall on material episodes, false alerts,
duplicates, false alerts at high confidence, decision delay and a reliability table,
per family and overall; Markdown tables for the README.

Matching: a breach-kind alert (`zone_breach`, `curfew_breach`, `proximity`) matches a true
episode with the same (kind, subject, zone) when the alert's [opened_t, closed_t] overlaps
[start_t - tol, end_t + tol], tol = one fix interval (an alert still open runs on; one
closed by a late fix older than its opening fix spans both). Alerts are taken in opening
order; an alert claims every overlapping episode not yet claimed (one alert may rightly
cover re-entries the engine merged); an alert whose overlapping episodes were all claimed
already is a **duplicate**; one overlapping none is **false**. Alerts that claim only
ambiguous episodes are counted apart: neither credit nor penalty.
Decision delay = first claiming alert's raised_t - start_t, minus any allowed grace for the
kind (a curfew grace), floored at 0; material episodes only. An alert's confidence is the
highest it reported in any lifecycle record."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

BREACH_KINDS = ("zone_breach", "curfew_breach", "proximity")
APPROACH_KINDS = ("zone_approach", "proximity_approach")
HEALTH_KINDS = ("implausible_fix", "victim_device_stale")
CONF_BINS = ((0.0, 0.5), (0.5, 0.7), (0.7, 0.9), (0.9, 1.0))
HIGH_CONFIDENCE = 0.9


@dataclass(frozen=True)
class AlertView:
    """One alert id summarised over its lifecycle records."""

    id: str
    kind: str
    subject: str
    zone: str | None
    opened_t: float
    raised_t: float
    closed_t: float | None
    confidence: float

    @property
    def span(self) -> tuple[float, float]:
        """Event-time extent: [opened_t, closed_t], open-ended while open; an alert closed
        by an older (late) fix than the one that opened it spans both."""
        if self.closed_t is None:
            return min(self.opened_t, self.raised_t), np.inf
        ts = (self.opened_t, self.raised_t, self.closed_t)
        return min(ts), max(ts)


def _get(a: Any, name: str) -> Any:
    return a[name] if isinstance(a, Mapping) else getattr(a, name)


def summarise(alerts: Iterable[Any]) -> list[AlertView]:
    """Alert records (Alert structs or dicts) -> one view per id, in first-seen order."""
    views: dict[str, AlertView] = {}
    for a in alerts:
        aid = _get(a, "id")
        v = views.get(aid)
        closed = _get(a, "closed_t")
        conf = float(_get(a, "confidence"))
        if v is None:
            views[aid] = AlertView(
                aid,
                _get(a, "kind"),
                _get(a, "subject"),
                _get(a, "zone"),
                float(_get(a, "opened_t")),
                float(_get(a, "raised_t")),
                closed,
                conf,
            )
        else:
            views[aid] = AlertView(
                v.id,
                v.kind,
                v.subject,
                v.zone,
                min(v.opened_t, float(_get(a, "opened_t"))),
                v.raised_t,
                closed if closed is not None else v.closed_t,
                max(v.confidence, conf),
            )
    return list(views.values())


@dataclass
class Score:
    """Counts for one decider on one family (or merged over several)."""

    material: int = 0
    ambiguous: int = 0
    found: int = 0  # material episodes claimed by an alert
    alerts: int = 0  # breach-kind alerts
    ambiguous_hits: int = 0  # alerts claiming only ambiguous episodes
    false: int = 0
    duplicates: int = 0
    false_high: int = 0  # false alerts at confidence >= 0.9
    delays: list[float] = field(default_factory=list)
    approach: int = 0
    implausible: int = 0
    stale: int = 0
    bins: list[list[int]] = field(default_factory=lambda: [[0, 0] for _ in CONF_BINS])
    missed: list[dict[str, Any]] = field(default_factory=list)
    false_alerts: list[AlertView] = field(default_factory=list)
    # For ranking (bench/quality.py): the confidence of each alert that found a material
    # episode first, and of each false one; per material episode found, seconds from its
    # start to the first record at confidence >= 0.9 of an alert that claims it (inf: never)
    true_conf: list[float] = field(default_factory=list)
    false_conf: list[float] = field(default_factory=list)
    high_delays: list[float] = field(default_factory=list)

    @property
    def recall(self) -> float:
        return self.found / self.material if self.material else 1.0

    def delay(self, q: float) -> float | None:
        return float(np.percentile(self.delays, q)) if self.delays else None

    def merge(self, other: Score) -> Score:
        out = Score()
        for name in (
            "material",
            "ambiguous",
            "found",
            "alerts",
            "ambiguous_hits",
            "false",
            "duplicates",
            "false_high",
            "approach",
            "implausible",
            "stale",
        ):
            setattr(out, name, getattr(self, name) + getattr(other, name))
        out.delays = self.delays + other.delays
        out.bins = [[a[0] + b[0], a[1] + b[1]] for a, b in zip(self.bins, other.bins, strict=True)]
        out.missed = self.missed + other.missed
        out.false_alerts = self.false_alerts + other.false_alerts
        out.true_conf = self.true_conf + other.true_conf
        out.false_conf = self.false_conf + other.false_conf
        out.high_delays = self.high_delays + other.high_delays
        return out


def _bin(conf: float) -> int:
    for i, (lo, hi) in enumerate(CONF_BINS):
        if lo <= conf < hi:
            return i
    return len(CONF_BINS) - 1


def _truth_dict(e: Any) -> dict[str, Any]:
    return e.record() if hasattr(e, "record") else dict(e)


def score(
    alerts: Iterable[Any],
    truth: Iterable[Any],
    interval: float = 60.0,
    grace: Mapping[str, float] | None = None,
) -> Score:
    """Score one decider's alert records against true episodes (see the module doc)."""
    grace = grace or {}
    eps = sorted((_truth_dict(e) for e in truth), key=lambda e: (e["start_t"], e["subject"]))
    by_key: dict[tuple[str, str, str], list[int]] = {}
    for i, e in enumerate(eps):
        by_key.setdefault((e["kind"], e["subject"], e["zone"]), []).append(i)
    first_raise: dict[int, float] = {}
    sc = Score(
        material=sum(e["material"] for e in eps), ambiguous=sum(not e["material"] for e in eps)
    )
    records = list(alerts)
    views = summarise(records)
    high_at: dict[str, float] = {}  # alert id -> raised_t of its first record at >= 0.9
    for a in records:
        if float(_get(a, "confidence")) >= HIGH_CONFIDENCE:
            aid = _get(a, "id")
            high_at[aid] = min(high_at.get(aid, np.inf), float(_get(a, "raised_t")))
    claimers: dict[int, list[str]] = {}
    for v in views:
        sc.approach += v.kind in APPROACH_KINDS
        sc.implausible += v.kind == "implausible_fix"
        sc.stale += v.kind == "victim_device_stale"
    breach = sorted((v for v in views if v.kind in BREACH_KINDS), key=lambda v: (v.opened_t, v.id))
    for v in breach:
        sc.alerts += 1
        lo, hi = v.span
        cands = [
            i
            for i in by_key.get((v.kind, v.subject, v.zone or ""), [])
            if lo <= eps[i]["end_t"] + interval and hi >= eps[i]["start_t"] - interval
        ]
        sc.bins[_bin(v.confidence)][0] += 1
        if not cands:
            sc.false += 1
            sc.false_high += v.confidence >= HIGH_CONFIDENCE
            sc.false_alerts.append(v)
            sc.false_conf.append(v.confidence)
            continue
        sc.bins[_bin(v.confidence)][1] += 1
        new = [i for i in cands if i not in first_raise]
        for i in cands:
            first_raise[i] = min(first_raise.get(i, np.inf), v.raised_t)
            claimers.setdefault(i, []).append(v.id)
        if not new:
            sc.duplicates += 1
        elif not any(eps[i]["material"] for i in new):
            sc.ambiguous_hits += 1
        else:
            sc.true_conf.append(v.confidence)
    # When the victim's phone has gone silent the engine cannot know the distance and says
    # so (victim_device_stale, with the subject near the phone's last position) instead of
    # pretending: that alert counts as the detection of a proximity episode it overlaps.
    # It is never a false breach alert (it claims no breach), so it only adds recall.
    for v in views:
        if v.kind != "victim_device_stale":
            continue
        lo, hi = v.span
        for i in by_key.get(("proximity", v.subject, v.zone or ""), []):
            if lo <= eps[i]["end_t"] + interval and hi >= eps[i]["start_t"] - interval:
                first_raise[i] = min(first_raise.get(i, np.inf), v.raised_t)
    for i, e in enumerate(eps):
        if not e["material"]:
            continue
        if i in first_raise:
            sc.found += 1
            sc.delays.append(max(0.0, first_raise[i] - e["start_t"] - grace.get(e["kind"], 0.0)))
            high = min((high_at.get(a, np.inf) for a in claimers.get(i, [])), default=np.inf)
            sc.high_delays.append(max(0.0, high - e["start_t"]))
        else:
            sc.missed.append(e)
    return sc


def overall(scores: Mapping[str, Score]) -> Score:
    out = Score()
    for s in scores.values():
        out = out.merge(s)
    return out


def _fmt(x: float | None, spec: str) -> str:
    return "–" if x is None else format(x, spec)


def render_table(
    scores: Mapping[str, Mapping[str, Score]], deciders: Sequence[str] | None = None
) -> str:
    """Markdown: one row per family (+ all), each cell `a / b / c` for the deciders
    (`scores[decider][family]`), e.g. engine / naive / simple."""
    deciders = list(deciders or scores)
    families = list(next(iter(scores.values())))
    rows = [*families, "**all**"]
    merged = {d: overall(scores[d]) for d in deciders}

    def get(d: str, fam: str) -> Score:
        return merged[d] if fam == "**all**" else scores[d][fam]

    cols: list[tuple[str, Any]] = [
        ("recall", lambda s: _fmt(s.recall, ".2f")),
        ("false", lambda s: str(s.false)),
        ("dup", lambda s: str(s.duplicates)),
        ("false ≥0.9", lambda s: str(s.false_high)),
        ("delay p50 s", lambda s: _fmt(s.delay(50), ".0f")),
        ("delay p90 s", lambda s: _fmt(s.delay(90), ".0f")),
        ("ambig. hits", lambda s: str(s.ambiguous_hits)),
    ]
    head = "| family | material | ambiguous | " + " | ".join(c for c, _ in cols) + " |"
    lines = [f"Cells: {' / '.join(deciders)}.", "", head, "|" + "---|" * (3 + len(cols))]
    for fam in rows:
        ref = get(deciders[0], fam)
        cells = [" / ".join(fn(get(d, fam)) for d in deciders) for _, fn in cols]
        lines.append(f"| {fam} | {ref.material} | {ref.ambiguous} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_reliability(scores: Mapping[str, Score], name: str = "engine") -> str:
    """Markdown: confidence bins vs the fraction of breach alerts in them that were real."""
    s = overall(scores)
    lines = [
        f"Reliability ({name}, breach alerts over all families):",
        "",
        "| confidence | alerts | real | fraction real |",
        "|---|---|---|---|",
    ]
    for (lo, hi), (n, real) in zip(CONF_BINS, s.bins, strict=True):
        frac = _fmt(real / n if n else None, ".2f")
        lines.append(f"| {lo:.1f}–{hi:.1f} | {n} | {real} | {frac} |")
    return "\n".join(lines)


def render_info(scores: Mapping[str, Score], name: str = "engine") -> str:
    """Markdown: the informational kinds (approach, implausible_fix, victim_device_stale)."""
    lines = [
        f"Other alerts ({name}):",
        "",
        "| family | approach | implausible_fix | victim_device_stale |",
        "|---|---|---|---|",
    ]
    for fam, s in scores.items():
        lines.append(f"| {fam} | {s.approach} | {s.implausible} | {s.stale} |")
    return "\n".join(lines)
