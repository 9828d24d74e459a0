"""Replay: feed a JSON Lines file through the live pipeline, deterministically; and the
in-process engine an obedient simulation asks for its reporting-rate commands (`Obeyer`)."""

from __future__ import annotations

import gc
import os
import stat
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from engine.cli.progress import Progress
from engine.core.pipeline import Pipeline
from engine.errors import TagwatchError
from engine.replayfile import PIPED_MIN_BYTES, PipedReader, batches
from engine.settings import Settings
from engine.store.base import Store
from engine.wire.alerts import Alert, encode_alert
from engine.wire.decode import Limits, decode_replay_line
from engine.wire.payloads import encode
from engine.wire.records import DeadLetter
from zones.load import load
from zones.model import ZoneSet


@dataclass
class ReplaySummary:
    """Counts from one replay run, printed at the end and returned to callers."""

    lines: int = 0
    fixes: int = 0
    events: int = 0
    duplicates: int = 0
    dead: int = 0
    records: int = 0
    opened: dict[str, int] = field(default_factory=dict)
    dead_reasons: dict[str, int] = field(default_factory=dict)

    def render(self) -> str:
        parts = [
            f"{self.lines} lines: {self.fixes} fixes, {self.events} events, "
            f"{self.duplicates} duplicates dropped, {self.dead} dead letters",
            f"{self.records} alert records; opened: "
            + (", ".join(f"{k} {v}" for k, v in sorted(self.opened.items())) or "none"),
        ]
        for reason, n in sorted(self.dead_reasons.items(), key=lambda kv: -kv[1])[:5]:
            parts.append(f"  dead letter x{n}: {reason}")
        return "\n".join(parts)


def replay(
    path: str | Path,
    zoneset: ZoneSet,
    out: BinaryIO,
    *,
    settings: Settings | None = None,
    store: Store | None = None,
    progress: bool = True,
    reader: str = "auto",
) -> ReplaySummary:
    """Run every line of `path` through a fresh pipeline; write alert records to `out`.

    The output depends only on the input file, zones, subjects and settings: batches are
    cut by record count (never by time), so the same input gives the same bytes.

    `reader`: "inline" reads the file in this process; "process" in a reader process of
    its own, beside the pipeline (engine/replayfile.py); "auto" the latter for a regular
    file of PIPED_MIN_BYTES or more. Either gives the same bytes."""
    settings = settings or Settings()
    summary = ReplaySummary()
    p = Path(path)
    try:
        fh = sys.stdin.buffer if str(p) == "-" else p.open("rb")
    except OSError as e:
        raise TagwatchError(f"cannot read replay file {p}: {e.strerror}") from None
    info = os.fstat(fh.fileno())
    total = info.st_size if str(p) != "-" else 0
    # A file name that is not UTF-8 (surrogate escapes) could not be stored as a dead
    # letter's origin: the store raised UnicodeEncodeError (found while fuzzing)
    name = p.name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    piped = None
    if reader == "process" or (
        reader == "auto" and stat.S_ISREG(info.st_mode) and total >= PIPED_MIN_BYTES
    ):  # fmt: skip
        piped = PipedReader(str(p), name, settings.batch_max)  # it reads while we build
    bar = Progress(total, f"replay {p.name}") if progress and total else None
    try:
        pipeline = Pipeline(zoneset, settings)
    except BaseException:
        if piped is not None:
            piped.close()
        raise

    def emit(alerts: list[Alert], dead: list[DeadLetter]) -> None:
        summary.dead += len(dead)
        for d in dead:
            summary.dead_reasons[d.reason] = summary.dead_reasons.get(d.reason, 0) + 1
        for a in alerts:
            out.write(encode_alert(a))
            out.write(b"\n")
            summary.records += 1
            if a.state == "open":
                summary.opened[a.kind] = summary.opened.get(a.kind, 0) + 1
        if store is not None:
            store.commit(alerts, dead)

    # What is alive now (zones, the compiled table, the pipeline's arrays, imported code)
    # lives as long as the replay: the cyclic collector need not look at it again on each
    # of its full passes (~10 % of a large replay's time). Thawed at the end.
    gc.freeze()
    read = batches(fh, name, settings.batch_max, Limits()) if piped is None else iter(piped)
    try:
        for recs, dead, lines, pos in read:
            res = pipeline.process(recs, origin=name)
            summary.lines += lines
            summary.fixes += res.fixes
            summary.events += res.events
            summary.duplicates += res.duplicates
            emit(res.alerts, dead + res.dead)
            if bar:
                bar.update(pos, f"{summary.fixes} fixes, {summary.records} alert records")
        # End of input: what is still undecided is decided as if time ran on.
        emit(pipeline.finish(), [])
    finally:
        gc.unfreeze()
        if piped is not None:
            piped.close()
        if fh is not sys.stdin.buffer:
            fh.close()
        if bar:
            bar.close()
    return summary


class Obeyer:
    """An engine in process, fed replay lines as they are sent (one record per batch, as
    `replay` with batch_max 1 and a live engine at low load see them); each call returns
    the reporting-rate commands (tag, rate_s) the pipeline emitted on those lines. The
    engine half of `tagwatch simulate --obey` and of obedient family builds
    (devices/families/obedient.py, devices/sim/ratecontrol.py `obey`)."""

    def __init__(self, zoneset: ZoneSet, settings: Settings | None = None) -> None:
        self.pipeline = Pipeline(zoneset, settings or Settings())
        self.lines = 0
        self.limits = Limits()

    def __call__(self, lines: Sequence[Mapping[str, Any]]) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        for ln in lines:
            self.lines += 1
            recs, _ = decode_replay_line(encode(dict(ln)), f"obey:{self.lines}", self.limits)
            out += self.pipeline.process(recs, origin="obey").commands
        return out


def obey_factory(settings: Settings | None = None) -> Any:
    """(zones.geojson, subjects.toml) -> a fresh `Obeyer` on them with `settings`: the
    `obey` argument of `devices.families.catalog.build_family` and of `simulate --obey`."""

    def make(zones: Path, subjects: Path) -> Obeyer:
        return Obeyer(load(zones, subjects), settings)

    return make
