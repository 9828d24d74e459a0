"""`tagwatch watch`: the monitor's terminal console, live (a board redrawn in place) or
plain (a line per lifecycle record, for scripts and pipes).

The broker stream (persistent session, reconnect) is `engine/mqtt/watch.py`'s; the
board's rules are `engine/cli/board.py`'s; drawing is `engine/cli/live.py`'s. Here: the
options, the open alerts from the store at start, skipping records already shown, and
stopping cleanly (--count, --timeout, Ctrl-C, SIGTERM) so the live board's last frame
stays on the screen.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

from engine.errors import TagwatchError
from engine.mqtt import auth as mqttauth
from engine.mqtt.auth import MqttAuth
from engine.wire.alerts import Alert, encode_alert


def default_watch_id(subject: str = "+") -> str:
    """A console's client id, stable for one user on one host (and one --subject): the
    broker keeps its session, so a console started again sees what it missed."""
    import getpass
    import socket

    who = f"{getpass.getuser()}@{socket.gethostname()}"
    return f"tagwatch-watch-{who}" + ("" if subject == "+" else f"-{subject}")


def _store_alerts(args: argparse.Namespace, states: tuple[str, ...]) -> list[Alert]:
    """The store's current alerts in `states`, for --subject (read-only)."""
    from engine.store.casework.reader import open_reader

    with open_reader(args.db) as store:  # PostgreSQL: every shard's schema
        return [
            a
            for a in store.current_alerts()
            if a.state in states and args.subject in ("+", a.subject)
        ]


def _risk(path: str | None) -> dict[str, int]:
    if path is None:
        return {}
    from zones.load import load_subjects

    return {s.id: s.risk for s in load_subjects(path)}


class _Follow:
    """The broker's records, each shown once (the session may deliver again what the
    store already showed), until --count records were shown."""

    def __init__(self, args: argparse.Namespace, show: Callable[[Alert], None]) -> None:
        self.args = args
        self.show = show
        self.shown: set[bytes] = set()
        self.seen = 0

    def already(self, alerts: list[Alert]) -> None:
        self.shown.update(encode_alert(a) for a in alerts)

    async def run(
        self,
        said: Callable[[bool, str], None],
        on_status: Callable[[str | None, dict[str, str]], None] | None = None,
    ) -> None:
        from engine.mqtt.watch import alert_records

        args = self.args
        records = alert_records(
            args.broker, args.subject, client_kwargs=MqttAuth.from_args(args).kwargs(),
            reconnect_s=0.5, client_id=args.client_id or default_watch_id(args.subject),
            session_expiry_s=args.session_expiry, said=said, on_status=on_status,
        )  # fmt: skip
        async with contextlib.aclosing(records):
            async for alert in records:
                record = encode_alert(alert)
                if record in self.shown:
                    continue
                if len(self.shown) > 100_000:  # a long-running console: forget the oldest
                    self.shown.clear()
                self.shown.add(record)
                self.show(alert)
                self.seen += 1
                if args.count and self.seen >= args.count:
                    return


def _run_until_stopped(work: Coroutine[Any, Any, None], timeout: float) -> None:
    """Run `work` until it ends, `timeout` s pass (0: never), Ctrl-C or SIGTERM; each of
    them ends it normally, so context managers around this (the live board) close."""

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGTERM, task.cancel)
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(work, timeout or None)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


def _plain(args: argparse.Namespace) -> int:
    from engine.cli.console import AlertPrinter

    printer = AlertPrinter()
    follow = _Follow(args, printer.print)
    if args.db is not None:
        opened = _store_alerts(args, ("open",))
        from engine.store.sql.conn import describe

        print(f"open alerts in {describe(args.db)}: {len(opened)}", flush=True)
        for a in opened:
            printer.print(a)
        follow.already(opened)

    def said(_connected: bool, what: str) -> None:
        print(f"watch: {what}", file=sys.stderr, flush=True)

    _run_until_stopped(follow.run(said), args.timeout)
    return 0


def _live(args: argparse.Namespace) -> int:
    from rich.console import Console

    from engine.cli.board import Board, Status
    from engine.cli.live import LiveBoard

    console = Console(force_terminal=True if args.live else None, width=args.width)
    board = Board(keep_closed_s=args.keep_closed, risk=_risk(args.subjects))
    status = Status()
    opened = _store_alerts(args, ("open", "acknowledged")) if args.db is not None else []
    board.apply_all(opened, time.time())
    with LiveBoard(console, board, status) as view:
        follow = _Follow(args, view.apply)
        follow.already(opened)

        def said(connected: bool, what: str) -> None:
            status.heard_link(connected, what)
            view.touch()

        def heard(shard: str | None, engine: dict[str, str]) -> None:
            status.heard_engine(shard, engine)
            view.touch()

        async def run() -> None:
            drawing = asyncio.create_task(view.redraws())
            try:
                await follow.run(said, heard)
            finally:
                drawing.cancel()

        _run_until_stopped(run(), args.timeout)
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    if args.plain and args.live:
        raise TagwatchError("watch: --plain and --live exclude each other")
    if args.plain or not (args.live or sys.stdout.isatty()):
        return _plain(args)
    return _live(args)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sp = sub.add_parser(
        "watch",
        help="the monitor's console: alerts from a broker, live in place (or a line each)",
    )
    sp.add_argument("--broker", default="127.0.0.1:1883")
    sp.add_argument("--subject", default="+", help="one subject id (default: all)")
    sp.add_argument("--count", type=int, default=0, help="stop after N alert records")
    sp.add_argument("--timeout", type=float, default=0.0, help="stop after N seconds")
    sp.add_argument(
        "--client-id", help="MQTT client id of this console's persistent session (default:"
        " tagwatch-watch-USER@HOST[-SUBJECT]; give each console running at once its own)",
    )  # fmt: skip
    sp.add_argument(
        "--session-expiry", type=int, default=86_400, metavar="S",
        help="seconds the broker keeps the session (and queues alerts) while this console"
        " is away (default %(default)s)",
    )  # fmt: skip
    sp.add_argument("--db", help="the engine's alert store: show its open alerts first (read-only)")
    mode = sp.add_argument_group("display (default: live on a terminal, plain otherwise)")
    mode.add_argument(
        "--plain", action="store_true", help="a line per lifecycle record, as scripts read it"
    )
    mode.add_argument(
        "--live", action="store_true",
        help="the live board even when stdout is not a terminal (terminal codes forced)",
    )  # fmt: skip
    mode.add_argument("--width", type=int, help="live board width in columns (default: terminal's)")
    mode.add_argument(
        "--keep-closed", type=float, default=600.0, metavar="S",
        help="seconds a closed alert stays on the live board (default %(default)s)",
    )  # fmt: skip
    mode.add_argument(
        "--subjects", metavar="TOML",
        help="the subjects file: order alerts of equal severity by the subject's risk",
    )  # fmt: skip
    mqttauth.add_arguments(sp)
    sp.set_defaults(func=cmd_watch)
