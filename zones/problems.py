"""Problems as messages: `WHERE: WHAT` lines, the Report that writes them, shared checks.

Every problem is one line `WHERE: WHAT`, where WHERE names the file and the item, e.g.
`zones.geojson feature 3 (id 'home-A')` (feature N is `features[N]`, counted from 0 like
`Zone.index`) or `subjects.toml subject 0 (id 'S0001') protected 1 (device 'alice/phone')`.
Loading collects all of them before raising one ZoneError, so a file is fixed in one pass.

Its own module because both readers, `zones.subjects` (TOML) and `zones.geojson`, word
their problems with these, and `zones.load` raises them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

StrPath = str | PathLike[str]


@dataclass
class Report:
    """Problems about one item, each prefixed with where the item is."""

    where: str
    out: list[str]
    start: int = field(init=False)

    def __post_init__(self) -> None:
        self.start = len(self.out)

    def __call__(self, what: str) -> None:
        self.out.append(f"{self.where}: {what}")

    @property
    def clean(self) -> bool:
        return len(self.out) == self.start


def is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def short(v: object, limit: int = 60) -> str:
    try:
        text = json.dumps(v, default=str) if isinstance(v, list | dict) else repr(v)
    except (RecursionError, ValueError):  # nested too deeply to show (found by fuzzing)
        text = f"a deeply nested {type(v).__name__}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def non_empty_str(v: object) -> bool:
    return isinstance(v, str) and bool(v.strip())


def number(props: dict[str, Any], key: str, report: Report, *, positive: bool) -> float | None:
    """props[key] as a finite float (> 0 if `positive`, else >= 0), or None with a problem."""
    v = props[key]
    bound = "> 0" if positive else ">= 0"
    if not is_number(v):
        report(f"{key} must be a number of metres {bound}, got {short(v)}")
        return None
    try:
        f = float(v)
    except OverflowError:
        f = math.inf
    if not math.isfinite(f):
        report(f"{key} must be a finite number of metres, got {short(v)}")
    elif f < 0 or (positive and f == 0):
        report(f"{key} must be {bound}, got {short(v)}")
    else:
        return f
    return None


def read_text(path: StrPath, problems: list[str]) -> str | None:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        problems.append(f"{path}: file not found")
        return None
    except OSError as e:
        problems.append(f"{path}: cannot read: {e.strerror or e}")
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        problems.append(f"{path}: not UTF-8 text (bad byte at offset {e.start})")
        return None
