"""Decisions with rate control (issue 15): the engine on scenario families whose tags obey
its reporting-rate commands (15 s fixes once an approach or breach episode begins, the
family's interval again once it ends; devices/families/obedient.py), beside the same
families and seeds as they are written today (tags that never change rate).

    python -m bench.obedient             # tuning and unseen seeds of bench/quality.py
    python -m bench.obedient --quick     # 8 episodes a family, one seed each
    python -m bench.quality --obey       # the same tables after the quality report

Per family and overall, obedient beside plain: recall on material episodes, false breach
alerts, the ROC AUC of confidence (true vs false breach alerts), the share of real
breaches whose alert reaches confidence >= 0.9 within 3 minutes of entry, and the median
time to >= 0.9. The engine that decides the obedient file is the engine that made it
(same zones, subjects and settings: `bench.quality.SETTINGS`, one record per batch)."""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.quality import (
    CORE,
    EPISODES,
    GRACE,
    SETTINGS,
    TUNE_SEEDS,
    UNSEEN_SEEDS,
    URBAN,
    auc,
    engine_alerts,
    high_within,
)
from bench.scoring import Score, overall, score
from devices.families.catalog import FAMILIES, build_family, write_family
from engine.replay import obey_factory
from engine.settings import Settings

MODES = ("obedient", "plain")


@dataclass
class ObeyBoard:
    """Engine scores by mode (obedient, plain) and family, merged over `seeds`."""

    seeds: tuple[int, ...]
    scores: dict[str, dict[str, Score]] = field(default_factory=dict)
    commands: int = 0  # rate commands the obedient tags obeyed
    lines: dict[str, int] = field(default_factory=dict)  # replay lines per mode
    seconds: float = 0.0


def obey_board(
    seeds: Iterable[int],
    families: Sequence[str] = CORE + URBAN,
    episodes: Mapping[str, int] | None = None,
    settings: Settings = SETTINGS,
) -> ObeyBoard:
    """Build each family at each seed twice (obedient and plain), replay, score."""
    board = ObeyBoard(tuple(seeds))
    board.scores = {m: {f: Score() for f in families} for m in MODES}
    board.lines = dict.fromkeys(MODES, 0)
    n_of = {**EPISODES, **(episodes or {})}
    started = time.perf_counter()
    factory = obey_factory(settings)
    with tempfile.TemporaryDirectory() as tmp:
        for seed in board.seeds:
            for fam in families:
                for mode in MODES:
                    obey = factory if mode == "obedient" else None
                    run = build_family(fam, seed, n_of[fam], obey=obey)
                    p = write_family(run, Path(tmp) / f"{fam}-{seed}-{mode}")
                    alerts = engine_alerts(p["replay"], p["zones"], p["subjects"], settings)
                    s = score(alerts, run.truth, run.interval, GRACE)
                    board.scores[mode][fam] = board.scores[mode][fam].merge(s)
                    board.lines[mode] += len(run.lines)
                    board.commands += len(run.commands)
    board.seconds = time.perf_counter() - started
    return board


def _f(x: float | None, spec: str) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def p50_high(s: Score) -> float | None:
    finite = [d for d in s.high_delays if math.isfinite(d)]
    return float(np.median(finite)) if finite else None


def figures(s: Score) -> dict[str, float | None]:
    """The compared figures of one score (None where undefined)."""
    return {
        "recall": s.recall,
        "false": float(s.false),
        "false_high": float(s.false_high),
        "auc": auc(s.true_conf, s.false_conf),
        "high3": high_within(s),
        "p50": p50_high(s),
    }


def render_obey(board: ObeyBoard) -> str:
    """Markdown: per family and overall, each cell `obedient / plain`."""
    seeds = ", ".join(map(str, board.seeds))
    lines = [
        f"Rate control (seeds {seeds}): cells obedient / plain. Obedient tags report every "
        f"15 s while an approach or breach episode is open ({board.commands} commands "
        f"obeyed; replay lines {board.lines['obedient']} / {board.lines['plain']}).",
        "",
        "| family | material | recall | false | false ≥0.9 | AUC | ≥0.9 within 3 min "
        "| time to ≥0.9 p50 s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    fams = list(board.scores["plain"])
    rows = {f: {m: board.scores[m][f] for m in MODES} for f in fams}
    rows["**all**"] = {m: overall(board.scores[m]) for m in MODES}
    for fam, by_mode in rows.items():
        ob, pl = (figures(by_mode[m]) for m in MODES)
        cells = [
            f"{_f(ob['recall'], '.2f')} / {_f(pl['recall'], '.2f')}",
            f"{_f(ob['false'], '.0f')} / {_f(pl['false'], '.0f')}",
            f"{_f(ob['false_high'], '.0f')} / {_f(pl['false_high'], '.0f')}",
            f"{_f(ob['auc'], '.3f')} / {_f(pl['auc'], '.3f')}",
            f"{_f(ob['high3'], '.0%')} / {_f(pl['high3'], '.0%')}",
            f"{_f(ob['p50'], '.0f')} / {_f(pl['p50'], '.0f')}",
        ]
        material = by_mode["plain"].material
        lines.append(f"| {fam} | {material} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(quick: bool = False, families: Sequence[str] | None = None) -> str:
    """The rate-control tables on the tuning and the unseen seeds of bench/quality.py."""
    fams = tuple(families or CORE + URBAN)
    eps = {n: 8 for n in FAMILIES} if quick else None
    out = []
    for title, seeds in (("Tuning seeds", TUNE_SEEDS), ("Unseen seeds", UNSEEN_SEEDS)):
        b = obey_board(seeds[:1] if quick else seeds, fams, eps)
        out.append(f"### With rate control: {title}\n\n{render_obey(b)}\n\n({b.seconds:.0f} s)")
    return "\n\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.obedient", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="8 episodes a family, one seed each")
    ap.add_argument("--families", help="comma-separated family names (default: all)")
    args = ap.parse_args(argv)
    fams = tuple(args.families.split(",")) if args.families else None
    unknown = [f for f in fams or () if f not in FAMILIES]
    if unknown:
        print(f"bench.obedient: unknown families {unknown}", file=sys.stderr)
        return 2
    print(report(args.quick, fams))
    return 0


if __name__ == "__main__":
    sys.exit(main())
