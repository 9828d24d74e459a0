"""A gateway's msgpack batch into columns: the columnar kernel (engine/wire/columnar.py)
against the way it went before, in the same run: msgspec's typed decoder (one struct an
element), then the fields read back into lists and numpy arrays. Both for one engine (every
element its own) and for one of two shards (half the tags another's: the kernel skips
them, the baseline decodes them and drops them by a mask).

    python -m pytest bench/bench_columnar.py --benchmark-only -s -q -p no:cacheprovider

Target: the kernel at least twice as fast as the baseline (5.5-6x on the 2-core machine
of stop 28)."""

from __future__ import annotations

import random

import msgspec
import numpy as np
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from engine.wire.columnar import SKIP, TagLookup, scan
from engine.wire.fastpath import _DTYPES, DEC_FIX_LINES_MSGPACK, TagTable, fix_fields

SEED = 20261205
TAGS = 10_000
PER_MSG = 1000
MSGS = 60
_TIMES: dict[str, float] = {}


def _messages() -> list[bytes]:
    rng = random.Random(SEED)
    out = []
    for m in range(MSGS):
        batch = []
        for k in range(PER_MSG):
            el = {"tag": f"B{rng.randrange(TAGS)}", "seq": m * PER_MSG + k,
                  "t": 1.7e9 + rng.uniform(0, 3600), "lat": 51.5 + rng.uniform(-0.1, 0.1),
                  "lon": -0.12 + rng.uniform(-0.1, 0.1), "acc": round(rng.uniform(3, 30), 1)}  # fmt: skip
            if rng.random() < 0.2:
                el["batt"] = rng.randrange(101)
            batch.append(el)
        out.append(msgspec.msgpack.encode(batch))
    return out


MESSAGES = _messages()
NAMES = [f"B{i}" for i in range(TAGS)]
TABLE = TagTable()
TABLE.names = list(NAMES)
CODE = {t: i for i, t in enumerate(NAMES)}
WHOLE = TagLookup(NAMES, list(range(TAGS)))
HALF = TagLookup(NAMES, [i if i % 2 else SKIP for i in range(TAGS)])  # a shard's


def _kernel(lookup: TagLookup) -> int:
    n = 0
    for payload in MESSAGES:
        cols = scan(payload, lookup, TABLE)
        assert cols is not None
        n += len(cols)
    return n


def _typed(half: bool) -> int:
    """As before the kernel: structs, the fields as lists, the lists as arrays."""
    n = 0
    for payload in MESSAGES:
        lines = DEC_FIX_LINES_MSGPACK.decode(payload)
        codes = np.array([CODE[s.tag] for s in lines], dtype=np.int32)
        if half:
            mine = codes % 2 == 1
            lines = [s for s, m in zip(lines, mine.tolist(), strict=True) if m]
            codes = codes[mine]
        cols = [np.array(c, dtype=d) for c, d in zip(fix_fields(lines), _DTYPES, strict=True)]
        n += cols[0].shape[0]
    return n


@pytest.mark.parametrize("who", ["one engine", "one of two shards"])
def test_kernel(benchmark: BenchmarkFixture, who: str) -> None:
    lookup = WHOLE if who == "one engine" else HALF
    n = benchmark.pedantic(_kernel, args=(lookup,), rounds=5, iterations=1, warmup_rounds=1)
    _TIMES[f"kernel {who}"] = benchmark.stats.stats.median
    assert n == (MSGS * PER_MSG if who == "one engine" else _typed(True))


@pytest.mark.parametrize("who", ["one engine", "one of two shards"])
def test_typed_decoder_baseline(benchmark: BenchmarkFixture, who: str) -> None:
    benchmark.pedantic(_typed, args=(who != "one engine",), rounds=5, iterations=1)
    base = _TIMES[f"typed {who}"] = benchmark.stats.stats.median
    kern = _TIMES.get(f"kernel {who}")
    if kern is None:
        pytest.skip("run with the kernel's benchmark (the whole file)")
    per = 1e9 / (MSGS * PER_MSG)
    print(f"\n{who}: kernel {kern * per:.0f} ns, typed decoder {base * per:.0f} ns an element"
          f" ({base / kern:.1f}x)")  # fmt: skip
    assert base / kern >= 2.0
