"""The one place numba options live: every kernel is compiled with these."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import numba

F = TypeVar("F", bound=Callable[..., Any])

# cache: compiled kernels survive process restarts (the engine must come up fast).
# nogil: kernels release the GIL so the asyncio edge keeps receiving while they run.
# No fastmath: it assumes no NaN/inf, and a NaN fix must never read as "inside".
JIT_OPTIONS: dict[str, Any] = {"cache": True, "nogil": True}

JIT_DISABLED = os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0")


def njit(fn: F) -> F:
    """Compile `fn` with the project's numba options."""
    return numba.njit(**JIT_OPTIONS)(fn)  # type: ignore[no-any-return]


def njit_inline(fn: F) -> F:
    """`njit`, and inlined into its callers before they are compiled: for a helper called
    per pair that takes a bundle of arrays (`ZoneArrays`), which as a real call would pass
    every array's fields and count references to each of them on every call."""
    return numba.njit(inline="always", **JIT_OPTIONS)(fn)  # type: ignore[no-any-return]
