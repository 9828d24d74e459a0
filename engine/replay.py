"""Replay: feed a JSON Lines file through the live pipeline, deterministically; and the
in-process engine an obedient simulation asks for its reporting-rate commands (`Obeyer`)."""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from engine.cli.progress import Progress
from engine.core.pipeline import Pipeline
from engine.errors import TagwatchError
from engine.settings import Settings
from engine.store.base import Store
from engine.wire.alerts import Alert, encode_alert
from engine.wire.decode import Limits, decode_replay_line
from engine.wire.fastpath import DEC_FIX_LINE, DEC_ONE, FixLines, plain_tag
from engine.wire.payloads import encode
from engine.wire.records import DeadLetter, Record
from engine.wire.replayline import fast_line
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


def _line_size(readline: Callable[[int], bytes], line: bytes, cap: int) -> tuple[int, int]:
    """(bytes read, length without the line break) of a line `readline(cap)` gave. A line
    longer than `cap` was cut to its first `cap` bytes: the rest is read and dropped in
    chunks here (one line with no newline for gigabytes must not be read into memory)."""
    read = len(line)
    tail = line[-2:]
    if read == cap and not line.endswith(b"\n"):
        while more := readline(1 << 20):
            read += len(more)
            tail = (tail + more)[-2:]
            if more.endswith(b"\n"):
                break
    return read, read - (tail == b"\r\n") - tail.endswith(b"\n")


def _batches(
    fh: BinaryIO, origin: str, batch: int, limits: Limits
) -> Iterator[tuple[FixLines, list[DeadLetter], int, int]]:
    """Yield (records, dead letters, lines, bytes read so far) every `batch` records.

    Lines are read `cap` bytes at most (`_line_size`). A plain line (ending in a lone LF, no byte
    order mark, within the payload limit) that is a wholly valid fix (`fix_line`'s checks)
    stays as the decoder made it (`FixLines`); one that is a wholly valid event is taken
    from the fast path, as `decode_replay_line` would take it; any other line, or any
    surprise on the way, goes through `decode_replay_line`."""
    recs = FixLines()
    dead: list[DeadLetter] = []
    lines = 0
    pos = 0
    cap = limits.max_payload_bytes + 8  # room for a byte order mark and a CRLF
    most = limits.max_payload_bytes + 1  # a plain line with its LF
    readline, decode, decode_fix = fh.readline, DEC_ONE.decode, DEC_FIX_LINE.decode
    id_len = limits.max_id_len
    plain: set[str] = set()  # tags plain_tag passed (a bounded cache of its answer)
    lineno = 0
    while line := readline(cap):
        lineno += 1
        lines += 1
        read = len(line)
        if read <= most and line[-1:] == b"\n" and line[-2:-1] != b"\r":
            pos += read
            if not line.startswith(b"\xef\xbb\xbf"):
                try:  # JSON allows the trailing LF: fix_line(line[:-1]) without the copy
                    s = decode_fix(line)
                except Exception:
                    s = None
                if s is not None and (s.tag in plain or plain_tag(s.tag, id_len)):
                    if len(plain) < 1 << 16:
                        plain.add(s.tag)
                    recs.add_line(s)
                    if len(recs) >= batch:
                        yield recs, dead, lines, pos
                        recs, dead, lines = FixLines(), [], 0
                    continue
                # not a plain fix: an event, a timestamp, extra fields...
                rec: Record | None
                try:
                    rec = fast_line(decode(line[:-1]), limits)
                except Exception:
                    rec = None
                if rec is not None:
                    recs.add(rec)
                    if len(recs) >= batch:
                        yield recs, dead, lines, pos
                        recs, dead, lines = FixLines(), [], 0
                    continue
            size = read - 1
        else:
            read, size = _line_size(readline, line, cap)
            pos += read
        if size >= cap:  # cut: far over the limit whatever its ending
            reason = f"line of {size} bytes exceeds the {limits.max_payload_bytes}-byte limit"
            r: list[Record] = []
            d = [DeadLetter(f"{origin}:{lineno}", line, reason)]
        else:
            r, d = decode_replay_line(line, f"{origin}:{lineno}", limits)
        recs.extend(r)
        dead.extend(d)
        if len(recs) >= batch:
            yield recs, dead, lines, pos
            recs, dead, lines = FixLines(), [], 0
    yield recs, dead, lines, pos


def replay(
    path: str | Path,
    zoneset: ZoneSet,
    out: BinaryIO,
    *,
    settings: Settings | None = None,
    store: Store | None = None,
    progress: bool = True,
) -> ReplaySummary:
    """Run every line of `path` through a fresh pipeline; write alert records to `out`.

    The output depends only on the input file, zones, subjects and settings: batches are
    cut by record count (never by time), so the same input gives the same bytes."""
    settings = settings or Settings()
    pipeline = Pipeline(zoneset, settings)
    summary = ReplaySummary()
    p = Path(path)
    try:
        fh = sys.stdin.buffer if str(p) == "-" else p.open("rb")
    except OSError as e:
        raise TagwatchError(f"cannot read replay file {p}: {e.strerror}") from None
    total = os.fstat(fh.fileno()).st_size if str(p) != "-" else 0
    bar = Progress(total, f"replay {p.name}") if progress and total else None

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
    try:
        # A file name that is not UTF-8 (surrogate escapes) could not be stored as a dead
        # letter's origin: the store raised UnicodeEncodeError (found while fuzzing)
        name = p.name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        for recs, dead, lines, pos in _batches(fh, name, settings.batch_max, Limits()):
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
