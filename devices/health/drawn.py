"""Drawn device health: each tag's seeded health script (`HealthConfig`, `tag_health`).

Opt-in through `SimConfig.health`. For each tag a script is drawn from (seed, subject
number): charging sessions, tamper episodes, coverage gaps and indoor periods. The battery
is run through it (battery.py), and the tag's fix schedule becomes what a real tracker
sends (records.py): fixes and events sharing one seq counter in the order they happen,
each with the time it is published (later than taken for what was buffered in a coverage
gap). truth.py judges the true episodes from the same script. Scenario files script the
same troubles by hand (script.py) through the same battery model and record rules."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np

from devices.health.battery import overlaps, run_battery
from devices.health.records import (
    IndoorPeriod,
    Range,
    Span,
    TagHealth,
    TagSchedule,
    build_tag_health,
)
from devices.health.tamper import TamperPlan, draw_tamper, tamper_plan
from devices.health.truth import NO_LOCATION_AFTER_S, silent_after_s

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
            kind, span, pairs, body = draw_tamper(rng, cfg, silent)
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
