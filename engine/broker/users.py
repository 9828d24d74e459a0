"""Who may do what on the broker: one user per tag, protected device, monitor and the engine,
each with its own topics (docs/access.md has the table), and mosquitto's acl file for them."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from engine.errors import ConfigError
from engine.wire import topics
from zones.shard import Shard

if TYPE_CHECKING:
    from zones.model import Gateway, Subject

ENGINE_USER = "engine"
# The engine's priority lane (engine/mqtt/lanes.py): a second session, so a second username
# where the broker takes client ids from usernames; it shares the engine's password
URGENT = "-urgent"
ENGINE_URGENT_USER = ENGINE_USER + URGENT
MONITOR_USER = "monitor"
GROUPS = ("engine", "monitor", "tags", "units", "phones", "gateways")  # credentials.toml order
ALERTS = f"{topics.ALERTS}/#"  # every subject's alerts


@dataclass(frozen=True)
class Principal:
    """One broker user and its ACL: what it may publish (write) and subscribe to (read)."""

    username: str
    group: str  # one of GROUPS
    about: str  # one line for the ACL comment and the credentials file
    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    readwrite: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()  # a phone user's OwnTracks device ids


ENGINE = Principal(
    ENGINE_USER,
    "engine",
    "the tagwatch engine (tagwatch serve)",
    read=(
        *(f"{topics.TAGS}/+/{kind}" for kind in topics.TAG_KINDS),
        f"{topics.OWNTRACKS}/#",
        f"{topics.GATEWAY}/+/fixes",
    ),
    # (warnings to protected devices that opted in: docs/notifications.md)
    write=(ALERTS, topics.CMD_FILTER, topics.OWNTRACKS_CMD_FILTER, topics.WARNING_FILTER),
    readwrite=(topics.STATUS, topics.CHECKPOINT),
)
ENGINE_URGENT = Principal(
    ENGINE_URGENT_USER,
    "engine",
    "the engine's priority lane: tags' events, and watched tags' fixes, ahead of a backlog"
    " (the engine's password)",
    read=(*(f"{topics.TAGS}/+/{kind}" for kind in topics.TAG_KINDS),),
)


# Every engine's status and checkpoint: the one engine's, and each shard's below them
ENGINE_STATES = (*topics.STATUS_FILTERS, *topics.CHECKPOINT_FILTERS)


def shard_users(count: int) -> tuple[Principal, ...]:
    """The users of `serve --shard i/N` for N = `count` (0: none): `engine-<i>-of-<N>` and
    its priority lane's `engine-<i>-of-<N>-urgent`, each with the engine's password (the
    engine adds the suffix to its username) and the engine's topics, but its own status
    and checkpoint."""
    out: list[Principal] = []
    for i in range(count):
        label = Shard(i, count).label
        out.append(replace(
            ENGINE, username=f"{ENGINE_USER}-{label}", about=f"engine shard {i}/{count}",
            readwrite=(topics.status(label), topics.checkpoint(label)),
        ))  # fmt: skip
        out.append(replace(ENGINE_URGENT, username=f"{ENGINE_USER}-{label}{URGENT}",
                           about=f"engine shard {i}/{count}'s priority lane"))  # fmt: skip
    return tuple(out)


def _monitor(username: str) -> Principal:
    about = "a monitoring console (tagwatch watch): alerts, engine status and checkpoint only"
    return Principal(username, "monitor", about, read=(ALERTS, *ENGINE_STATES))


def _device_principal(username: str, group: str, about: str) -> Principal:
    """A tag (or a protected unit publishing on the tag topics) under its own id."""
    return Principal(
        username,
        group,
        about,
        read=(topics.cmd(username),),
        write=(topics.fix(username), topics.fixes(username), topics.event(username)),
    )


def _bad_id(value: str, also: str = "") -> str | None:
    """Why `value` cannot be an MQTT topic level and a mosquitto username, or None."""
    if not value:
        return "is empty"
    for c in value:
        if c in "+#" + also:
            return f"contains {c!r}"
        if c.isspace():
            return f"contains whitespace ({c!r})"
        if unicodedata.category(c) in ("Cc", "Cf"):
            return f"contains the control character U+{ord(c):04X}"
    return None


def principals(
    subjects: Sequence[Subject],
    monitors: Sequence[str] = (MONITOR_USER,),
    gateways: Sequence[Gateway] = (),
    shards: int = 0,
) -> tuple[Principal, ...]:
    """Every broker user: the engine, `monitors`, the subjects' tags, units and phones, and
    the gateways (each may publish on its own batch topic only; which tags it may speak
    for, the engine checks in every batch).

    A protected device "user/device" is an OwnTracks phone whose username is "user"; one
    without "/" publishes on the tag topics under its own id (a "unit"). ConfigError, as
    one line naming every offending id, when an id cannot be a username or two collide.
    """
    problems: list[str] = []
    engines = (ENGINE, ENGINE_URGENT, *shard_users(shards))
    owner = {p.username: f"the engine's user {p.username!r}" for p in engines}

    def claim(username: str, what: str) -> bool:
        if username in owner:
            problems.append(f"username {username!r} of {what} is also {owner[username]}")
            return False
        owner[username] = what
        return True

    people: list[Principal] = []
    for name in dict.fromkeys(monitors):
        if bad := _bad_id(name, "/:"):
            problems.append(f"monitor {name!r} {bad}")
        elif claim(name, f"monitor {name!r}"):
            people.append(_monitor(name))
    tags: list[Principal] = []
    for s in subjects:
        for tag in s.tags:
            what = f"tag {tag!r} of subject {s.id!r}"
            if bad := _bad_id(tag, "/:"):
                problems.append(f"{what} {bad}")
            elif claim(tag, what):
                tags.append(_device_principal(tag, "tags", f"tag of subject {s.id}"))
    units: dict[str, list[str]] = {}
    phones: dict[str, list[str]] = {}  # OwnTracks user -> its device ids
    guarded: dict[str, list[str]] = {}  # device id -> the subjects it is protected from
    for s in subjects:
        for p in s.protected:
            guarded.setdefault(p.device, []).append(s.id)
    for device, subject_ids in guarded.items():
        parts = device.split("/")
        what = f"protected device {device!r} (subject {', '.join(subject_ids)})"
        if len(parts) > 2:
            problems.append(f"{what} has {len(parts)} levels; an OwnTracks device is 'user/device'")
        elif bad := next((b for b in map(_bad_id, parts) if b), None):
            problems.append(f"{what} {bad}")
        elif ":" in parts[0]:
            problems.append(f"{what} contains ':', which a mosquitto username cannot hold")
        elif len(parts) == 1:
            if claim(device, what):
                units[device] = subject_ids
        elif parts[0] in phones or claim(parts[0], f"the OwnTracks user of {what}"):
            phones.setdefault(parts[0], []).append(device)
    gws: list[Principal] = []
    for gw in gateways:
        what = f"gateway {gw.id!r}"
        if bad := _bad_id(gw.id, "/:"):
            problems.append(f"{what} {bad}")
        elif claim(gw.id, what):
            about = f"gateway for {len(gw.tags)} tags (the engine checks each fix's tag)"
            gws.append(Principal(gw.id, "gateways", about, write=(topics.gateway(gw.id),)))
    if problems:
        raise ConfigError("cannot make broker users: " + "; ".join(problems))
    out = [*engines, *people, *tags]
    for unit, subject_ids in units.items():
        about = f"protected device of subject {', '.join(subject_ids)} (tag topics)"
        unit_p = _device_principal(unit, "units", about)
        out.append(replace(unit_p, read=(*unit_p.read, topics.warning(unit))))
    for user, devices in phones.items():
        subject_ids = sorted({sid for d in devices for sid in guarded[d]})
        out.append(
            Principal(
                user,
                "phones",
                f"OwnTracks phone protected from subject {', '.join(subject_ids)}",
                read=tuple(f"{topics.owntracks(d)}/cmd" for d in devices),
                write=tuple(topics.owntracks(d) for d in devices),
                devices=tuple(devices),
            )
        )
    return (*out, *gws)


def acl_text(users: Sequence[Principal], source: str) -> str:
    """mosquitto's acl_file: one `user` block per principal; anything unlisted is denied."""
    out = [
        f"# Access control for tagwatch, written by `tagwatch broker-config` from {source}.",
        "# Each user may publish (write) and subscribe to (read) only the topics listed under",
        "# it; anything not listed is denied. Re-run broker-config rather than editing by hand.",
    ]
    for p in users:
        out += ["", f"# {p.group}: {p.about}", f"user {p.username}"]
        out += [f"topic read {t}" for t in p.read]
        out += [f"topic write {t}" for t in p.write]
        out += [f"topic readwrite {t}" for t in p.readwrite]
    return "\n".join([*out, ""])
