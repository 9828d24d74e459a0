"""Reading a replay file: its lines in batches of records and dead letters (`batches`),
and the same read in a process of its own (`PipedReader`), so that on two cores the
decoding runs beside the pipeline instead of before it.

The reader process (`python -m engine.replayfile`) imports only the contract
(engine/wire) and sends each batch as it is read, pickled on its standard output: an
all-plain batch of fixes as columns (`FixColumns`: numpy arrays and the tag of each row
as a code into a table of tags, sent as they first appear), any other batch as its
records. The pipe's buffer bounds how far it reads ahead. What the pipeline is given is
the same either way, record for record (tests/test_replayfile.py)."""

from __future__ import annotations

import pickle
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from engine.errors import TagwatchError
from engine.wire.decode import Limits, decode_replay_line
from engine.wire.fastpath import DEC_FIX_LINE, DEC_ONE, FixColumns, FixLines, TagTable, plain_tag
from engine.wire.records import DeadLetter, Record
from engine.wire.replayline import fast_line

Batch = tuple["FixLines | FixColumns", list[DeadLetter], int, int]


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


def batches(
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


# -- the reader process ------------------------------------------------------------------

# Above this size a replay file is read by a process of its own (below it, starting one
# costs more than it saves).
PIPED_MIN_BYTES = 4 << 20


def _serve(path: str, origin: str, batch: int, out: BinaryIO) -> None:
    """The reader process: every batch of `path` ("-": standard input) pickled on `out`."""
    index: dict[str, int] = {}
    new: list[str] = []

    def code_of(tag: str) -> int:
        c = index.get(tag)
        if c is None:
            c = index[tag] = len(index)
            new.append(tag)
        return c

    fh = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    with fh:
        for recs, dead, lines, pos in batches(fh, origin, batch, Limits()):
            if recs.plain and len(recs):
                cols = FixColumns.of(recs, code_of)
                msg: Any = ("c", new[:], cols, dead, lines, pos)
                new.clear()
            else:
                msg = ("r", list(recs), dead, lines, pos)
            pickle.dump(msg, out, protocol=pickle.HIGHEST_PROTOCOL)
            out.flush()


class PipedReader:
    """`batches` of the file at `path` ("-": standard input), read by a reader process (`_serve`) that starts at
    once, so it reads while the caller builds its pipeline and decides the batches
    before. Iterate once; TagwatchError if the reader fails. `close` stops it."""

    def __init__(self, path: str, origin: str, batch: int) -> None:
        # Its errors go to a file, not a pipe: a pipe nobody reads until the end would
        # stop a reader that says much (and this process, waiting for its batches)
        self.err = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine.replayfile", path, origin, str(batch)],
            stdin=None if path == "-" else subprocess.DEVNULL,  # "-": it reads ours
            stdout=subprocess.PIPE, stderr=self.err,
        )  # fmt: skip

    def __iter__(self) -> Iterator[Batch]:
        out = self.proc.stdout
        assert out is not None
        table = TagTable()
        while True:
            try:
                msg = pickle.load(out)
            except EOFError:
                break
            except pickle.UnpicklingError as e:  # cut off mid-batch: it died
                self.proc.wait()
                raise TagwatchError(
                    f"the replay file reader failed: its output was cut ({e})"
                ) from None
            if msg[0] == "c":
                _, new, cols, dead, lines, pos = msg
                table.names.extend(new)
                yield FixColumns(table, cols), dead, lines, pos
            else:
                _, recs, dead, lines, pos = msg
                got = FixLines()
                got.extend(recs)
                yield got, dead, lines, pos
        if self.proc.wait() != 0:
            self.err.seek(0)
            said = self.err.read(1 << 16).decode("utf-8", "replace").strip()
            last = said.splitlines()[-1] if said else f"exit status {self.proc.returncode}"
            raise TagwatchError(f"the replay file reader failed: {last}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.err.close()


if __name__ == "__main__":  # the reader process: python -m engine.replayfile PATH ORIGIN BATCH
    try:
        _serve(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.stdout.buffer)
    except BrokenPipeError:  # the engine stopped reading (an error, Ctrl-C): nothing to say
        sys.exit(1)
