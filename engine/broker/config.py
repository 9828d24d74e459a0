"""`tagwatch broker-config`: a production mosquitto setup (TLS, passwords, ACL) for a subjects file.

Every tag, protected device, the engine and the monitors get their own broker user and may
touch only their own topics (docs/access.md has the table). The directory written is the
operator's source of truth: re-running with --force after the subjects file changes keeps
the CA and every existing password, so no device already in the field is locked out.

This module writes the directory; what goes in the files comes from users.py (who may do
what, the acl), credentials.py (passwords, credentials.toml, passwd), mosquitto_conf.py
and tls.py.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import pwd
import secrets
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.broker import tls as tlscerts
from engine.broker.credentials import (
    RETIRED,
    Existing,
    credentials_text,
    passwd_text,
    read_credentials,
    read_passwd,
)
from engine.broker.mosquitto_conf import mosquitto_conf_text
from engine.broker.users import (
    ENGINE_USER,
    GROUPS,
    MONITOR_USER,
    acl_text,
    principals,
)
from engine.errors import ConfigError, ZoneError

if TYPE_CHECKING:
    from zones.model import Gateway, Subject

DEFAULT_PORT = 8883
SECRET = 0o600
PUBLIC = 0o644


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
        if c["gateways"]:
            who += f", {_plural(c['gateways'], 'gateway')}"
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


def _subjects(path: str | os.PathLike[str]) -> tuple[tuple[Subject, ...], tuple[Gateway, ...]]:
    """The subjects file's subjects and gateways, or a one-line ZoneError naming its first
    problem."""
    from zones.subjects import read_subjects_file

    subjects, _, gateways, problems = read_subjects_file(path)
    if problems:
        more = f" (and {_plural(len(problems) - 1, 'more problem')})" if problems[1:] else ""
        raise ZoneError(f"{problems[0]}{more}", problems)
    return subjects, gateways


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
    shards: int = 0,
) -> Summary:
    """Write the broker directory for a subjects file (see the module docstring).

    With `force`, settings left as None are taken from the directory's credentials.toml
    (hosts, port, bind, broker user, monitor names), so a re-run changes only what it names.
    """
    subjects, gateways = _subjects(subjects_path)
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
    if not 0 <= shards <= 4096:
        raise ConfigError(f"--shards {shards}: give the number of engine shards, 1 to 4096")
    bind = tlscerts.check_host(bind, "--bind") if bind is not None else None
    users = principals(subjects, monitors, gateways, shards)
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
    # The priority lane logs in as engine-urgent, a shard as engine-<i>-of-<N>, all with
    # the engine's own password (one secret)
    for p in users:
        if p.group == "engine":
            passwords[p.username] = passwords[ENGINE_USER]
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
    old_hashes = read_passwd(d / "passwd")
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
        shards=args.shards,
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
    sp.add_argument(
        "--shards", type=int, default=0, metavar="N",
        help="also users engine-<i>-of-<N> for `tagwatch serve --shard i/N` (the engine's"
        " password; docs/deployment.md)",
    )  # fmt: skip
    sp.set_defaults(func=cmd_broker_config)
    return sp
