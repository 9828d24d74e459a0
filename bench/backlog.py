"""The live engine against a backlog: how fast it drains one, beside a bare paho subscriber
on the same backlog, and whether a strap cut waits behind it: tamper -> alert latency with
the priority lane (engine/mqtt/lanes.py) and without it.

    python -m bench.backlog [--tags 10000] [--fixes 60000] [--events 40]

Runs `tagwatch serve` (a subprocess) against a private mosquitto. The engine runs once so
the broker holds its sessions, stops, and the broker queues `--fixes` single-fix QoS 1
messages of `--tags` tags (far from every zone) while it is down, then a walk into a zone
by tag W (its breach marks the end of the backlog). The engine starts again; from the
moment it is connected, one strap_open every 0.1 s from tags E0.. (`--events` of them) is
published, and a subscriber times each from publish to its `tamper` alert. Also: how long
the backlog took to drain (start to W's breach), and so the drain rate.

The floor (`run_bare_paho`): a bare paho subscriber (MQTT 5 persistent session, JSON
decode and a manual PUBACK per message, nothing else) draining the same backlog.

`run_gateway`: the same fixes as batches of 1000 on tagwatch/v1/gateway/GW/fixes (msgpack
or JSON), drained from a queue. `run_gateway_shards`: the same with a subject a tag, by one
engine and by `serve --shard i/N` engines together.

Targets (issue 16): tamper -> alert p99 < 1 s while fixes are backlogged (without the lane a
strap cut waits for every fix queued before it); the engine drains single-fix QoS 1 at
>= 0.8 of the bare subscriber's rate; gateway batches >= 500,000 fixes/s."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import paho.mqtt.client as paho

from engine.broker.process import MosquittoProcess
from engine.wire.alerts import decode_alert
from tests.helpers import EngineProcess, offset, square, wait_online
from zones.shard import Shard


@dataclass
class BacklogFigures:
    lane: bool
    tags: int
    fixes: int
    drain_s: float = math.nan
    lags: list[float] = field(default_factory=list)
    events: int = 0

    def pct(self, q: float) -> float:
        if not self.lags:
            return math.nan
        xs = sorted(self.lags)
        return xs[min(len(xs) - 1, math.ceil(q / 100 * len(xs)) - 1)]

    def line(self) -> str:
        return (
            f"{'priority lane' if self.lane else 'one lane     '}: {self.fixes} fixes of"
            f" {self.tags} tags drained in {self.drain_s:.1f} s ({self.fixes / self.drain_s:.0f}"
            f" fixes/s); tamper -> alert p50 {self.pct(50) * 1000:.0f} ms, p99"
            f" {self.pct(99) * 1000:.0f} ms, max {max(self.lags, default=math.nan) * 1000:.0f} ms"
            f" ({len(self.lags)} of {self.events} alerted)"
        )


def _world(d: Path, tags: int, events: int) -> tuple[Path, Path]:
    feats = [{
        "type": "Feature",
        "properties": {"id": "ZW", "subject": "SW", "kind": "exclusion"},
        "geometry": {"type": "Polygon", "coordinates": [square(100.0)]},
    }]  # fmt: skip
    bg = ", ".join(f'"B{i}"' for i in range(tags))
    ev = ", ".join(f'"E{i}"' for i in range(events))
    subs = (f'[[subjects]]\nid = "SW"\ntags = ["W"]\n\n[[subjects]]\nid = "SB"\ntags = [{bg}]\n\n'
            f'[[subjects]]\nid = "SE"\ntags = [{ev}]\n')  # fmt: skip
    zones, subjects = d / "zones.geojson", d / "subjects.toml"
    zones.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    subjects.write_text(subs)
    return zones, subjects


def _gateway_backlog(
    tags: int, fixes: int, now: float, per_msg: int, form: str
) -> list[tuple[str, bytes]]:
    """The same fixes as `_backlog` (W's walk-in last), in gateway batches of `per_msg`."""
    items = [{"tag": t.split("/")[3], **json.loads(b)} for t, b in _backlog(tags, fixes, now)]
    return _batched(items, per_msg, form)


def _batched(items: list[dict[str, Any]], per_msg: int, form: str) -> list[tuple[str, bytes]]:
    """Gateway GW's messages: `items` (replay-line objects) `per_msg` to a batch, encoded as
    `form` (msgpack or JSON)."""
    import msgspec

    enc = msgspec.msgpack.encode if form == "msgpack" else msgspec.json.encode
    return [("tagwatch/v1/gateway/GW/fixes", enc(items[i : i + per_msg]))
            for i in range(0, len(items), per_msg)]  # fmt: skip


def run_gateway(tags: int = 10_000, fixes: int = 120_000, per_msg: int = 1000,
                form: str = "msgpack", workdir: Path | None = None) -> float:  # fmt: skip
    """Fixes/s the live engine drains from a backlog of gateway batches (timed from the
    engine's connection to W's breach alert, the last record)."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        d = Path(tmp)
        zones, subjects = _world(d, tags, 1)
        everyone = ", ".join(['"W"', *(f'"B{i}"' for i in range(tags))])
        subjects.write_text(
            subjects.read_text() + f'\n[[gateways]]\nid = "GW"\ntags = [{everyone}]\n'
        )
        with MosquittoProcess(workdir=d / "mosquitto") as broker:
            host, port = broker.host, broker.port
            eng = EngineProcess(host, port, zones, subjects, d / "e.db")
            with eng:
                asyncio.run(wait_online(host, port))
                eng.stop()
            publish_fast(host, port, _gateway_backlog(tags, fixes, time.time(), per_msg, form))
            fig = BacklogFigures(True, tags, fixes, events=0)
            try:
                asyncio.run(_measure(host, port, eng, fig))
            finally:
                eng.stop()
    return fixes / fig.drain_s


def _marker(shard: int, shards: int) -> str:
    """A subject id that `--shard shard/shards` owns."""
    return next(f"SM{k}" for k in range(1000) if Shard(shard, shards).owns(f"SM{k}"))


def run_gateway_shards(shards: int, tags: int = 10_000, fixes: int = 120_000,
                       per_msg: int = 1000, form: str = "msgpack",
                       workdir: Path | None = None, settings: str = "") -> float:  # fmt: skip
    """Fixes/s that `shards` engines (`serve --shard i/N`; 1: one engine) together drain
    from a backlog of gateway batches, each engine taking its own subjects' elements of
    every batch. A subject per tag (a gateway relays many people's tags); each shard has a
    marker subject whose walk-in comes last, timed from every engine's connection to the
    last marker's breach. `settings`: engine settings (TOML lines) for every engine."""
    markers = [_marker(i, shards) for i in range(shards)]
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        d = Path(tmp)
        feats = [{
            "type": "Feature",
            "properties": {"id": f"Z{m}", "subject": m, "kind": "exclusion"},
            "geometry": {"type": "Polygon", "coordinates": [square(100.0, cx=1000.0 * k)]},
        } for k, m in enumerate(markers)]  # fmt: skip
        zones, subjects = d / "zones.geojson", d / "subjects.toml"
        zones.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
        everyone = [*(f"B{i}" for i in range(tags)), *(f"W{m}" for m in markers)]
        subjects.write_text(
            "".join(f'[[subjects]]\nid = "S{t}"\ntags = ["{t}"]\n\n' for t in everyone[:tags])
            + "".join(f'[[subjects]]\nid = "{m}"\ntags = ["W{m}"]\n\n' for m in markers)
            + f'[[gateways]]\nid = "GW"\ntags = {json.dumps(everyone)}\n'
        )
        backlog = _backlog(tags, fixes, time.time())[: -len(WALK_IN)]  # without W's walk-in
        items = [{"tag": t.split("/")[3], **json.loads(b)} for t, b in backlog]
        t_end = items[-1]["t"] + 60.0
        for k, m in enumerate(markers):
            for i, dx in enumerate(WALK_IN):
                items.append({"tag": f"W{m}", **json.loads(_fix(i, t_end + 15.0 * i,
                                                                 1000.0 * k + dx, 0.0))})  # fmt: skip
        msgs = _batched(items, per_msg, form)
        with MosquittoProcess(workdir=d / "mosquitto") as broker:
            host, port = broker.host, broker.port
            conf = d / "settings.toml"
            conf.write_text(settings + "\n")
            engines = [
                EngineProcess(host, port, zones, subjects, d / f"e{i}.db",
                              extra_args=["--settings", str(conf)]
                              + ([] if shards == 1 else ["--shard", f"{i}/{shards}"]))
                for i in range(shards)
            ]  # fmt: skip
            for eng in engines:
                eng.start()
            for eng in engines:  # each has subscribed (its sessions are the broker's)
                while eng.log_text().count("broker: connected") < 1:
                    time.sleep(0.05)
                eng.stop()
            publish_fast(host, port, msgs)
            took = asyncio.run(_drain(host, port, engines, {f"W{m}" for m in markers}))
    return fixes / took


async def _drain(host: str, port: int, engines: list[EngineProcess], tags: set[str]) -> float:
    """Seconds from every engine's connection to the breach of each of `tags`."""
    got: set[str] = set()
    async with aiomqtt.Client(host, port, identifier="bench-gateway-watch") as c:
        await c.subscribe("tagwatch/v1/alerts/+", qos=1)
        for eng in engines:
            eng.start()
        try:
            for eng in engines:
                while eng.log_text().count("broker: connected") < 2:
                    await asyncio.sleep(0.02)
            t0 = time.monotonic()
            async with asyncio.timeout(600):
                async for m in c.messages:
                    a = decode_alert(bytes(m.payload))  # type: ignore[arg-type]
                    if a.kind == "zone_breach" and a.tag in tags:
                        got.add(a.tag)
                        if got == tags:
                            return time.monotonic() - t0
        finally:
            for eng in engines:
                eng.stop()
    raise RuntimeError("unreachable")


# A walk into a zone (metres east of its centre, a fix every 15 s): the backlog's last
WALK_IN = (-400.0, -200.0, -30.0, 0.0, 20.0)


def _fix(seq: int, t: float, dx: float, dy: float) -> bytes:
    lat, lon = offset(dx, dy)
    return json.dumps({"seq": seq, "t": t, "lat": lat, "lon": lon, "acc": 5.0}).encode()


def _backlog(tags: int, fixes: int, now: float) -> list[tuple[str, bytes]]:
    rounds = max(1, fixes // tags)
    t0 = now - 60.0 * rounds - 120.0
    msgs = [
        (f"tagwatch/v1/tags/B{b}/fix", _fix(r, t0 + 60.0 * r + b * 60.0 / tags, 5000.0, 5000.0))
        for r in range(rounds)
        for b in range(tags)
    ][:fixes]
    t_end = t0 + 60.0 * rounds
    for i, dx in enumerate(WALK_IN):
        msgs.append(("tagwatch/v1/tags/W/fix", _fix(i, t_end + 15.0 * i, dx, 0.0)))
    return msgs


def publisher(host: str, port: int, client_id: str, inflight: int) -> paho.Client:
    """A connected MQTT 5 paho client with `inflight` QoS 1 publishes in flight and no queue
    limit, its network loop in a thread of its own."""
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    c.max_inflight_messages_set(inflight)
    c.max_queued_messages_set(0)
    c.connect(host, port)
    c.loop_start()
    return c


def publish_fast(host: str, port: int, msgs: list[tuple[str, bytes]]) -> None:
    """QoS 1 in order with many in flight (paho in a thread of its own)."""
    c = publisher(host, port, "bench-backlog", 500)
    try:
        infos = []
        # paho numbers QoS 1 messages with 16-bit ids: more than 65,535 unacknowledged at
        # once collide (ERR_QUEUE_SIZE), so publish in chunks and let each drain
        for k in range(0, len(msgs), 50_000):
            chunk = [c.publish(topic, body, qos=1) for topic, body in msgs[k : k + 50_000]]
            for info in chunk:
                info.wait_for_publish(120)
            infos += chunk
    finally:
        c.disconnect()
        c.loop_stop()
    if not all(i.is_published() for i in infos):
        raise RuntimeError("the broker did not take every message within 120 s")


async def _measure(host: str, port: int, eng: EngineProcess, fig: BacklogFigures) -> None:
    sent: dict[str, float] = {}
    got: dict[str, float] = {}
    done = asyncio.Event()
    t_start = [0.0]

    async def watch(c: aiomqtt.Client) -> None:
        async for m in c.messages:
            a = decode_alert(bytes(m.payload))  # type: ignore[arg-type]
            now = time.monotonic()
            if a.kind == "tamper" and a.state == "open" and a.tag and a.tag not in got:
                got[a.tag] = now
            if a.kind == "zone_breach" and a.tag == "W" and not math.isfinite(fig.drain_s):
                fig.drain_s = now - t_start[0]
            if math.isfinite(fig.drain_s) and len(got) >= len(sent) == fig.events:
                done.set()

    async with aiomqtt.Client(host, port, identifier="bench-backlog-watch") as c:
        await c.subscribe("tagwatch/v1/alerts/+", qos=1)
        watcher = asyncio.create_task(watch(c))
        t_start[0] = time.monotonic()
        eng.start()
        # Events from when the engine is connected (the retained status may be the first
        # run's): the bench times the backlog, not the engine's start-up
        says = "priority lane: connected" if fig.lane else "broker: connected"
        while eng.log_text().count(says) < 2:
            await asyncio.sleep(0.02)
        t_start[0] = time.monotonic()  # the drain is timed from the connection too
        async with aiomqtt.Client(host, port, identifier="bench-backlog-events") as pub:
            for i in range(fig.events):
                tag = f"E{i}"
                body = json.dumps({"seq": 1, "t": time.time(), "event": "strap_open"})
                sent[tag] = time.monotonic()
                await pub.publish(f"tagwatch/v1/tags/{tag}/event", body, qos=1)
                await asyncio.sleep(0.1)
        try:
            await asyncio.wait_for(done.wait(), 600)
        finally:
            watcher.cancel()
    fig.lags = [got[t] - sent[t] for t in sent if t in got]


def run_backlog(lane: bool, tags: int = 10_000, fixes: int = 60_000, events: int = 40,
                workdir: Path | None = None, settings: str = "") -> BacklogFigures:  # fmt: skip
    """`settings`: more engine settings (TOML lines) for the run."""
    fig = BacklogFigures(lane, tags, fixes, events=events)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        d = Path(tmp)
        zones, subjects = _world(d, tags, events)
        conf = d / "settings.toml"
        conf.write_text(f"urgent_lane = {str(lane).lower()}\n{settings}\n")
        with MosquittoProcess(workdir=d / "mosquitto") as broker:
            host, port = broker.host, broker.port
            eng = EngineProcess(host, port, zones, subjects, d / "e.db", conf)
            with eng:
                asyncio.run(wait_online(host, port))
                eng.stop()
            t = threading.Thread(
                target=publish_fast, args=(host, port, _backlog(tags, fixes, time.time()))
            )
            t.start()
            t.join()
            try:
                asyncio.run(_measure(host, port, eng, fig))
            finally:
                eng.stop()
    return fig


def _bare_client(client_id: str) -> paho.Client:
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    c.manual_ack_set(True)
    return c


def run_bare_paho(tags: int = 10_000, fixes: int = 60_000, workdir: Path | None = None) -> float:
    """The floor for the live engine: a bare paho subscriber (MQTT 5 persistent session,
    JSON decode and a manual PUBACK per message, nothing else) draining the same backlog
    from the same broker. Its rate in messages/s."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = 2000
    want = fixes + 5
    with (
        tempfile.TemporaryDirectory(dir=workdir) as tmp,
        MosquittoProcess(workdir=Path(tmp) / "mosquitto") as broker,
    ):
        host, port = broker.host, broker.port
        c = _bare_client("bench-bare")
        c.connect(host, port, clean_start=False, properties=props)
        c.loop_start()
        c.subscribe("tagwatch/v1/tags/+/fix", qos=1)
        time.sleep(0.3)
        c.disconnect()
        c.loop_stop()
        publish_fast(host, port, _backlog(tags, fixes, time.time()))
        got = [0]
        done = threading.Event()
        t0 = [0.0]
        c = _bare_client("bench-bare")

        def on_connect(cl: Any, userdata: Any, flags: Any, rc: Any, p: Any = None) -> None:
            t0[0] = time.monotonic()

        def on_message(cl: Any, userdata: Any, m: Any) -> None:
            json.loads(m.payload)
            cl.ack(m.mid, m.qos)
            got[0] += 1
            if got[0] >= want:
                done.set()

        c.on_connect, c.on_message = on_connect, on_message
        c.connect(host, port, clean_start=False, properties=props)
        c.loop_start()
        done.wait(600)
        took = time.monotonic() - t0[0]
        c.disconnect()
        c.loop_stop()
    return want / took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tags", type=int, default=10_000)
    ap.add_argument("--fixes", type=int, default=60_000)
    ap.add_argument("--events", type=int, default=40)
    a = ap.parse_args()
    bare = run_bare_paho(a.tags, a.fixes)
    print(f"bare paho subscriber: {bare:.0f} messages/s", flush=True)
    for form in ("msgpack", "json"):
        rate = run_gateway(a.tags, 2 * a.fixes, 1000, form)
        print(f"gateway batches of 1000 ({form}): {rate:.0f} fixes/s", flush=True)
    for n in (1, 2):
        rate = run_gateway_shards(n, a.tags, 2 * a.fixes)
        print(f"gateway batches of 1000, a subject a tag, {n} engine(s): {rate:.0f} fixes/s")
    for lane in (True, False):
        fig = run_backlog(lane, a.tags, a.fixes, a.events)
        rate = fig.fixes / fig.drain_s
        print(f"{fig.line()}; {rate / bare:.2f} of bare paho", flush=True)


if __name__ == "__main__":
    main()
