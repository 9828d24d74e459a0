"""The passwords: credentials.toml, their only copy, and mosquitto's passwd file derived
from it (mosquitto 2.0's `$7$` PBKDF2-SHA512 hashes, as mosquitto_passwd writes them)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.broker.users import GROUPS, Principal
from engine.errors import ConfigError

RETIRED = "retired"  # users no longer needed: not in passwd, password kept for a return
# mosquitto 2.0's password file: "$7$" = PBKDF2-HMAC-SHA512, its default 101 iterations
# and 12-byte salt, salt and 64-byte hash in standard base64 (what mosquitto_passwd writes).
PBKDF2_ITERATIONS = 101
SALT_BYTES = 12
_PASSWD_HASH = re.compile(r"\$7\$(\d+)\$([A-Za-z0-9+/]+={0,2})\$([A-Za-z0-9+/]+={0,2})")


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


def read_passwd(path: Path) -> dict[str, str]:
    """user -> hash of a passwd file written earlier; {} when there is none to read."""
    if not path.exists():
        return {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return {}  # only a cache of hashes: every line is rewritten from credentials.toml
    return dict(line.split(":", 1) for line in lines if ":" in line)


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
