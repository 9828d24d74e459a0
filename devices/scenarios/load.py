"""A scenario file -> a checked `Scenario` (`load_scenario`): the run, places, zones,
subjects, victim phones and `[[expect]]` promises; timelines are read by timeline.py."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import numpy as np

from devices.scenarios.model import (
    TRUTH_KINDS,
    Battery,
    Expectation,
    Scenario,
    ScriptedPhone,
    ScriptedSubject,
)
from devices.scenarios.parse import (
    MAX_FROM_CENTRE_M,
    XY,
    Entry,
    Places,
    ScenarioError,
    entry_name,
    parse_instant,
    read_zone,
    zone_spec,
)
from devices.scenarios.timeline import PHONE_STEPS, SUBJECT_STEPS, TimelineCtx, read_timeline
from devices.sensing.noise import PRESETS
from devices.sensing.sensor import NoiseModel
from devices.sim.fleet import DEFAULT_EPOCH
from devices.world.geo import LocalFrame

_TOP = ("run", "places", "zones", "subjects", "expect")
_RUN = ("seed", "start", "duration", "fix_interval", "phone_interval", "center", "noise",
        "phone_noise")  # fmt: skip
_SUBJECT = ("id", "tags", "risk", "start", "noise", "timeline", "protected")


def _start(e: Entry, ctx: TimelineCtx, first_place: object | None) -> XY:
    if e.has("start"):
        return ctx.places.xy(e, "start", e.get("start"))
    if first_place is None:
        raise e.fail(
            "start",
            "missing (where it is when the run starts; or begin the "
            "timeline with a dwell/stationary at a place)",
        )
    return ctx.places.xy(e, "start", first_place)


def _phone(e: Entry, ctx: TimelineCtx, i: int) -> ScriptedPhone:
    keys = ("device", "radius_m", "warn_m", "start", "timeline")
    v = e.data["protected"][i - 1]
    p = Entry(ctx.src, f"{e.where}, {entry_name('protected', i, v, 'device')}", v, keys)
    device = p.text("device")
    if device.count("/") != 1 or not all(device.split("/")):
        raise p.fail("device", f"{device!r} must be an OwnTracks id 'user/device'")
    radius = p.number("radius_m", above=0.0)
    warn = p.number("warn_m", None, above=0.0)
    steps, _, first = read_timeline(p, ctx, PHONE_STEPS)
    return ScriptedPhone(device, radius, warn, _start(p, ctx, first), tuple(steps), p.where)


def _subject(
    src: str, i: int, v: object, ctx: TimelineCtx, noise: NoiseModel, tags: set[str]
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
    steps, battery, first = read_timeline(e, ctx, SUBJECT_STEPS)
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
        ctx = TimelineCtx(src, t0, t1, places, own)
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
