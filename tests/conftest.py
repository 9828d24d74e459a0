"""Shared pytest fixtures: brokers (a real mosquitto on a free loopback port), a real
PostgreSQL (a throwaway cluster, tests/pgkit.py) and a store target on either database."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.broker.process import MosquittoProcess, find_mosquitto
from tests.pgkit import PgCluster, find_bindir

# -- brokers ------------------------------------------------------------------------------


def _require_mosquitto() -> str:
    """mosquitto's path; without it, fail under CI (it must be there) and skip elsewhere."""
    exe = find_mosquitto()
    if exe is None:
        msg = "mosquitto is not installed; `make test` installs it (scripts/ensure-mosquitto.sh)"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {msg}", pytrace=False)
        pytest.skip(msg)
    return exe


def _mosquitto(tmp_path: Path, persistence: bool) -> Iterator[MosquittoProcess]:
    proc = MosquittoProcess(
        workdir=tmp_path / "mosquitto", persistence=persistence, executable=_require_mosquitto()
    )
    with proc:
        yield proc


@pytest.fixture
def mosquitto_path() -> str:
    """Path of the mosquitto binary, for tests that run their own MosquittoProcess."""
    return _require_mosquitto()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoProcess]:
    """A real mosquitto on a free loopback port; config and log in tmp_path/mosquitto."""
    yield from _mosquitto(tmp_path, persistence=False)


@pytest.fixture
def mosquitto_persistent(tmp_path: Path) -> Iterator[MosquittoProcess]:
    """As `mosquitto`, with persistence on: sessions and retained messages survive restart()."""
    yield from _mosquitto(tmp_path, persistence=True)


# -- PostgreSQL ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One throwaway PostgreSQL cluster for the session; without the binaries, fail under
    CI (they must be there) and skip elsewhere."""
    bindir = find_bindir()
    if bindir is None:
        msg = (
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb); `make test`"
            " installs it (scripts/ensure-postgresql.sh)"
        )
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {msg}", pytrace=False)
        pytest.skip(msg)
    cluster = PgCluster(bindir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> str:
    """The URL of a fresh, empty database (password included: never to be printed)."""
    return pg_cluster.database()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A `--db` target on each database: a file in tmp_path, or a fresh database's URL."""
    if request.param == "sqlite":
        return str(tmp_path / "tagwatch.db")
    return str(request.getfixturevalue("pg_url"))
