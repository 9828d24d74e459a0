"""Finding and running mosquitto: a private broker process for the tests and the demo.

Installing mosquitto is not the engine's business: `make mosquitto`
(scripts/ensure-mosquitto.sh) installs Debian's package when run as root."""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from engine.errors import BrokerError


def die_with_parent() -> None:
    """In a child before exec (Popen preexec_fn): Linux sends it SIGTERM when the thread
    that started it dies, even by kill -9, so a killed demo leaves no engine or broker
    behind holding ports and sessions. Elsewhere (no prctl) nothing happens."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
_LOOPBACK = "127.0.0.1"
# How to get mosquitto, for every message that finds it missing.
INSTALL_HINT = "install it with `sudo apt-get install mosquitto`, or run `make mosquitto` as root"

# What a production broker for tagwatch needs, shared by the repo's deploy/mosquitto.conf,
# `tagwatch broker-config` and the brokers tests and the demo start. The engine holds a
# persistent session (fixed client id, no clean start, session expiry), so while it is down
# or restarting the broker queues its messages: size the queue for a long outage. 2 M
# messages is 1400 tags at one fix a minute for a day (~0.3 GB of payload); beyond it
# mosquitto drops the newest, so alert on its $SYS queue figures well before.
BROKER_QUEUE_OPTIONS: tuple[str, ...] = (
    "max_queued_messages 2000000",
    "max_queued_bytes 1073741824",
    # QoS 1 messages in flight per v3 client; v5 clients (the engine) set Receive Maximum
    "max_inflight_messages 1000",
    "persistent_client_expiration 14d",
    # Nagle off on client sockets: an alert record otherwise waits for the monitor's
    # delayed ACK of the one before it (tens of ms)
    "set_tcp_nodelay true",
)
BROKER_PERSISTENCE_OPTIONS: tuple[str, ...] = (
    "persistence true",
    "autosave_interval 10",  # seconds: what a broker crash (not a clean restart) can lose
)
DURABLE_BROKER_OPTIONS = BROKER_PERSISTENCE_OPTIONS + BROKER_QUEUE_OPTIONS
# Everything but debug messages and the per-message lines.
BROKER_LOG_TYPES: tuple[str, ...] = tuple(
    f"log_type {t}" for t in ("error", "warning", "notice", "information")
)

_live: set[MosquittoProcess] = set()  # killed at exit if still running


def find_mosquitto() -> str | None:
    """Path of the mosquitto binary: PATH first, then Debian's and a local install's sbin."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for path in MOSQUITTO_CANDIDATES:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def free_port(host: str = _LOOPBACK) -> int:
    """A TCP port that is free on `host` right now (another process may still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class MosquittoProcess:
    """A private mosquitto on a loopback port, configured in `workdir`, for tests and the demo.

    Usable as a context manager or via start()/stop(). The process runs in its own session
    so Ctrl-C on the caller does not reach it; anything still running at interpreter exit
    is killed. restart() keeps the port and the persistence directory.
    """

    def __init__(
        self,
        port: int | None = None,
        workdir: str | os.PathLike[str] | None = None,
        *,
        persistence: bool = False,
        max_inflight_messages: int | None = None,
        max_queued_messages: int | None = None,
        extra_config: Sequence[str] = (),
        executable: str | None = None,
        start_timeout: float = 10.0,
        die_with_parent: bool = False,
    ) -> None:
        """`die_with_parent`: the broker gets SIGTERM when the thread that starts it dies,
        even by kill -9 (see `die_with_parent`; start it from the main thread)."""
        exe = executable or find_mosquitto()
        if exe is None:
            raise BrokerError(f"mosquitto is not installed: {INSTALL_HINT}")
        self.executable = exe
        self.die_with_parent = die_with_parent
        self._port = port
        self._auto_port = port is None
        self._started = False
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="tagwatch-mosquitto-"))
        self.persistence = persistence
        self.max_inflight_messages = max_inflight_messages
        self.max_queued_messages = max_queued_messages
        self.extra_config = list(extra_config)
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None

    # -- addresses ------------------------------------------------------------------------
    @property
    def host(self) -> str:
        return _LOOPBACK

    @property
    def port(self) -> int:
        if self._port is None:
            self._port = free_port()
        return self._port

    @property
    def url(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def config_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    @property
    def persistence_dir(self) -> Path:
        return self.workdir / "persist"

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of mosquitto's log and its stderr, for error messages."""
        out: list[str] = []
        for path in (self.workdir / "mosquitto.stderr", self.log_path):
            if path.exists():
                out += path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(out) or "(no log output)"

    # -- lifecycle ------------------------------------------------------------------------
    def config_text(self) -> str:
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            f"log_dest file {self.log_path}",
            *BROKER_LOG_TYPES,
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        ]
        if os.geteuid() == 0:  # else mosquitto drops to user "mosquitto" and cannot write here
            lines.append(f"user {pwd.getpwuid(os.geteuid()).pw_name}")
        explicit = {"max_inflight_messages": self.max_inflight_messages,
                    "max_queued_messages": self.max_queued_messages}  # fmt: skip
        lines += [o for o in BROKER_QUEUE_OPTIONS if explicit.get(o.split()[0]) is None]
        if self.persistence:
            lines += [*BROKER_PERSISTENCE_OPTIONS, f"persistence_location {self.persistence_dir}/"]
        if self.max_inflight_messages is not None:
            lines.append(f"max_inflight_messages {self.max_inflight_messages}")
        if self.max_queued_messages is not None:
            lines.append(f"max_queued_messages {self.max_queued_messages}")
        return "\n".join([*lines, *self.extra_config, ""])

    def start(self) -> MosquittoProcess:
        """Write the config, start mosquitto and wait until its port accepts connections.

        If the port was chosen here and another process took it first, the first start
        retries on a new port; later starts (restart()) always keep the port.
        """
        if self.running:
            return self
        for attempt in range(3):
            try:
                return self._start_once()
            except BrokerError:
                if not self._auto_port or self._started or attempt == 2:
                    raise
                self._port = None
        raise AssertionError("unreachable")

    def _start_once(self) -> MosquittoProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.persistence:
            self.persistence_dir.mkdir(exist_ok=True)
        self.config_path.write_text(self.config_text())
        with (self.workdir / "mosquitto.stderr").open("ab") as err:
            self.proc = subprocess.Popen(
                [self.executable, "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                start_new_session=True,
                preexec_fn=die_with_parent if self.die_with_parent else None,
            )
        _live.add(self)
        deadline = time.monotonic() + self.start_timeout
        # The port being open only counts while our process lives: someone else may hold it.
        while not (_port_open(self.host, self.port) and self.proc.poll() is None):
            code = self.proc.poll()
            if code is not None:
                _live.discard(self)
                raise BrokerError(
                    f"mosquitto exited ({_exit_reason(code)}) while starting on {self.url}; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise BrokerError(
                    f"mosquitto did not accept connections on {self.url} within "
                    f"{self.start_timeout:.0f} s; log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.02)
        self._started = True
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (mosquitto saves its persistence file), then SIGKILL after `timeout`."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        _live.discard(self)

    def kill(self) -> None:
        """SIGKILL without warning: a crashed broker, for fault tests."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        _live.discard(self)

    def restart(self) -> MosquittoProcess:
        """Stop if running, then start again on the same port with the same persistence."""
        self.stop()
        return self.start()

    def cleanup(self) -> None:
        """Stop, and remove the working directory if this object created it."""
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> MosquittoProcess:
        try:
            return self.start()
        except BaseException:
            self.cleanup()  # __exit__ is not called when __enter__ raises
            raise

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"MosquittoProcess({self.url}, {state}, workdir={str(self.workdir)!r})"


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_live):
        proc.stop(timeout=2.0)


def _exit_reason(code: int) -> str:
    return f"signal {signal.Signals(-code).name}" if code < 0 else f"code {code}"
