"""The console's HTTP server: uvicorn, inside the engine's event loop, as one more task of
the serve command.

- The socket is bound before the engine starts (`HttpAddress.bind`): a port in use is a
  clear error at startup, not a log line later.
- The engine owns the signals: uvicorn's own handlers (which would replace the loop's
  SIGTERM handler and re-raise the signal after shutdown) are not installed. The server
  stops when the engine's `stopping` event is set, and lets open requests finish for at
  most 2 s.
- The engine never fails because of the console: an error in the server is logged and
  the server is gone, the engine goes on (`run` returns instead of raising)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn

from engine.console.app import Console, build_app
from engine.console.pages import Tiles
from engine.console.view import EngineView
from engine.errors import ConfigError
from engine.settings import Settings
from engine.store.access.accounts import AccountStore
from engine.store.casework.reader import open_reader

log = logging.getLogger("tagwatch.console")
# uvicorn's own INFO lines ("Started server process") say less than ours; its errors stay
logging.getLogger("uvicorn.error").setLevel(logging.WARNING)


@dataclass(frozen=True)
class HttpAddress:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> HttpAddress:
        """HOST:PORT, [IPv6]:PORT, or :PORT / PORT (127.0.0.1: the console is for this
        host unless asked otherwise)."""
        host, sep, port = text.rpartition(":")
        if not sep:
            host, port = "", text
        host = host.strip("[]") or "127.0.0.1"
        if not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ConfigError(f"--http {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
        return cls(host, int(port))

    def bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            return socket.create_server((self.host, self.port), family=family, backlog=128)
        except OSError as e:
            raise ConfigError(
                f"--http: cannot listen on {self.host}:{self.port}: {e.strerror or e}"
            ) from None


class _Embedded(uvicorn.Server):
    """uvicorn without its signal handlers: the engine's loop has its own."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ConsoleServer:
    """The console on a bound socket, with its own store connections (accounts and a
    read-only alert reader), until `run()` sees the engine stop."""

    def __init__(
        self,
        sock: socket.socket,
        db: str,
        engine: EngineView,
        settings: Settings,
        *,
        certfile: str | None = None,
        keyfile: str | None = None,
        tiles: str | None = None,
    ) -> None:
        """`tiles`: a directory of Z/X/Y.png map tiles or a tile URL template (pages.py)."""
        self.sock = sock
        self.accounts = AccountStore(db)
        try:  # a PostgreSQL URL naming no schema: every shard's alerts
            self.reader = open_reader(db)
        except BaseException:
            self.accounts.close()
            raise
        self.console = Console(
            self.accounts, self.reader, engine, settings, tls=bool(certfile),
            tiles=Tiles.parse(tiles),
        )  # fmt: skip
        self.config = uvicorn.Config(
            build_app(self.console),
            ssl_certfile=certfile,
            ssl_keyfile=keyfile,
            lifespan="off",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        host, port = sock.getsockname()[:2]
        scheme = "https" if certfile else "http"
        self.url = f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}/"

    async def run(self, stopping: asyncio.Event) -> None:
        server = _Embedded(self.config)

        async def stop_with_the_engine() -> None:
            await stopping.wait()
            server.should_exit = True

        watcher = asyncio.create_task(stop_with_the_engine())
        feed = asyncio.create_task(self.console.feed.run(stopping), name="console-feed")
        log.info("console at %s", self.url)
        try:
            await server.serve(sockets=[self.sock])
        except (Exception, SystemExit) as e:  # uvicorn exits on a failed startup
            log.error("console stopped (the engine goes on): %s", e or type(e).__name__)
        finally:
            watcher.cancel()
            feed.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await feed
            self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        self.reader.close()
        self.accounts.close()
