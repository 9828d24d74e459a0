"""How a device's fixes reach the engine: the rows it reports, replay lines, arrival times
(live, a late `/fixes` batch, bounded shuffles, duplicates), arrival-ordered replay lines and
MQTT messages (payloads and topics from `engine.wire`).

A `Delivery` is one publication: a single fix, a store-and-forward batch, or an OwnTracks
report. Replay files list the records of every delivery in arrival order (a batch's lines
together, where it arrived); MQTT carries each delivery as one message."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from devices.sensing.sensor import FixColumns
from devices.world.geo import LocalFrame
from engine.wire import payloads, topics

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


def tag_rows(
    frame: LocalFrame, cols: FixColumns
) -> Iterator[tuple[float, float, float, float, int, str]]:
    """A tag's fixes as it reports them: (t, lat, lon, acc, batt, src), lat and lon to 7
    decimals (about 1 cm), acc to 0.1 m."""
    lat, lon = frame.to_latlon(cols.x, cols.y)
    return zip(
        cols.t.tolist(),
        np.round(lat, 7).tolist(),
        np.round(lon, 7).tolist(),
        np.round(cols.acc, 1).tolist(),
        cols.batt.tolist(),
        cols.src.tolist(),
        strict=True,
    )


def phone_rows(
    frame: LocalFrame, cols: FixColumns
) -> Iterator[tuple[float, float, float, int, int]]:
    """A phone's fixes as OwnTracks reports them: (t, lat, lon, acc, batt), acc in whole
    metres (at least 1)."""
    lat, lon = frame.to_latlon(cols.x, cols.y)
    return zip(
        cols.t.tolist(),
        np.round(lat, 7).tolist(),
        np.round(lon, 7).tolist(),
        np.maximum(1, np.round(cols.acc)).astype(int).tolist(),
        cols.batt.tolist(),
        strict=True,
    )


def tag_lines(tag: str, frame: LocalFrame, cols: FixColumns, seq0: int) -> list[Line]:
    """Contract replay lines (fix object + "tag") for a tag's fixes, seq from seq0."""
    return [
        payloads.replay_line(tag, "fix", payloads.fix(seq0 + i, t, la, lo, a, b, s))
        for i, (t, la, lo, a, b, s) in enumerate(tag_rows(frame, cols))
    ]


def phone_lines(device: str, frame: LocalFrame, cols: FixColumns) -> list[Line]:
    """Replay lines for an OwnTracks phone: seq = integer tst, acc whole metres."""
    return [
        payloads.replay_line(
            device, "owntracks", payloads.owntracks_location(device, int(t), la, lo, a, b)
        )
        for t, la, lo, a, b in phone_rows(frame, cols)
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


def mqtt_message(d: Delivery) -> tuple[str, bytes]:
    """(topic, payload) of a delivery as the device publishes it."""
    if d.channel == "owntracks":
        (ln,) = d.records
        body = payloads.owntracks_location(
            d.device, ln["seq"], ln["lat"], ln["lon"], int(ln["acc"]), ln["batt"]
        )
        return topics.owntracks(d.device), payloads.encode(body)
    if d.channel == "fixes":
        batch = [payloads.tag_payload(r) for r in d.records]
        return topics.fixes(d.device), payloads.encode(batch)
    (ln,) = d.records
    return topics.fix(d.device), payloads.encode(payloads.tag_payload(ln))


def mqtt_messages(deliveries: Iterable[Delivery]) -> list[tuple[str, bytes]]:
    """Every delivery as an MQTT (topic, payload), in arrival order."""
    return [mqtt_message(d) for d in arrival_order(deliveries)]
