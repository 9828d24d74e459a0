"""Benchmark collection: make the repo importable and collect bench_*.py files."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    # `pytest bench` must find bench_*.py; a file named on the command line is collected
    # by pytest itself, so skip it here to avoid collecting it twice.
    if (
        file_path.suffix == ".py"
        and file_path.name.startswith("bench_")
        and not parent.session.isinitpath(file_path)
    ):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the baseline ratios benchmarks recorded (record_property "bench_summary")."""
    lines = [
        str(value)
        for report in terminalreporter.stats.get("passed", [])
        for key, value in getattr(report, "user_properties", [])
        if key == "bench_summary"
    ]
    if lines:
        terminalreporter.section("baseline ratios")
        for line in lines:
            terminalreporter.write_line(line)
