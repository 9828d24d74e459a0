"""Ground truth for device health: tamper, silent tag, no location, low/critical battery.

Judged from each tag's health script (`devices.health.records.TagHealth`: every record the tag
took, when it was published, and why it powered off), with the written rules below, which
the engine implements too. Health episodes use the `Episode` record with zone "" and
depth_m 0."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from devices.sim.truth import Episode

if TYPE_CHECKING:
    from devices.health.records import HealthRecord, TagHealth

# tamper: one episode from the first opening event to the restoring event after which no
# new opening follows within TAMPER_SETTLE_S; kinds overlapping on one tag merge.
TAMPER_SETTLE_S = 60.0
TAMPER_OPENING = {"strap_open": "strap", "case_open": "case", "body_lost": "body",
                  "power_off": "power"}  # fmt: skip
TAMPER_RESTORING = {"strap_closed": "strap", "case_closed": "case", "body_restored": "body",
                    "power_on": "power"}  # fmt: skip
# tag_silent: a gap in publish time longer than max(SILENT_FIX_INTERVALS x fix interval,
# SILENT_MIN_S); material only if longer than SILENT_MATERIAL_FACTOR x that.
SILENT_FIX_INTERVALS = 5
SILENT_MIN_S = 300.0
SILENT_MATERIAL_FACTOR = 1.5
# no_location: publishing, but no fix with acc <= USABLE_ACC_M for >= NO_LOCATION_AFTER_S.
NO_LOCATION_AFTER_S = 1800.0
USABLE_ACC_M = 250.0
# battery: reported batt <= open opens, the first report >= close closes.
BATTERY_LOW = (20, 30)
BATTERY_CRITICAL = (10, 20)
HEALTH_KINDS = ("battery_critical", "battery_low", "no_location", "tag_silent", "tamper")

Span = tuple[float, float]


def silent_after_s(fix_interval_s: float) -> float:
    """SILENT_AFTER_S for a tag reporting every `fix_interval_s` seconds."""
    return max(SILENT_FIX_INTERVALS * fix_interval_s, SILENT_MIN_S)


def tamper_spans(records: Sequence[HealthRecord], t_end: float) -> list[Span]:
    """Tamper episodes from the events in seq order. A power_off of a flat battery is no
    opening (the tag reports it right after a battery event with batt 0)."""
    out: list[Span] = []
    open_kinds: set[str] = set()
    start: float | None = None
    last_restore = 0.0
    for r in records:
        if r.event in TAMPER_OPENING and not r.flat:
            if start is None:
                start = r.t
            elif not open_kinds and r.t - last_restore > TAMPER_SETTLE_S:
                out.append((start, last_restore))
                start = r.t
            open_kinds.add(TAMPER_OPENING[r.event])
        elif r.event in TAMPER_RESTORING and TAMPER_RESTORING[r.event] in open_kinds:
            open_kinds.discard(TAMPER_RESTORING[r.event])
            last_restore = r.t
    if start is not None:
        out.append((start, t_end if open_kinds else last_restore))
    return out


def silent_gaps(sent: Sequence[float], silent_s: float, t_end: float) -> list[Span]:
    """Gaps longer than `silent_s` between consecutive publish times (sorted), and from the
    last publication to the end of the run."""
    out = [(a, b) for a, b in itertools.pairwise(sent) if b - a > silent_s]
    if sent and t_end - sent[-1] > silent_s:
        out.append((sent[-1], t_end))
    return out


def _minus(span: Span, holes: Iterable[Span]) -> list[Span]:
    """`span` with the (sorted, disjoint) `holes` cut out."""
    out: list[Span] = []
    a, b = span
    for h0, h1 in holes:
        if h1 <= a or h0 >= b:
            continue
        if h0 > a:
            out.append((a, h0))
        a = max(a, h1)
    if a < b:
        out.append((a, b))
    return out


def no_location_spans(
    records: Sequence[HealthRecord], gaps: Sequence[Span], t_end: float
) -> list[Span]:
    """Runs of records (seq order) that are not usable fixes, from the first of them to the
    next usable fix (or the end), minus tag_silent gaps; kept if >= NO_LOCATION_AFTER_S."""
    out: list[Span] = []
    first: float | None = None
    for r in [*records, None]:
        usable = r is None or (r.event is None and r.acc <= USABLE_ACC_M)
        if not usable and first is None:
            assert r is not None
            first = r.t
        elif usable and first is not None:
            end = t_end if r is None else r.t
            pieces = _minus((first, end), gaps)
            out += [p for p in pieces if p[1] - p[0] >= NO_LOCATION_AFTER_S]
            first = None
    return out


def battery_spans(
    records: Sequence[HealthRecord], levels: tuple[int, int], t_end: float
) -> list[Span]:
    """Reported batt (fixes and battery events, seq order) <= levels[0] opens, the first
    report >= levels[1] closes."""
    out: list[Span] = []
    start: float | None = None
    for r in records:
        if r.batt is None:
            continue
        if start is None and r.batt <= levels[0]:
            start = r.t
        elif start is not None and r.batt >= levels[1]:
            out.append((start, r.t))
            start = None
    if start is not None:
        out.append((start, t_end))
    return out


def tag_truth(h: TagHealth, t_end: float) -> list[Episode]:
    """Every true health episode of one tag, sorted."""
    silent_s = silent_after_s(h.fix_interval_s)
    sent = sorted({r.sent_t for r in h.records})
    gaps = silent_gaps(sent, silent_s, t_end)
    spans: list[tuple[str, Span, bool]] = [
        ("tag_silent", g, g[1] - g[0] > SILENT_MATERIAL_FACTOR * silent_s) for g in gaps
    ]
    spans += [("tamper", s, True) for s in tamper_spans(h.records, t_end)]
    spans += [("no_location", s, True) for s in no_location_spans(h.records, gaps, t_end)]
    spans += [("battery_low", s, True) for s in battery_spans(h.records, BATTERY_LOW, t_end)]
    spans += [
        ("battery_critical", s, True) for s in battery_spans(h.records, BATTERY_CRITICAL, t_end)
    ]
    eps = [Episode(a, h.subject, kind, "", h.tag, b, 0.0, m) for kind, (a, b), m in spans]
    eps.sort()
    return eps


def health_truth(tags: Iterable[TagHealth], t_end: float) -> list[Episode]:
    """True health episodes of every tag, sorted (start, subject, kind, zone)."""
    out = [e for h in tags for e in tag_truth(h, t_end)]
    out.sort()
    return out
