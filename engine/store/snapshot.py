"""Pipeline snapshots as data: the state `Pipeline.export_state` gives, written as one JSON
header and raw numpy array bytes. Reading one runs no code: no pickle, object dtypes are
refused, and every array is rebuilt from an explicit dtype description and shape.

    b"TWSNAP1\\n" | header length (8 bytes, big-endian) | header JSON | array bytes

written compressed: b"TWSNAPZ\\n" and a zlib stream of the above (decode reads both).

The header is `{"version": 2, "meta": {...}, "state": tree, "arrays": [{"dtype", "shape",
"offset", "nbytes"}]}`. In the tree, an array is `{"$a": index}`, a tuple `{"$t": [...]}`,
a float that JSON cannot say `{"$f": "nan" | "inf" | "-inf"}`; a dict key that begins with
"$" is written with one more "$". The whole blob's sha256 is recorded in the evidence
ledger when it is saved and checked before it is used (engine/store/recovery.py)."""

from __future__ import annotations

import hashlib
import math
import zlib
from typing import Any

import msgspec
import numpy as np

MAGIC = b"TWSNAP1\n"
ZMAGIC = b"TWSNAPZ\n"  # then a zlib stream of the TWSNAP1 form
_CHUNK = 1 << 20
# 2: the state's id lists are packed texts (engine/core/remap.py). Version 1 is still read;
# a tagwatch that reads only 1 refuses a 2 and rebuilds from the ledger, where it would
# have taken the packed texts for lists of one-character ids and dropped the state
VERSION = 2
_READS = (1, 2)
_HEADER_MAX = 1 << 31
_FLOATS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
_TAGS = ("$a", "$t", "$f")


class SnapshotError(ValueError):
    """Bytes that are not a snapshot this tagwatch wrote (damaged, crafted, or older)."""


def sha256(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def encode(state: dict[str, Any], meta: dict[str, Any] | None = None) -> bytes:
    arrays: list[np.ndarray] = []

    def walk(x: Any) -> Any:
        if x is None or isinstance(x, str | bool):
            return x
        if isinstance(x, np.bool_):
            return bool(x)
        if isinstance(x, int | np.integer):
            return int(x)
        if isinstance(x, float | np.floating):
            v = float(x)
            if math.isfinite(v):
                return v
            return {"$f": "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")}
        if isinstance(x, np.ndarray):
            if x.dtype.hasobject:
                raise TypeError("object arrays are not snapshot data")
            arrays.append(np.ascontiguousarray(x))
            return {"$a": len(arrays) - 1}
        if isinstance(x, tuple):
            return {"$t": [walk(v) for v in x]}
        if isinstance(x, list):
            return [walk(v) for v in x]
        if isinstance(x, dict):
            out = {}
            for k, v in x.items():
                if not isinstance(k, str):
                    raise TypeError(f"snapshot dict keys are strings, not {type(k).__name__}")
                out["$" + k if k.startswith("$") else k] = walk(v)
            return out
        raise TypeError(f"{type(x).__name__} is not snapshot data")

    tree = walk(state)
    specs, offset = [], 0
    for a in arrays:
        specs.append(
            {"dtype": _descr(a.dtype), "shape": list(a.shape), "offset": offset,
             "nbytes": a.nbytes}
        )  # fmt: skip
        offset += a.nbytes
    header = msgspec.json.encode(
        {"version": VERSION, "meta": meta or {}, "state": tree, "arrays": specs}
    )
    # Compressed as it is written, an array a chunk at a time from its own memory: at
    # 500,000 subjects the state is ~250 MB, mostly empty, and a plain blob was copied
    # twice on the way (tobytes, join) and once more by the database
    z = zlib.compressobj(1)
    out = [ZMAGIC, z.compress(MAGIC + len(header).to_bytes(8, "big") + header)]
    for a in arrays:
        raw = a.reshape(-1).view(np.uint8).data  # the array's own bytes, not a copy
        out += [z.compress(raw[i : i + _CHUNK]) for i in range(0, len(raw), _CHUNK)]
    out.append(z.flush())
    return b"".join(out)


def decode(blob: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state, meta). SnapshotError on anything else. Reads the compressed form (each array
    inflated straight into its own memory: no whole inflated copy) and the plain one
    earlier versions wrote."""
    if blob.startswith(ZMAGIC):
        try:
            return _decode_stream(_Inflow(memoryview(blob)[len(ZMAGIC) :]))
        except zlib.error as e:
            raise SnapshotError(f"compressed snapshot damaged: {e}") from None
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 8:
        raise SnapshotError("not a tagwatch data snapshot (no TWSNAP1 header)")
    at = len(MAGIC)
    n = int.from_bytes(blob[at : at + 8], "big")
    at += 8
    if n > _HEADER_MAX or at + n > len(blob):
        raise SnapshotError("snapshot header length runs past its end")
    head = _head(memoryview(blob)[at : at + n])
    body = memoryview(blob)[at + n :]
    arrays = []
    for spec in _list(head.get("arrays")):
        dt, shape, off, nb = _spec(spec)
        if off < 0 or off + nb > len(body):
            raise SnapshotError("snapshot array runs past the end")
        arrays.append(np.frombuffer(body[off : off + nb], dtype=dt).reshape(shape).copy())
    return _tree(head, arrays)


class _Inflow:
    """A zlib stream read a piece at a time into the caller's memory."""

    def __init__(self, data: memoryview) -> None:
        self.z = zlib.decompressobj()
        self.data, self.at = data, 0
        self.left = memoryview(b"")

    def _more(self) -> None:
        tail = self.z.unconsumed_tail
        if tail:
            chunk: bytes | memoryview = tail
        elif self.at < len(self.data):
            chunk, self.at = self.data[self.at : self.at + _CHUNK], self.at + _CHUNK
        else:
            raise SnapshotError("compressed snapshot damaged: it ends early")
        self.left = memoryview(self.z.decompress(chunk, _CHUNK))

    def read_into(self, out: memoryview) -> None:
        n = 0
        while n < len(out):
            if not self.left:
                self._more()
                continue
            k = min(len(self.left), len(out) - n)
            out[n : n + k] = self.left[:k]
            self.left, n = self.left[k:], n + k

    def read(self, n: int) -> bytearray:
        b = bytearray(n)  # not copied again into bytes: the header can be tens of MB
        self.read_into(memoryview(b))
        return b

    def at_end(self) -> bool:
        """Nothing follows, and the stream's checksum holds (zlib.error if it does not)."""
        rest = self.z.decompress(self.z.unconsumed_tail + bytes(self.data[self.at :]))
        return not self.left and not rest and not self.z.flush() and self.z.eof


def _decode_stream(src: _Inflow) -> tuple[dict[str, Any], dict[str, Any]]:
    if src.read(len(MAGIC)) != MAGIC:
        raise SnapshotError("not a tagwatch data snapshot (no TWSNAP1 header)")
    n = int.from_bytes(src.read(8), "big")
    if n > _HEADER_MAX:
        raise SnapshotError("snapshot header length runs past its end")
    head = _head(src.read(n))
    arrays, pos = [], 0
    for spec in _list(head.get("arrays")):
        dt, shape, off, nb = _spec(spec)
        if off != pos:
            raise SnapshotError("snapshot arrays out of order")
        a = np.empty(shape, dtype=dt)
        src.read_into(a.reshape(-1).view(np.uint8).data)
        arrays.append(a)
        pos += nb
    if not src.at_end():
        raise SnapshotError("compressed snapshot damaged: its end is missing or does not check")
    return _tree(head, arrays)


def _head(raw: bytes | bytearray | memoryview) -> dict[str, Any]:
    try:
        head = msgspec.json.decode(raw)
    except msgspec.DecodeError as e:
        raise SnapshotError(f"snapshot header is not JSON: {e}") from None
    if not isinstance(head, dict) or head.get("version") not in _READS:
        raise SnapshotError("snapshot header of an unknown version")
    return head


def _tree(head: dict[str, Any], arrays: list[np.ndarray]) -> tuple[dict[str, Any], dict[str, Any]]:
    def walk(x: Any) -> Any:
        if isinstance(x, list):
            return [walk(v) for v in x]
        if not isinstance(x, dict):
            return x
        if len(x) == 1:
            ((k, v),) = x.items()
            if k == "$a":
                if not isinstance(v, int) or not 0 <= v < len(arrays):
                    raise SnapshotError(f"snapshot refers to array {v!r} it does not hold")
                return arrays[v]
            if k == "$t":
                return tuple(walk(e) for e in _list(v))
            if k == "$f":
                if v not in _FLOATS:
                    raise SnapshotError(f"bad float {v!r} in snapshot")
                return _FLOATS[v]
        out = {}
        for k, v in x.items():
            if k in _TAGS:
                raise SnapshotError(f"{k} beside other keys in snapshot")
            out[k[1:] if k.startswith("$$") else k] = walk(v)
        return out

    state, meta = walk(head.get("state")), head.get("meta")
    if not isinstance(state, dict) or not isinstance(meta, dict):
        raise SnapshotError("snapshot holds no state")
    return state, meta


def _descr(dt: np.dtype) -> Any:
    return np.lib.format.dtype_to_descr(dt)


def _list(x: Any) -> list[Any]:
    if not isinstance(x, list):
        raise SnapshotError("snapshot header malformed")
    return x


def _tuples(d: Any) -> Any:
    if isinstance(d, list):
        return [tuple(_tuples(e) for e in x) if isinstance(x, list) else x for x in d]
    return d


def _spec(spec: Any) -> tuple[np.dtype, tuple[int, ...], int, int]:
    """(dtype, shape, offset, nbytes) of an array's description, checked."""
    try:
        dt = np.lib.format.descr_to_dtype(_tuples(spec["dtype"]))
        shape = tuple(int(s) for s in spec["shape"])
        off, nb = int(spec["offset"]), int(spec["nbytes"])
    except (KeyError, TypeError, ValueError) as e:
        raise SnapshotError(f"snapshot array spec malformed: {e}") from None
    if dt.hasobject:
        raise SnapshotError("snapshot array of Python objects refused")
    if any(s < 0 for s in shape) or nb != math.prod(shape) * dt.itemsize:
        raise SnapshotError("snapshot array size does not match its shape")
    return dt, shape, off, nb
