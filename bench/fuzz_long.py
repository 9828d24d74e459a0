"""The long fuzzing run behind `make fuzz`: every hypothesis target in tests/test_fuzz.py
with many random examples (default 100 000 each), one pytest process per target.

    python bench/fuzz_long.py [--examples N] [--jobs J] [-k SUBSTRING]

`make test` runs the same targets briefly and derandomized (reproducible in CI); this run
is random, so each run explores new inputs. A failure prints hypothesis's minimal example
and a reproduction blob (`@reproduce_failure`); fix the bug, then pin the example with
`@example` in tests/test_fuzz.py. Logs go to run/fuzz/. Exit status 1 if any target fails.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FILE = "tests/test_fuzz.py"
_STATS = re.compile(r"(\d+) passing, (\d+) failing, and (\d+) invalid")


def targets() -> list[str]:
    """Names of the @given tests in tests/test_fuzz.py."""
    sys.path.insert(0, str(ROOT))
    import tests.test_fuzz as mod

    return [
        name
        for name, fn in vars(mod).items()
        if name.startswith("test_") and hasattr(fn, "hypothesis")
    ]


def run(name: str, examples: int, logs: Path) -> tuple[str, int, int, int, float, int]:
    """(name, passing, failing, invalid, seconds, exit status) of one target."""
    env = {**os.environ, "TAGWATCH_FUZZ_EXAMPLES": str(examples), "PYTHONHASHSEED": "0"}
    cmd = [
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
        "--hypothesis-show-statistics", f"{FILE}::{name}",
    ]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    secs = time.perf_counter() - t0
    out = proc.stdout + proc.stderr
    (logs / f"{name}.log").write_text(out)
    counts = [tuple(map(int, m.groups())) for m in _STATS.finditer(out)]
    passing = sum(c[0] for c in counts)
    failing = sum(c[1] for c in counts)
    invalid = sum(c[2] for c in counts)
    return name, passing, failing, invalid, secs, proc.returncode


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=100_000, help="examples per target")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="targets at once")
    ap.add_argument("-k", default="", help="only targets whose name contains this")
    args = ap.parse_args(argv)
    names = [n for n in targets() if args.k in n]
    logs = ROOT / "run" / "fuzz"
    logs.mkdir(parents=True, exist_ok=True)
    print(f"fuzzing {len(names)} targets x {args.examples} examples, {args.jobs} at a time")
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        jobs = [pool.submit(run, n, args.examples, logs) for n in names]
        results = []
        for job in jobs:
            r = job.result()
            results.append(r)
            name, passing, _failing, invalid, secs, rc = r
            status = "ok" if rc == 0 else f"FAILED (see run/fuzz/{name}.log)"
            print(
                f"  {name:<48} {passing:>8} passing {invalid:>7} invalid {secs:>8.1f} s  {status}",
                flush=True,
            )
    total = time.perf_counter() - t0
    failed = [r[0] for r in results if r[5] != 0]
    print(
        f"{sum(r[1] for r in results)} examples in {total:.0f} s; "
        + (f"{len(failed)} failed: {', '.join(failed)}" if failed else "no failures")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
