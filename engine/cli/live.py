"""Drawing the console's board with rich: a status line over a table, redrawn in place.

The board (`engine/cli/board.py`) decides which rows there are and in what order; this
module only colours and lays them out. Everything runs on the event loop's thread (no
auto-refresh thread), so the board is never read while a record is being applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from types import TracebackType

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from engine.cli.board import COLUMNS, Board, Row, Status, cells, counts_text, fmt_local
from engine.wire.alerts import Alert

SEVERITY_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan"}
LINK_STYLE = {"connected": "green", "connecting": "yellow", "reconnecting": "bold yellow"}
TITLE = "tagwatch watch"  # the status line starts with it (tests find each frame by it)
CHROME_LINES = 6  # status line, table borders and header, the "more" line


def _row_style(r: Row, now: float) -> str:
    if r.is_new_critical(now):
        return "bold white on red"
    if r.state == "closed":
        return "dim"
    if r.alert.severity == "critical":
        return "bold red"
    return ""


def status_line(board: Board, status: Status, now: float) -> Text:
    line = Text(f"{TITLE}  ")
    line.append(f"broker {status.link}", LINK_STYLE.get(status.link, ""))
    line.append(f"  |  {counts_text(board.counts())}  |  ")
    engine, bad = status.engine_text(now)
    line.append(engine, "bold red" if bad else "")
    line.append(f"  |  {fmt_local(now, now)}")
    if status.link_note and status.link != "connected":  # why, last: it may be long
        line.append(f"  |  {status.link_note}", "yellow")
    return line


def render(board: Board, status: Status, now: float, max_rows: int) -> RenderableType:
    """The whole screen: status line, then the first `max_rows` rows of the queue and a
    line saying how many more there are (and how many of those are critical, so a
    critical alert never scrolls out of sight unmentioned)."""
    rows = board.rows(now)
    table = Table(box=box.SIMPLE_HEAD, header_style="bold")
    for name in COLUMNS:
        table.add_column(
            name, no_wrap=True, overflow="ellipsis", justify="right" if name == "conf" else "left"
        )
    for r in rows[:max_rows]:
        texts, style = cells(r, now), _row_style(r, now)
        # on a highlighted row the severity's own colour would hide it
        sev = Text(texts[0], "" if "on red" in style else SEVERITY_STYLE.get(r.alert.severity, ""))
        table.add_row(sev, *texts[1:], style=style)
    parts: list[RenderableType] = [status_line(board, status, now), table]
    hidden = rows[max_rows:]
    if hidden:
        crit = sum(r.alert.severity == "critical" and r.state != "closed" for r in hidden)
        more = Text(f"... {len(hidden)} more alerts", "bold")
        if crit:
            more.append(f", {crit} of them critical and not closed", "bold red")
        parts.append(more)
    return Group(*parts)


class LiveBoard:
    """A board on a terminal. Records are applied at once; the screen is redrawn by
    `redraws()` (a task on the same loop): after a change, at most every `min_gap_s`, and
    every `tick_s` anyway (ages move, closed rows expire). A burst of 500 records thus
    costs one frame, not 500, and rings the bell once if any of them is a new critical
    alert. Use as a context manager (it starts and stops rich's Live display)."""

    def __init__(
        self, console: Console, board: Board, status: Status, *,
        tick_s: float = 1.0, min_gap_s: float = 0.1,
    ) -> None:  # fmt: skip
        self.console = console
        self.board = board
        self.status = status
        self.tick_s = tick_s
        self.min_gap_s = min_gap_s
        self.live = Live(console=console, auto_refresh=False, redirect_stderr=False)
        self.changed = asyncio.Event()
        self.bell_due = False
        self.frames = 0

    def __enter__(self) -> LiveBoard:
        self.live.start()
        self.redraw()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.redraw()
        self.live.stop()

    def redraw(self) -> None:
        if self.bell_due:
            self.console.bell()
            self.bell_due = False
        now = time.time()
        max_rows = max(5, self.console.size.height - CHROME_LINES)
        self.live.update(render(self.board, self.status, now, max_rows), refresh=True)
        self.frames += 1

    def apply(self, alert: Alert) -> None:
        if self.board.apply(alert, time.time()):
            self.bell_due = True
        self.changed.set()

    def touch(self) -> None:
        """Something on the status line changed: redraw soon."""
        self.changed.set()

    async def redraws(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), self.tick_s)
            self.changed.clear()
            self.redraw()
            await asyncio.sleep(self.min_gap_s)
