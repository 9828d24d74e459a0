"""The record rules drawn and scripted health share: a tag's health applied to its fix
schedule (`build_tag_health`) -> every record it sends, in seq order, with send times."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from devices.health.battery import BatteryCurve, battery_events, reported
from devices.health.tamper import TamperPlan, TamperScript
from devices.motion.paths import TruePath
from devices.sensing.sensor import FixColumns

Range = tuple[float, float]
Span = tuple[float, float]
# order of records taken at the same instant: a revived tag says power_on, then
# charging_on; a flat one reports its last fix, battery 0, then power_off
_PRIORITY = {"power_on": 0, "charging_on": 1, None: 2, "battery": 3, "charging_off": 5,
             "power_off": 6}  # fmt: skip


@dataclass(frozen=True, slots=True)
class HealthRecord:
    """One record a tag sent: a fix (event None) or an event, in seq order (seq = index)."""

    seq: int
    t: float  # when taken / when it happened
    sent_t: float  # when published (the end of a coverage gap for buffered records)
    event: str | None = None
    batt: int | None = None  # fixes always; events only "battery"
    acc: float = math.inf  # fixes: reported accuracy (rounded as sent)
    fix: int = -1  # fixes: row in TagHealth.fixes
    flat: bool = False  # power_off / power_on of a flat battery, not tamper


@dataclass(frozen=True, eq=False)
class TagHealth:
    """One tag's health script and everything it sent, in seq order."""

    subject: str
    tag: str
    fix_interval_s: float
    roles: frozenset[str]  # forgetful, tamper, coverage, indoor
    records: tuple[HealthRecord, ...]
    fixes: FixColumns  # the fixes taken (cell fixes included), batt = reported level
    tamper: tuple[TamperScript, ...]
    gaps: tuple[Span, ...]  # coverage gaps [start, end): buffered, published at end
    indoor: tuple[Span, ...]  # cell fixes / no_gps events only
    flats: tuple[Span, ...]  # battery flat: off from start until recharged (or the end)
    charging: tuple[Span, ...]  # (charging_on, charging_off); off may lie past the run


@dataclass(frozen=True)
class TagSchedule:
    """One tag over a run [t0, t1): whose it is, its true path and the fixes it would take
    with nothing wrong (`cols`); health decides which it takes and what else it sends."""

    subject: str
    tag: str
    path: TruePath
    cols: FixColumns
    t0: float
    t1: float
    fix_interval_s: float


@dataclass(frozen=True)
class IndoorPeriod:
    """Indoors over [start_t, end_t): each fix is a cell fix with chance `cell_share` (acc
    about `cell_acc_m`, near one tower), else a `no_gps` event."""

    start_t: float
    end_t: float
    cell_share: float
    cell_acc_m: float

    @property
    def span(self) -> Span:
        return self.start_t, self.end_t


def _in_any(t: NDArray[np.float64], spans: list[Span]) -> NDArray[np.bool_]:
    mask = np.zeros(len(t), dtype=bool)
    for a, b in spans:
        mask |= (t >= a) & (t < b)
    return mask


def build_tag_health(
    tag: TagSchedule,
    roles: frozenset[str],
    rng: np.random.Generator,
    bat: BatteryCurve,
    tampers: list[TamperPlan],
    gaps: list[Span],
    indoor: list[IndoorPeriod],
    cell_acc_range: Range,
) -> TagHealth:
    """A tag's health (drawn or scripted) applied to its schedule: the fixes it takes (none
    while off; indoors cell fixes, accuracy within `cell_acc_range`, or no_gps events) and
    every record in the order it happens, which is the seq order, those taken in a
    coverage gap (times in whole ms) sent at its end."""
    cols, t0, t1 = tag.cols, tag.t0, tag.t1
    flats = bat.flats_in_run(t1)
    off_spans = flats + [o for tp in tampers for o in tp.offs]
    keep_fix = ~_in_any(cols.t, off_spans)
    t = cols.t[keep_fix]
    x, y, acc = cols.x[keep_fix].copy(), cols.y[keep_fix].copy(), cols.acc[keep_fix].copy()
    src = cols.src[keep_fix].astype("<U4")
    no_gps = np.zeros(len(t), dtype=bool)
    for p in indoor:
        idx = np.flatnonzero((t >= p.start_t) & (t < p.end_t))
        cell = rng.random(len(idx)) < p.cell_share
        tower = rng.normal(0.0, p.cell_acc_m / 1.51, 2)  # 68% radius ~ 1.51 sigma
        jitter = rng.normal(0.0, 30.0, (len(idx), 2))
        tx, ty = tag.path.at(t[idx])
        x[idx] = tx + tower[0] + jitter[:, 0]
        y[idx] = ty + tower[1] + jitter[:, 1]
        acc[idx] = np.clip(p.cell_acc_m * rng.uniform(0.9, 1.1, len(idx)), *cell_acc_range)
        src[idx] = "cell"
        no_gps[idx[~cell]] = True
    level = np.interp(t, bat.knots_t, bat.knots_l)
    fix_rows = np.flatnonzero(~no_gps)
    fixes = FixColumns(
        t[fix_rows], x[fix_rows], y[fix_rows], acc[fix_rows], reported(level[fix_rows]),
        src[fix_rows],
    )  # fmt: skip

    raw: list[tuple[float, int, int, str | None, int | None, int, bool]] = []
    acc_sent = np.round(fixes.acc, 1).tolist()
    for i, (ft, b) in enumerate(zip(fixes.t.tolist(), fixes.batt.tolist(), strict=True)):
        raw.append((ft, _PRIORITY[None], len(raw), None, b, i, False))

    def event(te: float, name: str, batt: int | None = None, flat: bool = False) -> None:
        if t0 <= te < t1:
            raw.append((round(te, 3), _PRIORITY.get(name, 4), len(raw), name, batt, -1, flat))

    for te in t[no_gps].tolist():
        event(te, "no_gps")
    for te, v in battery_events(bat):
        event(te, "battery", v)
    for a, b in flats:
        event(a, "power_off", flat=True)
        if b < t1:
            event(b, "power_on", flat=True)
    for a, b in bat.charging:
        event(a, "charging_on")
        event(b, "charging_off")
    for tp in tampers:
        for te, name in tp.events:
            event(te, name)
    raw.sort()

    records: list[HealthRecord] = []
    for seq, (rt, _, _, what, batt, fix, flat) in enumerate(raw):
        sent = next((g1 for g0, g1 in gaps if g0 <= rt < g1), rt)
        fix_acc = acc_sent[fix] if fix >= 0 else math.inf
        records.append(HealthRecord(seq, rt, sent, what, batt, fix_acc, fix, flat))
    return TagHealth(
        tag.subject,
        tag.tag,
        tag.fix_interval_s,
        roles,
        tuple(records),
        fixes,
        tuple(tp.script for tp in tampers),
        tuple(gaps),
        tuple(p.span for p in indoor),
        tuple(flats),
        tuple(bat.charging),
    )
