"""Loading the zones GeoJSON and subjects TOML into a validated ZoneSet, listing every problem.

The public entry points: each reads its files through `zones.subjects` and `zones.geojson`
and raises one ZoneError naming every problem (how a problem is worded: `zones.problems`).
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

from zones.errors import ZoneError
from zones.geojson import SubjectRef
from zones.model import Subject, Zone, ZoneSet
from zones.problems import StrPath
from zones.subjects import read_subjects, read_subjects_file
from zones.typed import read_zones

MESSAGE_MAX_PROBLEMS = 50  # the exception text lists this many; `.problems` has them all


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic collector paused while files become objects: reading allocates millions
    of containers, none of them garbage yet, and the collector's passes over them took a
    third of reading 500,000 subjects (they run more often the more objects there are)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _raise(problems: list[str], files: Iterable[StrPath]) -> None:
    n = len(problems)
    head = f"{n} problem{'s' if n != 1 else ''} in {' and '.join(map(str, files))}:"
    shown = problems[:MESSAGE_MAX_PROBLEMS]
    more = [f"  ... and {n - len(shown)} more"] if n > len(shown) else []
    raise ZoneError("\n".join([head, *(f"  {p}" for p in shown), *more]), problems)


def load_subjects(path: StrPath) -> tuple[Subject, ...]:
    """The subjects TOML as Subjects, in file order; ZoneError listing every problem."""
    with _gc_paused():
        subjects, _, problems = read_subjects(path)
    if problems:
        _raise(problems, [path])
    return subjects


def load_zones(
    path: StrPath, subjects: Iterable[Subject], subjects_file: str = "the subjects file"
) -> Sequence[Zone]:
    """The zones GeoJSON as Zones in feature order (a `zones.rows.ZoneRows`), each bound to
    one of `subjects`; ZoneError listing every problem."""
    with _gc_paused():
        zones, problems = read_zones(path, SubjectRef(subjects_file, {s.id for s in subjects}))
    if problems:
        _raise(problems, [path])
    return zones


def check(zones_path: StrPath, subjects_path: StrPath) -> list[str]:
    """Every problem in the pair of files, subjects first; empty when both are valid."""
    with _gc_paused():
        _, ids, problems = read_subjects(subjects_path)
        _, zone_problems = read_zones(zones_path, SubjectRef(str(subjects_path), ids))
    return problems + zone_problems


def load(zones_path: StrPath, subjects_path: StrPath) -> ZoneSet:
    """Both files, validated together; ZoneError (with `.problems`) if anything is wrong."""
    with _gc_paused():
        subjects, ids, gateways, problems = read_subjects_file(subjects_path)
        zones, zone_problems = read_zones(zones_path, SubjectRef(str(subjects_path), ids))
    problems += zone_problems
    if problems:
        _raise(problems, [zones_path, subjects_path])
    return ZoneSet(zones, subjects, (str(zones_path), str(subjects_path)), gateways)
