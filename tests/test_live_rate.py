"""Live runs obey the engine's reporting-rate commands (tagwatch/v1/tags/{tag}/cmd): extra
fixes from the true path while a tag is asked to report faster, every tag record
renumbered in send order; offline through `devices.sim.ratecontrol`, then through mosquitto."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import defaultdict
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np
import pytest

from devices.health.drawn import HealthConfig
from devices.sim.fleet import SimRun, simulate
from devices.sim.ratecontrol import Outgoing, RateControl, schedule
from devices.world.city import build_world
from devices.world.geo import haversine_m
from engine.wire.commands import CommandError, clamp_rate, parse_rate_command

T0 = 1_790_000_000.0
FAST_TAG = "T0002"
CMD = "tagwatch/v1/tags/{tag}/cmd"


@cache
def small_run() -> SimRun:
    """4 subjects, 30 min at the planned 60 s: the broker tests' run."""
    return simulate(build_world(11, 4), duration_s=1800.0, start_t=T0)


@cache
def health_run() -> SimRun:
    """A health run where every tag loses coverage at least once, some go indoors."""
    cfg = HealthConfig(
        coverage_gap_fraction=1.0,
        indoor_loss_fraction=0.5,
        tamper_fraction=0.5,
        forget_charge_fraction=0.3,
    )
    return simulate(build_world(3, 6), duration_s=4 * 3600.0, start_t=T0, health=cfg)


def records(m: Any) -> list[dict[str, Any]]:
    return list(m.payload) if m.kind == "fixes" else [m.payload]


def by_tag(out: Sequence[Outgoing]) -> dict[str, list[Outgoing]]:
    tags: dict[str, list[Outgoing]] = defaultdict(list)
    for o in out:
        if not o.message.is_owntracks:
            tags[o.message.device].append(o)
    return tags


def assert_contiguous_seqs(payloads: dict[str, list[dict[str, Any]]]) -> None:
    for tag, ps in payloads.items():
        assert [p["seq"] for p in ps] == list(range(len(ps))), tag


def max_error_m(run: SimRun, tag: str, fixes: Sequence[dict[str, Any]]) -> float:
    """Largest distance of the fixes from the tag's true path at their times."""
    plan = next(p for p in run.plans if p.subject.tag == tag)
    x, y = plan.path.at(np.array([p["t"] for p in fixes], dtype=np.float64))
    lat, lon = run.world.frame.to_latlon(x, y)
    got_lat = np.array([p["lat"] for p in fixes])
    got_lon = np.array([p["lon"] for p in fixes])
    return float(np.max(haversine_m(lat, lon, got_lat, got_lon)))


# -- commands ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [b"fast please", b"", b"[]", b'{"rate": 5}', b'{"rate_s": -5}', b'{"rate_s": 0}',
     b'{"rate_s": "5"}', b'{"rate_s": true}', b'{"rate_s": NaN}', b'{"rate_s": Infinity}',
     b"\xff\xfe"],
)  # fmt: skip
def test_garbage_commands_are_rejected(payload: bytes) -> None:
    with pytest.raises(CommandError):
        parse_rate_command(CMD.format(tag="T1"), payload)


def test_commands_parse_and_clamp() -> None:
    assert parse_rate_command(CMD.format(tag="T1"), b'{"rate_s": 15.0}') == ("T1", 15.0)
    assert parse_rate_command(CMD.format(tag="T1"), '{"rate_s": 60, "why": "zone"}') == ("T1", 60.0)
    assert parse_rate_command(CMD.format(tag="T1"), b'{"rate_s": 0.01}') == ("T1", 1.0)
    assert parse_rate_command(CMD.format(tag="T1"), b'{"rate_s": 1e9}') == ("T1", 3600.0)
    assert clamp_rate(30.0) == 30.0
    with pytest.raises(CommandError):
        parse_rate_command("tagwatch/v1/tags/T1/fix", b'{"rate_s": 5}')
    with pytest.raises(CommandError):
        RateControl(small_run()).command("NOPE", 5.0, T0)


# -- the schedule, offline -----------------------------------------------------------------


def test_no_commands_sends_the_planned_messages_unchanged() -> None:
    run = small_run()
    out = list(schedule(run))
    assert [o.message for o in out] == list(run.messages)  # renumbering is the identity here
    assert [o.planned for o in out] == list(range(len(run.messages)))


def test_not_renumbering_leaves_health_runs_alone_and_refuses_commands() -> None:
    run = health_run()
    assert [o.message for o in schedule(run, renumber=False)] == list(run.messages)
    with pytest.raises(CommandError):
        RateControl(run, renumber=False).command("T0001", 5.0, T0)


def test_fast_rate_adds_extras_for_that_tag_only_until_relaxed() -> None:
    run = small_run()
    fast_t, slow_t = T0 + 600.0, T0 + 1200.0
    out = list(schedule(run, [(fast_t, FAST_TAG, 5.0), (slow_t, FAST_TAG, 60.0)]))
    tags = by_tag(out)
    assert all(not o.extra for tag, os_ in tags.items() if tag != FAST_TAG for o in os_)
    fixes = [o.message.payload for o in tags[FAST_TAG]]
    t = np.array([p["t"] for p in fixes])
    gaps = np.diff(t[(t >= fast_t) & (t < slow_t)])
    assert len(gaps) > 100 and gaps.max() <= 7.5 and gaps.min() >= 2.5
    assert 58.0 <= np.diff(t[t >= slow_t + 60.0]).min() <= np.diff(t[t >= slow_t + 60]).max() <= 62
    assert np.diff(t[t < fast_t]).min() >= 58.0
    extras = [o for o in tags[FAST_TAG] if o.extra]
    assert all(fast_t <= o.message.t < slow_t for o in extras)
    assert_contiguous_seqs({FAST_TAG: fixes})
    assert max_error_m(run, FAST_TAG, fixes) < 100.0
    p = extras[0].message.payload
    assert set(p) == {"seq", "t", "lat", "lon", "acc", "batt", "src"} and p["src"] == "gps"
    assert extras[0].message.topic == f"tagwatch/v1/tags/{FAST_TAG}/fix"
    # a rate at or slower than planned never thins or adds anything
    slow = list(schedule(run, [(fast_t, FAST_TAG, 60.0), (fast_t, "T0001", 300.0)]))
    assert [o.message for o in slow] == list(run.messages)


def test_schedule_is_deterministic() -> None:
    run = health_run()
    cmds = [(T0 + 300.0 * k, p.subject.tag, 5.0 + k) for k, p in enumerate(run.plans)]
    a = [(o.planned, o.message) for o in schedule(run, cmds)]
    b = [(o.planned, o.message) for o in schedule(run, cmds)]
    assert a == b and sum(p is None for p, _ in a) > 100


def test_health_run_renumbered_in_send_order_with_no_extras_while_offline() -> None:
    run = health_run()
    interval = run.config.fix_interval_s
    out = list(schedule(run, [(T0 + 1.0, p.subject.tag, 10.0) for p in run.plans]))
    tags = by_tag(out)
    assert_contiguous_seqs(
        {tag: [r for o in os_ for r in records(o.message)] for tag, os_ in tags.items()}
    )
    assert sum(o.message.kind == "fixes" for o in out) >= len(run.plans)  # gaps happened
    # every planned message goes out once, in order, with its event times unchanged
    planned = [o for o in out if not o.extra]
    assert [o.planned for o in planned] == list(range(len(run.messages)))
    for o in planned:
        m = run.messages[o.planned]  # type: ignore[index]
        assert (o.message.t, o.message.topic) == (m.t, m.topic)
        if m.is_owntracks:
            assert o.message is m
        else:
            strip = [{k: v for k, v in r.items() if k != "seq"} for r in records(m)]
            assert [{k: v for k, v in r.items() if k != "seq"} for r in records(o.message)] == strip
    # send times never go backwards; extras only between planned messages <= 3 intervals apart
    assert all(a.message.t <= b.message.t for a, b in itertools.pairwise(out))
    n_extra = 0
    for tag, os_ in tags.items():
        times = [o.message.t for o in os_ if not o.extra]
        positioned = False
        for k, o in enumerate(os_):
            if not o.extra:
                for r in records(o.message):
                    if "event" in r and r["event"] in ("no_gps", "power_off"):
                        positioned = False
                    elif "lat" in r:
                        positioned = r["src"] == "gps"
                continue
            n_extra += 1
            i = int(np.searchsorted(times, o.message.t, side="right"))
            assert 0 < i < len(times), (tag, o.message.t)
            assert times[i] - times[i - 1] <= 3 * interval, (tag, o.message.t)
            assert positioned, (tag, o.message.t)  # not indoors, not after a power_off
            assert os_[k - 1].message.t <= o.message.t
        fixes = [r for o in os_ if o.message.kind == "fix" for r in records(o.message)]
        gps = [r for r in fixes if r["src"] == "gps"]
        assert max_error_m(run, tag, gps) < 150.0
    assert n_extra > 1000


# -- through mosquitto ---------------------------------------------------------------------


async def _live(
    mosquitto: Any,
    run: SimRun,
    warp: float,
    commands: Sequence[tuple[float, str, bytes]],
) -> tuple[Any, list[tuple[str, dict[str, Any] | list[dict[str, Any]]]]]:
    """run_live with a listening client that publishes each (sim time offset, topic, payload)
    once it has received a tag fix at or after that sim time; returns (stats, received)."""
    import aiomqtt

    from devices.sim.live import run_live

    got: list[tuple[str, Any]] = []
    ready = asyncio.Event()

    async def listen() -> None:
        pending = sorted(commands, key=lambda c: c[0])
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as c:
            await c.subscribe("tagwatch/v1/tags/+/fix", qos=1)
            await c.subscribe("tagwatch/v1/tags/+/fixes", qos=1)
            await c.subscribe("tagwatch/v1/tags/+/event", qos=1)
            await c.subscribe("owntracks/#", qos=1)
            ready.set()
            async for msg in c.messages:
                assert isinstance(msg.payload, bytes)
                p = json.loads(msg.payload)
                got.append((str(msg.topic), p))
                if str(msg.topic).endswith("/fix"):
                    while pending and p["t"] >= run.start_t + pending[0][0]:
                        _, topic, payload = pending.pop(0)
                        await c.publish(topic, payload, qos=1)

    sub = asyncio.create_task(listen())
    await asyncio.wait_for(ready.wait(), 10)
    stats = await run_live(run, mosquitto.host, mosquitto.port, warp=warp)
    expected = stats.sent + stats.extra
    for _ in range(100):
        if len(got) >= expected:
            break
        await asyncio.sleep(0.05)
    sub.cancel()
    await asyncio.gather(sub, return_exceptions=True)
    return stats, got


def _tag_fixes(got: Sequence[tuple[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for topic, p in got:
        if topic.startswith("tagwatch/"):
            out[topic.split("/")[3]] += p if isinstance(p, list) else [p]
    return out


@pytest.mark.mqtt
@pytest.mark.timeout(120)
def test_live_run_reports_faster_while_commanded(mosquitto: Any) -> None:
    run = small_run()
    fast = (600.0, CMD.format(tag=FAST_TAG), b'{"rate_s": 5}')
    slow = (1200.0, CMD.format(tag=FAST_TAG), b'{"rate_s": 60}')
    stats, got = asyncio.run(_live(mosquitto, run, 150.0, [fast, slow]))
    assert stats.sent == stats.total == len(run.messages)
    assert stats.commands == 2 and stats.ignored == 0 and stats.reconnects == 0
    fixes = _tag_fixes(got)
    assert sum(len(v) for v in fixes.values()) == sum(len(records(m)) for m in run.messages
                                                      if not m.is_owntracks) + stats.extra  # fmt: skip
    t = np.array([p["t"] for p in fixes[FAST_TAG]])
    # commands take effect within a few sim seconds of being sent (warp 150)
    during = np.diff(t[(t >= T0 + fast[0] + 30.0) & (t < T0 + slow[0])])
    assert len(during) > 80 and during.max() <= 7.5
    after = np.diff(t[t >= T0 + slow[0] + 90.0])
    assert len(after) >= 5 and after.min() >= 58.0 and after.max() <= 62.0
    assert 80 < stats.extra < 130
    for tag, ps in fixes.items():
        if tag != FAST_TAG:
            d = np.diff([p["t"] for p in ps])
            assert d.min() >= 58.0 and d.max() <= 62.0, tag


@pytest.mark.mqtt
@pytest.mark.timeout(120)
def test_live_seqs_are_contiguous_and_fixes_follow_the_true_path(mosquitto: Any) -> None:
    run = small_run()
    cmds = [(300.0 + 60 * k, CMD.format(tag=p.subject.tag), b'{"rate_s": 10}')
            for k, p in enumerate(run.plans)]  # fmt: skip
    cmds.append((1500.0, CMD.format(tag=run.plans[0].subject.tag), b'{"rate_s": 15.0}'))
    stats, got = asyncio.run(_live(mosquitto, run, 150.0, cmds))
    assert stats.commands == len(cmds) and stats.extra > 200
    fixes = _tag_fixes(got)
    assert set(fixes) == {p.subject.tag for p in run.plans}
    assert_contiguous_seqs(fixes)  # in arrival order: 0, 1, 2, ... no duplicates, no gaps
    for tag, ps in fixes.items():
        assert all(a["t"] < b["t"] for a, b in itertools.pairwise(ps)), tag
        assert max_error_m(run, tag, ps) < 100.0, tag
    phones = [p for topic, p in got if topic.startswith("owntracks/")]
    assert phones == [m.payload for m in run.messages if m.is_owntracks]


@pytest.mark.mqtt
@pytest.mark.timeout(120)
def test_live_ignores_garbage_on_the_cmd_topic(mosquitto: Any) -> None:
    run = small_run()
    topic = CMD.format(tag=FAST_TAG)
    garbage = [
        (300.0, topic, b"not json at all"),
        (300.0, topic, b'{"rate_s": -5}'),
        (300.0, topic, b'{"rate_s": "fast"}'),
        (300.0, topic, b"[15]"),
        (300.0, CMD.format(tag="NOPE"), b'{"rate_s": 5}'),
        (300.0, "tagwatch/v1/tags/a/b/cmd", b'{"rate_s": 5}'),  # not matched by the filter
    ]
    stats, got = asyncio.run(_live(mosquitto, run, 200.0, garbage))
    assert stats.sent == stats.total == len(run.messages)
    assert stats.ignored == 5 and stats.commands == 0 and stats.extra == 0
    assert sorted((t, json.dumps(p)) for t, p in got) == sorted(
        (m.topic, json.dumps(m.payload)) for m in run.messages
    )


@pytest.mark.mqtt
@pytest.mark.timeout(120)
def test_live_reconnect_keeps_seqs_and_payloads(mosquitto: Any) -> None:
    """A broker crash while a tag sends extras: unacknowledged records are resent with the
    seqs they had, so every seq means one record and the counters have no holes."""
    import aiomqtt

    from devices.sim.live import run_live

    run = small_run()
    seen: dict[tuple[str, int], dict[str, Any]] = {}
    ready = asyncio.Event()

    async def listen() -> None:
        commanded = False
        while True:
            try:
                async with aiomqtt.Client(mosquitto.host, mosquitto.port) as c:
                    await c.subscribe("tagwatch/v1/tags/+/fix", qos=1)
                    await c.subscribe("tagwatch/v1/tags/+/fixes", qos=1)
                    await c.subscribe("tagwatch/v1/tags/+/event", qos=1)
                    ready.set()
                    async for msg in c.messages:
                        assert isinstance(msg.payload, bytes)
                        tag = str(msg.topic).split("/")[3]
                        p = json.loads(msg.payload)
                        for r in p if isinstance(p, list) else [p]:
                            assert seen.setdefault((tag, r["seq"]), r) == r  # one seq, one record
                        if not commanded:
                            commanded = True
                            await c.publish(CMD.format(tag=FAST_TAG), b'{"rate_s": 2}', qos=1)
            except aiomqtt.MqttError:
                await asyncio.sleep(0.1)

    async def main() -> Any:
        sub = asyncio.create_task(listen())
        await asyncio.wait_for(ready.wait(), 10)
        task = asyncio.create_task(run_live(run, mosquitto.host, mosquitto.port, warp=100.0))
        await asyncio.sleep(4.0)
        await asyncio.to_thread(mosquitto.kill)
        await asyncio.sleep(0.5)
        await asyncio.to_thread(mosquitto.restart)
        stats = await asyncio.wait_for(task, 60)
        await asyncio.sleep(1.0)
        sub.cancel()
        await asyncio.gather(sub, return_exceptions=True)
        return stats

    stats = asyncio.run(main())
    assert stats.reconnects >= 1 and stats.commands == 1 and stats.extra > 100
    assert stats.sent == stats.total == len(run.messages)
    planned = sum(len(records(m)) for m in run.messages if not m.is_owntracks)
    top = {tag: max(s for t, s in seen if t == tag) for tag, _ in seen}
    assert sum(top.values()) + len(top) == planned + stats.extra  # no seq skipped or reused
    # after the crash the collector is back in time for most: nothing past it is missing
    for tag in top:
        late = sorted(s for t, s in seen if t == tag and s > top[tag] - 20)
        assert late == list(range(top[tag] - 19, top[tag] + 1)), tag
