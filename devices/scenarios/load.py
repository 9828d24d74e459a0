"""A scenario file -> a checked `Scenario`: the run, places, zones, subjects with their
timelines (moves, device events, battery), victim phones and `[[expect]]` promises
(`load_scenario`). The tables are read by scenarioparse.py; the format: devices/README.md."""

from __future__ import annotations

import itertools
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from devices.health.tamper import TAMPER_KINDS
from devices.health.truth import HEALTH_KINDS
from devices.motion.scripted import Move, offset_text, too_deep
from devices.scenarios.parse import (
    MAX_FROM_CENTRE_M,
    XY,
    Entry,
    LatLon,
    Places,
    ScenarioError,
    describe,
    entry_name,
    parse_instant,
    read_zone,
    zone_spec,
)
from devices.sensing.noise import PRESETS
from devices.sensing.sensor import NoiseModel
from devices.sim.fleet import DEFAULT_EPOCH
from devices.world.city import ZoneSpec
from devices.world.geo import LocalFrame

TRUTH_KINDS = ("zone_breach", "curfew_breach", "proximity", *HEALTH_KINDS)
_TOP = ("run", "places", "zones", "subjects", "expect")
_RUN = ("seed", "start", "duration", "fix_interval", "phone_interval", "center", "noise",
        "phone_noise")  # fmt: skip
_SUBJECT = ("id", "tags", "risk", "start", "noise", "timeline", "protected")
_SPAN = ("for", "until")
_GO = ("route", "speed_kmh")
# the fields each timeline entry may have, besides `do` and `at`
_SUBJECT_STEPS: dict[str, tuple[str, ...]] = {
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
_PHONE_STEPS: dict[str, tuple[str, ...]] = {
    "stationary": ("place", *_SPAN, "radius_m"),
    "moving": ("to", "via", "arrive", "mode", *_GO),
    "backgrounded": _SPAN,
}
_MODES = {"walk_to": "walk", "cycle_to": "cycle", "drive_to": "drive"}


@dataclass(frozen=True)
class DeviceEvent:
    """A scripted device event (tamper, coverage_gap, indoor, backgrounded) of a timeline.
    Times are seconds after the run's start; `at` None: when the previous move ended."""

    index: int
    do: str
    at: float | None
    seconds: float | None  # `for`; else until - at
    until: float | None
    kind: str = ""  # tamper
    toggles: int = 0
    body: bool = False
    cell_share: float = 0.5  # indoor
    cell_acc_m: float = 600.0


Step = Move | DeviceEvent


@dataclass(frozen=True)
class Battery:
    """A tag's battery script (times in seconds after the run's start)."""

    start_pct: float = 90.0
    drain_pct_h: float = 1.5
    charge_pct_h: float = 30.0
    charging: tuple[tuple[float, float], ...] = ()
    recharge: tuple[float, float] | None = None  # after running flat: (delay, duration)


@dataclass(frozen=True, eq=False)
class ScriptedPhone:
    """A victim's phone publishing OwnTracks, with its own timeline."""

    device: str
    radius_m: float
    warn_m: float | None
    start: XY
    steps: tuple[Step, ...]
    where: str


@dataclass(frozen=True, eq=False)
class ScriptedSubject:
    """A subject with one tag, its zones, a timeline and possibly a victim phone."""

    id: str
    tag: str
    risk: int
    start: XY
    zones: tuple[ZoneSpec, ...]
    steps: tuple[Step, ...]
    battery: Battery
    noise: NoiseModel
    phone: ScriptedPhone | None
    where: str


@dataclass(frozen=True)
class Expectation:
    """A promised truth episode (`absent`: promised not to happen); seconds after start."""

    index: int
    kind: str
    subject: str
    zone: str | None
    start: float | None
    end: float | None
    material: bool | None
    within: float | None
    absent: bool


@dataclass(frozen=True, eq=False)
class Scenario:
    """A checked scenario file, ready to run."""

    path: str
    seed: int
    start_t: float
    duration_s: float
    fix_interval_s: float
    phone_interval_s: float
    center: LatLon
    frame: LocalFrame
    half_size_m: float  # the street grid: [-h, h]^2 around the centre
    noise: NoiseModel
    phone_noise: NoiseModel
    zones: tuple[ZoneSpec, ...]
    subjects: tuple[ScriptedSubject, ...]
    expect: tuple[Expectation, ...] = field(default=())


# -- timelines -----------------------------------------------------------------------------


@dataclass
class _Ctx:
    src: str
    t0: float
    t1: float
    places: Places
    zones: dict[str, ZoneSpec]  # this subject's own


def _span(e: Entry, ctx: _Ctx, at: float | None) -> tuple[float | None, float | None]:
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


def _zone_of(e: Entry, ctx: _Ctx) -> ZoneSpec:
    name = e.text("zone")
    if name not in ctx.zones:
        raise e.fail(
            "zone",
            f"no zone {name!r} of this subject (its zones: {', '.join(ctx.zones) or 'none'})",
        )
    return ctx.zones[name]


def _move(e: Entry, ctx: _Ctx, i: int, do: str, at: float | None) -> Move:
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


def _event(e: Entry, ctx: _Ctx, i: int, do: str, at: float | None) -> DeviceEvent:
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


def _battery(e: Entry, ctx: _Ctx) -> Battery:
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


def _timeline(
    owner: Entry, ctx: _Ctx, steps: dict[str, tuple[str, ...]]
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


def _start(e: Entry, ctx: _Ctx, first_place: object | None) -> XY:
    if e.has("start"):
        return ctx.places.xy(e, "start", e.get("start"))
    if first_place is None:
        raise e.fail(
            "start",
            "missing (where it is when the run starts; or begin the "
            "timeline with a dwell/stationary at a place)",
        )
    return ctx.places.xy(e, "start", first_place)


def _phone(e: Entry, ctx: _Ctx, i: int) -> ScriptedPhone:
    keys = ("device", "radius_m", "warn_m", "start", "timeline")
    v = e.data["protected"][i - 1]
    p = Entry(ctx.src, f"{e.where}, {entry_name('protected', i, v, 'device')}", v, keys)
    device = p.text("device")
    if device.count("/") != 1 or not all(device.split("/")):
        raise p.fail("device", f"{device!r} must be an OwnTracks id 'user/device'")
    radius = p.number("radius_m", above=0.0)
    warn = p.number("warn_m", None, above=0.0)
    steps, _, first = _timeline(p, ctx, _PHONE_STEPS)
    return ScriptedPhone(device, radius, warn, _start(p, ctx, first), tuple(steps), p.where)


def _subject(
    src: str, i: int, v: object, ctx: _Ctx, noise: NoiseModel, tags: set[str]
) -> ScriptedSubject:
    e = Entry(src, entry_name("subject", i, v, "id"), v, _SUBJECT)
    sid = e.text("id")
    tag_list = e.get("tags")
    if not (
        isinstance(tag_list, list)
        and len(tag_list) == 1
        and isinstance(tag_list[0], str)
        and tag_list[0]
    ):
        raise e.fail("tags", f'a scenario subject wears one tag: tags = ["T1"], got {tag_list!r}')
    tag = tag_list[0]
    if tag in tags:
        raise e.fail("tags", f"tag {tag!r} is already worn by another subject")
    tags.add(tag)
    risk = e.integer("risk", 2, 0, 100)
    if e.has("noise"):
        noise = PRESETS[e.text("noise", choices=PRESETS)]
    steps, battery, first = _timeline(e, ctx, _SUBJECT_STEPS)
    protected = e.table_list("protected")
    if len(protected) > 1:
        raise e.fail("protected", "one protected device per subject in a scenario")
    phone = _phone(e, ctx, 1) if protected else None
    return ScriptedSubject(
        sid, tag, risk, _start(e, ctx, first), tuple(ctx.zones.values()), tuple(steps),
        battery or Battery(), noise, phone, e.where,
    )  # fmt: skip


def _expectation(src: str, i: int, v: object, sc: dict[str, Any]) -> Expectation:
    keys = ("kind", "subject", "zone", "start", "end", "material", "within", "absent")
    e = Entry(src, f"expect {i}", v, keys)
    kind = e.text("kind", choices=TRUTH_KINDS)
    subject = e.text("subject", choices=sc["subjects"])
    zone = e.text("zone", None)
    absent = e.flag("absent", False)
    start = e.time("start", sc["t0"], sc["t1"])
    if start is None and not absent:
        raise e.fail("start", "missing (when the episode starts; or absent = true)")
    end = e.time("end", sc["t0"], sc["t1"])
    material = e.get("material", None)
    if material is not None and not isinstance(material, bool):
        raise e.fail("material", f"must be true or false, got {material!r}")
    return Expectation(
        i, kind, subject, zone, start, end, material, e.duration("within", None), absent
    )


# -- loading -------------------------------------------------------------------------------


def _read(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such file") from None
    except OSError as e:
        raise ScenarioError(f"{path}: cannot read it: {e.strerror or e}") from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ScenarioError(f"{path}: not a UTF-8 text file") from None
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{path}: not valid TOML: {e}") from None


def load_scenario(path: str | Path) -> Scenario:
    """Read and check a scenario file (ScenarioError naming file, entry and field)."""
    path = Path(path)
    src = str(path)
    top = Entry(src, "top level", _read(path), _TOP)
    run = Entry(src, "[run]", top.get("run", {}), _RUN)
    seed = run.integer("seed", 1, 0)
    try:
        t0 = parse_instant(run.get("start")) if run.has("start") else DEFAULT_EPOCH
    except ValueError as e:
        raise run.fail("start", str(e)) from None
    duration = run.duration("duration", 3 * 3600.0)
    fix_interval = run.duration("fix_interval", 60.0)
    phone_interval = run.duration("phone_interval", 60.0)
    if phone_interval < 2:
        raise run.fail("phone_interval", "OwnTracks reports whole seconds: at least 2s")
    noise = PRESETS[run.text("noise", "street", PRESETS)]
    phone_noise = PRESETS[run.text("phone_noise", "phone", PRESETS)]
    t1 = t0 + duration

    places = Places()
    given = top.get("places", {})
    place_table = Entry(src, "[places]", given, given.keys() if isinstance(given, dict) else ())
    for name, v in place_table.data.items():
        places.ll[name] = places.latlon(place_table, name, v)

    subject_list = top.table_list("subjects")
    if not subject_list:
        raise top.fail("subjects", "missing: a scenario needs at least one [[subjects]]")
    ids: dict[str, int] = {}
    for i, s in enumerate(subject_list, 1):
        sid = Entry(src, entry_name("subject", i, s, "id"), s, _SUBJECT).text("id")
        if sid in ids:
            raise ScenarioError(f"{src}: subject {i}, field 'id': {sid!r} is already subject "
                                f"{ids[sid]}")  # fmt: skip
        ids[sid] = i
    raw_zones = [
        read_zone(src, i, z, places, set(ids)) for i, z in enumerate(top.table_list("zones"), 1)
    ]
    seen: set[str] = set()
    for z in raw_zones:
        if z.id in seen:
            raise z.entry.fail("id", f"zone id {z.id!r} is used twice")
        if z.id in places.ll:
            raise z.entry.fail("id", f"{z.id!r} is also a place name; names must differ")
        seen.add(z.id)

    if run.has("center"):
        center = places.latlon(run, "center", run.get("center"))
    else:
        pts = list(places.ll.values()) + [z.anchor for z in raw_zones]
        if not pts:
            raise run.fail("center", "missing (no places or zones to centre the city on)")
        # the median: one stray point (a polygon in [lat, lon] order) is then the one flagged
        center = (float(np.median([p[0] for p in pts])), float(np.median([p[1] for p in pts])))
    places.frame = LocalFrame(*center)
    for name, ll in places.ll.items():
        x, y = places.frame.to_xy(*ll)
        places.near(place_table, name, (float(x), float(y)))
    zones = [zone_spec(z, places) for z in raw_zones]
    places.zones = {z.id: z for z in zones}

    subjects: list[ScriptedSubject] = []
    tags: set[str] = set()
    devices: set[str] = set()
    for i, s in enumerate(subject_list, 1):
        sid = s.get("id") if isinstance(s, dict) else None
        own = {z.id: z for z in zones if z.subject == sid}
        ctx = _Ctx(src, t0, t1, places, own)
        subj = _subject(src, i, s, ctx, noise, tags)
        if subj.phone is not None:
            if subj.phone.device in devices or subj.phone.device in tags:
                raise ScenarioError(f"{src}: {subj.phone.where}, field 'device': used twice")
            devices.add(subj.phone.device)
        subjects.append(subj)

    sc = {"subjects": list(ids), "t0": t0, "t1": t1}
    expect = tuple(_expectation(src, i, v, sc) for i, v in enumerate(top.table_list("expect"), 1))
    extent = max([places.extent, *(abs(c) for z in zones for c in z.area_xy.bounds)])
    half = float(np.clip(extent + 1000.0, 1500.0, MAX_FROM_CENTRE_M + 1000.0))
    return Scenario(
        src, seed, t0, duration, fix_interval, phone_interval, center, places.frame, half, noise,
        phone_noise, tuple(zones), tuple(subjects), expect,
    )  # fmt: skip
