"""`tagwatch broker-config`: a production mosquitto setup (TLS, passwords, ACL) for a subjects file.

Every tag, protected device, the engine and the monitors get their own broker user and may
touch only their own topics (docs/access.md has the table). The directory written is the
operator's source of truth: re-running with --force after the subjects file changes keeps
the CA and every existing password, so no device already in the field is locked out.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import hmac
import os
import pwd
import re
import secrets
import tomllib
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.broker import tls as tlscerts
from engine.broker.process import BROKER_PERSISTENCE_OPTIONS, BROKER_QUEUE_OPTIONS
from engine.errors import ConfigError, ZoneError

if TYPE_CHECKING:
    from zones.model import Subject

ENGINE_USER = "engine"
MONITOR_USER = "monitor"
GROUPS = ("engine", "monitor", "tags", "units", "phones")  # order in credentials.toml
RETIRED = "retired"  # users no longer needed: not in passwd, password kept for a return
TAGS = "tagwatch/v1/tags"
STATUS_TOPIC = "tagwatch/v1/engine/status"
ALERTS = "tagwatch/v1/alerts/#"
DEFAULT_PORT = 8883
# mosquitto 2.0's password file: "$7$" = PBKDF2-HMAC-SHA512, its default 101 iterations
# and 12-byte salt, salt and 64-byte hash in standard base64 (what mosquitto_passwd writes).
PBKDF2_ITERATIONS = 101
SALT_BYTES = 12
SECRET = 0o600
PUBLIC = 0o644
_PASSWD_HASH = re.compile(r"\$7\$(\d+)\$([A-Za-z0-9+/]+={0,2})\$([A-Za-z0-9+/]+={0,2})")


# -- who may do what ----------------------------------------------------------------------


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
    read=(f"{TAGS}/+/fix", f"{TAGS}/+/fixes", f"{TAGS}/+/event", "owntracks/#"),
    write=(ALERTS, f"{TAGS}/+/cmd"),
    readwrite=(STATUS_TOPIC,),
)


def _monitor(username: str) -> Principal:
    about = "a monitoring console (tagwatch watch): alerts and engine status only"
    return Principal(username, "monitor", about, read=(ALERTS, STATUS_TOPIC))


def _device_principal(username: str, group: str, about: str) -> Principal:
    """A tag (or a protected unit publishing on the tag topics) under its own id."""
    own = f"{TAGS}/{username}"
    return Principal(
        username,
        group,
        about,
        read=(f"{own}/cmd",),
        write=(f"{own}/fix", f"{own}/fixes", f"{own}/event"),
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
    subjects: Sequence[Subject], monitors: Sequence[str] = (MONITOR_USER,)
) -> tuple[Principal, ...]:
    """Every broker user: the engine, `monitors`, and the subjects' tags, units and phones.

    A protected device "user/device" is an OwnTracks phone whose username is "user"; one
    without "/" publishes on the tag topics under its own id (a "unit"). ConfigError, as
    one line naming every offending id, when an id cannot be a username or two collide.
    """
    problems: list[str] = []
    owner = {ENGINE_USER: "the engine's user"}

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
    if problems:
        raise ConfigError("cannot make broker users: " + "; ".join(problems))
    out = [ENGINE, *people, *tags]
    for unit, subject_ids in units.items():
        about = f"protected device of subject {', '.join(subject_ids)} (tag topics)"
        out.append(_device_principal(unit, "units", about))
    for user, devices in phones.items():
        subject_ids = sorted({sid for d in devices for sid in guarded[d]})
        out.append(
            Principal(
                user,
                "phones",
                f"OwnTracks phone protected from subject {', '.join(subject_ids)}",
                read=tuple(f"owntracks/{d}/cmd" for d in devices),
                write=tuple(f"owntracks/{d}" for d in devices),
                devices=tuple(devices),
            )
        )
    return tuple(out)


# -- password file ------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, salt: bytes | None = None) -> str:
    """mosquitto 2.0's `$7$` PBKDF2-SHA512 hash, as `mosquitto_passwd` writes it."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    return f"$7${PBKDF2_ITERATIONS}${_b64(salt)}${_b64(digest)}"


def check_password(password: str, encoded: str) -> bool:
    """Whether `encoded` (a `$7$` hash) is the hash of `password`."""
    m = _PASSWD_HASH.fullmatch(encoded)
    if m is None:
        return False
    salt, want = base64.b64decode(m[2]), base64.b64decode(m[3])
    got = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, int(m[1]), len(want))
    return hmac.compare_digest(got, want)


def passwd_text(users: Sequence[Principal], passwords: dict[str, str], old: dict[str, str]) -> str:
    """The password file; an old hash line is kept when it still matches the password."""
    lines = []
    for p in users:
        pw = passwords[p.username]
        keep = old.get(p.username)
        lines.append(
            f"{p.username}:{keep if keep and check_password(pw, keep) else hash_password(pw)}"
        )
    return "\n".join([*lines, ""])


# -- ACL and mosquitto.conf ---------------------------------------------------------------


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


def mosquitto_conf_text(
    out_dir: Path, port: int, source: str, bind: str | None = None, run_as: str | None = None
) -> str:
    """The broker configuration; every path absolute, inside `out_dir`."""
    d = out_dir
    process: tuple[str, ...]
    if run_as is None:
        process = (
            '# Started as root, mosquitto switches to the user "mosquitto" before it reads passwd,',
            "# acl and server.key, and this directory is its owner's alone: start mosquitto as",
            "# that owner, or re-run broker-config as root with --broker-user mosquitto.",
            "# user mosquitto",
        )
    else:
        process = (
            f"# Started as root, mosquitto switches to {run_as!r}, which broker-config let read",
            "# passwd, acl and server.key and write persist/ (ca.key and credentials.toml: not).",
            f"user {run_as}",
        )

    def section(title: str, *lines: str) -> list[str]:
        return ["", f"# -- {title} " + "-" * max(3, 84 - len(title)), *lines]

    lines = [
        f"# mosquitto configuration for tagwatch, written by `tagwatch broker-config` from {source}.",
        f"# Start:  mosquitto -c {d / 'mosquitto.conf'}",
        "# After adding subjects re-run broker-config with --force (keeps the CA and passwords),",
        "# then send mosquitto SIGHUP: it reloads passwd, acl and the certificate without",
        "# dropping clients.",
        *section("Process", *process),
        *section(
            "Who may connect and what they may touch",
            "# One set of rules for every listener, so a listener added later cannot be open.",
            "per_listener_settings false",
            "# Every client logs in with a username and password from password_file ...",
            "allow_anonymous false",
            f"password_file {d / 'passwd'}",
            "# ... and may publish and subscribe only where acl_file says.",
            f"acl_file {d / 'acl'}",
        ),
        *section(
            "Listener: MQTT over TLS only",
            "# Devices verify the broker's certificate against ca.crt. A listener without an",
            "# address after the port listens on every interface.",
            f"listener {port} {bind}" if bind else f"listener {port}",
            f"cafile {d / 'ca.crt'}",
            f"certfile {d / 'server.crt'}",
            f"keyfile {d / 'server.key'}",
            "# Clients prove who they are with username and password, not client certificates.",
            "require_certificate false",
            "# The oldest TLS version accepted; TLS 1.3 is used when the client has it.",
            "tls_version tlsv1.2",
            "# A client's id is replaced by its username, so no client can take over another's",
            "# session (the engine's queued fixes) or knock it off by reusing its client id.",
            "# Each username therefore has one connection at a time.",
            "use_username_as_clientid true",
        ),
        *section(
            "Persistence: queued messages and sessions survive a broker restart",
            *BROKER_PERSISTENCE_OPTIONS,
            f"persistence_location {d / 'persist'}/",
        ),
        *section(
            "Queues: the engine's session is held while it is down (see engine/broker/process.py)",
            *BROKER_QUEUE_OPTIONS,
        ),
        *section(
            "Logging: each connection and refusal with its username",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        ),
    ]
    return "\n".join([*lines, ""])


# -- credentials.toml ---------------------------------------------------------------------


def _toml_str(s: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's; DEL must be escaped too)."""
    out = ['"']
    for c in s:
        if c in '"\\':
            out.append("\\" + c)
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04X}")
        else:
            out.append(c)
    return "".join([*out, '"'])


def _toml_value(v: str | int | Sequence[str]) -> str:
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return _toml_str(v)
    return f"[{', '.join(map(_toml_str, v))}]"


def credentials_text(
    users: Sequence[Principal],
    passwords: dict[str, str],
    broker: dict[str, Any],
    retired: dict[str, str] | None = None,
) -> str:
    """credentials.toml: [broker] (address, CA, the settings --force reuses), then one
    table per user, [GROUP."USERNAME"], grouped engine, monitor, tags, units, phones."""
    out = [
        "# tagwatch broker credentials, written by `tagwatch broker-config`. SECRET: keep mode 0600.",
        "# Give each device or service its own username and password, plus the CA certificate",
        "# (cafile) and the broker address. `tagwatch broker-config --force` reads the passwords",
        "# and [broker] settings back from here: delete an entry (or --rotate USER) to issue a",
        "# new password.",
        "",
        "[broker]",
        *(f"{k} = {_toml_value(v)}" for k, v in broker.items() if v is not None),
    ]
    for p in sorted(users, key=lambda p: GROUPS.index(p.group)):
        out += ["", f"[{p.group}.{_toml_str(p.username)}]", f"about = {_toml_str(p.about)}"]
        if p.devices:
            out.append(f"devices = {_toml_value(p.devices)}")
        out.append(f"password = {_toml_str(passwords[p.username])}")
    for name, pw in sorted((retired or {}).items()):
        about = "no longer in the subjects file, so it cannot log in; re-adding restores it"
        out += ["", f"[{RETIRED}.{_toml_str(name)}]", f"about = {_toml_str(about)}"]
        out.append(f"password = {_toml_str(pw)}")
    return "\n".join([*out, ""])


@dataclass(frozen=True)
class Existing:
    """What a credentials.toml written earlier holds."""

    passwords: dict[str, dict[str, str]]  # group -> username -> password
    broker: dict[str, Any]

    def get(self, key: str, kind: type) -> Any:
        v = self.broker.get(key)
        return v if isinstance(v, kind) else None


def read_credentials(path: Path) -> Existing:
    """The passwords and [broker] settings of a credentials.toml written here."""
    how = "fix it, or delete it to issue new passwords to every user"
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(
            f"cannot read {path}: {getattr(e, 'strerror', None) or e}; {how}"
        ) from None
    found: dict[str, dict[str, str]] = {}
    for group in (*GROUPS, RETIRED):
        table = doc.get(group, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [{group}] is not a table; {how}")
        for name, entry in table.items():
            pw = entry.get("password") if isinstance(entry, dict) else None
            if not isinstance(pw, str) or not pw:
                raise ConfigError(f"{path}: [{group}] entry {name!r} has no password; {how}")
            found.setdefault(group, {})[name] = pw
    broker = doc.get("broker")
    return Existing(found, broker if isinstance(broker, dict) else {})


def _read_passwd(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return {}  # only a cache of hashes: every line is rewritten from credentials.toml
    return dict(line.split(":", 1) for line in lines if ":" in line)


def _write(path: Path, data: str | bytes, mode: int, gid: int = -1) -> None:
    """Write atomically, with `mode` (and group `gid`) from the first byte on."""
    raw = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.partial")
    try:
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode & 0o600)
        with os.fdopen(fd, "wb") as f:
            os.fchown(f.fileno(), -1, gid)
            os.fchmod(f.fileno(), mode)  # after the group is right; the umask is not applied
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"cannot write {path}: {e.strerror or e}") from None


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@dataclass
class Summary:
    """What generate() wrote, for the command's closing lines."""

    out_dir: Path
    counts: dict[str, int]
    san: list[str]
    new_users: list[str] = field(default_factory=list)
    kept_users: list[str] = field(default_factory=list)
    removed_users: list[str] = field(default_factory=list)
    ca_kept: bool = False
    run_as: str | None = None

    def render(self) -> str:
        d, c = self.out_dir, self.counts
        who = f"{_plural(c['tags'], 'tag')}, {_plural(c['phones'], 'phone')}"
        if c["units"]:
            who += f", {_plural(c['units'], 'protected unit')}"
        changes = f"{len(self.new_users)} new, {len(self.kept_users)} kept"
        if self.removed_users:
            gone = ", ".join(self.removed_users)
            changes += f", {len(self.removed_users)} retired ({gone}: they can no longer log in)"
        ca = "kept" if self.ca_kept else "new"
        start = f"mosquitto -c {d / 'mosquitto.conf'}"
        if self.run_as:
            start += f"  (as root; it runs as {self.run_as})"
        return "\n".join(
            [
                f"wrote {d}/: mosquitto.conf, passwd, acl, credentials.toml, server.crt, server.key",
                f"users: engine, {_plural(c['monitor'], 'monitor')}, {who}; passwords: {changes}",
                f"CA {ca}: {d / 'ca.crt'} (give it to every device); server certificate for "
                + ", ".join(self.san),
                f"credentials (secret, one entry per device): {d / 'credentials.toml'}",
                f"start: {start}; a running one loads the new files on SIGHUP",
            ]
        )


def _check_dir(out_dir: Path, force: bool) -> None:
    """Refuse a file, or a directory with files in it unless `force`."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} exists and is not a directory")
    try:
        present = sorted(p.name for p in out_dir.iterdir()) if out_dir.exists() else []
    except OSError as e:
        raise ConfigError(f"cannot use --out {out_dir}: {e.strerror or e}") from None
    if present and not force:
        listed = ", ".join(present[:4]) + (", ..." if len(present) > 4 else "")
        raise ConfigError(
            f"{out_dir} already holds files ({listed}); use --force to update it, "
            "keeping its CA and passwords"
        )


def _make_dir(out_dir: Path) -> None:
    try:
        out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        (out_dir / "persist").mkdir(mode=0o700, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot use --out {out_dir}: {e.strerror or e}") from None


def _grant(out_dir: Path, run_as: str | None) -> int:
    """Let `run_as` (mosquitto's `user`) into the directory and persist/; its group id."""
    if run_as is None:
        os.chmod(out_dir, 0o700)
        return -1
    try:
        uid, gid = pwd.getpwnam(run_as)[2:4]
    except KeyError:
        raise ConfigError(f"--broker-user {run_as!r}: no such user on this machine") from None
    try:
        os.chown(out_dir, -1, gid)
        os.chmod(out_dir, 0o750)
        os.chown(out_dir / "persist", uid, gid)
    except OSError as e:
        raise ConfigError(
            f"cannot give {run_as!r} access to {out_dir}: {e.strerror or e} (run as root)"
        ) from None
    return gid


def _subjects(path: str | os.PathLike[str]) -> tuple[Subject, ...]:
    """The subjects file, or a one-line ZoneError naming its first problem."""
    from zones.load import load_subjects

    try:
        return load_subjects(path)
    except ZoneError as e:
        more = f" (and {_plural(len(e.problems) - 1, 'more problem')})" if e.problems[1:] else ""
        raise ZoneError(f"{e.problems[0]}{more}", e.problems) from None


def generate(
    subjects_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    hosts: Sequence[str] | None = None,
    port: int | None = None,
    bind: str | None = None,
    broker_user: str | None = None,
    monitors: Sequence[str] | None = None,
    force: bool = False,
    rotate: Sequence[str] = (),
    rotate_all: bool = False,
) -> Summary:
    """Write the broker directory for a subjects file (see the module docstring).

    With `force`, settings left as None are taken from the directory's credentials.toml
    (hosts, port, bind, broker user, monitor names), so a re-run changes only what it names.
    """
    subjects = _subjects(subjects_path)
    d = Path(out_dir).resolve()
    if any(unicodedata.category(c) == "Cc" for c in str(d)):
        raise ConfigError(f"--out {str(d)!r} contains a control character")
    _check_dir(d, force)
    creds = d / "credentials.toml"
    was = read_credentials(creds) if creds.exists() else Existing({}, {})
    hosts = list(hosts if hosts is not None else was.get("hosts", list) or [])
    port = port if port is not None else was.get("port", int) or DEFAULT_PORT
    bind = bind or was.get("bind", str)
    run_as = broker_user or was.get("run_as", str)
    monitors = monitors or list(was.passwords.get("monitor", {})) or [MONITOR_USER]
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port {port} is not a TCP port (1-65535)")
    bind = tlscerts.check_host(bind, "--bind") if bind is not None else None
    users = principals(subjects, monitors)
    names = [p.username for p in users]
    if unknown := [u for u in rotate if u not in names]:
        raise ConfigError(f"--rotate: no broker user {', '.join(map(repr, unknown))}")
    san = tlscerts.sans(hosts)  # a bad --host is refused before anything is written
    ca = tlscerts.load_ca(d)
    _make_dir(d)
    gid = _grant(d, run_as)
    broker_only = 0o640 if run_as else 0o600  # mosquitto reads it; nobody else may

    counts = {g: sum(p.group == g for p in users) for g in GROUPS}
    summary = Summary(d, counts, san, run_as=run_as)
    old = {u: pw for group in was.passwords.values() for u, pw in group.items()}
    passwords: dict[str, str] = {}
    for name in names:
        if name in old and name not in rotate and not rotate_all:
            passwords[name] = old[name]
            summary.kept_users.append(name)
        else:
            passwords[name] = secrets.token_urlsafe(24)
            summary.new_users.append(name)
    retired = {u: pw for u, pw in old.items() if u not in passwords}
    summary.removed_users = sorted(set(retired) - set(was.passwords.get(RETIRED, {})))

    now = dt.datetime.now(dt.UTC)
    summary.ca_kept = ca is not None
    if ca is None:
        ca = tlscerts.make_ca(now)
        _write(d / "ca.key", tlscerts.pem(ca[0]), SECRET)
        _write(d / "ca.crt", tlscerts.pem(ca[1]), PUBLIC)
    server_key, server_cert = tlscerts.make_server_cert(ca, hosts, now)
    _write(d / "server.key", tlscerts.pem(server_key), broker_only, gid)
    _write(d / "server.crt", tlscerts.pem(server_cert), PUBLIC)

    source = str(Path(subjects_path).resolve())
    broker = {
        "host": hosts[0] if hosts else "localhost",
        "port": port,
        "cafile": str(d / "ca.crt"),
        "hosts": hosts,
        "bind": bind,
        "run_as": run_as,
    }
    # credentials first: the only copy of the passwords, from which passwd is derived
    _write(creds, credentials_text(users, passwords, broker, retired), SECRET)
    old_hashes = _read_passwd(d / "passwd")
    _write(d / "passwd", passwd_text(users, passwords, old_hashes), broker_only, gid)
    _write(d / "acl", acl_text(users, source), PUBLIC)
    _write(d / "mosquitto.conf", mosquitto_conf_text(d, port, source, bind, run_as), PUBLIC)
    return summary


# -- command line -------------------------------------------------------------------------


def cmd_broker_config(args: argparse.Namespace) -> int:
    summary = generate(
        args.subjects,
        args.out,
        hosts=args.host,
        port=args.port,
        bind=args.bind,
        broker_user=args.broker_user,
        monitors=args.monitor,
        force=args.force,
        rotate=args.rotate,
        rotate_all=args.rotate_all,
    )
    print(summary.render())
    return 0


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `broker-config` subcommand to an argparse subparsers object."""
    sp: argparse.ArgumentParser = subparsers.add_parser(
        "broker-config",
        help="write a production mosquitto setup: TLS, a user per device, ACL",
        description="Write mosquitto.conf, passwd, acl, credentials.toml and TLS material "
        "(a private CA and the broker's certificate) for a subjects file. Every tag, "
        "protected device, the engine and the monitors get their own user and topics.",
    )
    sp.add_argument("--subjects", required=True, help="subjects TOML")
    sp.add_argument("--out", required=True, metavar="DIR", help="directory to write")
    sp.add_argument(
        "--host", action="append", metavar="NAME",
        help="DNS name or IP address devices use to reach the broker, for its certificate "
        "(repeatable; localhost, 127.0.0.1 and ::1 are always included)",
    )  # fmt: skip
    sp.add_argument("--port", type=int, help=f"TLS port (default {DEFAULT_PORT})")
    sp.add_argument(
        "--bind", metavar="ADDRESS",
        help="listen on this address only (default: every interface)",
    )  # fmt: skip
    sp.add_argument(
        "--broker-user", metavar="USER",
        help="the user mosquitto runs as when started as root (its `user` option, e.g. "
        "mosquitto): it is given read access to passwd, acl and server.key (needs root)",
    )  # fmt: skip
    sp.add_argument(
        "--monitor", action="append", metavar="NAME",
        help="a monitoring console's username (repeatable; default: one user 'monitor'); "
        "each username has one connection at a time",
    )  # fmt: skip
    sp.add_argument(
        "--force", action="store_true",
        help="update an existing DIR, keeping its CA, every existing password and the "
        "--host, --port, --bind, --broker-user and --monitor settings not given again",
    )  # fmt: skip
    sp.add_argument(
        "--rotate", action="append", default=[], metavar="USER",
        help="with --force: issue a new password to USER (repeatable)",
    )  # fmt: skip
    sp.add_argument(
        "--rotate-all", action="store_true",
        help="with --force: issue a new password to every user (the CA stays)",
    )  # fmt: skip
    sp.set_defaults(func=cmd_broker_config)
    return sp
