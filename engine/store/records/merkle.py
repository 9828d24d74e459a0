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
from typing import cast

_sha = hashlib.sha256


def leaf(data: bytes) -> bytes:
    return _sha(b"\x00" + data).digest()


def node(left: bytes, right: bytes) -> bytes:
    return _sha(b"\x01" + left + right).digest()


def levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """The tree bottom-up: the leaves, then each level's nodes, an odd last node going up
    unhashed, to the root alone (MTH for every n; none for no leaves)."""
    sha, level = _sha, list(leaves)
    out = [level]
    while len(level) > 1:  # node() inline: this runs once per record a step holds
        up = [sha(b"\x01" + a + b).digest() for a, b in zip(level[::2], level[1::2], strict=False)]
        if len(level) % 2:
            up.append(level[-1])
        out.append(up)
        level = up
    return out


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH of the leaf hashes (sha256 of nothing for none)."""
    if not leaves:
        return _sha(b"").digest()
    return levels(leaves)[-1][0]


def leaves(lines: Sequence[bytes]) -> list[bytes]:
    """leaf() of each line."""
    sha = _sha
    return [sha(b"\x00" + x).digest() for x in lines]


def path(tree: Sequence[bytes] | list[list[bytes]], i: int) -> list[bytes]:
    """RFC 6962 PATH(i, D[n]): the sibling hashes from leaf i up to the root, of the leaf
    hashes or of their `levels` (a reader proving many records of one row builds those
    once): at each level the node's sibling, none for an odd last node going up alone."""
    lv = tree if tree and isinstance(tree[0], list) else levels(cast("Sequence[bytes]", tree))
    lv = cast("list[list[bytes]]", lv)
    if not lv or not 0 <= i < len(lv[0]):
        raise IndexError(f"leaf {i} of {len(lv[0]) if lv else 0}")
    out: list[bytes] = []
    for level in lv[:-1]:
        j = i ^ 1
        if j < len(level):
            out.append(level[j])
        i >>= 1
    return out


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
