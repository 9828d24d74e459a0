"""Tamper -> alert while the live engine drains a backlog, with and without the priority
lane (bench/backlog.py has the scenario), side by side in one run.

    python -m pytest bench/bench_backlog.py --benchmark-only -s -q -p no:cacheprovider

Targets (issue 16): tamper -> alert p99 < 1 s while fixes are backlogged (the one-lane run
is the baseline: a strap cut waits for every fix queued before it); the live drain >= 0.8
of a bare paho subscriber's rate on the same backlog; gateway batches >= 500,000 fixes/s
(`test_gateway_batches`). TAGWATCH_BENCH_BACKLOG
= "TAGS,FIXES" sizes it (default 10000,60000)."""

from __future__ import annotations

import os

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from bench.backlog import (
    BacklogFigures,
    run_backlog,
    run_bare_paho,
    run_gateway,
    run_gateway_shards,
)
from engine.broker.process import find_mosquitto

pytestmark = pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed")

TAGS, FIXES = map(int, os.environ.get("TAGWATCH_BENCH_BACKLOG", "10000,60000").split(","))


def test_tamper_ahead_of_a_backlog(benchmark: BenchmarkFixture, record_property) -> None:  # type: ignore[no-untyped-def]
    figs: dict[bool, BacklogFigures] = {}

    bare: list[float] = []

    def all_three() -> None:
        bare.append(run_bare_paho(TAGS, FIXES))
        for lane in (True, False):
            figs[lane] = run_backlog(lane, TAGS, FIXES, events=40)

    benchmark.pedantic(all_three, rounds=1, iterations=1)
    lane, one = figs[True], figs[False]
    ratio = one.pct(99) / lane.pct(99)
    drain = lane.fixes / lane.drain_s
    summary = (
        f"tamper -> alert under a {FIXES}-fix backlog: p99 {lane.pct(99) * 1000:.0f} ms with"
        f" the priority lane, {one.pct(99) * 1000:.0f} ms without ({ratio:.0f}x); live drain"
        f" {drain:.0f} fixes/s = {drain / bare[0]:.2f} of a bare paho subscriber's"
        f" {bare[0]:.0f}/s"
    )
    print("\n" + lane.line() + "\n" + one.line() + "\n" + summary)
    record_property("bench_summary", summary)
    assert len(lane.lags) == lane.events and len(one.lags) == one.events
    assert lane.pct(99) < 1.0, summary
    assert drain >= 0.8 * bare[0], summary


def test_gateway_batches(benchmark: BenchmarkFixture, record_property) -> None:  # type: ignore[no-untyped-def]
    rates: dict[str, float] = {}

    def both() -> None:
        for form in ("msgpack", "json"):
            rates[form] = run_gateway(TAGS, 2 * FIXES, 1000, form)

    benchmark.pedantic(both, rounds=1, iterations=1)
    summary = (
        f"gateway batches of 1000 from a {2 * FIXES}-fix backlog: msgpack"
        f" {rates['msgpack']:.0f} fixes/s, JSON {rates['json']:.0f} fixes/s (target 500,000)"
    )
    print("\n" + summary)
    record_property("bench_summary", summary)
    assert rates["msgpack"] >= 500_000, summary


def test_gateway_batches_one_engine_and_two_shards(
    benchmark: BenchmarkFixture, record_property
) -> None:  # type: ignore[no-untyped-def]
    """A subject a tag, so that `serve --shard i/2` splits the fleet: every shard takes
    every batch and decides its own tags' elements, each on a core of its own."""
    rates: dict[int, float] = {}

    def both() -> None:
        for n in (1, 2):
            rates[n] = run_gateway_shards(n, TAGS, 2 * FIXES)

    benchmark.pedantic(both, rounds=1, iterations=1)
    summary = (
        f"gateway batches of 1000 (msgpack), a subject a tag: one engine {rates[1]:.0f}"
        f" fixes/s, two shards {rates[2]:.0f} fixes/s together ({rates[2] / rates[1]:.2f}x;"
        " target 500,000)"
    )
    print("\n" + summary)
    record_property("bench_summary", summary)
    assert rates[2] >= 500_000, summary


def test_gateway_a_records_row_a_step_against_a_row_a_record(
    benchmark: BenchmarkFixture, record_property
) -> None:  # type: ignore[no-untyped-def]
    """One engine, the same gateway backlog, the ledger written a records row per step
    (the default) and a row per record (the layout before, `ledger_rows = "record"`), on a
    backlog of 4x the usual so the row-per-record index shows some of its growth."""
    rates: dict[str, float] = {}

    def both() -> None:
        for rows in ("record", "step"):
            rates[rows] = run_gateway_shards(1, TAGS, 8 * FIXES, settings=f'ledger_rows = "{rows}"')

    benchmark.pedantic(both, rounds=1, iterations=1)
    summary = (
        f"gateway batches, one engine, {8 * FIXES} fixes: a records row a step"
        f" {rates['step']:.0f} fixes/s, a row a record {rates['record']:.0f}"
        f" ({rates['step'] / rates['record']:.2f}x)"
    )
    print("\n" + summary)
    record_property("bench_summary", summary)
    assert rates["step"] > rates["record"], summary
