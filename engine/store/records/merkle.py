"""The Merkle tree over a step's records (RFC 6962 section 2.1, as Certificate
Transparency logs use it), so one ledger row can hold a whole step and still prove any
one record alone.

    leaf(d)        sha256(0x00 || d)
    node(l, r)     sha256(0x01 || l || r)
    root(leaves)   MTH: the tree whose left part holds the largest power of two below n

An evidence pack then shows a fix's body, its index and the hashes on its path to the
root (about log2 n of them): it proves that fix was in the chained row without showing
any other person's position. `path` and `root_from_path` are RFC 6962's PATH and its
check (2.1.1); `root` builds the same tree bottom-up, an odd last node going up a level
unhashed, which gives the MTH for every n."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

_sha = hashlib.sha256


def leaf(data: bytes) -> bytes:
    return _sha(b"\x00" + data).digest()


def node(left: bytes, right: bytes) -> bytes:
    return _sha(b"\x01" + left + right).digest()


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH of the leaf hashes (sha256 of nothing for none)."""
    if not leaves:
        return _sha(b"").digest()
    sha, level = _sha, list(leaves)
    while len(level) > 1:  # node() inline: this runs once per record a step holds
        up = [sha(b"\x01" + a + b).digest() for a, b in zip(level[::2], level[1::2], strict=False)]
        if len(level) % 2:
            up.append(level[-1])
        level = up
    return level[0]


def leaves(lines: Sequence[bytes]) -> list[bytes]:
    """leaf() of each line."""
    sha = _sha
    return [sha(b"\x00" + x).digest() for x in lines]


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def path(leaves: Sequence[bytes], i: int) -> list[bytes]:
    """RFC 6962 PATH(i, D[n]): the sibling hashes from leaf i up to the root."""
    if not 0 <= i < len(leaves):
        raise IndexError(f"leaf {i} of {len(leaves)}")
    out: list[bytes] = []
    lo, hi = 0, len(leaves)
    while hi - lo > 1:
        k = _split(hi - lo)
        if i < lo + k:
            out.append(root(leaves[lo + k : hi]))
            hi = lo + k
        else:
            out.append(root(leaves[lo : lo + k]))
            lo += k
    return out[::-1]


def root_from_path(leaf_hash: bytes, i: int, n: int, siblings: Sequence[bytes]) -> bytes | None:
    """The root a leaf at index i of n leaves and its path give (None: the path does not
    fit a tree of n leaves)."""
    if not 0 <= i < n:
        return None
    fn, sn, r = i, n - 1, leaf_hash
    for p in siblings:
        if sn == 0:
            return None
        if fn % 2 == 1 or fn == sn:
            r = node(p, r)
            while fn % 2 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None
