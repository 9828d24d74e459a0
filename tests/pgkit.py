"""A throwaway PostgreSQL cluster for the tests: Debian's postgresql binaries, initdb into
a temporary folder, the server on a free loopback port (its unix socket in that folder
too), trust authentication for the one superuser `tagwatch`, stopped and removed at the
end. initdb refuses to run as root: as root, the cluster runs as `nobody`.

`PgCluster.database()` makes a fresh, empty database and returns its URL."""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg

USER = "tagwatch"
PASSWORD = "s3cret-pw"  # set for the tests that check it is never printed


def find_bindir() -> Path | None:
    """The newest installed PostgreSQL's bin folder (with initdb and pg_ctl), or None."""
    env = os.environ.get("TAGWATCH_PG_BINDIR")
    cands = [env] if env else sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for d in cands:
        if d and (Path(d) / "initdb").is_file() and (Path(d) / "pg_ctl").is_file():
            return Path(d)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgCluster:
    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="tagwatch-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._names = itertools.count(1)
        self._as: list[str] = []
        if os.geteuid() == 0:  # initdb and postgres refuse root
            self._as = ["runuser", "-u", "nobody", "--"]
            os.chmod(self.root, 0o755)
            self.data.mkdir(mode=0o700)
            shutil.chown(self.data, "nobody", "nogroup")

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        pw = self.root / "pw"
        pw.write_text(PASSWORD)
        os.chmod(pw, 0o644)
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", USER, "-E", "UTF8",
            "--no-locale", "--auth-local=trust", "--auth-host=scram-sha-256",
            f"--pwfile={pw}", "--no-sync",
        )  # fmt: skip
        opts = (
            f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1"
            " -c max_connections=200 -c shared_buffers=32MB -c fsync=on"
        )
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", opts,
            "-l", str(self.data / "server.log"), "-w", "-t", "60", "start",
        )  # fmt: skip

    @property
    def admin_url(self) -> str:
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/postgres"

    def url(self, db: str) -> str:
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{db}"

    def database(self) -> str:
        """A new empty database; its URL."""
        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.admin_url, autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
