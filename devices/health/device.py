"""Seeded per-tag device health: battery and charging, tamper, coverage gaps, indoor loss.

Opt-in through `SimConfig.health`. For each tag a script is drawn from (seed, subject
number): charging sessions, tamper episodes, coverage gaps and indoor periods. The battery
is run through it, and the tag's fix schedule becomes what a real tracker sends: fixes and
events sharing one seq counter in the order they happen, each with the time it is
published (later than taken for what was buffered in a coverage gap). `healthtruth.py`
judges the true episodes from the same script. Scenario files script the same troubles by
hand (`healthscript.py`) through the same battery model (`run_battery`) and record rules
(`build_tag_health`)."""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import math
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

from devices.health.truth import NO_LOCATION_AFTER_S, silent_after_s
from devices.motion.paths import TruePath
from devices.sensing.sensor import FixColumns

Range = tuple[float, float]
Span = tuple[float, float]
TAMPER_EVENTS = {
    "strap": ("strap_open", "strap_closed"),
    "case": ("case_open", "case_closed"),
    "body": ("body_lost", "body_restored"),
    "power": ("power_off", "power_on"),
}
TAMPER_KINDS = ("strap", "case", "body", "power")
TAMPER_KIND_P = (0.4, 0.2, 0.2, 0.2)
# order of records taken at the same instant: a revived tag says power_on, then
# charging_on; a flat one reports its last fix, battery 0, then power_off
_PRIORITY = {"power_on": 0, "charging_on": 1, None: 2, "battery": 3, "charging_off": 5,
             "power_off": 6}  # fmt: skip
_RESCUES = 8  # pre-drawn recharges after a flat battery (reused in turn if more)


@dataclass(frozen=True)
class HealthConfig:
    """Who has which health trouble, and what it looks like. The defaults aim at a
    realistic 24 h day; the fractions are each subject's own chance (drawn per subject)."""

    forget_charge_fraction: float = 0.10  # no daily charge: runs flat, recharged 1-5 h later
    tamper_fraction: float = 0.08  # 1-3 tamper episodes in the run
    coverage_gap_fraction: float = 0.15  # 1-3 gaps without mobile data (buffered fixes)
    indoor_loss_fraction: float = 0.10  # 1-2 periods of cell fixes / no_gps only
    start_pct: Range = (50.0, 100.0)  # battery at the start (subjects who charge)
    drain_pct_h: Range = (1.0, 4.0)  # while on and not charging
    charge_pct_h: Range = (20.0, 40.0)
    charge_start_h: Range = (19.0, 23.5)  # local wall clock of the daily charge (±0.5 h)
    charge_hours: Range = (1.5, 3.5)
    charge_tz: str = "Europe/London"
    recharge_after_flat_h: Range = (1.0, 5.0)
    tamper_episodes: tuple[int, int] = (1, 3)
    tamper_min: Range = (1.0, 30.0)
    tamper_toggle_fraction: float = 0.3  # episodes that open/close 2-4 times within 30 s
    coverage_gaps: tuple[int, int] = (1, 3)
    coverage_gap_min: Range = (10.0, 90.0)  # at least 2 x SILENT_AFTER_S
    indoor_periods: tuple[int, int] = (1, 2)
    indoor_min: Range = (35.0, 120.0)
    cell_acc_m: Range = (300.0, 1000.0)

    def __post_init__(self) -> None:
        fractions = (
            self.forget_charge_fraction,
            self.tamper_fraction,
            self.coverage_gap_fraction,
            self.indoor_loss_fraction,
            self.tamper_toggle_fraction,
        )
        if not all(0.0 <= f <= 1.0 for f in fractions):
            raise ValueError("health fractions must be within 0-1")
        ranges = (
            self.start_pct, self.drain_pct_h, self.charge_pct_h, self.charge_start_h,
            self.charge_hours, self.recharge_after_flat_h, self.tamper_episodes,
            self.tamper_min, self.coverage_gaps, self.coverage_gap_min, self.indoor_periods,
            self.indoor_min, self.cell_acc_m,
        )  # fmt: skip
        if not all(0 <= lo <= hi for lo, hi in ranges):
            raise ValueError("health ranges must be (low, high) with 0 <= low <= high")
        if not (self.start_pct[0] > 0 and self.start_pct[1] <= 100 and self.drain_pct_h[0] > 0):
            raise ValueError("start_pct must be within (0, 100] and drain_pct_h positive")
        if self.charge_pct_h[0] <= 0 or self.charge_start_h[1] >= 24:
            raise ValueError("charge_pct_h must be positive and charge_start_h before 24")
        if self.cell_acc_m[0] <= 250:
            raise ValueError("cell_acc_m must be above the 250 m usable-fix limit")


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


@dataclass(frozen=True)
class TamperScript:
    """One scripted tamper episode: `kind` opened at start_t (maybe toggling) until end_t."""

    kind: str  # strap | case | body | power
    start_t: float
    end_t: float
    opens: int  # 1, or 2-4 for a toggling episode
    with_body: bool  # a strap opening that also loses body contact


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


@dataclass
class TamperPlan:
    """A tamper episode as the tag reports it: its script, its events and when the tag is
    powered off (the power kind)."""

    script: TamperScript
    events: list[tuple[float, str]]
    offs: list[Span]

    @property
    def span(self) -> Span:
        return self.script.start_t, self.script.end_t


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


def overlaps(a: Span, spans: list[Span], margin: float) -> bool:
    """Whether span `a` comes within `margin` s of any of `spans`."""
    return any(a[0] < b1 + margin and b0 < a[1] + margin for b0, b1 in spans)


def _place(
    rng: np.random.Generator, dur: float, t0: float, t1: float, taken: list[Span], sep: float
) -> float | None:
    """A start for a `dur`-long span in the run, `sep` clear of the edges and of `taken`,
    uniform over every start that fits (None if none does)."""
    free: list[Span] = []
    a = t0 + sep
    for b0, b1 in sorted(taken):
        if b0 - sep - dur > a:
            free.append((a, b0 - sep - dur))
        a = max(a, b1 + sep)
    if t1 - sep - dur > a:
        free.append((a, t1 - sep - dur))
    total = sum(b - a for a, b in free)
    if total <= 0:
        return None
    x = float(rng.uniform(0.0, total))
    for a, b in free:
        if x <= b - a:
            return a + x
        x -= b - a
    return free[-1][1]


def _daily_charges(rng: np.random.Generator, cfg: HealthConfig, t0: float, t1: float) -> list[Span]:
    tz = ZoneInfo(cfg.charge_tz)
    base = float(rng.uniform(*cfg.charge_start_h))
    day = dt.datetime.fromtimestamp(t0, tz).date()
    last = dt.datetime.fromtimestamp(t1, tz).date()
    out: list[Span] = []
    while day <= last:
        h = min(max(base + float(rng.uniform(-0.5, 0.5)), 0.0), 23.99)
        dur = float(rng.uniform(*cfg.charge_hours)) * 3600.0
        local = dt.time(int(h), int(h % 1 * 60), int(h * 3600 % 60))
        start = dt.datetime.combine(day, local, tz).timestamp()
        if t0 < start < t1:
            out.append((start, start + dur))
        day += dt.timedelta(days=1)
    return out


def _tamper(
    rng: np.random.Generator, cfg: HealthConfig, silent: float
) -> tuple[str, float, list[tuple[float, float]], float]:
    """(kind, span, open/close pairs relative to the start, with_body delay or 0)."""
    kind = TAMPER_KINDS[int(rng.choice(4, p=TAMPER_KIND_P))]
    dur = float(rng.uniform(*cfg.tamper_min)) * 60.0
    if kind == "power" and 0.8 * silent < dur < 2.0 * silent:
        dur += 1.2 * silent  # keep the silence clearly short or clearly long
    opens = int(rng.integers(2, 5)) if rng.random() < cfg.tamper_toggle_fraction else 1
    pairs = toggle_pairs(rng, opens - 1, dur)
    body = float(rng.uniform(2.0, 20.0)) if kind == "strap" and rng.random() < 0.5 else 0.0
    return kind, pairs[-1][1], pairs, body


def toggle_pairs(rng: np.random.Generator, toggles: int, seconds: float) -> list[Span]:
    """(open, close) times after a tamper starts: `toggles` quick pairs (closed again within
    2-20 s, reopened within 3-30 s), then open for `seconds`."""
    pairs: list[Span] = []
    t = 0.0
    for _ in range(toggles):
        close = t + float(rng.uniform(2.0, 20.0))
        pairs.append((t, close))
        t = close + float(rng.uniform(3.0, 30.0))
    pairs.append((t, t + seconds))
    return pairs


def tamper_plan(
    kind: str, start: float, pairs: list[Span], body_lag: float, end_t: float
) -> TamperPlan:
    """A tamper of `kind` from `start` (whole ms) to `end_t`, opened and closed at `pairs`
    (relative to start). `body_lag` > 0: a cut strap that also loses skin contact that long
    after the last opening (and regains it that long before it closes)."""
    opening, restoring = TAMPER_EVENTS[kind]
    events = [e for a, b in pairs for e in ((start + a, opening), (start + b, restoring))]
    if body_lag:
        a, b = pairs[-1]
        events += [(start + a + body_lag, "body_lost"), (start + b - body_lag, "body_restored")]
    offs = [(start + a, start + b) for a, b in pairs] if kind == "power" else []
    script = TamperScript(kind, start, round(end_t, 3), len(pairs), bool(body_lag))
    return TamperPlan(script, events, offs)


@dataclass
class BatteryCurve:
    """A battery level over a run (piecewise linear through the knots), when it was flat
    and when it was charging (the last span may end at inf: still flat / charging)."""

    knots_t: list[float]
    knots_l: list[float]
    flats: list[Span]
    charging: list[Span]

    def flats_in_run(self, t1: float) -> list[Span]:
        return [(a, min(b, t1)) for a, b in self.flats]

    def low_power_off(self, tp: TamperPlan) -> bool:
        """A power-off tamper at 10 % or less, which a reader may take for a flat battery."""
        return bool(tp.offs) and bool(np.interp(tp.offs[0][0], self.knots_t, self.knots_l) <= 10)


def run_battery(
    start: float,
    drain: float,
    charge: float,
    sessions: list[Span],
    offs: list[Span],
    rescues: list[Span] | None,
    t0: float,
    t1: float,
) -> BatteryCurve:
    """The battery level as a piecewise-linear function of time: drains while on, rises
    while charging (capped at 100), holds while off; at 0 the tag is off until charged.
    `rescues` (delay, duration) are the recharges of a subject who forgets to charge."""
    heap: list[tuple[float, int, str]] = []
    for a, b in sessions:
        heap += [(a, 1, "on_charge"), (b, 0, "off_charge")]
    for a, b in offs:
        heap += [(a, 2, "off"), (b, 3, "on")]
    heapq.heapify(heap)
    t, level = t0, start
    bat = BatteryCurve([t0], [start], [], [])
    charging_since: float | None = None
    off = 0
    flat_since: float | None = None
    n_flat = 0
    while True:
        tb, _, what = heap[0] if heap and heap[0][0] < t1 else (t1, 9, "end")
        if flat_since is None and off == 0:
            if charging_since is not None:
                full = t + (100.0 - level) / charge * 3600.0
                if level < 100.0 and full < tb:
                    bat.knots_t.append(full)
                    bat.knots_l.append(100.0)
                level = min(100.0, level + charge * (tb - t) / 3600.0)
            else:
                empty = t + level / drain * 3600.0
                if empty <= tb:
                    t, level, flat_since = empty, 0.0, empty
                    bat.knots_t.append(t)
                    bat.knots_l.append(0.0)
                    if rescues is not None:
                        delay, dur = rescues[n_flat % len(rescues)]
                        heapq.heappush(heap, (t + delay, 1, "on_charge"))
                        heapq.heappush(heap, (t + delay + dur, 0, "off_charge"))
                    n_flat += 1
                    continue
                level -= drain * (tb - t) / 3600.0
        t = tb
        bat.knots_t.append(t)
        bat.knots_l.append(level)
        if what == "end":
            break
        heapq.heappop(heap)
        if what == "on_charge":
            charging_since = t
            if flat_since is not None:
                bat.flats.append((flat_since, t))
                flat_since = None
        elif what == "off_charge" and charging_since is not None:
            bat.charging.append((charging_since, t))
            charging_since = None
        elif what == "off":
            off += 1
        elif what == "on":
            off -= 1
    if charging_since is not None:
        bat.charging.append((charging_since, math.inf))
    if flat_since is not None:
        bat.flats.append((flat_since, math.inf))
    return bat


def reported(level: NDArray[np.float64]) -> NDArray[np.int64]:
    """The integer percent a tag reports for a level: rounded up, 0 only when flat."""
    return np.clip(np.ceil(level - 1e-9), 0, 100).astype(np.int64)


def _battery_events(bat: BatteryCurve) -> list[tuple[float, int]]:
    """(t, batt) each time the reported level reaches a multiple of 5."""
    out: list[tuple[float, int]] = []
    pts = list(zip(bat.knots_t, bat.knots_l, strict=True))
    for (ta, la), (tb, lb) in itertools.pairwise(pts):
        if la > lb:  # draining: reported v from the moment the level is v
            for v in range(5 * math.ceil(lb / 5), math.ceil(la), 5):
                if lb <= v < la:
                    out.append((ta + (la - v) / (la - lb) * (tb - ta), v))
        elif lb > la:  # charging: reported v from just above v - 1
            for v in range(5 * math.ceil((la + 1) / 5), 101, 5):
                if la <= v - 1 < lb:
                    out.append((ta + (v - 1 - la) / (lb - la) * (tb - ta), v))
    return out


def _in_any(t: NDArray[np.float64], spans: list[Span]) -> NDArray[np.bool_]:
    mask = np.zeros(len(t), dtype=bool)
    for a, b in spans:
        mask |= (t >= a) & (t < b)
    return mask


def tag_health(cfg: HealthConfig, seed: int, k: int, tag: TagSchedule) -> TagHealth:
    """Subject number `k`'s health script over the run, applied to its tag's schedule."""
    t0, t1, fix_interval_s = tag.t0, tag.t1, tag.fix_interval_s
    u = np.random.default_rng([seed, 7, k]).random(4)
    fractions = (
        cfg.forget_charge_fraction,
        cfg.tamper_fraction,
        cfg.coverage_gap_fraction,
        cfg.indoor_loss_fraction,
    )
    names = ("forgetful", "tamper", "coverage", "indoor")
    roles = frozenset(n for n, x, f in zip(names, u, fractions, strict=True) if x < f)
    rng = np.random.default_rng([seed, 8, k])
    silent = silent_after_s(fix_interval_s)
    sep = max(900.0, 2.0 * silent)  # between scripted episodes, and from the run's ends
    hours = (t1 - t0) / 3600.0

    drain = float(rng.uniform(*cfg.drain_pct_h))
    charge = float(rng.uniform(*cfg.charge_pct_h))
    start = float(rng.uniform(*cfg.start_pct))
    rescues: list[Span] | None = [
        (float(a) * 3600.0, float(b) * 3600.0)
        for a, b in zip(
            rng.uniform(*cfg.recharge_after_flat_h, _RESCUES),
            rng.uniform(*cfg.charge_hours, _RESCUES),
            strict=True,
        )
    ]
    if "forgetful" in roles:  # flat at 45-95 % of the run (sooner if that needs > 100 %)
        start = min(100.0, drain * float(rng.uniform(0.45, 0.95)) * hours)
        sessions: list[Span] = []
    else:
        sessions = _daily_charges(rng, cfg, t0, t1)
        rescues = None

    taken: list[Span] = [(a, min(b, t1)) for a, b in sessions]
    tampers: list[TamperPlan] = []
    if "tamper" in roles:
        for _ in range(int(rng.integers(cfg.tamper_episodes[0], cfg.tamper_episodes[1] + 1))):
            kind, span, pairs, body = _tamper(rng, cfg, silent)
            s = _place(rng, span, t0, t1, taken, sep)
            if s is None:
                continue
            s = round(s, 3)  # times as sent: whole milliseconds
            taken.append((s, s + span))
            tampers.append(tamper_plan(kind, s, pairs, body, s + span))
    taken = [tp.span for tp in tampers]
    gaps: list[Span] = []
    if "coverage" in roles:
        for _ in range(int(rng.integers(cfg.coverage_gaps[0], cfg.coverage_gaps[1] + 1))):
            dur = max(float(rng.uniform(*cfg.coverage_gap_min)) * 60.0, 2.0 * silent)
            s = _place(rng, dur, t0, t1, taken, sep)
            if s is not None:
                gaps.append((round(s, 3), round(s + dur, 3)))
                taken.append(gaps[-1])
    indoor: list[IndoorPeriod] = []
    if "indoor" in roles:
        for _ in range(int(rng.integers(cfg.indoor_periods[0], cfg.indoor_periods[1] + 1))):
            dur = float(rng.uniform(*cfg.indoor_min)) * 60.0
            dur = max(dur, NO_LOCATION_AFTER_S + 5.0 * fix_interval_s)
            p_cell, cell_m = float(rng.random()), float(rng.uniform(*cfg.cell_acc_m))
            s = _place(rng, dur, t0, t1, taken, sep)
            if s is not None:
                indoor.append(IndoorPeriod(round(s, 3), round(s + dur, 3), p_cell, cell_m))
                taken.append(indoor[-1].span)

    # A flat tag cannot be tampered with or lose coverage: drop what overlaps a flat
    # battery or its recharge, and power-off tamper at <= 10 % (a reader may take a
    # power_off at <= 5 % for a flat battery). Power-off holds the battery: run it again.
    while True:
        offs = [o for tp in tampers for o in tp.offs]
        bat = run_battery(start, drain, charge, sessions, offs, rescues, t0, t1)
        blocked = bat.flats_in_run(t1)
        if rescues is not None:
            blocked += [(a, min(b, t1)) for a, b in bat.charging]
        keep = [
            tp
            for tp in tampers
            if not overlaps(tp.span, blocked, 60.0) and not bat.low_power_off(tp)
        ]
        if len(keep) == len(tampers):
            break
        tampers = keep
    flats = bat.flats_in_run(t1)
    gaps = [g for g in gaps if not overlaps(g, flats, sep)]
    indoor = [p for p in indoor if not overlaps(p.span, flats, sep)]
    return build_tag_health(
        tag, roles, rng, bat, tampers, gaps, indoor, cell_acc_range=cfg.cell_acc_m
    )


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
    for te, v in _battery_events(bat):
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
