"""A subject's or victim phone's `timeline` table -> its moves, device events and battery
(`read_timeline`), each entry's fields checked against what its `do` allows."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from devices.health.tamper import TAMPER_KINDS
from devices.motion.scripted import Move, offset_text, too_deep
from devices.scenarios.model import Battery, DeviceEvent, Step
from devices.scenarios.parse import Entry, Places, describe
from devices.world.city import ZoneSpec

_SPAN = ("for", "until")
_GO = ("route", "speed_kmh")
# the fields each timeline entry may have, besides `do` and `at`
SUBJECT_STEPS: dict[str, tuple[str, ...]] = {
    "dwell": ("place", *_SPAN, "radius_m"),
    "walk_to": ("place", "via", "arrive", *_GO),
    "cycle_to": ("place", "via", "arrive", *_GO),
    "drive_to": ("place", "via", "arrive", *_GO),
    "enter_zone": ("zone", "depth_m", *_SPAN, "bearing", "leave", "mode", *_GO, "radius_m"),
    "drive_through": ("zone", "depth_m", "speed_kmh", "beyond_m"),
    "lurk": ("zone", "distance_m", *_SPAN, "bearing", "mode", *_GO, "radius_m"),
    "tamper": ("kind", *_SPAN, "toggles", "body"),
    "coverage_gap": _SPAN,
    "indoor": (*_SPAN, "cell_share", "cell_acc_m"),
    "battery": ("start_pct", "drain_pct_h", "charge_pct_h", "charge", "forget_to_charge",
                "flat_at", "recharge_after", "recharge_for"),
}  # fmt: skip
PHONE_STEPS: dict[str, tuple[str, ...]] = {
    "stationary": ("place", *_SPAN, "radius_m"),
    "moving": ("to", "via", "arrive", "mode", *_GO),
    "backgrounded": _SPAN,
}
_MODES = {"walk_to": "walk", "cycle_to": "cycle", "drive_to": "drive"}


@dataclass
class TimelineCtx:
    """What a timeline is read against: its file, the run [t0, t1), the places and the
    owner's own zones."""

    src: str
    t0: float
    t1: float
    places: Places
    zones: dict[str, ZoneSpec]  # this subject's own


def _span(e: Entry, ctx: TimelineCtx, at: float | None) -> tuple[float | None, float | None]:
    if e.has("for") and e.has("until"):
        raise e.fail("until", "give 'for' or 'until', not both")
    if not (e.has("for") or e.has("until")):
        raise e.fail("for", "missing (how long: 'for', or till when: 'until')")
    seconds = e.duration("for", None)
    until = e.time("until", ctx.t0, ctx.t1)
    if until is not None and at is not None and until <= at:
        raise e.fail("until", f"{offset_text(until)} is not after 'at' ({offset_text(at)})")
    return seconds, until


def _speed(e: Entry) -> float | None:
    kmh = e.number("speed_kmh", None, above=0.0)
    return None if kmh is None else kmh / 3.6


def _zone_of(e: Entry, ctx: TimelineCtx) -> ZoneSpec:
    name = e.text("zone")
    if name not in ctx.zones:
        raise e.fail(
            "zone",
            f"no zone {name!r} of this subject (its zones: {', '.join(ctx.zones) or 'none'})",
        )
    return ctx.zones[name]


def _move(e: Entry, ctx: TimelineCtx, i: int, do: str, at: float | None) -> Move:
    xy = ctx.places.xy
    kw: dict[str, Any] = {"index": i, "do": do, "at": at}
    kw["mode"] = _MODES.get(do) or e.text("mode", "walk", ("walk", "cycle", "drive"))
    if e.has("radius_m"):
        kw["radius_m"] = e.number("radius_m", above=0.0)
    if e.has("route"):
        kw["route"] = e.text("route", choices=("streets", "straight"))
    if e.has("speed_kmh"):
        kw["speed"] = _speed(e)
    if do in ("dwell", "stationary", "lurk") or (do == "enter_zone" and e.has("until")):
        kw["seconds"], kw["until"] = _span(e, ctx, at)
    elif do == "enter_zone":
        kw["seconds"] = e.duration("for", 300.0)
    if do in ("dwell", "stationary") and e.has("place"):
        kw["place"] = xy(e, "place", e.get("place"))
    if do in ("walk_to", "cycle_to", "drive_to", "moving"):
        key = "to" if do == "moving" else "place"
        kw["place"] = xy(e, key, e.get(key))
        via = e.get("via", [])
        if not isinstance(via, list):
            raise e.fail("via", f"must be an array of places, got {describe(via)}")
        kw["via"] = tuple(xy(e, "via", p) for p in via)
        if e.has("arrive"):
            if at is not None:
                raise e.fail("arrive", "give 'at' (set off then) or 'arrive', not both")
            kw["arrive"] = e.time("arrive", ctx.t0, ctx.t1)
        if "speed" in kw:  # a speed of one's own means a straight line
            if kw.get("route") == "streets":
                raise e.fail(
                    "speed_kmh",
                    'street routes set their own speeds; use route = "straight" to set one',
                )
            kw["route"] = "straight"
    if do in ("enter_zone", "drive_through", "lurk"):
        z = _zone_of(e, ctx)
        kw["zone"] = z
        if e.has("depth_m"):
            kw["depth_m"] = e.number("depth_m", above=0.0)
            if (why := too_deep(kw["depth_m"], z)) is not None:
                raise e.fail("depth_m", why)
        if e.has("bearing"):
            kw["bearing"] = e.number("bearing", lo=0.0, hi=360.0)
        # the way to the zone's edge: by street from elsewhere, straight from here
        kw.setdefault("route", "streets" if e.has("bearing") else "straight")
    if do == "enter_zone":
        kw["leave"] = e.flag("leave", True)
    elif do == "lurk":
        kw["distance_m"] = e.number("distance_m", 30.0, above=0.0)
    elif do == "drive_through":
        kw["mode"] = "drive"
        kw.setdefault("speed", 40.0 / 3.6)
        kw["beyond_m"] = e.number("beyond_m", 200.0, lo=0.0)
    return Move(**kw)


def _event(e: Entry, ctx: TimelineCtx, i: int, do: str, at: float | None) -> DeviceEvent:
    seconds, until = _span(e, ctx, at)
    kw: dict[str, Any] = {}
    if do == "tamper":
        kw["kind"] = e.text("kind", choices=TAMPER_KINDS)
        kw["toggles"] = e.integer("toggles", 0, 0, 10)
        kw["body"] = e.flag("body", False)
        if kw["body"] and kw["kind"] != "strap":
            raise e.fail("body", "only a strap tamper can also lose body contact")
    if do == "indoor":
        kw["cell_share"] = e.number("cell_share", 0.5, lo=0.0, hi=1.0)
        kw["cell_acc_m"] = e.number("cell_acc_m", 600.0, lo=300.0, hi=5000.0)
    return DeviceEvent(i, do, at, seconds, until, **kw)


def _battery(e: Entry, ctx: TimelineCtx) -> Battery:
    drain = e.number("drain_pct_h", 1.5, above=0.0, hi=100.0)
    charge = e.number("charge_pct_h", 30.0, above=0.0, hi=200.0)
    forget = e.flag("forget_to_charge", False)
    sessions: list[tuple[float, float]] = []
    for j, s in enumerate(e.table_list("charge"), 1):
        sub = Entry(e.src, f"{e.where}, charge session {j}", s, ("at", "for", "until"))
        if forget:
            raise e.fail("charge", "forget_to_charge means no charge sessions")
        a = sub.time("at", ctx.t0, ctx.t1)
        if a is None:
            raise sub.fail("at", "missing (when it is plugged in)")
        seconds, until = _span(sub, ctx, a)
        sessions.append((ctx.t0 + a, ctx.t0 + (until if until is not None else a + (seconds or 0))))
    sessions.sort()
    for (_, b), (a, _) in itertools.pairwise(sessions):
        if a < b:
            raise e.fail("charge", "charge sessions overlap")
    if e.has("flat_at"):
        if not forget:
            raise e.fail("flat_at", "only with forget_to_charge = true")
        if e.has("start_pct"):
            raise e.fail("start_pct", "give start_pct or flat_at, not both")
        flat = e.time("flat_at", ctx.t0, ctx.t1) or 0.0
        start = drain * flat / 3600.0
        if not 0 < start <= 100:
            raise e.fail(
                "flat_at",
                f"draining {drain:g} %/h it would start at {start:.0f} %; "
                "lower drain_pct_h or flat earlier",
            )
    else:
        start = e.number("start_pct", 90.0, above=0.0, hi=100.0)
    recharge = None
    if e.has("recharge_after") or e.has("recharge_for"):
        if not forget:
            raise e.fail("recharge_after", "only with forget_to_charge = true")
        recharge = (e.duration("recharge_after", 3600.0), e.duration("recharge_for", 7200.0))
    return Battery(start, drain, charge, tuple(sessions), recharge)


def read_timeline(
    owner: Entry, ctx: TimelineCtx, steps: dict[str, tuple[str, ...]]
) -> tuple[list[Step], Battery | None, object | None]:
    """(steps, battery, first dwell place) of an owner's `timeline`."""
    out: list[Step] = []
    battery: Battery | None = None
    first_place: object | None = None
    for i, v in enumerate(owner.table_list("timeline"), 1):
        do = v.get("do") if isinstance(v, dict) else None
        where = f"{owner.where}, timeline entry {i}"
        if not isinstance(do, str) or do not in steps:
            e = Entry(ctx.src, where, v, (*v.keys(),) if isinstance(v, dict) else ())
            raise e.fail(
                "do",
                f"{do!r} is not one of: {', '.join(steps)}"
                if do is not None
                else "missing (what happens: " + ", ".join(steps) + ")",
            )
        allowed = ("do", *steps[do]) if do == "battery" else ("do", "at", *steps[do])
        e = Entry(ctx.src, f"{where} ({do})", v, allowed)
        at = e.time("at", ctx.t0, ctx.t1)
        if do == "battery":
            if battery is not None:
                raise e.fail("do", "one battery entry per subject")
            battery = _battery(e, ctx)
        elif do in ("tamper", "coverage_gap", "indoor", "backgrounded"):
            out.append(_event(e, ctx, i, do, at))
        else:
            if not out and do in ("dwell", "stationary") and e.has("place"):
                first_place = e.get("place")
            out.append(_move(e, ctx, i, do, at))
    return out, battery, first_place
