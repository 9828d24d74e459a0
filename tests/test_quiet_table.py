"""`Proximity._quiet` (all (row, position) pairs at once) against `_quiet_lists`, the
position lists built subject by subject as `quiet` did: the same rows found quiet, batch
for batch, on test_prune's random tracks about protected devices and a seeded fleet."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import given

import engine.core.victims as victims
from engine.settings import Settings
from tests.test_prune import EXAMPLES, _feed, _replay, tracks
from zones.model import ZoneSet


@contextmanager
def checked() -> Iterator[dict[str, int]]:
    """Every `quiet` call computed both ways and compared; counts the rows found quiet."""
    counts = {"calls": 0, "quiet": 0}
    quiet = victims.Proximity.quiet

    def both(self: victims.Proximity, arr: np.ndarray, rows: np.ndarray, *a: Any) -> np.ndarray:
        got = quiet(self, arr, rows, *a)
        if victims.PRUNE and rows.shape[0]:
            want = self._quiet_lists(arr, rows, *a)
            assert got.dtype == want.dtype and got.tolist() == want.tolist()
            counts["calls"] += 1
            counts["quiet"] += int(got.sum())
        return got

    victims.Proximity.quiet = both  # type: ignore[method-assign]
    try:
        yield counts
    finally:
        victims.Proximity.quiet = quiet  # type: ignore[method-assign]


@EXAMPLES
@given(tracks())
def test_quiet_is_the_list_walk_on_random_tracks(
    case: tuple[ZoneSet, list[Any], list[int]],
) -> None:
    zs, recs, cuts = case
    with checked():
        _feed(zs, recs, cuts, Settings())


def test_quiet_is_the_list_walk_on_a_fleet(tmp_path: Path) -> None:
    from engine.cli.main import main

    args = ["simulate", "--subjects", "60", "--seed", "3", "--duration", "1h"]
    assert main([*args, "--out-dir", str(tmp_path)]) == 0
    d = {k: tmp_path / f"{k}.{e}" for k, e in
         (("zones", "geojson"), ("subjects", "toml"), ("replay", "jsonl"))}  # fmt: skip
    with checked() as counts:
        _replay(d, Settings(batch_max=400))
    assert counts["calls"] > 3 and counts["quiet"] > 100
