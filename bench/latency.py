"""Fix published -> alert published under steady load, one engine beside two shards.

    python -m bench.latency [--rates 5000,10000] [--seconds 30] [--tags 5000] [--shards 1,2]

A private mosquitto and `tagwatch serve` (subprocesses; with `--shards 2`, two engines run
as `--shard 0/2` and `1/2`). Background: `--tags` tags far from every zone publish single
fixes at QoS 1, `rate` a second in all, paced every 10 ms. Probes, one every 0.25 s (`--every`),
alternate between
- a walk-in: a probe tag, its own subject and zone, sends three fixes deep inside its zone
  at once (event times 15 s apart): the latency is from publishing the fix the breach
  alert's evidence names last to receiving the alert record;
- a strap cut: a `strap_open` event from a probe tag, timed to its `tamper` alert.
A subscriber on tagwatch/v1/alerts/+ times each. Figures: p50/p99/max per kind, and how
many fixes/s the broker actually took (the load generator shares the machine).

Target (issue 16): breach p99 < 50 ms at 5,000 fixes/s; tamper p99 < 1 s."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

from bench.backlog import publisher
from engine.broker.process import MosquittoProcess
from engine.wire import topics
from engine.wire.alerts import decode_alert
from tests.helpers import EngineProcess, offset, square, wait_online
from zones.shard import Shard

PROBES = 400  # probe subjects (each walks in once)
SPACING_M = 2000.0  # between probe zones (east-west)


@dataclass
class LatencyFigures:
    rate: int
    shards: int
    sent: int = 0
    seconds: float = 0.0
    breach: list[float] = field(default_factory=list)
    tamper: list[float] = field(default_factory=list)
    probes: dict[str, int] = field(default_factory=dict)

    @staticmethod
    def pct(xs: list[float], q: float) -> float:
        if not xs:
            return math.nan
        s = sorted(xs)
        return s[min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1)]

    def line(self) -> str:
        def part(name: str, xs: list[float]) -> str:
            ms = [1000 * self.pct(xs, q) for q in (50, 99)]
            top = 1000 * max(xs, default=math.nan)
            return (f"{name} p50 {ms[0]:.0f} ms p99 {ms[1]:.0f} ms max {top:.0f} ms"
                    f" ({len(xs)} of {self.probes.get(name, 0)})")  # fmt: skip

        took = self.sent / self.seconds if self.seconds else math.nan
        who = "1 engine " if self.shards == 1 else f"{self.shards} shards"
        return (f"{who} at {self.rate} fixes/s (broker took {took:.0f}/s):"
                f" {part('breach', self.breach)}; {part('tamper', self.tamper)}")  # fmt: skip


def _world(d: Path, tags: int) -> tuple[Path, Path]:
    feats, subs = [], []
    for i in range(PROBES):
        ring = [[lon, lat] for lon, lat in square(100.0, cx=SPACING_M * (i + 1))]
        feats.append({"type": "Feature",
                      "properties": {"id": f"Z{i}", "subject": f"SP{i}", "kind": "exclusion"},
                      "geometry": {"type": "Polygon", "coordinates": [ring]}})  # fmt: skip
        subs.append(f'[[subjects]]\nid = "SP{i}"\ntags = ["P{i}", "E{i}"]\n')
    per = 50  # background tags per subject
    for s in range(math.ceil(tags / per)):
        ids = ", ".join(f'"B{b}"' for b in range(s * per, min(tags, (s + 1) * per)))
        subs.append(f'[[subjects]]\nid = "SB{s}"\ntags = [{ids}]\n')
    zones, subjects = d / "zones.geojson", d / "subjects.toml"
    zones.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    subjects.write_text("\n".join(subs))
    return zones, subjects


def _fix(seq: int, t: float, dx: float, dy: float) -> bytes:
    lat, lon = offset(dx, dy)
    return json.dumps({"seq": seq, "t": t, "lat": lat, "lon": lon, "acc": 5.0}).encode()


def _load(host: str, port: int, tags: int, rate: int, stop: Any, sent: Any) -> None:
    """`rate` single fixes a second from `tags` tags far from every zone, QoS 1, until
    `stop` is set; a process of its own, so the probes' timing does not share its GIL."""
    c = publisher(host, port, "bench-load", 1000)
    seqs = [0] * tags
    t0 = time.monotonic()
    n = 0
    while not stop.is_set():
        due = int((time.monotonic() - t0) * rate)
        while n < due:
            b = n % tags
            seqs[b] += 1
            c.publish(f"tagwatch/v1/tags/B{b}/fix", _fix(seqs[b], time.time(), -5000.0, -5000.0),
                      qos=1)  # fmt: skip
            n += 1
        sent.value = n
        time.sleep(0.01)
    c.disconnect()
    c.loop_stop()


async def _probe(
    host: str, port: int, fig: LatencyFigures, seconds: float, every: float = 0.25
) -> None:
    sent: dict[tuple[str, int], float] = {}  # (device, seq) -> when published
    got: dict[str, float] = {}

    async def watch(c: aiomqtt.Client) -> None:
        async for m in c.messages:
            a = decode_alert(bytes(m.payload))  # type: ignore[arg-type]
            now = time.monotonic()
            if a.state != "open" or not a.tag or a.tag in got:
                continue
            if a.kind == "tamper":
                got[a.tag] = now
                fig.tamper.append(now - sent[(a.tag, 1)])
            elif a.kind == "zone_breach":
                last = max(sent.get((str(e[0]), int(e[1])), -1.0) for e in a.evidence)
                if last > 0:
                    got[a.tag] = now
                    fig.breach.append(now - last)

    async with aiomqtt.Client(host, port, identifier="bench-latency-watch") as c:
        await c.subscribe("tagwatch/v1/alerts/+", qos=1)
        watcher = asyncio.create_task(watch(c))
        async with aiomqtt.Client(host, port, identifier="bench-latency-probe") as pub:
            end, i = time.monotonic() + seconds, 0
            while time.monotonic() < end and i < 2 * PROBES:
                k = i // 2
                if i % 2 == 0:
                    fig.probes["breach"] = fig.probes.get("breach", 0) + 1
                    t = time.time() - 45.0
                    for q in range(1, 4):
                        sent[(f"P{k}", q)] = time.monotonic()
                        await pub.publish(topics.fix(f"P{k}"),
                                          _fix(q, t + 15.0 * q, SPACING_M * (k + 1), 0.0), qos=1)  # fmt: skip
                else:
                    fig.probes["tamper"] = fig.probes.get("tamper", 0) + 1
                    body = json.dumps({"seq": 1, "t": time.time(), "event": "strap_open"})
                    sent[(f"E{k}", 1)] = time.monotonic()
                    await pub.publish(topics.event(f"E{k}"), body, qos=1)
                i += 1
                await asyncio.sleep(every)
        await asyncio.sleep(3.0)  # the last probes' alerts
        watcher.cancel()


def run_latency(rate: int, shards: int = 1, tags: int = 5000, seconds: float = 30.0,
                workdir: Path | None = None, settings: str = "",
                every: float = 0.25) -> LatencyFigures:  # fmt: skip
    """`settings`: engine settings (TOML lines) for the run; a probe every `every` s."""
    fig = LatencyFigures(rate, shards)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        d = Path(tmp)
        zones, subjects = _world(d, tags)
        conf = d / "settings.toml"
        conf.write_text(settings + "\n")
        with MosquittoProcess(workdir=d / "mosquitto") as broker:
            host, port = broker.host, broker.port
            engines = []
            for i in range(shards):
                extra = [] if shards == 1 else ["--shard", f"{i}/{shards}"]
                eng = EngineProcess(host, port, zones, subjects, d / f"e{i}.db", conf,
                                    extra_args=extra)  # fmt: skip
                engines.append(eng.start())
            try:
                for i in range(shards):
                    label = None if shards == 1 else Shard(i, shards).label
                    asyncio.run(wait_online(host, port, 120.0, topics.status(label)))
                stop, sent = multiprocessing.Event(), multiprocessing.Value("q", 0)
                load = multiprocessing.Process(target=_load, args=(host, port, tags, rate, stop,
                                                                   sent), daemon=True)  # fmt: skip
                load.start()
                time.sleep(3.0)  # steady state before the probes
                t0, n0 = time.monotonic(), sent.value
                asyncio.run(_probe(host, port, fig, seconds, every))
                fig.seconds, fig.sent = time.monotonic() - t0, sent.value - n0
                stop.set()
                load.join(10)
            finally:
                for eng in engines:
                    eng.stop()
    return fig


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="5000,10000")
    ap.add_argument("--shards", default="1,2")
    ap.add_argument("--tags", type=int, default=5000)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--settings", default="", help="engine settings, TOML lines (; between)")
    ap.add_argument("--every", type=float, default=0.25, help="seconds between probes")
    a = ap.parse_args(argv)
    for rate in (int(r) for r in a.rates.split(",")):
        for n in (int(s) for s in a.shards.split(",")):
            fig = run_latency(rate, n, a.tags, a.seconds, settings=a.settings.replace(";", "\n"),
                              every=a.every)  # fmt: skip
            print(fig.line(), flush=True)


if __name__ == "__main__":
    main()
