"""Warming the kernels before `tagwatch serve` takes input.

numba compiles (or loads from its cache) each kernel on its first call for the argument
types it meets: the first batch a fresh engine decides paid 35 ms for it, 180 ms as one of
two shards (measured at stop 26), and under a backlog after a restart every record behind
that batch waited too. So `serve` first runs a throwaway pipeline of the same settings and
shard over a tiny world of its own (a polygon and a circle zone, two tags, a gateway):
plain gateway batches, single fixes, an event, a walk-in that opens and closes a breach,
a tick; and the Merkle root of those batches as a records row (the store's kernel). The
same kernels meet the same types, so the real pipeline's first batch finds them ready.
Nothing of it touches the real pipeline, the store or the broker."""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import msgspec

from engine.core.pipeline import Pipeline
from engine.settings import Settings
from engine.store.config import ConfigFiles
from engine.store.ledger import records_root
from engine.wire.decode import decode_into, decode_message
from engine.wire.fastpath import FixLines
from engine.wire.records import Record
from engine.wire.replayline import encoded_columns
from zones.shard import Shard

log = logging.getLogger("tagwatch.serve")

LAT0, LON0 = 51.5, -0.12
_M = 1.0 / 111_320.0  # degrees of latitude a metre
PHONE = "warm/phone"  # an OwnTracks phone: a victim's device, for proximity's kernels


def _world(d: Path, tags: list[str]) -> tuple[Path, Path]:
    square = [[LON0 - 0.002, LAT0 - 0.001], [LON0, LAT0 - 0.001], [LON0, LAT0 + 0.001],
              [LON0 - 0.002, LAT0 + 0.001], [LON0 - 0.002, LAT0 - 0.001]]  # fmt: skip
    feats = []
    for k in range(len(tags)):
        feats.append({
            "type": "Feature",
            "properties": {"id": f"P{k}", "subject": f"S{k}", "kind": "exclusion",
                           "warn_m": 200.0},
            "geometry": {"type": "Polygon", "coordinates": [square]},
        })  # fmt: skip
        feats.append({
            "type": "Feature",
            "properties": {"id": f"C{k}", "subject": f"S{k}", "kind": "exclusion",
                           "radius_m": 100.0},
            "geometry": {"type": "Point", "coordinates": [LON0 + 0.01, LAT0]},
        })  # fmt: skip
        feats.append({
            "type": "Feature",
            "properties": {"id": f"H{k}", "subject": f"S{k}", "kind": "inclusion",
                           "radius_m": 50.0, "schedule": [{"days": "Mon-Sun", "start": "00:00",
                                                           "end": "23:59", "tz": "Europe/London"}]},
            "geometry": {"type": "Point", "coordinates": [LON0 - 0.02, LAT0]},
        })  # fmt: skip
    zones, subjects = d / "zones.geojson", d / "subjects.toml"
    zones.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    subjects.write_text(
        "".join(f'[[subjects]]\nid = "S{k}"\ntags = ["{t}"]\n\n' for k, t in enumerate(tags))
        + f'[[subjects]]\nid = "SP"\ntags = ["WARMP"]\n[[subjects.protected]]\ndevice = "{PHONE}"\n'
        + "radius_m = 500\nwarn_m = 1000\n\n"
        + f'[[gateways]]\nid = "GW"\ntags = {json.dumps(tags)}\n'
    )
    return zones, subjects


def _fix(tag: str, seq: int, t: float, east_m: float) -> dict[str, object]:
    return {"tag": tag, "seq": seq, "t": t, "lat": LAT0,
            "lon": LON0 - 0.001 + east_m * _M / 0.62, "acc": 8.0, "batt": 80}  # fmt: skip


def _single(tag: str, seq: int, t: float, east_m: float) -> tuple[str, bytes]:
    """A single-fix message of `tag` (its topic names the tag; the payload does not)."""
    body = {k: v for k, v in _fix(tag, seq, t, east_m).items() if k != "tag"}
    return f"tagwatch/v1/tags/{tag}/fix", json.dumps(body).encode()


def warm(settings: Settings, shard: Shard | None = None) -> float:
    """Run the kernels once; the seconds it took (never raises: a failure here would only
    leave the first batch to compile, as before)."""
    t0 = time.perf_counter()
    try:
        kinds = _warm(settings, shard)
        log.debug("kernel warm-up raised %s", sorted(set(kinds)))
    except Exception as e:
        log.warning("kernel warm-up skipped: %s", e)
    return time.perf_counter() - t0


def _warm(settings: Settings, shard: Shard | None) -> list[str]:
    """The kinds of alert the throwaway pipeline raised (what it exercised)."""
    tags = [f"WARM{k}" for k in range(8)]  # enough that a shard has some and lacks some
    with tempfile.TemporaryDirectory(prefix="tagwatch-warm-") as tmp:
        zones, subjects = _world(Path(tmp), tags)
        zs = ConfigFiles.read(str(zones), str(subjects), shard).zoneset()
    p = Pipeline(zs, settings)
    now = time.time()
    kinds: list[str] = []
    rows = FixLines()  # the gateway batches' lines, hashed at the end as a records row

    def run(recs: Sequence[Record], t: float) -> None:
        kinds.extend(a.kind for a in p.process(recs, origin="mqtt", arrival=t, wall=t).alerts)

    walk = [-900.0, -400.0, -150.0, -20.0, 30.0, 60.0, 60.0, 80.0, 400.0, 900.0]
    for i, east in enumerate(walk):
        t = now - 600.0 + 30.0 * i
        items = [_fix(tag, i, t, east + 5.0 * k) for k, tag in enumerate(tags)]
        # a JSON gateway batch, then the same as msgpack: duplicates, dedupe's kernel
        for payload in (json.dumps(items).encode(), msgspec.msgpack.encode(items)):
            batch = FixLines()
            decode_into(batch, "tagwatch/v1/gateway/GW/fixes", payload, gateways=p.gateways)
            run(batch.batch(), t)
            rows.extend(batch)
        single = FixLines()
        for tag in tags[:3]:
            decode_into(single, *_single(tag, 100 + i, t + 1, -east), gateways=p.gateways)
        run(single, t + 1)
        phone = {"_type": "location", "lat": LAT0, "lon": LON0, "tst": int(t), "acc": 10}
        run(
            [*decode_message(*_single("WARMP", i, t, east))[0],
             *decode_message(f"owntracks/{PHONE}", json.dumps(phone).encode())[0]],
            t,
        )  # fmt: skip
        if i == 5:
            ev = {"seq": 200, "t": t + 2, "event": "strap_open", "batt": 50}
            recs, _ = decode_message(
                f"tagwatch/v1/tags/{tags[0]}/event", json.dumps(ev).encode(), gateways=p.gateways
            )
            run(recs, t + 2)
        kinds.extend(a.kind for a in p.tick(t + 20, wall=t + 20).alerts)
    records_root(encoded_columns(rows)[4])  # a records row's Merkle kernel
    return kinds
