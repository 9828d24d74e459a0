"""What devices publish, built and encoded in one place: a fix, a /fixes batch, an event,
an OwnTracks location, and the replay line that stands for each in a replay file.

Builders give plain dicts in the contract's key order; `encode` gives the bytes (compact
JSON in that order, floats as Python's repr writes them), so a simulator's replay file and
what it publishes live are the same bytes run after run. `decode.py` and `replayline.py`
read what this writes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

Payload = dict[str, Any]  # one fix, event, OwnTracks location or replay line


def encode(obj: Payload | Sequence[Payload]) -> bytes:
    """Compact JSON in the object's own key order (a list for a `/fixes` batch): the same
    run gives the same bytes. NaN and Infinity are refused: the contract has no such
    numbers."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def fix(
    seq: int,
    t: float,
    lat: float,
    lon: float,
    acc: float,
    batt: int | None = None,
    src: str | None = None,
) -> Payload:
    """A fix as a tag publishes it on tagwatch/v1/tags/{tag}/fix (and one element of a
    `/fixes` batch, a list of these); `batt` and `src` are left out when None."""
    p: Payload = {"seq": seq, "t": t, "lat": lat, "lon": lon, "acc": acc}
    if batt is not None:
        p["batt"] = batt
    if src is not None:
        p["src"] = src
    return p


def event(seq: int, t: float, name: str, batt: int | None = None) -> Payload:
    """An event as a tag publishes it on tagwatch/v1/tags/{tag}/event (records.EVENT_NAMES;
    "battery" carries `batt`)."""
    p: Payload = {"seq": seq, "t": t, "event": name}
    if batt is not None:
        p["batt"] = batt
    return p


def tracker_id(device: str) -> str:
    """OwnTracks' two-character tracker id: first and last letter of the user, upper case."""
    user = device.split("/", 1)[0]
    return (user[:1] + user[-1:]).upper()


def owntracks_location(
    device: str, tst: int, lat: float, lon: float, acc: int, batt: int | None
) -> Payload:
    """An OwnTracks `_type: location` report as the phone `device` ("user/device")
    publishes it on owntracks/{user}/{device}: `tst` whole seconds, `acc` whole metres."""
    return {
        "_type": "location",
        "lat": lat,
        "lon": lon,
        "tst": tst,
        "acc": acc,
        "batt": batt,
        "tid": tracker_id(device),
    }


def replay_line(device: str, kind: str, payload: Payload) -> Payload:
    """The replay line for one publication of `device`, `kind` "fix", "event" or
    "owntracks": a fix object plus "tag"; an event object plus "tag" and "type": "event";
    an OwnTracks location as the fix it decodes to (seq = tst, src gps). A `/fixes` batch
    has one line per fix: `replay_lines`."""
    if kind == "event":
        return {"tag": device, "type": "event", **payload}
    if kind == "owntracks":
        p = payload
        return {
            "tag": device,
            "seq": p["tst"],
            "t": float(p["tst"]),
            "lat": p["lat"],
            "lon": p["lon"],
            "acc": float(p["acc"]),
            "batt": p["batt"],
            "src": "gps",
        }
    if kind == "fixes":
        raise ValueError("a /fixes batch has one replay line per fix: use replay_lines()")
    return {"tag": device, **payload}


def replay_lines(device: str, kind: str, payload: Any) -> list[Payload]:
    """Every replay line of one publication: one per fix of a `/fixes` batch (`payload` a
    list of fixes), else the one `replay_line`."""
    if kind == "fixes":
        return [{"tag": device, **p} for p in payload]
    return [replay_line(device, kind, payload)]


def tag_payload(line: Payload) -> Payload:
    """What a tag publishes for one of its replay lines: the line without "tag" and "type"
    (the topic says both)."""
    return {k: v for k, v in line.items() if k != "tag" and k != "type"}
