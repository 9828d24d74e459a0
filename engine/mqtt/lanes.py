"""The engine's input lanes: the main one (every input topic) and a priority lane for tags'
events, each its own persistent broker session, so a tamper event does not wait behind a
backlog of fixes.

Why a second session: a broker delivers one session's messages in order, and at most the
engine's Receive Maximum of them unacknowledged; acknowledged only after the commit, so
under a backlog a strap cut sits in the broker's queue behind every fix before it. On its
own session it arrives at once, and the processor takes it first.

- The priority session subscribes to `tagwatch/v1/tags/+/event` (and watched tags' fix
  topics, below), as client `<client id>-urgent`; on a broker that takes the client id
  from the username (the one `tagwatch broker-config` writes) it logs in as
  `<username>-urgent`, a user broker-config makes with the engine's password and read
  access to tags' input only. It sets no will and no status: the main session speaks for
  the engine. A shard's lane too hears every tag's events, one filter instead of one a
  tag (a broker's cost grows with a session's filters, engine/mqtt/subscriptions.py), and
  drops other shards' tags' (`Routing.lane_event`, engine/mqtt/shards.py).
- The main session subscribes to events too, so an event usually arrives twice and the
  later copy is a duplicate (tag, seq) that the pipeline drops (docs/durability.md). If the
  priority lane cannot connect (an older broker configuration without that user), nothing
  is lost: events arrive in order on the main lane, and a warning says why.
- Only tamper events (strap, case, body, power: open and restore) and watched tags'
  records are taken from the priority lane; anything else there is acknowledged at once
  and left to the main lane, which brings it in order with its tag's fixes (a `no_gps` or
  `battery` event overtaking the tag's fixes would change what no_location and battery
  decide; a test caught it).
- **Watched tags**: a tag in an approach ring or breaching (the tags the engine asks for
  fast reports, `Pipeline.fast`), whose decisions rest on its own records alone
  (`watchable`: its subject wears no other tag and has no protected device), is watched:
  the priority session also subscribes to its `fix` and `fixes` topics (`watch`, at most
  `urgent_watch_max` tags), and takes everything of that tag it receives, events
  included, so its records keep their order there. Its next fix, the one that may open a
  critical breach, then goes ahead of a backlog of other tags' fixes; the main lane's
  copies are duplicates. The subscription is the session's, kept by the broker across a
  restart, so a walk-in published while the engine was down is also taken first. A tag
  watched while its older fixes still wait on the main lane has a seq gap on this one:
  its first fixes here wait behind it (at most `hold_wall_s`), then go ahead and the older
  ones are decided late, as after a tunnel. A fix relayed in a gateway batch waits with
  the batch.
- A batch is priority items only or main items only; priority ones first. Tamper is decided
  when a record is admitted, before seq ordering (engine/core/health/tamper.py), so an
  event ahead of its tag's queued fixes opens its alert at once; the fixes fill the seq gap
  behind it when they come.
- Each item is acknowledged on the session it came on, after the commit, in the order that
  session delivered it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

from engine.core.health.tamper import TAMPER_OPEN, TAMPER_RESTORE
from engine.mqtt.session import BrokerAddress, Incoming, MqttSession
from engine.settings import Settings
from engine.wire import topics
from engine.wire.decode import event_name
from zones.model import Subject

log = logging.getLogger("tagwatch.lanes")
MAIN, URGENT = 0, 1
URGENT_FILTERS = (f"{topics.TAGS}/+/event",)
URGENT_SUFFIX = "-urgent"
# A batch also stops growing at this much payload (~10,000 single fixes): a batch of large
# store-and-forward uploads must not hold the priority lane back for long
BATCH_BYTES = 1 << 20
TAMPER_EVENTS = frozenset(TAMPER_OPEN) | frozenset(TAMPER_RESTORE)  # what the lane takes


def watchable(subjects: Sequence[Subject]) -> frozenset[str]:
    """The tags whose decisions rest on their own records alone, which the priority lane
    may take ahead of the rest: every subject wearing one wears no other tag and has no
    protected device. (A tag taken ahead of its victim's phone, queued on the main lane,
    would be judged against where the phone was before: proximity decided otherwise than
    in the order sent; a kill -9 test caught it. So would a subject's second tag.)"""
    ok: set[str] = set()
    bad: set[str] = set()
    for s in subjects:
        (ok if len(s.tags) == 1 and not s.protected else bad).update(s.tags)
    return frozenset(ok - bad)


def watch_filters(tags: Collection[str]) -> tuple[str, ...]:
    """A watched tag's fix topics, which the priority session takes too."""
    return tuple(f for t in sorted(tags) for f in (topics.fix(t), topics.fixes(t)))


def urgent_session(
    broker: BrokerAddress,
    settings: Settings,
    client_id: str,
    client_kwargs: dict[str, Any],
) -> MqttSession:
    """The priority lane's session: events only, its own client id (and username)."""
    kwargs = dict(client_kwargs)
    if kwargs.get("username"):
        kwargs["username"] = f"{kwargs['username']}{URGENT_SUFFIX}"
    return MqttSession(
        broker, settings, client_id=client_id + URGENT_SUFFIX, client_kwargs=kwargs,
        filters=URGENT_FILTERS, speaks=False, lane=URGENT, name="priority lane",
    )  # fmt: skip


async def quiet() -> None:
    """The priority lane's on-connect: nothing (the main session announces and flushes)."""


class Lanes:
    """Both lanes' bounded queues, read by one processor: priority first."""

    def __init__(
        self,
        main: MqttSession,
        urgent: MqttSession | None,
        maxsize: int,
        watch_max: int = 0,
        lane_event: Callable[[str], bool | None] | None = None,
    ) -> None:
        self.sessions = {MAIN: main} if urgent is None else {MAIN: main, URGENT: urgent}
        # Unbounded queues with a high-water mark: over `maxsize` a lane's session stops
        # reading its socket until the queue is under half of it (MqttSession.resume)
        self.queues: dict[int, asyncio.Queue[Incoming]] = {
            lane: asyncio.Queue() for lane in self.sessions
        }
        self.maxsize = max(1, maxsize)
        self._arrived = asyncio.Event()
        self._urgent_last = False  # the last batch was the priority lane's
        self.passed_over = 0  # priority-lane copies the main lane brings in order instead
        self.full = False  # the last batch ended at a limit: more was waiting (a backlog)
        # Tags whose records the priority lane takes (`watch`), and its filters without them
        self.watched: frozenset[str] = frozenset()
        self.watch_max = watch_max
        self._base = urgent.filters if urgent is not None else ()
        self._subjects: Sequence[Subject] = ()
        self._watchable: frozenset[str] = frozenset()
        self._refiltering: asyncio.Task[None] | None = None
        # A shard's rule for the priority lane's events of tags not its own
        # (engine/mqtt/shards.py Routing.lane_event); None: every tag's is its own
        self.lane_event = lane_event

    def put(self, item: Incoming) -> bool:
        """Queue a received message; True when its lane is full (stop reading). A
        priority-lane copy of anything but a tamper event or a watched tag's record is
        acknowledged and dropped: the main lane brings it in order with its tag's fixes."""
        if item.lane == URGENT and not self._urgent(item):
            self.sessions[URGENT].ack([item])
            self.passed_over += 1
            return False
        q = self.queues[item.lane]
        q.put_nowait(item)
        self._arrived.set()
        return q.qsize() >= self.maxsize

    def _urgent(self, item: Incoming) -> bool:
        topic, prefix = item.topic, topics.TAG_PREFIX
        tag = topic[len(prefix) :].split("/", 1)[0] if topic.startswith(prefix) else None
        if tag is not None and tag in self.watched:
            return True
        if tag is not None and self.lane_event is not None:
            mine = self.lane_event(tag)
            if mine is not None:
                return mine
        return topic.endswith("/event") and event_name(item.payload) in TAMPER_EVENTS

    async def watch(self, tags: Collection[str], subjects: Sequence[Subject]) -> None:
        """`watch_soon`, and wait until the priority session has its filters."""
        self.watch_soon(tags, subjects)
        if self._refiltering is not None:  # it runs until the filters are the wanted ones
            await self._refiltering

    def watch_soon(self, tags: Collection[str], subjects: Sequence[Subject]) -> None:
        """Watch those of `tags` that `watchable` allows (at most `watch_max`, by id), at
        once; the priority session subscribes to their fixes too, and drops the filters of
        tags no longer watched, in a task of its own. Not awaited by the processor: a
        SUBSCRIBE's round trip to a busy broker held every alert behind it (bench.latency:
        breach p50 89-132 ms at 5,000 fixes/s with it awaited, 56-78 without watching)."""
        urgent = self.sessions.get(URGENT)
        if subjects is not self._subjects:
            self._subjects, self._watchable = subjects, watchable(subjects)
        new = frozenset(sorted(t for t in tags if t in self._watchable)[: self.watch_max])
        if urgent is None or new == self.watched:
            return
        self.watched = new
        log.info("priority lane: watching %d tags (their fixes go ahead)", len(new))
        if self._refiltering is None or self._refiltering.done():
            self._refiltering = asyncio.create_task(self._refilter(urgent), name="watch")

    async def _refilter(self, urgent: MqttSession) -> None:
        """One change at a time (a SUBSCRIBE and an UNSUBSCRIBE of two changes interleaved
        could drop a filter both want), until the session's filters are the wanted ones."""
        try:
            while (want := self._base + watch_filters(self.watched)) != urgent.filters:
                await urgent.refilter(want)
        except Exception:  # never lost silently: the next change tries again
            log.exception("priority lane: changing its subscriptions failed")

    def empty(self) -> bool:
        return all(q.empty() for q in self.queues.values())

    def qsize(self) -> int:
        return sum(q.qsize() for q in self.queues.values())

    def _ready(self) -> asyncio.Queue[Incoming] | None:
        """The lane to take a batch from: priority first, except right after a priority
        batch when main items wait: a device flooding the event topic then halves the
        main lane's pace at worst instead of stopping it, and a strap cut still waits
        for one main batch at most."""
        for lane in (MAIN, URGENT) if self._urgent_last else (URGENT, MAIN):
            q = self.queues.get(lane)
            if q is not None and not q.empty():
                return q
        return None

    def urgent_waiting(self) -> bool:
        q = self.queues.get(URGENT)
        return q is not None and not q.empty()

    def take_urgent(self, batch_max: int) -> list[Incoming]:
        """The priority items waiting now (up to batch_max), without waiting for more: the
        serve loop decides them between two chunks of a main batch. The next batch is then
        the main lane's, as after any priority batch."""
        q = self.queues[URGENT]
        items: list[Incoming] = []
        while len(items) < batch_max and not q.empty():
            items.append(q.get_nowait())
        self._urgent_last = True
        return items

    async def next_batch(self, batch_max: int, batch_wait_s: float) -> list[Incoming]:
        """Up to batch_max items (BATCH_BYTES of payload) of one lane, priority first.
        Priority items go at once; main items wait at most batch_wait_s for more once one
        has arrived. An empty list when nothing arrived for a second (time still passes:
        the engine ticks). `full` then says whether a limit ended it (a backlog)."""
        deadline = time.monotonic() + 1.0
        while (q := self._ready()) is None:
            self._arrived.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                return []
        items = [q.get_nowait()]
        size = len(items[0].payload)
        urgent = self._urgent_last = items[0].lane == URGENT
        deadline = time.monotonic() + (0.0 if urgent else batch_wait_s)
        while len(items) < batch_max and size < BATCH_BYTES:
            if not q.empty():
                items.append(q.get_nowait())
                size += len(items[-1].payload)
                continue
            left = deadline - time.monotonic()
            if left <= 0 or (not urgent and self.urgent_waiting()):
                break  # a priority item arrived while waiting for more: go now
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                break
        self.full = len(items) >= batch_max or size >= BATCH_BYTES
        return items

    def done(self) -> None:
        """A batch was processed: a lane whose session paused reading has room again once
        its queue is under half its high-water mark."""
        for lane, q in self.queues.items():
            if q.qsize() < self.maxsize // 2 + 1:
                self.sessions[lane].resume()

    def ack(self, items: list[Incoming]) -> int:
        """PUBACK each item on the session it came on; how many were acknowledged."""
        if len(self.sessions) == 1 or all(it.lane == MAIN for it in items):
            return self.sessions[MAIN].ack(items)
        return sum(
            s.ack(it for it in items if it.lane == lane) for lane, s in self.sessions.items()
        )
