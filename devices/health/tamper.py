"""Tamper episodes: the kinds and their events, quick toggles, and how a drawn or scripted
tamper is reported (`TamperPlan`: its events and when the tag is powered off)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from devices.health.drawn import HealthConfig

Span = tuple[float, float]
TAMPER_EVENTS = {
    "strap": ("strap_open", "strap_closed"),
    "case": ("case_open", "case_closed"),
    "body": ("body_lost", "body_restored"),
    "power": ("power_off", "power_on"),
}
TAMPER_KINDS = ("strap", "case", "body", "power")
TAMPER_KIND_P = (0.4, 0.2, 0.2, 0.2)


@dataclass(frozen=True)
class TamperScript:
    """One scripted tamper episode: `kind` opened at start_t (maybe toggling) until end_t."""

    kind: str  # strap | case | body | power
    start_t: float
    end_t: float
    opens: int  # 1, or 2-4 for a toggling episode
    with_body: bool  # a strap opening that also loses body contact


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


def draw_tamper(
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
