"""File output: the replay file and the truth file as compact, stable JSON Lines."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from devices.sim.fleet import Message, SimRun
from engine.wire.payloads import encode


def _write_lines(path: str | Path, records: Iterable[dict[str, Any]]) -> int:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    tmp = path.with_name(path.name + ".partial")
    with tmp.open("wb") as fh:
        for r in records:
            fh.write(encode(r) + b"\n")
            n += 1
    tmp.replace(path)  # readers never see half a file
    return n


def write_replay(run: SimRun, path: str | Path) -> int:
    """Every message as contract replay lines (fix object + "tag"; event object + "tag" +
    "type": "event"; a `/fixes` batch as one line per fix, together), in send order."""
    return write_messages(run.messages, path)


def write_messages(messages: Iterable[Message], path: str | Path) -> int:
    """Messages (e.g. what obedient tags sent: `ratecontrol.obey`) as replay lines."""
    return _write_lines(path, (r for m in messages for r in m.replay_records()))


def write_truth(run: SimRun, path: str | Path) -> int:
    """Every true episode, one JSON object a line, sorted (start, subject, kind, zone);
    health episodes (kind tamper, tag_silent, ...) have zone "" and depth_m 0."""
    return _write_lines(path, (e.record() for e in run.truth))


def write_run(run: SimRun, directory: str | Path) -> dict[str, Path]:
    """World files, replay.jsonl and truth.jsonl into `directory`."""
    d = Path(directory)
    zones, subjects = run.world.write(d)
    write_replay(run, d / "replay.jsonl")
    write_truth(run, d / "truth.jsonl")
    return {
        "zones": zones,
        "subjects": subjects,
        "replay": d / "replay.jsonl",
        "truth": d / "truth.jsonl",
    }
