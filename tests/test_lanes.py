"""The processor's view of the two input lanes (engine/mqtt/lanes.py): priority first, a
batch never mixes lanes, a batch stops at BATCH_BYTES, each item is acknowledged on the
session it came on; and what a session subscribes to on a reconnect. The lanes through a
real broker: tests/test_priority_lane.py."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any, cast

import aiomqtt
import pytest

from engine.broker.process import MosquittoProcess
from engine.mqtt.lanes import BATCH_BYTES, MAIN, URGENT, Lanes, quiet, watch_filters, watchable
from engine.mqtt.session import BrokerAddress, Incoming, MqttSession
from engine.mqtt.shards import Routing
from engine.settings import Settings
from engine.wire.decode import decode_message
from zones.model import Protected, Subject, ZoneSet
from zones.shard import Shard

SUBJECTS = (
    Subject("S1", ("T1",)),
    Subject("S3", ("T3",)),
    Subject("S4", ("T4",), protected=(Protected("alice/phone", 500.0),)),
    Subject("S5", ("T5", "T6")),
    Subject("S7", ("T7",)),
    Subject("S8", ("T7", "T8")),  # T7 is also a two-tag subject's
)


class FakeSession:
    def __init__(self) -> None:
        self.acked: list[int] = []
        self.resumed = 0
        self.filters: tuple[str, ...] = ("tagwatch/v1/tags/+/event",)

    async def refilter(self, filters: tuple[str, ...]) -> None:
        self.filters = filters

    def resume(self) -> None:
        self.resumed += 1

    def ack(self, items: Iterable[Incoming]) -> int:
        mids = [it.mid for it in items]
        self.acked += mids
        return len(mids)


STRAP = b'{"seq": 1, "t": 1.7e9, "event": "strap_open"}'


def item(mid: int, lane: int, size: int = 10) -> Incoming:
    """A fix on the main lane, a strap cut on the priority lane."""
    if lane == URGENT:
        return Incoming("tagwatch/v1/tags/T1/event", STRAP, 0.0, 1, mid, 1, lane)
    return Incoming("tagwatch/v1/tags/T1/fix", b"x" * size, 0.0, 1, mid, 1, lane)


def lanes() -> tuple[Lanes, FakeSession, FakeSession]:
    main, urgent = FakeSession(), FakeSession()
    return Lanes(cast(MqttSession, main), cast(MqttSession, urgent), 100), main, urgent


def test_priority_items_are_taken_first_and_never_mixed_with_main_ones() -> None:
    async def go() -> list[list[tuple[int, int]]]:
        ls, _, _ = lanes()
        for mid in range(5):
            ls.put(item(mid, MAIN))
        ls.put(item(100, URGENT))
        ls.put(item(101, URGENT))
        out = []
        while not ls.empty():
            batch = await ls.next_batch(3, 0.0)
            out.append([(it.lane, it.mid) for it in batch])
        return out

    got = asyncio.run(go())
    assert got == [[(URGENT, 100), (URGENT, 101)], [(MAIN, 0), (MAIN, 1), (MAIN, 2)],
                   [(MAIN, 3), (MAIN, 4)]]  # fmt: skip


def test_an_urgent_arrival_ends_the_wait_for_a_fuller_main_batch() -> None:
    async def go() -> tuple[list[int], list[int], float]:
        ls, _, _ = lanes()
        ls.put(item(1, MAIN))

        async def later() -> None:
            await asyncio.sleep(0.05)
            ls.put(item(9, URGENT))

        task = asyncio.create_task(later())
        t0 = asyncio.get_running_loop().time()
        first = await ls.next_batch(100, 5.0)  # would wait 5 s for more main items
        took = asyncio.get_running_loop().time() - t0
        second = await ls.next_batch(100, 5.0)
        await task
        return [it.mid for it in first], [it.mid for it in second], took

    first, second, took = asyncio.run(go())
    assert first == [1] and second == [9] and took < 2.0


def test_a_batch_stops_growing_at_the_byte_budget() -> None:
    async def go() -> list[int]:
        ls, _, _ = lanes()
        for mid in range(4):
            ls.put(item(mid, MAIN, BATCH_BYTES // 2))
        return [len(await ls.next_batch(100, 0.0)) for _ in range(2)]

    assert asyncio.run(go()) == [2, 2]


def test_each_item_is_acknowledged_on_its_own_session_in_order() -> None:
    ls, main, urgent = lanes()
    n = ls.ack([item(1, MAIN), item(7, URGENT), item(2, MAIN), item(8, URGENT)])
    assert n == 4 and main.acked == [1, 2] and urgent.acked == [7, 8]


def test_without_a_priority_lane_everything_is_main(monkeypatch: Any) -> None:
    main = FakeSession()
    ls = Lanes(cast(MqttSession, main), None, 10)

    async def go() -> list[int]:
        ls.put(item(1, MAIN))
        return [it.mid for it in await ls.next_batch(10, 0.0)]

    assert asyncio.run(go()) == [1] and ls.ack([item(1, MAIN)]) == 1 and main.acked == [1]


def test_a_full_lane_says_so_and_resumes_its_session_once_half_empty() -> None:
    main, urgent = FakeSession(), FakeSession()
    ls = Lanes(cast(MqttSession, main), cast(MqttSession, urgent), 4)

    async def go() -> list[bool]:
        full = [ls.put(item(mid, MAIN)) for mid in range(5)]
        first = await ls.next_batch(1, 0.0)
        ls.done()  # 4 left: still over half
        resumed_early = main.resumed
        second = await ls.next_batch(2, 0.0)
        ls.done()  # 2 left: under half of 4 + 1
        taken = len(first) == 1 and len(second) == 2
        return [*full, resumed_early == 0, main.resumed > 0, taken]

    assert asyncio.run(go()) == [False, False, False, True, True, True, True, True]


def test_a_flood_on_the_priority_lane_does_not_stop_the_main_one() -> None:
    async def go() -> list[int]:
        ls, _, _ = lanes()
        for mid in range(30):
            ls.put(item(mid, MAIN))
        for mid in range(100, 160):
            ls.put(item(mid, URGENT))
        order = []
        while not ls.empty():
            batch = await ls.next_batch(10, 0.0)
            order.append(batch[0].lane)
        return order

    order = asyncio.run(go())
    # priority first, then the lanes take turns while both wait, then what is left
    assert order[:6] == [URGENT, MAIN, URGENT, MAIN, URGENT, MAIN], order
    assert order.count(URGENT) == 6 and order.count(MAIN) == 3


def test_the_priority_lane_takes_tamper_events_only_and_acks_the_rest_at_once() -> None:
    ls, main, urgent = lanes()
    battery = b'{"seq": 2, "t": 1.7e9, "event": "battery", "batt": 9}'
    for mid, body in [(1, battery), (2, b"garbage"), (3, STRAP)]:
        ls.put(Incoming("tagwatch/v1/tags/T1/event", body, 0.0, 1, mid, 1, URGENT))
    assert urgent.acked == [1, 2] and ls.passed_over == 2  # the main lane brings them in order
    assert ls.qsize() == 1 and main.acked == []


def test_a_watched_tags_records_stay_on_the_priority_lane_and_others_go_back() -> None:
    """Watching T1 subscribes the priority session to its fix topics (events stay); its
    fix and its battery event are then taken there, T2's fix still goes back to the main
    lane, and so does T1's once it is no longer watched."""
    main, urgent = FakeSession(), FakeSession()
    ls = Lanes(cast(MqttSession, main), cast(MqttSession, urgent), 100, watch_max=1)
    asyncio.run(ls.watch(["T1", "T3"], SUBJECTS))  # at most one tag: the first by id
    assert ls.watched == {"T1"}
    assert urgent.filters == (
        "tagwatch/v1/tags/+/event", "tagwatch/v1/tags/T1/fix", "tagwatch/v1/tags/T1/fixes"
    )  # fmt: skip
    battery = b'{"seq": 2, "t": 1.7e9, "event": "battery", "batt": 9}'
    got = [
        Incoming("tagwatch/v1/tags/T1/fix", b"{}", 0.0, 1, 1, 1, URGENT),
        Incoming("tagwatch/v1/tags/T1/event", battery, 0.0, 1, 2, 1, URGENT),
        Incoming("tagwatch/v1/tags/T2/fix", b"{}", 0.0, 1, 3, 1, URGENT),
    ]
    for it in got:
        ls.put(it)
    assert urgent.acked == [3] and ls.qsize() == 2
    asyncio.run(ls.watch([], SUBJECTS))
    assert urgent.filters == ("tagwatch/v1/tags/+/event",) and not ls.watched
    ls.put(Incoming("tagwatch/v1/tags/T1/fix", b"{}", 0.0, 1, 4, 1, URGENT))
    assert urgent.acked == [3, 4] and ls.qsize() == 2


def test_only_tags_whose_decisions_rest_on_their_own_records_are_watchable() -> None:
    """A tag whose subject has a protected device (its phone's fixes come on the main
    lane) or another tag is never taken ahead: its decisions depend on the order of
    another device's records too."""
    assert watchable(SUBJECTS) == {"T1", "T3"}
    main, urgent = FakeSession(), FakeSession()
    ls = Lanes(cast(MqttSession, main), cast(MqttSession, urgent), 100, watch_max=2000)
    asyncio.run(ls.watch(["T1", "T4", "T5", "T7"], SUBJECTS))
    assert ls.watched == {"T1"}
    assert urgent.filters[1:] == ("tagwatch/v1/tags/T1/fix", "tagwatch/v1/tags/T1/fixes")


# -- a session's subscriptions on reconnect (the broker's side: tests/test_serve_mqtt.py,
# tests/test_faults.py) -----------------------------------------------------------------


class _Subscriber:
    """What `_subscribe` asks of aiomqtt's client; `during` runs inside the first call."""

    def __init__(self, during: Any = None, refuse: Any = lambda f: False) -> None:
        self.got: list[str] = []
        self.during = during
        self.refuse = refuse  # which filters the broker refuses (0x87)
        self.gone: list[str] = []
        self.sent: list[str] = []  # what paho published (the status)
        self._client = SimpleNamespace(
            publish=lambda topic, *a, **k: self.sent.append(topic) or SimpleNamespace(rc=0)
        )

    async def subscribe(self, topic: Any, qos: int = 1) -> list[int]:
        asked = [topic] if isinstance(topic, str) else [f for f, _ in topic]
        self.got += asked
        during, self.during = self.during, None
        if during is not None:
            await during()
        return [0x87 if self.refuse(f) else 1 for f in asked]

    async def unsubscribe(self, topics: list[str]) -> None:
        self.gone += topics


def test_a_reload_while_subscribing_is_subscribed_too_and_kept_only_whole() -> None:
    """A reload that lands while a connection subscribes (refilter finds no client yet)
    gets its new filters subscribed on that connection; then a session the broker kept
    is not subscribed again, and one it lost is."""
    s = MqttSession(BrokerAddress.parse("127.0.0.1:1883"), Settings(), filters=("a", "b"))
    first = _Subscriber(lambda: s.refilter(("a", "b", "c")))
    asyncio.run(s._resubscribe(cast(Any, first)))
    assert sorted(first.got) == ["a", "b", "c"]
    s._present = True  # the broker kept the session: nothing to send
    again = _Subscriber()
    asyncio.run(s._resubscribe(cast(Any, again)))
    assert again.got == []
    s._present = False  # it lost it: everything again
    asyncio.run(s._resubscribe(cast(Any, again)))
    assert again.got == ["a", "b", "c"]


def test_a_refused_wildcard_is_subscribed_topic_by_topic_and_a_refusal_is_reported() -> None:
    """A broker whose ACL refuses a tag's `tags/{tag}/+` gets the tag's three topics
    instead, and the engine stays online; a filter refused with nothing narrower puts the
    refusal in the status, and a reload that drops it clears it."""
    t1, gw = "tagwatch/v1/tags/T1/+", "tagwatch/v1/gateway/+/fixes"
    s = MqttSession(BrokerAddress.parse("127.0.0.1:1883"), Settings(), filters=(t1, gw))
    client = _Subscriber(refuse=lambda f: f.endswith("/+"))
    asyncio.run(s._resubscribe(cast(Any, client)))
    assert client.got == [t1, gw, *(f"tagwatch/v1/tags/T1/{k}" for k in ("fix", "fixes", "event"))]
    assert s.degraded is None
    s.client = cast(Any, client)
    asyncio.run(s.refilter((gw,)))  # T1 leaves: what was subscribed for it is dropped
    assert sorted(client.gone) == [f"tagwatch/v1/tags/T1/{k}" for k in ("event", "fix", "fixes")]
    s.client = None
    strict = _Subscriber(refuse=lambda f: "gateway" in f or f.endswith(("/+", "/fix")))
    s._present = False
    asyncio.run(s.refilter((t1, gw)))
    asyncio.run(s._resubscribe(cast(Any, strict)))
    assert s.degraded is not None and "refused 2 subscription(s)" in s.degraded
    assert "tagwatch/v1/gateway/+/fixes (reason 0x87)" in s.degraded
    s._present = True  # a session the broker kept, but with a refusal: asked again
    granting = _Subscriber()
    asyncio.run(s._resubscribe(cast(Any, granting)))
    assert granting.got == [t1, gw] and s.degraded is None
    strict.refuse = lambda f: "gateway" in f
    asyncio.run(s._resubscribe(cast(Any, strict)))  # kept, nothing refused: nothing sent
    assert strict.got.count(gw) == 1 and s.degraded is None
    s._present = False
    asyncio.run(s._resubscribe(cast(Any, strict)))
    assert s.degraded is not None
    s.client = cast(Any, strict)
    strict.refuse = lambda f: False
    asyncio.run(s.refilter(("tagwatch/v1/tags/T2/+",)))
    assert s.degraded is None and strict.sent == ["tagwatch/v1/engine/status"]


def test_a_shards_priority_lane_keeps_its_own_tags_and_the_unknown_ones_it_owns() -> None:
    """A shard's lane hears every tag's events (`tags/+/event`). It takes its own tags'
    tamper events as any lane does, and every event of a tag no shard has whose id it
    owns by hash (only the lanes hear those: dead-lettered once, by that shard); another
    shard's tag's strap cut and an unknown tag another shard owns are acknowledged and
    dropped."""
    shard = Shard(0, 2)
    zs = ZoneSet(zones=(), subjects=SUBJECTS[:2], elsewhere=frozenset({"T9"}))
    rt = Routing.of(shard, zs)
    assert rt.filters[:2] == ("tagwatch/v1/tags/T1/+", "tagwatch/v1/tags/T3/+")
    mine = next(f"X{i}" for i in range(100) if shard.owns(f"X{i}"))
    theirs = next(f"X{i}" for i in range(100) if not shard.owns(f"X{i}"))
    main, urgent = FakeSession(), FakeSession()
    ls = Lanes(cast(MqttSession, main), cast(MqttSession, urgent), 100, 0, rt.lane_event)
    cut = b'{"seq": 2, "t": 1.7e9, "event": "strap_open"}'
    battery = b'{"seq": 3, "t": 1.7e9, "event": "battery", "batt": 9}'
    sent = [("T1", cut), ("T1", battery), ("T9", cut), (mine, battery), (theirs, cut)]
    for mid, (tag, body) in enumerate(sent):
        ls.put(Incoming(f"tagwatch/v1/tags/{tag}/event", body, 0.0, 1, mid, 1, URGENT))
    assert urgent.acked == [1, 2, 4]
    assert [it.mid for it in ls.queues[URGENT]._queue] == [0, 3]  # type: ignore[attr-defined]


def test_watching_does_not_wait_for_the_broker_and_changes_apply_one_at_a_time() -> None:
    """The processor asks to watch and goes on (`watch_soon` returns before the broker
    answers); changes asked meanwhile are applied after the one in flight, one at a time,
    and the session ends with the last one's filters."""

    class SlowSession(FakeSession):
        def __init__(self) -> None:
            super().__init__()
            self.calls: list[tuple[str, ...]] = []
            self.gate = asyncio.Event()
            self.busy = 0

        async def refilter(self, filters: tuple[str, ...]) -> None:
            self.busy += 1
            assert self.busy == 1, "two changes at once"
            self.calls.append(filters)
            self.filters = filters
            await self.gate.wait()
            self.busy -= 1

    async def go() -> SlowSession:
        main, urgent = FakeSession(), SlowSession()
        ls = Lanes(cast(MqttSession, main), cast(MqttSession, urgent), 100, watch_max=10)
        ls.watch_soon(["T1"], SUBJECTS)
        assert ls.watched == {"T1"}  # at once: the lane takes T1's fixes from now on
        await asyncio.sleep(0)
        assert urgent.calls == [("tagwatch/v1/tags/+/event", *watch_filters(["T1"]))]
        ls.watch_soon(["T3"], SUBJECTS)
        ls.watch_soon(["T1", "T3"], SUBJECTS)
        assert ls.watched == {"T1", "T3"} and len(urgent.calls) == 1
        urgent.gate.set()
        await ls.watch(["T1", "T3"], SUBJECTS)
        return urgent

    urgent = asyncio.run(go())
    assert len(urgent.calls) == 2  # the in-between change was never sent on its own
    assert urgent.filters == ("tagwatch/v1/tags/+/event", *watch_filters(["T1", "T3"]))


@pytest.mark.mqtt
@pytest.mark.parametrize("mqtt5", [True, False])
def test_a_tags_one_filter_brings_its_input_and_not_the_engines_own_commands(
    mosquitto: MosquittoProcess, mqtt5: bool
) -> None:
    """Against a real mosquitto: a session on `tags/T1/+` gets T1's fix; over MQTT 5 (No
    Local) not the rate command it sends T1 itself; over 3.1.1 that command comes back, and
    decoding it gives nothing, neither a record nor a dead letter."""
    got: list[Incoming] = []

    async def go() -> None:
        s = MqttSession(BrokerAddress(mosquitto.host, mosquitto.port), Settings(),
                        client_id=f"lane-test-{mqtt5}", filters=("tagwatch/v1/tags/T1/+",),
                        speaks=False)  # fmt: skip
        s.mqtt5 = mqtt5
        task = asyncio.create_task(s.run(quiet, lambda it: got.append(it) or False))
        await asyncio.wait_for(s.connected.wait(), 10)
        assert s.send("tagwatch/v1/tags/T1/cmd", b'{"rate_s": 15}')
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as c:
            await c.publish("tagwatch/v1/tags/T1/fix", b'{"seq": 1}', qos=1)
        deadline = time.monotonic() + 10
        while not any(it.topic.endswith("/fix") for it in got):
            assert time.monotonic() < deadline, got
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # the command, had it come back, came before the fix
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(go())
    topics_got = sorted(it.topic for it in got)
    if mqtt5:
        assert topics_got == ["tagwatch/v1/tags/T1/fix"]
    else:
        assert topics_got == ["tagwatch/v1/tags/T1/cmd", "tagwatch/v1/tags/T1/fix"]
        cmd = next(it for it in got if it.topic.endswith("/cmd"))
        assert decode_message(cmd.topic, cmd.payload) == ([], [])


def test_a_subscribe_that_fails_midway_leaves_no_packet_waiting() -> None:
    """Packets go 4 at a time; when one fails (the connection broke) the error reaches the
    caller (the session reconnects) and the other packets' waits are cancelled, not left
    running."""
    from engine.mqtt.subscriptions import PER_PACKET, subscribe

    waiting: list[asyncio.Future[Any]] = []

    class Breaking:
        calls = 0

        async def subscribe(self, topic: Any, qos: int = 1) -> list[int]:
            self.calls += 1
            if self.calls == 2:
                await asyncio.sleep(0)
                raise aiomqtt.MqttError("connection lost")
            fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            waiting.append(fut)
            return await fut  # never answered

    async def go() -> None:
        filters = [f"tagwatch/v1/tags/T{i}/+" for i in range(3 * PER_PACKET)]
        with pytest.raises(aiomqtt.MqttError, match="connection lost"):
            await subscribe(cast(Any, Breaking()), filters, True)
        assert waiting and all(f.cancelled() for f in waiting)

    asyncio.run(go())
