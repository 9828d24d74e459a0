"""The subjects TOML: each [[subjects]] table checked into a Subject, every problem listed.

Its own module because subjects are a file of their own (the broker config reads them
without any zones); `zones.load` pairs it with the zones GeoJSON (`zones.geojson`).
"""

from __future__ import annotations

import re
import tomllib
from typing import Any

from zones.model import Gateway, Protected, Subject
from zones.problems import Report, StrPath, non_empty_str, number, read_text, short
from zones.validity import read_validity

_TOPIC_UNSAFE = ("+", "#", "\x00")  # MQTT wildcards and NUL can never appear in a topic


def _topic_unsafe(value: str, also: str = "") -> str | None:
    bad = [c for c in (*_TOPIC_UNSAFE, *also) if c in value]
    return repr(bad[0]) if bad else None


TEAM_MAX = 64  # a team is a caseload's name ("north", "dv-unit-3"), not a description


def team_ok(team: object) -> bool:
    """A team name: what a subject's `team` and `tagwatch users add --team` accept."""
    return (
        isinstance(team, str)
        and 0 < len(team) <= TEAM_MAX
        and team == team.strip()
        and team.isprintable()
    )


def _protected(where: str, j: int, raw: Any, out: list[str]) -> Protected | None:
    dev = raw.get("device") if isinstance(raw, dict) else None
    label = f"device {dev!r}" if non_empty_str(dev) else "no device"
    report = Report(f"{where} protected {j} ({label})", out)
    if not isinstance(raw, dict):
        report("must be a table [[subjects.protected]] with device, radius_m, optional warn_m")
        return None
    if dev is None:
        report("missing 'device' (the protected device id, e.g. 'alice/phone')")
    elif not non_empty_str(dev):
        report(f"device must be a non-empty string, got {short(dev)}")
    elif bad := _topic_unsafe(dev):
        report(f"device id contains {bad}, which cannot appear in an MQTT topic")
    radius = warn = None
    if "radius_m" not in raw:
        report("missing 'radius_m' (the exclusion radius around the device, metres > 0)")
    else:
        radius = number(raw, "radius_m", report, positive=True)
    if "warn_m" in raw:
        warn = number(raw, "warn_m", report, positive=False)
    opted = raw.get("warn")
    if opted is not None and not isinstance(opted, bool):
        report(f"warn must be true or false (warn this device itself), got {short(opted)}")
    if not report.clean or radius is None or not isinstance(dev, str):
        return None
    return Protected(device=dev, radius_m=radius, warn_m=warn or 0.0, warn=opted)


def _tags(raw: dict[str, Any], report: Report) -> tuple[str, ...]:
    tags = raw.get("tags")
    if tags is None:
        report("missing 'tags' (the list of tag ids this subject wears, e.g. tags = [\"T1\"])")
        return ()
    if not isinstance(tags, list) or not all(non_empty_str(t) for t in tags):
        report(f"tags must be a list of non-empty strings, got {short(tags)}")
        return ()
    if not tags:
        report("tags is empty: a subject must wear at least one tag")
    for tag in sorted({t for t in tags if tags.count(t) > 1}):
        report(f"tag {tag!r} is listed more than once")
    for tag in tags:
        if bad := _topic_unsafe(tag, "/"):
            report(
                f"tag {tag!r} contains {bad}, so it cannot be the {{tag}} in "
                "tagwatch/v1/tags/{tag}/fix"
            )
    return tuple(tags)


_UNSAFE_ID = re.compile("[+#\x00/]")  # _topic_unsafe(id, "/") in one pass


def _clean_id(v: object) -> bool:
    return type(v) is str and bool(v.strip()) and _UNSAFE_ID.search(v) is None


def _plain_subject(raw: Any) -> Subject | None:
    """The Subject of a table of id, tags and perhaps risk that `_subject` finds nothing
    wrong with (most of a large file), without wording anything; None: ask `_subject`."""
    if type(raw) is not dict or not raw.keys() <= {"id", "tags", "risk"}:
        return None
    sid, tags, risk = raw.get("id"), raw.get("tags"), raw.get("risk", 1)
    if not (_clean_id(sid) and type(tags) is list and tags and type(risk) is int and risk >= 1):
        return None
    if not all(_clean_id(t) for t in tags) or len(set(tags)) != len(tags):
        return None
    return Subject(sid, tuple(tags), risk)  # type: ignore[arg-type]


def _subject(name: str, i: int, raw: Any, out: list[str]) -> tuple[Subject | None, str | None]:
    """One [[subjects]] table -> (Subject or None, its id if it has a usable one)."""
    if (plain := _plain_subject(raw)) is not None:
        return plain, plain.id
    sid = raw.get("id") if isinstance(raw, dict) else None
    sid = sid if non_empty_str(sid) else None
    where = f"{name} subject {i} ({'id ' + repr(sid) if sid else 'no id'})"
    report = Report(where, out)
    if not isinstance(raw, dict):
        report("must be a table [[subjects]]")
        return None, None
    if "id" not in raw:
        report("missing 'id' (the subject id that zones name in their 'subject' property)")
    elif sid is None:
        report(f"id must be a non-empty string, got {short(raw['id'])}")
    elif bad := _topic_unsafe(sid, "/"):
        report(
            f"id contains {bad}, so it cannot be the {{subject}} in tagwatch/v1/alerts/{{subject}}"
        )
    tags = _tags(raw, report)
    risk = raw.get("risk", 1)
    if not isinstance(risk, int) or isinstance(risk, bool) or risk < 1:
        report(f"risk must be a whole number >= 1, got {short(risk)}")
    team = raw.get("team")
    if team is not None and not team_ok(team):
        report(f"team must be a name of 1-{TEAM_MAX} printable characters, got {short(team)}")
    warn_protected = raw.get("warn_protected", False)
    if not isinstance(warn_protected, bool):
        report(f"warn_protected must be true or false, got {short(warn_protected)}")
    protected_raw = raw.get("protected", [])
    if not isinstance(protected_raw, list):
        report("protected must be an array of tables [[subjects.protected]]")
        protected_raw = []
    protected = [_protected(where, j, p, out) for j, p in enumerate(protected_raw)]
    devices = [p.device for p in protected if p is not None]
    for dev in sorted({d for d in devices if devices.count(d) > 1}):
        report(f"protected device {dev!r} is listed more than once")
    valid_from, valid_until = read_validity(raw, report)
    if not report.clean or sid is None:
        return None, sid
    kept = tuple(p for p in protected if p is not None)
    subject = Subject(sid, tags, risk, kept, valid_from, valid_until, team, warn_protected)
    return subject, sid


def _wearer(i: int, sid: object) -> str:
    return f"subject {i} (id {sid!r})"


def _nothing_to_cross(raw: list[Any]) -> bool:
    """Whether `_cross_check_subjects` would find nothing, judged with sets (most files):
    string ids all distinct, string tags never on two subjects (nor twice on one), no
    protected device a tag."""
    if not all(type(e) is dict and type(e.get("tags")) is list for e in raw):
        return False
    sids = [e.get("id") for e in raw]
    tags = [t for e in raw for t in e["tags"]]
    if not all(type(v) is str for v in sids) or not all(type(t) is str for t in tags):
        return False
    worn = set(tags)
    if len(set(sids)) != len(sids) or len(worn) != len(tags):
        return False
    tables = [e["protected"] for e in raw if type(e.get("protected")) is list]
    devices = [p.get("device") for ps in tables for p in ps if type(p) is dict]
    return not any(type(d) is str and d in worn for d in devices)


def _cross_check_subjects(name: str, raw: list[Any], out: list[str]) -> None:
    """Ids unique, each tag worn by one subject, no protected device that is also a tag."""
    if not _nothing_to_cross(raw):
        _cross_check_all(name, raw, out)


def _cross_check_all(name: str, raw: list[Any], out: list[str]) -> None:
    """`_cross_check_subjects`, every entry looked at and every problem worded."""
    first_by_id: dict[str, int] = {}
    owner: dict[str, tuple[int, object]] = {}  # tag -> (subject index, its id)
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            continue
        sid = entry.get("id")
        if isinstance(sid, str):
            if sid in first_by_id:
                out.append(
                    f"{name} subject {i} (id {sid!r}): duplicate subject id (also subject "
                    f"{first_by_id[sid]})"
                )
            first_by_id.setdefault(sid, i)
        tags = entry.get("tags")
        mine = [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []
        for tag in dict.fromkeys(mine):
            if tag in owner:
                out.append(
                    f"{name} subject {i} (id {sid!r}): tag {tag!r} is also worn by "
                    f"{_wearer(*owner[tag])}; a tag belongs to exactly one subject"
                )
            else:
                owner[tag] = (i, sid)  # worded only when a second subject wears it
    for i, entry in enumerate(raw):
        prot = entry.get("protected") if isinstance(entry, dict) else None
        for j, p in enumerate(prot if isinstance(prot, list) else ()):
            dev = p.get("device") if isinstance(p, dict) else None
            if isinstance(dev, str) and dev in owner:
                out.append(
                    f"{name} subject {i} (id {entry.get('id')!r}) protected {j} "
                    f"(device {dev!r}): device id is also a tag worn by {_wearer(*owner[dev])}; "
                    "a protected device must not be a subject's tag"
                )


def read_subjects(path: StrPath) -> tuple[tuple[Subject, ...], set[str] | None, list[str]]:
    """(subjects, ids zones may name or None if unreadable, problems)."""
    subjects, ids, _, problems = read_subjects_file(path)
    return subjects, ids, problems


def _gateways(
    name: str, raw: Any, subjects: tuple[Subject, ...], out: list[str]
) -> tuple[Gateway, ...]:
    """The [[gateways]] tables: an id (a topic level), the tags it may speak for (each a
    subject's tag; a tag may be on several gateways, e.g. base stations it roams between)."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        out.append(f"{name}: 'gateways' must be an array of tables [[gateways]]")
        return ()
    worn = {t for s in subjects for t in s.tags}
    seen: set[str] = set()
    found: list[Gateway] = []
    for i, entry in enumerate(raw):
        gid = entry.get("id") if isinstance(entry, dict) else None
        where = f"{name} gateway {i} ({'id ' + repr(gid) if non_empty_str(gid) else 'no id'})"
        if not isinstance(entry, dict):
            out.append(f"{where}: must be a table")
            continue
        n = len(out)
        if not isinstance(gid, str) or not gid:
            out.append(f"{where}: missing 'id' (a non-empty string)")
        elif bad := _topic_unsafe(gid, "/"):
            out.append(f"{where}: id contains {bad}, so it cannot be the {{gw}} in "
                       "tagwatch/v1/gateway/{gw}/fixes")  # fmt: skip
        elif gid in seen:
            out.append(f"{where}: duplicate gateway id")
        tags = entry.get("tags")
        if not isinstance(tags, list) or not tags or not all(non_empty_str(t) for t in tags):
            out.append(f"{where}: tags must be a non-empty list of tag ids, got {short(tags)}")
            tags = []
        for tag in dict.fromkeys(tags):
            if tag not in worn:
                out.append(f"{where}: tag {tag!r} is no subject's tag")
        for key in sorted(set(entry) - {"id", "tags"}):
            out.append(f"{where}: unknown key {key!r} (a gateway has id and tags)")
        if len(out) == n and isinstance(gid, str):
            seen.add(gid)
            found.append(Gateway(gid, tuple(dict.fromkeys(tags))))
    return tuple(found)


# -- the plain TOML of a large subjects file -----------------------------------------------
# tomllib is pure Python: 500,000 subjects take it 5-10 s. A file written the plain way
# (`[[subjects]]` / `[[subjects.protected]]` / `[[gateways]]` headers, `key = value` lines
# with basic strings without escapes, whole numbers, decimals, booleans and one-line arrays
# of strings and whole numbers, comment lines) is read here into the very dicts tomllib
# gives; on any other line `plain_toml` gives up (None) and tomllib reads the file.
_STR = r'"[^"\\\x00-\x08\x0a-\x1f\x7f]*"'
_INT = r"-?(?:0|[1-9][0-9]{0,17})"
_ITEM = re.compile(rf"({_STR})|({_INT})")
_ARRAY = rf"\[[ \t]*(?:(?:{_STR}|{_INT})[ \t]*,[ \t]*)*(?:(?:{_STR}|{_INT})[ \t]*)?\]"
# key = value: one of a string, whole number, decimal, boolean or array (its own group)
_KEY_VALUE = re.compile(
    rf"[ \t]*([A-Za-z0-9_-]+)[ \t]*=[ \t]*"
    rf"(?:({_STR})|({_INT})|({_INT}\.[0-9]+)|(true)|(false)|({_ARRAY}))[ \t]*"
)
_COMMENT = re.compile(r"#[^\x00-\x08\x0a-\x1f\x7f]*")


def _plain_value(m: re.Match[str]) -> Any:
    """The value of a `_KEY_VALUE` match, as tomllib reads it."""
    _, s, i, f, t, _, a = m.groups()
    if s is not None:
        return s[1:-1]
    if i is not None:
        return int(i)
    if f is not None:
        return float(f)
    if a is not None:
        return [s[1:-1] if s else int(i) for s, i in _ITEM.findall(a[1:-1])]
    return t is not None


def plain_toml(text: str) -> dict[str, Any] | None:
    """The document tomllib would read from `text`, when it is written the plain way;
    None otherwise (then only tomllib may say what it holds, or what is wrong)."""
    subjects: list[dict[str, Any]] = []
    gateways: list[dict[str, Any]] = []
    arrays: set[int] = set()  # ids of the [[subjects.protected]] lists headers made
    table: dict[str, Any] | None = None
    if text.endswith("\r"):
        return None  # a carriage return not ending a line
    for line in text.split("\n"):
        line = line.removesuffix("\r")
        bare = line.strip(" \t")
        if not bare or bare[0] == "#":
            if bare and _COMMENT.fullmatch(bare) is None:
                return None
            continue
        if bare[0] == "[":
            table = {}
            if bare == "[[subjects]]":
                subjects.append(table)
            elif bare == "[[gateways]]":
                gateways.append(table)
            elif bare == "[[subjects.protected]]" and subjects:
                tables = subjects[-1].get("protected")
                if tables is None:
                    tables = subjects[-1]["protected"] = []
                    arrays.add(id(tables))
                elif id(tables) not in arrays:
                    return None  # protected = ... written as a value as well
                tables.append(table)
            else:
                return None
            continue
        m = _KEY_VALUE.fullmatch(line)
        if m is None or table is None or m[1] in table:
            return None
        table[m[1]] = _plain_value(m)
    if not subjects:
        return None
    return {"subjects": subjects, "gateways": gateways} if gateways else {"subjects": subjects}


def read_subjects_file(
    path: StrPath,
) -> tuple[tuple[Subject, ...], set[str] | None, tuple[Gateway, ...], list[str]]:
    """(subjects, ids zones may name or None if unreadable, gateways, problems)."""
    name = str(path)
    out: list[str] = []
    text = read_text(path, out)
    if text is None:
        return (), None, (), out
    try:
        doc = plain_toml(text) or tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        return (), None, (), [f"{name}: not valid TOML: {e}"]
    except RecursionError:  # a fuzzing find: it escaped as a RecursionError, not ZoneError
        return (), None, (), [f"{name}: not valid TOML: nested too deeply"]
    except ValueError as e:  # a fuzzing find: an integer of more than 4300 digits
        return (), None, (), [f"{name}: not valid TOML: {e}"]
    raw = doc.get("subjects")
    if raw is None:
        others = f" (found {', '.join(map(repr, doc))})" if doc else ""
        return (), None, (), [f"{name}: no [[subjects]] tables{others}"]
    if not isinstance(raw, list):
        return (), None, (), [f"{name}: 'subjects' must be an array of tables [[subjects]]"]
    if not raw:
        out.append(f"{name}: [[subjects]] is empty")
    parsed = [_subject(name, i, entry, out) for i, entry in enumerate(raw)]
    _cross_check_subjects(name, raw, out)
    subjects = tuple(s for s, _ in parsed if s is not None)
    gateways = _gateways(name, doc.get("gateways"), subjects, out)
    return subjects, {sid for _, sid in parsed if sid is not None}, gateways, out
