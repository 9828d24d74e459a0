"""The replay file read by a reader process of its own (engine/replayfile.py): the same
alert bytes and counts as reading it in process, whatever the lines (plain fixes, events,
byte order marks, CRLF, blank and bad lines, unknown tags, batches of every size); and a
reader that fails is an error, not a short replay."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import TagwatchError
from engine.replay import replay
from engine.replayfile import PipedReader
from engine.settings import Settings
from engine.wire.fastpath import FixColumns
from tests.helpers import fix, write_world
from tests.test_fix_line import _file_lines
from zones.load import load


def _both(d: Path, body: bytes, batch: int) -> tuple[tuple[bytes, object], tuple[bytes, object]]:
    f = d / "t.jsonl"
    f.write_bytes(body)
    zones, subjects = write_world(d)
    zs = load(zones, subjects)
    got = []
    for reader in ("inline", "process"):
        out = io.BytesIO()
        s = replay(f, zs, out, settings=Settings(batch_max=batch), progress=False, reader=reader)
        got.append((out.getvalue(), s))
    return got[0], got[1]


@settings(max_examples=25, deadline=None)
@given(data=st.data(), batch=st.integers(1, 12))
def test_a_reader_process_gives_the_same_bytes(
    data: st.DataObject, batch: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    ls = _file_lines(data.draw)
    body = b"".join(line + b"\n" for line in ls)
    a, b = _both(tmp_path_factory.mktemp("rf"), body, batch)
    assert a == b


def test_a_fleet_of_plain_fixes_goes_as_columns(tmp_path: Path) -> None:
    """Plain fixes in and out of the zone, two tags (one unknown): as columns, then the same
    alerts as in process, and the alerts are there (the walk-in is a breach)."""
    lines = []
    for i in range(300):
        lines.append(json.dumps({"tag": "T1", **fix(i, 1774719000.0 + 30 * i, 400.0 - 3 * i, 0.0)}))
        if i % 7 == 0:
            lines.append(json.dumps({"tag": "T9", **fix(i, 1774719000.0 + 30 * i, 0.0, 0.0)}))
    body = ("\n".join(lines) + "\n").encode()
    (f := tmp_path / "f.jsonl").write_bytes(body)
    kinds = {type(b[0]) for b in PipedReader(str(f), "f.jsonl", 50)}
    assert kinds == {FixColumns}
    a, b = _both(tmp_path, body, 50)
    assert a == b and b"zone_breach" in a[0]


def test_a_reader_that_fails_is_an_error(tmp_path: Path) -> None:
    reader = PipedReader(str(tmp_path / "gone.jsonl"), "gone.jsonl", 10)
    try:
        with pytest.raises(TagwatchError, match=r"the replay file reader failed: .*gone\.jsonl"):
            list(reader)
    finally:
        reader.close()


def test_a_reader_killed_midway_is_an_error(tmp_path: Path) -> None:
    """The reader dies (OOM killer, kill -9) with batches still to send: the replay fails
    with a reason, it does not end early as if the file had."""
    f = tmp_path / "big.jsonl"
    line = json.dumps({"tag": "T1", **fix(1, 1774719000.0, 0.0, 0.0)})
    f.write_text("".join(line.replace('"seq": 1', f'"seq": {i}') + "\n" for i in range(60_000)))
    reader = PipedReader(str(f), "big.jsonl", 500)
    try:
        got = iter(reader)
        next(got)
        reader.proc.kill()
        with pytest.raises(TagwatchError, match="the replay file reader failed"):
            for _ in got:
                pass
    finally:
        reader.close()


def test_a_reader_process_reads_standard_input(tmp_path: Path) -> None:
    """`replay -` with the reader process: the reader reads the engine's standard input."""
    import subprocess
    import sys

    lines = [json.dumps({"tag": "T1", **fix(i, 1774719000.0 + 30 * i, 400.0 - 3 * i, 0.0)})
             for i in range(300)]  # fmt: skip
    body = ("\n".join(lines) + "\n").encode()
    (tmp_path / "f.jsonl").write_bytes(body)
    zones, subjects = write_world(tmp_path)
    code = (
        "import io, sys\nfrom engine.replay import replay\nfrom zones.load import load\n"
        f"zs = load({str(zones)!r}, {str(subjects)!r})\nout = io.BytesIO()\n"
        "s = replay('-', zs, out, progress=False, reader='process')\n"
        "sys.stdout.buffer.write(out.getvalue())\n"
    )
    got = subprocess.run([sys.executable, "-c", code], input=body, capture_output=True,
                         check=True, timeout=120).stdout  # fmt: skip
    a, _ = _both(tmp_path, body, 5000)
    assert got == a[0] and b"zone_breach" in got
