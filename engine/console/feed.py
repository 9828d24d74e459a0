"""The live feed: the board of alerts kept current from the alert log, and the
server-sent events (`GET /api/events`) that carry each change to the browsers.

One task per console reads the alert log after the last seq it applied, every
`interval` seconds or at once when poked (the console pokes after a workflow action),
applies the records to the board and hands each changed alert to every subscriber. It
reads the store, not the engine's memory, so the feed holds whatever wrote the record — the
engine's commits, the console's actions, an engine restarted meanwhile.

A subscriber is an SSE stream with a bounded queue: a browser that does not read is cut
off when its queue is full (it reconnects with `Last-Event-ID` and catches up from the
board), so no client can make the console hold unbounded memory. The event id is the
alert_log seq of the alert's latest record: after a reconnect, every alert whose latest
record is newer than the id is sent again, oldest first."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
from starlette.concurrency import run_in_threadpool

from engine.console.queue import Board, Entry
from engine.errors import StoreError
from zones.model import Subject

log = logging.getLogger("tagwatch.console")
_json = msgspec.json.Encoder()
PING_S = 15.0


@dataclass(eq=False)
class Subscriber:
    visible: Callable[[str], bool]
    supervisor: bool = False  # also gets `event: access` notices
    queue: asyncio.Queue[Entry | bytes | None] = field(default_factory=lambda: asyncio.Queue(2000))


class Feed:
    def __init__(
        self,
        reader: Any,
        subjects: Callable[[], Mapping[str, Subject]],
        interval: float = 0.25,
    ) -> None:
        self.reader = reader
        self.subjects = subjects
        self.interval = interval
        self.board = Board()
        self.subscribers: set[Subscriber] = set()
        self._poke = asyncio.Event()
        self.loaded = False

    async def load(self) -> None:
        self.board.load(await run_in_threadpool(self.reader.current))
        self.loaded = True

    def poke(self) -> None:
        self._poke.set()

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                if not self.loaded:
                    await self.load()
                await self.catch_up()
            except StoreError as e:
                log.warning("console feed: %s (retrying)", e)
            self._poke.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), self.interval)
        for s in list(self.subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                s.queue.put_nowait(None)

    async def catch_up(self) -> None:
        """Apply every record written since the last one applied, and fan out."""
        while True:
            rows = await run_in_threadpool(self.reader.log_after, self.board.seq, 500)
            for seq, alert in rows:
                self.publish(self.board.apply(seq, alert))
            if len(rows) < 500:
                return

    def publish(self, entry: Entry) -> None:
        for s in list(self.subscribers):
            if s.visible(entry.alert.subject):
                self._put(s, entry)

    def notice(self, what: dict[str, Any]) -> None:
        """Tell every supervisor's stream (`event: access`): someone looked at another
        team's subject."""
        message = b"event: access\ndata: %s\n\n" % _json.encode(what)
        for s in list(self.subscribers):
            if s.supervisor:
                self._put(s, message)

    def _put(self, s: Subscriber, item: Entry | bytes) -> None:
        try:
            s.queue.put_nowait(item)
        except asyncio.QueueFull:  # not reading: cut it off, it reconnects
            self.subscribers.discard(s)
            with contextlib.suppress(asyncio.QueueEmpty):
                s.queue.get_nowait()
            s.queue.put_nowait(None)

    def event(self, entry: Entry) -> bytes:
        data = _json.encode(entry.as_json(self.subjects()))
        return b"id: %d\nevent: alert\ndata: %s\n\n" % (entry.seq, data)

    async def stream(
        self, visible: Callable[[str], bool], last_id: int | None, supervisor: bool = False
    ) -> AsyncIterator[bytes]:
        """One browser's event stream: what it missed since `last_id`, then live changes
        (and, for a supervisor, access notices)."""
        sub = Subscriber(visible, supervisor)
        self.subscribers.add(sub)
        try:
            yield b"retry: 1000\n\n"
            if last_id is not None:
                missed = sorted(
                    (
                        e
                        for e in self.board.entries.values()
                        if e.seq > last_id and visible(e.alert.subject)
                    ),
                    key=lambda e: e.seq,
                )
                for e in missed:
                    yield self.event(e)
            while True:
                try:
                    entry = await asyncio.wait_for(sub.queue.get(), PING_S)
                except TimeoutError:
                    yield b": ping\n\n"
                    continue
                if entry is None:
                    return
                yield entry if isinstance(entry, bytes) else self.event(entry)
        finally:
            self.subscribers.discard(sub)
