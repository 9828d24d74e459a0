"""A restart on an unchanged configuration takes a decoded snapshot's arrays over instead of
copying them (engine/core/remap.py: `Remap(..., take=True)`): at 500,000 subjects a copy
held the ~250 MB state twice at the peak of a restart. Taking must never let two pipelines,
or a pipeline and its source, share an array one of them goes on mutating; a restart onto
another configuration still copies row by row; snapshots of earlier versions (ids as
plain lists) still load."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.cli.main import main
from engine.core.pipeline import Pipeline
from engine.core.remap import Ids, Remap
from engine.settings import Settings
from engine.store import recovery
from engine.store import snapshot as snapfmt
from engine.store.ledger import Step
from engine.wire.alerts import encode_alert
from tests.test_recovery import _live_steps, _records
from zones.load import load
from zones.model import ZoneSet

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("sim")
    rc = main(
        ["simulate", "--seed", "5", "--subjects", "8", "--duration", "2h", "--health",
         "--quick", "4", "--out-dir", str(d)]
    )  # fmt: skip
    assert rc == 0
    return d


def _zs(world: Path, subjects: Path | None = None) -> ZoneSet:
    return load(world / "zones.geojson", subjects or world / "subjects.toml")


def _arrays(x: Any, path: str = "") -> Iterator[tuple[str, np.ndarray]]:
    """Every array in exported state, by its path."""
    if isinstance(x, np.ndarray):
        yield path, x
    elif isinstance(x, dict):
        for k, v in x.items():
            yield from _arrays(v, f"{path}.{k}")
    elif isinstance(x, list | tuple):
        for i, v in enumerate(x):
            yield from _arrays(v, f"{path}[{i}]")


def _shared(a: Pipeline, b: Pipeline) -> list[str]:
    """Paths of the state arrays two pipelines hold in common memory."""
    theirs = [y for _, y in _arrays(b.export_state()) if y.nbytes]
    return [
        path
        for path, x in _arrays(a.export_state())
        if x.nbytes and any(np.shares_memory(x, y) for y in theirs)
    ]


def _drive(p: Pipeline, steps: list[Step]) -> list[bytes]:
    out: list[bytes] = []
    for step in steps:
        out += [encode_alert(a) for a in recovery.apply(p, step).alerts]
    return out + [encode_alert(a) for a in p.finish()]


def _snapshot_midway(world: Path) -> tuple[bytes, list[Step], Pipeline]:
    """A snapshot half way through the stream, the steps after it, and the pipeline that
    ran the first half."""
    steps = _live_steps(_records(world), 3)
    half = len(steps) // 2
    a = Pipeline(_zs(world), Settings())
    for step in steps[:half]:
        recovery.apply(a, step)
    return recovery.snapshot(a), steps[half:], a


def test_a_restart_takes_the_decoded_arrays_over_and_decides_the_same(world: Path) -> None:
    blob, future, a = _snapshot_midway(world)
    state, _ = snapfmt.decode(blob)
    decoded = dict(_arrays(state))
    b = Pipeline(_zs(world), Settings())
    assert b.import_state(state, take=True).identity
    taken = {path for path, x in _arrays(b.export_state()) if decoded.get(path) is x}
    # the big per-slot arrays are the decoded ones themselves, not copies of them
    assert {".history.fixes", ".dedupe.bits", ".spaces.base", ".health.silence.heard"} <= taken
    assert not _shared(a, b)
    expected = _drive(a, future)
    assert expected, "the steps after the snapshot should decide something"
    assert _drive(b, future) == expected


def test_one_decoded_state_restored_into_two_pipelines_is_shared_by_neither(
    world: Path,
) -> None:
    """Taking an array twice would let one pipeline's steps change the other's state: the
    second pipeline copies what the first has taken."""
    blob, future, _ = _snapshot_midway(world)
    state, _ = snapfmt.decode(blob)
    b, c = Pipeline(_zs(world), Settings()), Pipeline(_zs(world), Settings())
    b.import_state(state, take=True)
    c.import_state(state, take=True)
    assert not _shared(b, c)
    before = snapfmt.encode(c.export_state())
    expected = _drive(b, future)
    assert snapfmt.encode(c.export_state()) == before  # b's steps left c's state alone
    assert _drive(c, future) == expected


def test_a_pipeline_mutated_after_a_restore_leaves_a_fresh_restore_unchanged(
    world: Path,
) -> None:
    blob, future, _ = _snapshot_midway(world)
    b = Pipeline(_zs(world), Settings())
    assert recovery.restore(b, blob)
    expected = _drive(b, future)
    c = Pipeline(_zs(world), Settings())
    assert recovery.restore(c, blob)
    assert snapfmt.encode(c.export_state()) == snapfmt.encode(snapfmt.decode(blob)[0])
    assert _drive(c, future) == expected


def test_state_not_given_away_is_copied_even_on_the_same_configuration(world: Path) -> None:
    """A reload hands over a live pipeline's own arrays (export_state does not copy): the
    new pipeline copies them, and the old one's later steps do not reach it."""
    _, future, a = _snapshot_midway(world)
    b = recovery.reconfigure(a, _zs(world))
    assert not _shared(a, b)
    expected = _drive(a, future)
    assert _drive(b, future) == expected


def test_the_same_array_twice_in_one_state_is_taken_once(world: Path) -> None:
    """A crafted snapshot can name one array in two places: only one of them takes it. A
    view, or an array that is not writable, is copied."""
    state, _ = snapfmt.decode(recovery.snapshot(Pipeline(_zs(world), Settings())))
    adm = state["admission"]
    one = np.full_like(adm["tokens"], 3.0)
    assert one.dtype == adm["last"].dtype and one.shape == adm["last"].shape
    adm["tokens"], adm["last"] = one, one
    view = np.full((2, *state["history"]["fixes"].shape), 7.0)[1]
    state["history"]["fixes"] = view
    frozen = state["dedupe"]["hwm"].copy()
    frozen.flags.writeable = False
    state["dedupe"]["hwm"] = frozen
    q = Pipeline(_zs(world), Settings())
    q.import_state(state, take=True)
    assert q.admission.tokens is one and q.admission.last is not one
    assert not np.shares_memory(q.admission.tokens, q.admission.last)
    assert (q.admission.last == 3.0).all()
    assert not np.shares_memory(q.history.fixes, view) and (q.history.fixes == 7.0).all()
    assert q.dedupe.hwm is not frozen and q.dedupe.hwm.flags.writeable


def test_a_restart_onto_another_configuration_copies_row_by_row(
    world: Path, tmp_path: Path
) -> None:
    """A subject added: nothing is taken over (indices moved), every device that is still
    there keeps its rows, the new one starts empty, and the old ones decide the same."""
    blob, future, a = _snapshot_midway(world)
    more = tmp_path / "subjects.toml"
    more.write_text(
        '[[subjects]]\nid = "NEW"\ntags = ["TNEW"]\n\n' + (world / "subjects.toml").read_text()
    )  # first: every slot moves
    state, _ = snapfmt.decode(blob)
    decoded = dict(_arrays(state))
    b = Pipeline(_zs(world, more), Settings())
    assert not b.import_state(state, take=True).identity
    assert not any(decoded.get(path) is x for path, x in _arrays(b.export_state()))
    new_slot = b.registry.slot("TNEW")
    assert new_slot >= 0 and np.isnan(b.history.fixes[new_slot]).all()
    for s, dev in enumerate(a.registry.device_ids):
        t = b.registry.slot(dev)
        assert t != s  # moved
        np.testing.assert_array_equal(b.history.fixes[t], a.history.fixes[s])
        assert b.dedupe.hwm[t] == a.dedupe.hwm[s]
        np.testing.assert_array_equal(b.dedupe.bits[t], a.dedupe.bits[s])
    assert not _shared(a, b)
    assert _drive(b, future) == _drive(a, future)


def test_snapshot_ids_are_packed_and_the_earlier_plain_lists_still_load(world: Path) -> None:
    blob, future, a = _snapshot_midway(world)
    state, _ = snapfmt.decode(blob)
    ids = a.ids()
    assert all(isinstance(state["ids"][k], str) for k in ("devices", "zones", "pairs"))
    assert Ids.from_data(state["ids"]) == ids and ids.matches(state["ids"])
    # what versions before packing wrote
    plain = {
        "devices": list(ids.devices), "n_tags": ids.n_tags, "subjects": list(ids.subjects),
        "zones": list(ids.zones), "zone_subject": list(ids.zone_subject),
        "zone_kind": list(ids.zone_kind), "pairs": [list(p) for p in ids.pairs],
    }  # fmt: skip
    assert not ids.matches(plain) and Ids.from_data(plain) == ids
    assert Remap.of(plain, ids).identity
    state["ids"] = plain
    # a version 1 snapshot, as earlier versions wrote it (plain form, ids as lists)
    v1 = zlib.decompress(snapfmt.encode(state)[len(snapfmt.ZMAGIC) :])
    assert v1.count(b'{"version":2,') == 1
    old, _ = snapfmt.decode(v1.replace(b'{"version":2,', b'{"version":1,'))
    with pytest.raises(snapfmt.SnapshotError, match="unknown version"):
        snapfmt.decode(v1.replace(b'{"version":2,', b'{"version":3,'))
    b = Pipeline(_zs(world), Settings())
    assert b.import_state(old, take=True).identity
    assert _drive(b, future) == _drive(a, future)
    for bad in ({**state["ids"], "devices": '["a", 1]'}, {**state["ids"], "zones": "[oops"}):
        with pytest.raises(ValueError, match="ids malformed"):
            Ids.from_data(bad)
