"""A gateway's msgpack batch decoded straight into columns by a numba kernel: the live
engine's busiest input (engine/wire/decode.py `_gateway`) without a Python object a fix.

msgspec decodes a batch of 1,000 plain fixes into 1,000 structs, and the pipeline then
read their fields back into lists and the lists into numpy: a third of a shard's CPU on a
gateway backlog (0.95 of 2.9 s for 480,000 elements, one shard of two, measured at stop
28), half of it for the other shard's elements, which a shard reads only to skip. The
kernel walks the msgpack bytes once and writes the columns `FixColumns` holds, each tag
looked up in a hash table of the tags the gateway may speak for (its code in the gateway
book's `TagTable`). A shard's book codes the other shards' tags SKIP: their elements are
checked as the rest and left out, so they cost a shard neither rows nor the masks that
would drop them later.

It accepts only what the typed decoder (`fastpath._FixLine`, `list[_FixLine]`) accepts
with every tag plain and the gateway's, and is stricter where that is simpler: a
duplicate key, a negative int64, an element count the payload cannot hold, or a tag the
table lacks, and the batch goes the usual way (msgspec, then the slow path, which has the
last word and the reason). The typed decoder is the oracle (tests/test_columnar.py).
Under NUMBA_DISABLE_JIT the kernel runs as Python."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numba
import numpy as np

from engine.wire.bounds import ACC_MAX_M, T_MAX, T_MIN
from engine.wire.fastpath import FixColumns, TagTable

F = TypeVar("F", bound=Callable[..., Any])
# zones/jit.py's options (the contract imports nothing of the project's; a test keeps them
# the same): cached, and the GIL dropped while the kernel runs
JIT_OPTIONS: dict[str, Any] = {"cache": True, "nogil": True}


def njit(fn: F) -> F:
    return numba.njit(**JIT_OPTIONS)(fn)  # type: ignore[no-any-return]


def njit_inline(fn: F) -> F:
    return numba.njit(inline="always", **JIT_OPTIONS)(fn)  # type: ignore[no-any-return]


_MASK = (1 << 62) - 1  # hashes stay in 62 bits: the same under numba's int64 and Python's int
SKIP = -2  # a tag's code in a `TagLookup` when its elements are to be left out
# The fewest bytes a plain fix element takes (a map header, six keys, six values: 31), with
# room to spare: an array header counting more elements than that is not plain fixes, and
# the columns a 256 KiB payload can make the kernel allocate stay near a megabyte
_ELEMENT_MIN = 16


def _packed(word: str) -> int:
    """A short ASCII word as the int the kernel compares a key or a value with."""
    return sum(b << (8 * k) for k, b in enumerate(word.encode("ascii")))


# The fields of a plain fix line (`_FixLine`), by number; the first six are required
_TAG, _SEQ, _T, _LAT, _LON, _ACC, _BATT, _SRC, _TYPE, _BOOT = range(10)
_REQUIRED = 0b111111
_NAMES = ("tag", "seq", "t", "lat", "lon", "acc", "batt", "src", "type", "boot")  # in that order
_KEYS = np.array([_packed(k) for k in _NAMES], dtype=np.int64)
_KEY_LENS = np.array([len(k) for k in _NAMES], dtype=np.int64)
_V_GPS, _V_WIFI, _V_CELL, _V_FIX = map(_packed, ("gps", "wifi", "cell", "fix"))  # SRC_CODE 0-2


@njit_inline
def _hash(buf: np.ndarray, a: int, b: int) -> int:
    h = 7
    for k in range(a, b):
        h = (h * 31 + int(buf[k])) & _MASK
    return h


@njit_inline
def _field(word: int, n: int) -> int:
    """The field a key names (`_TAG`...), packed by `_word`; -1: none."""
    for f in range(_KEYS.shape[0]):
        if word == _KEYS[f] and n == _KEY_LENS[f]:
            return f
    return -1


@njit_inline
def _uint(buf: np.ndarray, pos: int, size: int) -> int:
    """`size` bytes at `pos`, big-endian, unsigned (at most 7, or 8 with the top bit clear)."""
    v = 0
    for k in range(pos, pos + size):
        v = (v << 8) | int(buf[k])
    return v


@njit_inline
def _word(buf: np.ndarray, a: int, n: int) -> int:
    """Up to 4 bytes as `_packed` packs them (-1: longer)."""
    if n > 4:
        return -1
    v = 0
    for k in range(n):
        v |= int(buf[a + k]) << (8 * k)
    return v


@njit_inline
def _str(buf: np.ndarray, pos: int) -> tuple[int, int, int]:
    """(start, length, next position) of the msgpack str at `pos`; length -1: not a str."""
    size, c = buf.shape[0], int(buf[pos])
    if 0xA0 <= c <= 0xBF:
        n, pos = c - 0xA0, pos + 1
    elif c == 0xD9 and pos + 2 <= size:
        n, pos = int(buf[pos + 1]), pos + 2
    elif c == 0xDA and pos + 3 <= size:
        n, pos = _uint(buf, pos + 1, 2), pos + 3
    elif c == 0xDB and pos + 5 <= size:
        n, pos = _uint(buf, pos + 1, 4), pos + 5
    else:
        return 0, -1, pos
    if pos + n > size:
        return 0, -1, pos
    return pos, n, pos + n


@njit_inline
def _number(
    buf: np.ndarray, pos: int, f64: np.ndarray, u64: np.ndarray, f32: np.ndarray, u32: np.ndarray
) -> tuple[int, int, float, int]:
    """(kind, int value, float value, next position) of the msgpack number at `pos`: kind
    1 an int (>= 0, or a negative fixint / int8-32), 2 a float, 0 anything else."""
    size, c = buf.shape[0], int(buf[pos])
    if c <= 0x7F:
        return 1, c, 0.0, pos + 1
    if c >= 0xE0:
        return 1, c - 256, 0.0, pos + 1
    if 0xCC <= c <= 0xCF:  # uint 8-64
        n = 1 << (c - 0xCC)
        if pos + 1 + n > size or (n == 8 and buf[pos + 1] >= 0x80):
            return 0, 0, 0.0, pos
        return 1, _uint(buf, pos + 1, n), 0.0, pos + 1 + n
    if 0xD0 <= c <= 0xD3:  # int 8-64
        n = 1 << (c - 0xD0)
        if pos + 1 + n > size or (n == 8 and buf[pos + 1] >= 0x80):
            return 0, 0, 0.0, pos  # (a negative int64: the usual way)
        v = _uint(buf, pos + 1, n)
        if n < 8 and buf[pos + 1] >= 0x80:
            v -= 1 << (8 * n)
        return 1, v, 0.0, pos + 1 + n
    if c == 0xCB and pos + 9 <= size:
        u64[0] = _uint(buf, pos + 1, 4) << 32 | _uint(buf, pos + 5, 4)
        return 2, 0, f64[0], pos + 9
    if c == 0xCA and pos + 5 <= size:
        u32[0] = _uint(buf, pos + 1, 4)
        return 2, 0, float(f32[0]), pos + 5
    return 0, 0, 0.0, pos


@njit
def _scan(
    buf: np.ndarray, blob: np.ndarray, starts: np.ndarray, codes: np.ndarray, table: np.ndarray
) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
           np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """(status, skipped, code, seq, t, lat, lon, acc, batt, src, boot) of a msgpack array
    of plain fix lines; status 0: every element was one, each tag in the table
    (`TagLookup`). The elements of a tag whose code is SKIP (another shard's) are read and
    left out."""
    size = buf.shape[0]
    n, pos = -1, 0
    if size:
        c = int(buf[0])
        if 0x90 <= c <= 0x9F:
            n, pos = c - 0x90, 1
        elif c == 0xDC and size >= 3:
            n, pos = _uint(buf, 1, 2), 3
        elif c == 0xDD and size >= 5:
            n, pos = _uint(buf, 1, 4), 5
    if n < 0 or n > (size - pos) // _ELEMENT_MIN:  # a hostile count: columns stay small
        n = 0
    code = np.empty(n, dtype=np.int32)
    seq = np.empty(n, dtype=np.int64)
    t = np.empty(n, dtype=np.float64)
    lat = np.empty(n, dtype=np.float64)
    lon = np.empty(n, dtype=np.float64)
    acc = np.empty(n, dtype=np.float64)
    batt = np.empty(n, dtype=np.int16)
    src = np.empty(n, dtype=np.uint8)
    boot = np.empty(n, dtype=np.int64)
    status, r = 1, 0
    if n:
        status, r = _elements(buf, pos, blob, starts, codes, table, code, seq, t, lat, lon, acc,
                              batt, src, boot)  # fmt: skip
    return (status, n - r, code[:r], seq[:r], t[:r], lat[:r], lon[:r], acc[:r], batt[:r],
            src[:r], boot[:r])  # fmt: skip


@njit_inline
def _elements(
    buf: np.ndarray, pos: int, blob: np.ndarray, starts: np.ndarray, codes: np.ndarray,
    table: np.ndarray, code: np.ndarray, seq: np.ndarray, t: np.ndarray, lat: np.ndarray,
    lon: np.ndarray, acc: np.ndarray, batt: np.ndarray, src: np.ndarray, boot: np.ndarray,
) -> tuple[int, int]:  # fmt: skip
    """`_scan`'s elements from `pos` into the columns: (0, or what was not a plain fix;
    the rows written). A row is written over again when its element is skipped."""
    size = buf.shape[0]
    u64 = np.zeros(1, dtype=np.uint64)
    u32 = np.zeros(1, dtype=np.uint32)
    f64, f32 = u64.view(np.float64), u32.view(np.float32)
    mask = table.shape[0] - 1
    e = 0  # the row being written
    for _ in range(code.shape[0]):
        if pos >= size:
            return 2, e
        c = int(buf[pos])
        if 0x80 <= c <= 0x8F:
            m, pos = c - 0x80, pos + 1
        elif c == 0xDE and pos + 3 <= size:
            m, pos = _uint(buf, pos + 1, 2), pos + 3
        elif c == 0xDF and pos + 5 <= size:
            m, pos = _uint(buf, pos + 1, 4), pos + 5
        else:
            return 3, e
        seen = 0
        batt[e], src[e], boot[e] = -1, 255, -1  # (absent, unless the element says)
        for _ in range(m):
            if pos >= size:
                return 4, e
            a, k, pos = _str(buf, pos)
            if k < 0:
                return 5, e
            f = _field(_word(buf, a, k), k)
            if f < 0:
                return 6, e  # an unknown field (the typed decoder forbids them)
            if seen & (1 << f) or pos >= size:
                return 7, e  # a key twice: the usual way decides which counts
            seen |= 1 << f
            if buf[pos] == 0xC0 and f >= _BATT:  # nil: an optional field absent
                pos += 1
                continue
            if f == _TAG:
                a, k, pos = _str(buf, pos)
                if k < 0:
                    return 8, e
                slot = _hash(buf, a, a + k) & mask
                while True:
                    i = table[slot]
                    if i < 0:
                        return 9, e  # not a tag this gateway may speak for (or not plain)
                    lo, hi = starts[i], starts[i + 1]
                    if hi - lo == k:
                        j = 0
                        while j < k and blob[lo + j] == buf[a + j]:
                            j += 1
                        if j == k:
                            break
                    slot = (slot + 1) & mask
                code[e] = codes[i]
            elif f == _SRC or f == _TYPE:  # noqa: SIM109 (numba)
                a, k, pos = _str(buf, pos)
                w = -1 if k < 0 else _word(buf, a, k)
                if f == _TYPE:
                    if not (w == _V_FIX and k == 3):
                        return 10, e
                elif w == _V_GPS and k == 3:
                    src[e] = 0
                elif w == _V_WIFI and k == 4:
                    src[e] = 1
                elif w == _V_CELL and k == 4:
                    src[e] = 2
                else:
                    return 11, e
            else:
                kind, iv, fv, pos = _number(buf, pos, f64, u64, f32, u32)
                if kind == 0:
                    return 12, e
                if f == _SEQ or f == _BATT or f == _BOOT:  # noqa: SIM109 (numba)
                    if kind != 1 or iv < 0 or (f == _BATT and iv > 100):
                        return 13, e  # (an int64 read is at most SEQ_MAX)
                    if f == _SEQ:
                        seq[e] = iv
                    elif f == _BATT:
                        batt[e] = iv
                    else:
                        boot[e] = iv
                    continue
                x = float(iv) if kind == 1 else fv
                if f == _T:
                    if not T_MIN <= x < T_MAX:
                        return 14, e
                    t[e] = x
                elif f == _LAT:
                    if not -90.0 <= x <= 90.0:
                        return 15, e
                    lat[e] = x
                elif f == _LON:
                    if not -180.0 <= x <= 180.0:
                        return 16, e
                    lon[e] = x
                elif not 0.0 < x <= ACC_MAX_M:
                    return 17, e
                else:
                    acc[e] = x
        if seen & _REQUIRED != _REQUIRED:
            return 18, e
        if code[e] != SKIP:
            e += 1
    return (0 if pos == size else 19), e  # (19: trailing bytes)


class TagLookup:
    """The tags one gateway may speak for that pass the id checks, as the kernel looks
    them up: their UTF-8 bytes end to end (`blob`, `starts`), each one's code in the
    gateway book's table (`codes`), and an open-addressing hash table of their indices
    (`table`, -1 empty, twice as many places as tags or more)."""

    __slots__ = ("blob", "codes", "starts", "table")

    def __init__(self, tags: Sequence[str], codes: Sequence[int]) -> None:
        raw = [t.encode("utf-8") for t in tags]
        self.blob = np.frombuffer(b"".join(raw) or b"\0", dtype=np.uint8).copy()
        self.starts = np.zeros(len(raw) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, raw), dtype=np.int64, count=len(raw)), out=self.starts[1:])
        self.codes = np.asarray(codes, dtype=np.int32)
        self.table = np.full(1 << max(3, (2 * len(raw)).bit_length()), -1, dtype=np.int32)
        _place(self.blob, self.starts, self.table)


@njit
def _place(blob: np.ndarray, starts: np.ndarray, table: np.ndarray) -> None:
    """Each tag's index in the hash table, where `_elements` looks for it."""
    mask = table.shape[0] - 1
    for i in range(starts.shape[0] - 1):
        slot = _hash(blob, starts[i], starts[i + 1]) & mask
        while table[slot] >= 0:
            slot = (slot + 1) & mask
        table[slot] = i


def scan(payload: bytes, lookup: TagLookup, table: TagTable) -> FixColumns | None:
    """The columns of a gateway's msgpack batch of plain fixes, tags coded in `table`, less
    the elements of tags `lookup` codes SKIP (counted in `skipped`); None when it holds
    anything else (the usual way decodes it, and finds the reason)."""
    status, skipped, *cols = _scan(np.frombuffer(payload, dtype=np.uint8), lookup.blob,
                                   lookup.starts, lookup.codes, lookup.table)  # fmt: skip
    return None if status else FixColumns(table, cols, skipped)
