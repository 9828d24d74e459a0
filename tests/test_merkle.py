"""The step row's Merkle tree (engine/store/records/merkle.py) against RFC 6962's recursive
definitions, written out here as the oracle."""

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.store.records import merkle


def _mth(d: list[bytes]) -> bytes:
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = 1
    while k * 2 < len(d):
        k *= 2
    return hashlib.sha256(b"\x01" + _mth(d[:k]) + _mth(d[k:])).digest()


def _path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = 1
    while k * 2 < len(d):
        k *= 2
    if m < k:
        return [*_path(m, d[:k]), _mth(d[k:])]
    return [*_path(m - k, d[k:]), _mth(d[:k])]


datas = st.lists(st.binary(max_size=12), min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(datas, st.data())
def test_root_and_path_are_rfc6962s(d, data):
    leaves = [merkle.leaf(x) for x in d]
    assert merkle.root(leaves) == _mth(d)
    i = data.draw(st.integers(0, len(d) - 1))
    p = merkle.path(leaves, i)
    assert p == _path(i, d)
    assert merkle.root_from_path(leaves[i], i, len(d), p) == _mth(d)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=8), min_size=2, max_size=30), st.data())
def test_a_proof_fails_for_another_leaf_index_or_size(d, data):
    leaves = [merkle.leaf(x) for x in d]
    i = data.draw(st.integers(0, len(d) - 1))
    p = merkle.path(leaves, i)
    top = merkle.root(leaves)
    other = merkle.leaf(d[i] + b"x")
    assert merkle.root_from_path(other, i, len(d), p) != top
    j = (i + 1) % len(d)
    if d[j] != d[i]:
        assert merkle.root_from_path(leaves[i], j, len(d), p) != top
    assert merkle.root_from_path(leaves[i], len(d), len(d), p) is None


def test_the_empty_tree():
    assert merkle.root([]) == hashlib.sha256(b"").digest()
