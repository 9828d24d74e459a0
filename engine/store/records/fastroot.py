"""A records row's Merkle root (merkle.py's tree) in one numba kernel that calls the
SHA-256 of the libcrypto Python's own hashlib uses, through its EVP interface.

hashlib pays about 340 ns a hash on a line of a fix, most of it making and finishing the
hash object; a row needs two hashes a record (its leaf, and a node above). The same
digests from a kernel looping over the row, with one digest context reused, cost about a
third of that, and the kernel drops the GIL. merkle.py's Python tree is the oracle: the
kernel is used only after it gave the oracle's root on a test tree at load, and anything
it cannot do (no libcrypto, an older one, a digest call failing) goes the Python way.

Under NUMBA_DISABLE_JIT the kernel runs as Python, each digest call made through ctypes."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from zones.jit import JIT_DISABLED, njit

log = logging.getLogger("tagwatch.ledger")

_CALL = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_size_t)

_call3: Callable[[int, int, int, int], int]
if JIT_DISABLED:

    def _call3(fn: int, a: int, b: int, c: int) -> int:
        return int(_CALL(fn)(a, b, c))

else:
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    @intrinsic
    def _call3(typingctx: Any, fn: Any, a: Any, b: Any, c: Any) -> Any:
        """fn(a, b, c) for the C function at address `fn` taking three pointer-sized
        arguments and returning an int (addresses passed in, so the kernel caches)."""
        sig = types.intc(types.uintp, types.uintp, types.uintp, types.uintp)

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            word = ir.IntType(64)
            fnty = ir.FunctionType(ir.IntType(32), [word, word, word])
            return builder.call(builder.inttoptr(args[0], fnty.as_pointer()), args[1:])

        return sig, codegen


@njit
def _root(
    buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, nodes: np.ndarray,
    pair: np.ndarray, ctx: int, md: int, init: int, update: int, final: int,
) -> bool:  # fmt: skip
    """The leaves sha256(buf[starts[i]:ends[i]]) (each slice begins with its 0x00), then
    each level's nodes sha256(0x01 || left || right), an odd last node going up unhashed,
    in place in `nodes` (n x 32): the root ends in nodes[0]. False: a digest call failed."""
    n = starts.shape[0]
    base, out, scratch = buf.ctypes.data, nodes.ctypes.data, pair.ctypes.data
    for i in range(n):
        ok = _call3(init, ctx, md, 0) == 1
        ok = ok and _call3(update, ctx, base + starts[i], ends[i] - starts[i]) == 1
        if not (ok and _call3(final, ctx, out + 32 * i, 0) == 1):
            return False
    pair[0] = 1
    m = n
    while m > 1:
        half = m // 2
        for k in range(half):  # node k reads 2k and 2k+1, never below k
            pair[1:33] = nodes[2 * k]
            pair[33:65] = nodes[2 * k + 1]
            ok = _call3(init, ctx, md, 0) == 1 and _call3(update, ctx, scratch, 65) == 1
            if not (ok and _call3(final, ctx, out + 32 * k, 0) == 1):
                return False
        if m % 2:
            nodes[half] = nodes[m - 1]
        m = half + m % 2
    return True


class _Crypto:
    """libcrypto's EVP digest calls, and SHA-256 fetched once."""

    def __init__(self) -> None:
        import _hashlib  # noqa: F401  (loads the libcrypto hashlib uses, found first below)

        lib = None
        for name in ("libcrypto.so.3", ctypes.util.find_library("crypto")):
            if name:
                try:
                    lib = ctypes.CDLL(name)
                    break
                except OSError:
                    continue
        if lib is None or ctypes.sizeof(ctypes.c_void_p) != 8:
            raise OSError("no 64-bit libcrypto")
        lib.EVP_MD_fetch.restype = ctypes.c_void_p
        lib.EVP_MD_fetch.argtypes = (ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p)
        lib.EVP_MD_CTX_new.restype = ctypes.c_void_p
        lib.EVP_MD_CTX_free.argtypes = (ctypes.c_void_p,)
        self.lib = lib
        self.md = lib.EVP_MD_fetch(None, b"SHA256", None)  # OpenSSL 3 (kept for good)
        if not self.md:
            raise OSError("libcrypto gave no SHA256")
        self.calls = tuple(
            ctypes.cast(getattr(lib, f), ctypes.c_void_p).value or 0
            for f in ("EVP_DigestInit_ex", "EVP_DigestUpdate", "EVP_DigestFinal_ex")
        )

    def root(self, body: bytes) -> bytes | None:
        raw = np.frombuffer(body, dtype=np.uint8)
        cuts = np.flatnonzero(raw == 10)  # the lines' newlines
        n = cuts.shape[0] + 1
        buf = np.empty(raw.shape[0] + 1, dtype=np.uint8)  # 0x00, then body, each \n 0x00
        buf[0] = 0
        buf[1:] = raw
        buf[cuts + 1] = 0
        starts = np.empty(n, dtype=np.int64)
        starts[0], starts[1:] = 0, cuts + 1
        ends = np.empty(n, dtype=np.int64)
        ends[:-1], ends[-1] = cuts + 1, raw.shape[0] + 1
        nodes = np.empty((n, 32), dtype=np.uint8)
        ctx = self.lib.EVP_MD_CTX_new()
        if not ctx:
            return None
        try:
            ok = _root(buf, starts, ends, nodes, np.zeros(65, dtype=np.uint8), ctx, self.md,
                       *self.calls)  # fmt: skip
        finally:
            self.lib.EVP_MD_CTX_free(ctx)
        return nodes[0].tobytes() if ok else None


_crypto: _Crypto | None = None
_tried = False


def records_root(body: bytes, oracle: Callable[[bytes], bytes]) -> bytes | None:
    """The Merkle root of `body`'s newline-separated lines by the kernel, None when it
    cannot give it (the caller takes the Python tree). At first use the kernel's root of a
    test body must equal `oracle`'s, or the kernel is not used in this process."""
    global _crypto, _tried
    if not _tried:
        _tried = True
        try:
            c = _Crypto()
            probe = b"\n".join(b'{"tag":"T%d"}' % i for i in range(7))
            if c.root(probe) != oracle(probe) or c.root(b"") != oracle(b""):
                raise OSError("its root differs from hashlib's")
            _crypto = c
        except Exception as e:  # no libcrypto, an older one, no _hashlib: the Python tree
            log.warning("records rows hashed by hashlib (slower): libcrypto's SHA-256: %s", e)
    return None if _crypto is None else _crypto.root(body)
