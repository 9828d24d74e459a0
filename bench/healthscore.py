"""Scores device-health alerts against the simulator's health truth (`healthtruth.py`).

Matching, per kind (`tamper`, `tag_silent`, `no_location`, `battery_low`,
`battery_critical`): an alert matches a true episode of the same kind and tag when its
[opened_t, closed_t] (open-ended while open) overlaps [start_t - tol, end_t + tol]. Alerts
are taken in opening order; an alert claims every overlapping episode not yet claimed; one
whose overlapping episodes were all claimed already is a **duplicate**; one overlapping
none is **spurious**. Ambiguous episodes (a silence barely past the limit) are neither
credit nor penalty. Errors are |alert opened_t - start_t| and |closed_t - end_t| of the
first claiming alert; the decision delay is raised_t - start_t (for a silence that includes
the silence limit itself: nobody can know sooner)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

HEALTH_KINDS = ("tamper", "tag_silent", "no_location", "battery_low", "battery_critical")
TOLERANCE_S = 120.0


def _get(a: Any, name: str) -> Any:
    return a[name] if isinstance(a, Mapping) else getattr(a, name)


@dataclass
class HealthScore:
    """One kind's (or all kinds') result."""

    true: int = 0  # material episodes
    found: int = 0
    spurious: int = 0
    duplicates: int = 0
    alerts: int = 0
    start_err: list[float] = field(default_factory=list)
    end_err: list[float] = field(default_factory=list)
    delay: list[float] = field(default_factory=list)

    @property
    def missed(self) -> int:
        return self.true - self.found

    def add(self, other: HealthScore) -> None:
        for name in ("true", "found", "spurious", "duplicates", "alerts"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.start_err += other.start_err
        self.end_err += other.end_err
        self.delay += other.delay


def _views(alerts: Iterable[Any]) -> list[dict[str, Any]]:
    """Alert records -> one view per id (first opened_t / raised_t, last closed_t)."""
    views: dict[str, dict[str, Any]] = {}
    for a in alerts:
        kind = _get(a, "kind")
        if kind not in HEALTH_KINDS:
            continue
        v = views.setdefault(
            _get(a, "id"),
            {
                "kind": kind,
                "tag": _get(a, "tag"),
                "opened_t": _get(a, "opened_t"),
                "raised_t": _get(a, "raised_t"),
                "closed_t": None,
            },
        )
        v["opened_t"] = min(v["opened_t"], _get(a, "opened_t"))
        if _get(a, "state") == "closed":
            v["closed_t"] = _get(a, "closed_t")
    return sorted(views.values(), key=lambda v: (v["opened_t"], v["tag"] or "", v["kind"]))


def score_health(
    alerts: Iterable[Any], truth: Sequence[Any], tol: float = TOLERANCE_S
) -> dict[str, HealthScore]:
    """Per health kind, plus "all"."""
    eps = [e for e in truth if _get(e, "kind") in HEALTH_KINDS]
    out = {k: HealthScore() for k in HEALTH_KINDS}
    claimed: set[int] = set()
    for e in eps:
        if _get(e, "material"):
            out[_get(e, "kind")].true += 1
    for v in _views(alerts):
        sc = out[v["kind"]]
        sc.alerts += 1
        lo, hi = v["opened_t"], np.inf if v["closed_t"] is None else v["closed_t"]
        hits = [
            i
            for i, e in enumerate(eps)
            if _get(e, "kind") == v["kind"]
            and _get(e, "tag") == v["tag"]
            and lo <= _get(e, "end_t") + tol
            and hi >= _get(e, "start_t") - tol
        ]
        if not hits:
            sc.spurious += 1
            continue
        new = [i for i in hits if i not in claimed]
        if not new:
            sc.duplicates += 1
            continue
        claimed.update(new)
        for i in new:
            e = eps[i]
            if not _get(e, "material"):
                continue
            sc.found += 1
            sc.start_err.append(abs(v["opened_t"] - _get(e, "start_t")))
            if v["closed_t"] is not None:
                sc.end_err.append(abs(v["closed_t"] - _get(e, "end_t")))
            sc.delay.append(v["raised_t"] - _get(e, "start_t"))
    total = HealthScore()
    for sc in out.values():
        total.add(sc)
    out["all"] = total
    return out


def _p(xs: list[float], q: float) -> str:
    return "–" if not xs else f"{float(np.percentile(xs, q)):.0f}"


def health_table(scores: Mapping[str, HealthScore]) -> str:
    """Markdown table: one row per kind."""
    rows = [
        "| kind | true | found | missed | spurious | duplicates | start err p50/max s "
        "| end err p50/max s | decided after p50 s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, sc in scores.items():
        name = f"**{kind}**" if kind == "all" else kind
        rows.append(
            f"| {name} | {sc.true} | {sc.found} | {sc.missed} | {sc.spurious} | "
            f"{sc.duplicates} | {_p(sc.start_err, 50)} / {_p(sc.start_err, 100)} | "
            f"{_p(sc.end_err, 50)} / {_p(sc.end_err, 100)} | {_p(sc.delay, 50)} |"
        )
    return "\n".join(rows)


OPENING = {"strap_open", "case_open", "body_lost", "power_off"}
RESTORING = {"strap_closed", "case_closed", "body_restored", "power_on"}


def naive_health(
    lines: Iterable[Mapping[str, Any]], silent_s: float = 300.0
) -> list[dict[str, Any]]:
    """The obvious per-record rules a first system would ship, for comparison: every
    opening tamper event opens an alert and every restore closes it; a silence is an
    event-time gap between a tag's consecutive records (so an upload that fills the gap
    hides it); battery opens at <= 20 % and closes above it; no_location opens on every
    unusable record after a usable one. Replay lines in, alert-like dicts out."""
    out: list[dict[str, Any]] = []
    last_t: dict[str, float] = {}
    tamper: dict[str, dict[str, Any]] = {}
    batt: dict[str, dict[str, Any]] = {}
    noloc: dict[str, dict[str, Any]] = {}
    n = 0

    def new(kind: str, tag: str, t: float, closed: float | None = None) -> dict[str, Any]:
        nonlocal n
        n += 1
        a = {"id": f"n{n}", "kind": kind, "tag": tag, "state": "open", "opened_t": t,
             "raised_t": t, "closed_t": closed}  # fmt: skip
        out.append(a)
        return a

    for r in lines:
        tag, t = str(r["tag"]), float(r["t"])
        if tag in last_t and t - last_t[tag] > silent_s:  # known only when the gap ends
            a = new("tag_silent", tag, last_t[tag], t)
            a["state"], a["raised_t"] = "closed", t
        last_t[tag] = max(t, last_t.get(tag, t))
        ev = r.get("event")
        if ev in OPENING and tag not in tamper:
            tamper[tag] = new("tamper", tag, t)
        elif ev in RESTORING and tag in tamper:
            a = tamper.pop(tag)
            a["state"], a["closed_t"] = "closed", t
        b = r.get("batt")
        if isinstance(b, int):
            if b <= 20 and tag not in batt:
                batt[tag] = new("battery_low", tag, t)
            elif b > 20 and tag in batt:
                a = batt.pop(tag)
                a["state"], a["closed_t"] = "closed", t
        usable = ev is None and float(r.get("acc", 1e9)) <= 250.0
        if usable and tag in noloc:
            a = noloc.pop(tag)
            a["state"], a["closed_t"] = "closed", t
        elif not usable and (ev is None or ev == "no_gps") and tag not in noloc:
            noloc[tag] = new("no_location", tag, t)
    return out
