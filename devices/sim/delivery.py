"""How a family's fixes reach the engine: replay lines, arrival times (live, a late
`/fixes` batch, bounded shuffles, duplicates), arrival-ordered replay lines and MQTT messages.

A `Delivery` is one publication: a single fix, a store-and-forward batch, or an OwnTracks
report. Replay files list the records of every delivery in arrival order (a batch's lines
together, where it arrived); MQTT carries each delivery as one message."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from devices.sensing.sensor import FixColumns
from devices.world.geo import LocalFrame

Channel = Literal["fix", "fixes", "owntracks"]
Line = dict[str, Any]
LATENCY_S = (0.2, 2.0)  # network latency of a live publication


@dataclass(frozen=True)
class Delivery:
    """One publication arriving at `arrival` (Unix s): replay-line records from `device`."""

    arrival: float
    device: str
    channel: Channel
    records: tuple[Line, ...]


def tag_lines(tag: str, frame: LocalFrame, cols: FixColumns, seq0: int) -> list[Line]:
    """Contract replay lines (fix object + "tag") for a tag's fixes, seq from seq0."""
    lat, lon = frame.to_latlon(cols.x, cols.y)
    rows = zip(
        cols.t.tolist(),
        np.round(lat, 7).tolist(),
        np.round(lon, 7).tolist(),
        np.round(cols.acc, 1).tolist(),
        cols.batt.tolist(),
        cols.src.tolist(),
        strict=True,
    )
    return [
        {"tag": tag, "seq": seq0 + i, "t": t, "lat": la, "lon": lo, "acc": a, "batt": b, "src": s}
        for i, (t, la, lo, a, b, s) in enumerate(rows)
    ]


def phone_lines(device: str, frame: LocalFrame, cols: FixColumns) -> list[Line]:
    """Replay lines for an OwnTracks phone: seq = integer tst, acc whole metres."""
    lat, lon = frame.to_latlon(cols.x, cols.y)
    rows = zip(
        cols.t.tolist(),
        np.round(lat, 7).tolist(),
        np.round(lon, 7).tolist(),
        np.maximum(1, np.round(cols.acc)).tolist(),
        cols.batt.tolist(),
        strict=True,
    )
    return [
        {
            "tag": device,
            "seq": int(t),
            "t": float(int(t)),
            "lat": la,
            "lon": lo,
            "acc": float(a),
            "batt": b,
            "src": "gps",
        }
        for t, la, lo, a, b in rows
    ]


def live(
    lines: Sequence[Line], rng: np.random.Generator, channel: Channel = "fix"
) -> list[Delivery]:
    """Each line published on its own as it is taken (plus a little latency)."""
    lat = rng.uniform(*LATENCY_S, len(lines))
    return [
        Delivery(round(ln["t"] + float(d), 3), ln["tag"], channel, (ln,))
        for ln, d in zip(lines, lat, strict=True)
    ]


def late_batch(
    lines: Sequence[Line],
    rng: np.random.Generator,
    span: tuple[float, float],
    after: int,
) -> list[Delivery]:
    """Lines taken in [span) are stored and uploaded later as one `/fixes` batch, once the
    tag has resumed live reporting and `after` live fixes have gone out; the rest are live."""
    held = [ln for ln in lines if span[0] <= ln["t"] < span[1]]
    rest = [ln for ln in lines if not span[0] <= ln["t"] < span[1]]
    out = live(rest, rng)
    if not held:
        return out
    resumed = sorted(d.arrival for d in out if d.arrival >= span[1])
    if len(resumed) >= after > 0:
        release = resumed[after - 1] + float(rng.uniform(1.0, 20.0))
    else:
        release = (resumed[-1] if resumed else span[1]) + float(rng.uniform(1.0, 20.0))
    out.append(Delivery(round(release, 3), held[0]["tag"], "fixes", tuple(held)))
    return out


def shuffled(lines: Sequence[Line], rng: np.random.Generator, window_s: float) -> list[Delivery]:
    """Live, but each arrival delayed by up to `window_s`: order is shuffled within a
    bounded window (at 1 fix/min, window_s = 180 moves a fix at most 3 places)."""
    delay = rng.uniform(0.0, window_s, len(lines))
    return [
        Delivery(round(ln["t"] + float(d), 3), ln["tag"], "fix", (ln,))
        for ln, d in zip(lines, delay, strict=True)
    ]


def duplicated(
    deliveries: Sequence[Delivery], rng: np.random.Generator, p: float, later_s: float
) -> list[Delivery]:
    """Every delivery, plus a copy of about a share `p` of them re-sent up to `later_s`
    later (an ack lost on the way back: QoS 1 resends)."""
    out = list(deliveries)
    for d in deliveries:
        if rng.random() < p:
            again = round(d.arrival + float(rng.uniform(0.0, later_s)), 3)
            out.append(Delivery(again, d.device, d.channel, d.records))
    return out


def arrival_order(deliveries: Iterable[Delivery]) -> list[Delivery]:
    """Sorted by arrival; ties keep generation order (Python's sort is stable)."""
    return sorted(deliveries, key=lambda d: d.arrival)


def flatten(deliveries: Iterable[Delivery]) -> list[Line]:
    """Replay lines in arrival order (a batch's records together, in its own order)."""
    return [r for d in arrival_order(deliveries) for r in d.records]


def _fix_payload(line: Line) -> dict[str, Any]:
    return {k: v for k, v in line.items() if k != "tag"}


def mqtt_message(d: Delivery) -> tuple[str, bytes]:
    """(topic, payload) of a delivery as the device publishes it."""
    if d.channel == "owntracks":
        (ln,) = d.records
        user = d.device.split("/", 1)[0]
        body: Any = {
            "_type": "location",
            "lat": ln["lat"],
            "lon": ln["lon"],
            "tst": ln["seq"],
            "acc": int(ln["acc"]),
            "batt": ln["batt"],
            "tid": (user[:1] + user[-1:]).upper(),
        }
        return f"owntracks/{d.device}", json.dumps(body, separators=(",", ":")).encode()
    if d.channel == "fixes":
        body = [_fix_payload(r) for r in d.records]
        return f"tagwatch/v1/tags/{d.device}/fixes", json.dumps(
            body, separators=(",", ":")
        ).encode()
    (ln,) = d.records
    body = _fix_payload(ln)
    return f"tagwatch/v1/tags/{d.device}/fix", json.dumps(body, separators=(",", ":")).encode()


def mqtt_messages(deliveries: Iterable[Delivery]) -> list[tuple[str, bytes]]:
    """Every delivery as an MQTT (topic, payload), in arrival order."""
    return [mqtt_message(d) for d in arrival_order(deliveries)]
