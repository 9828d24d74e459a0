"""Scripted device health (scenario files): a tag's tamper, coverage gaps, indoor periods
and battery at given times, run through battery.py's model and records.py's rules, so it
sends the same kinds of records, events and truth as a drawn script."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from devices.health.battery import overlaps, run_battery
from devices.health.records import IndoorPeriod, TagHealth, TagSchedule, build_tag_health
from devices.health.tamper import TamperPlan, tamper_plan, toggle_pairs
from devices.health.truth import USABLE_ACC_M
from devices.motion.scripted import ScriptError, offset_text

# scripted cell fixes are never usable fixes, however small a scenario's cell_acc_m
CELL_ACC_RANGE = (USABLE_ACC_M + 1.0, float("inf"))


@dataclass(frozen=True)
class ScriptedTamper:
    """A scripted tamper: `kind` opens at start_t (after `toggles` quick open/close pairs
    within seconds) and stays open `seconds`; `body`: a strap cut that loses skin contact."""

    index: int  # timeline entry, for error messages
    kind: str  # strap | case | body | power
    start_t: float
    seconds: float
    toggles: int = 0
    body: bool = False


@dataclass(frozen=True)
class ScriptedSpan:
    """A scripted coverage gap or indoor period [start_t, end_t); indoors each fix is a
    cell fix with chance `cell_share` (acc about `cell_acc_m`), else a `no_gps` event."""

    index: int
    start_t: float
    end_t: float
    cell_share: float = 0.5
    cell_acc_m: float = 600.0


@dataclass(frozen=True)
class ScriptedHealth:
    """A tag's device health at scripted times (Unix seconds)."""

    tamper: tuple[ScriptedTamper, ...] = ()
    gaps: tuple[ScriptedSpan, ...] = ()
    indoor: tuple[ScriptedSpan, ...] = ()
    start_pct: float = 90.0
    drain_pct_h: float = 1.5
    charge_pct_h: float = 30.0
    charging: tuple[tuple[float, float], ...] = ()  # charge sessions (start, end)
    recharge: tuple[float, float] | None = None  # after running flat: (delay, duration) s


def _tamper_plan(rng: np.random.Generator, s: ScriptedTamper) -> TamperPlan:
    """A scripted tamper's events and powered-off spans, toggles timed as tamper.py times them."""
    pairs = toggle_pairs(rng, s.toggles, s.seconds)
    lag = min(float(rng.uniform(2.0, 20.0)), s.seconds / 4) if s.body else 0.0
    start = round(s.start_t, 3)
    return tamper_plan(s.kind, start, pairs, lag, start + pairs[-1][0] + s.seconds)


def scripted_health(
    script: ScriptedHealth, rng: np.random.Generator, tag: TagSchedule
) -> TagHealth:
    """A tag's records under a scripted health: fixes and events sharing one seq counter in
    the order they happen, buffered ones published at their coverage gap's end. Raises
    ScriptError for what cannot happen (tampering with a flat tag; a power-off tamper at
    10 % or less, which a reader may take for a flat battery)."""
    t0, t1 = tag.t0, tag.t1
    tampers = [(s, _tamper_plan(rng, s)) for s in script.tamper]
    offs = [span for _, tp in tampers for span in tp.offs]
    bat = run_battery(
        script.start_pct,
        script.drain_pct_h,
        script.charge_pct_h,
        list(script.charging),
        offs,
        [script.recharge] if script.recharge else None,
        t0,
        t1,
    )
    flats = bat.flats_in_run(t1)
    for s, tp in tampers:
        if overlaps(tp.span, flats, 0.0):
            when = offset_text(flats[0][0] - t0)
            raise ScriptError(
                s.index,
                "at",
                f"the battery is flat then (from {when}): a flat "
                "tag cannot report tampering; charge it or tamper earlier",
            )
        if bat.low_power_off(tp):
            raise ScriptError(
                s.index,
                "kind",
                "a power-off at 10 % battery or less reads as "
                "a flat battery, not tamper; script it earlier or charge first",
            )
    gaps = [(round(g.start_t, 3), round(g.end_t, 3)) for g in script.gaps]
    roles = {"tamper": tampers, "coverage": gaps, "indoor": script.indoor, "forgetful": flats}
    indoor = [IndoorPeriod(p.start_t, p.end_t, p.cell_share, p.cell_acc_m) for p in script.indoor]
    return build_tag_health(
        tag,
        frozenset(k for k, v in roles.items() if v),
        rng,
        bat,
        [tp for _, tp in tampers],
        gaps,
        indoor,
        CELL_ACC_RANGE,
    )
