"""The records row's Merkle kernel (engine/store/records/fastroot.py) against the Python
tree (merkle.py, itself held to RFC 6962 in test_merkle.py): the same root for any lines,
and the ledger's `records_root` the same either way."""

from __future__ import annotations

import ctypes

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.store import ledger
from engine.store.records import fastroot, merkle

pytestmark = pytest.mark.kernel

# Lines hold no newline (a records row is split on them); any other byte, NUL included
_line = st.binary(max_size=200).map(lambda b: b.replace(b"\n", b"\x00"))


def _oracle(body: bytes) -> bytes:
    return merkle.root(merkle.leaves(body.split(b"\n")))


def _kernel(body: bytes) -> bytes | None:
    return fastroot.records_root(body, _oracle)


def test_the_kernel_is_used_here() -> None:
    """libcrypto is on every machine this runs on: a fallback must not hide the kernel."""
    assert _kernel(b"a\nb") is not None
    assert fastroot._crypto is not None


@settings(max_examples=300, deadline=None)
@given(st.lists(_line, min_size=1, max_size=70))
def test_the_kernel_gives_the_python_trees_root(lines: list[bytes]) -> None:
    body = b"\n".join(lines)
    assert _kernel(body) == _oracle(body)


@settings(max_examples=30, deadline=None)
@given(st.lists(_line, min_size=1, max_size=70), st.integers(0, 69), st.binary(min_size=1))
def test_another_line_gives_another_root(lines: list[bytes], i: int, more: bytes) -> None:
    i %= len(lines)
    changed = [*lines]
    changed[i] = lines[i] + more.replace(b"\n", b"")
    if changed[i] != lines[i]:
        assert _kernel(b"\n".join(changed)) != _kernel(b"\n".join(lines))


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 100, 1023, 1025])
def test_the_ledgers_records_root_either_side_of_the_kernels_size(n: int) -> None:
    body = b"\n".join(b'{"tag":"T%d","seq":%d}' % (i % 7, i) for i in range(n))
    assert ledger.records_root(body) == _oracle(body)


def test_a_failing_digest_call_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """A digest call that fails (returns 0, as libcrypto does on an error) gives no root
    from the kernel, and the ledger then takes the Python tree's."""
    crypto = fastroot._crypto
    assert crypto is not None
    failing = fastroot._CALL(lambda a, b, c: 0)  # a C function pointer to Python
    address = ctypes.cast(failing, ctypes.c_void_p).value
    body = b"\n".join(b"line %d" % i for i in range(300))
    init, update, _ = crypto.calls
    monkeypatch.setattr(crypto, "calls", (init, update, address))
    assert crypto.root(body) is None
    assert ledger.records_root(body) == _oracle(body)


def test_without_libcrypto_the_python_tree_gives_the_root(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A machine whose libcrypto cannot be used: one warning, and the same roots."""

    def unusable(self: object) -> None:
        raise OSError("no 64-bit libcrypto")

    monkeypatch.setattr(fastroot, "_crypto", None)
    monkeypatch.setattr(fastroot, "_tried", False)
    monkeypatch.setattr(fastroot._Crypto, "__init__", unusable)
    body = b"\n".join(b'{"tag":"T1","seq":%d}' % i for i in range(500))
    with caplog.at_level("WARNING", logger="tagwatch.ledger"):
        assert _kernel(body) is None
        assert ledger.records_root(body) == _oracle(body)
    assert sum("hashed by hashlib" in r.message for r in caplog.records) == 1
