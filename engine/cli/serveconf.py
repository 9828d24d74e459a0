"""`tagwatch serve --config FILE`: serve's command-line options in a TOML file, so a unit
file stays one short line (deploy/, docs/deployment.md).

    broker = "127.0.0.1:8883"
    zones = "zones.geojson"            # relative paths are relative to this file
    subjects = "subjects.toml"
    db = "/var/lib/tagwatch/tagwatch.db"   # or "postgresql://tagwatch@db.internal/tagwatch"
    username = "engine"
    password-file = "/etc/tagwatch/engine.password"
    cafile = "/etc/tagwatch/broker/ca.crt"
    webhook = ["ops=https://ops.example/hook"]

    [engine]                           # engine settings (docs/settings.md), in place of
    report_fast_s = 15.0               # a separate --settings file

Keys are serve's long options without the dashes (`client-id` or `client_id`); a flag is
true or false, a repeatable option a list. What the command line gives wins over the file
(a repeatable option adds to the file's). An unknown key, a wrong type or a password in
the file are refused, naming the key."""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.errors import ConfigError

# Options naming a file or directory: relative to the config file's directory (a URL,
# db = "postgresql://...", is taken as it is)
PATH_KEYS = frozenset({
    "zones", "subjects", "settings", "db", "key", "http-cert", "http-key", "password-file",
    "cafile", "webhook-secret-file",
})  # fmt: skip
_NOT_IN_FILE = frozenset({"config", "help", "password"})


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """serve's long options by their name without dashes."""
    out: dict[str, argparse.Action] = {}
    for action in parser._actions:  # argparse has no public list of a parser's actions
        for opt in action.option_strings:
            if opt.startswith("--") and opt[2:] not in _NOT_IN_FILE:
                out[opt[2:]] = action
    return out


def config_argv(path: str, parser: argparse.ArgumentParser) -> list[str]:
    """The options a serve config file stands for, as command-line arguments."""
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"--config {path}: {getattr(e, 'strerror', None) or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"--config {path}: {e}") from None
    options = _options(parser)
    base = p.resolve().parent
    argv: list[str] = []
    for raw, value in doc.items():
        key = raw.replace("_", "-")
        if key == "engine" and isinstance(value, dict):
            if "settings" in doc:
                raise ConfigError(f"{path}: give [engine] settings or settings = FILE, not both")
            argv += ["--settings", str(p.resolve())]  # Settings.from_toml reads [engine]
            continue
        if key == "password":
            raise ConfigError(
                f"{path}: a password is not kept in the config file; use password-file"
            )
        action = options.get(key)
        if action is None:
            known = ", ".join(sorted(options))
            raise ConfigError(f"{path}: unknown key {raw!r}; serve's options are: {known}")
        argv += _args(path, raw, key, value, action, base)
    return argv


def _args(
    path: str, raw: str, key: str, value: Any, action: argparse.Action, base: Path
) -> list[str]:
    flag = f"--{key}"
    if action.nargs == 0:  # a flag
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: {raw} is a flag: true or false, not {value!r}")
        return [flag] if value else []
    repeatable = isinstance(action, argparse._AppendAction)
    values = value if repeatable and isinstance(value, list) else [value]
    out: list[str] = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (str, int, float)):
            want = "a string or a number" + (", or a list of them" if repeatable else "")
            raise ConfigError(f"{path}: {raw} must be {want}, not {v!r}")
        text = str(v)
        if key in PATH_KEYS and not Path(text).is_absolute() and "://" not in text:
            text = str(base / text)
        out += [flag, text]
    return out


def expand(argv: Sequence[str], parser: argparse.ArgumentParser) -> list[str]:
    """argv with `serve --config FILE` replaced by the file's options, placed before the
    command line's own so that those win."""
    args = list(argv)
    if "serve" not in args:
        return args
    at = args.index("serve")
    for i in range(at + 1, len(args)):
        a = args[i]
        if a == "--config" and i + 1 < len(args):
            path, rest = args[i + 1], args[:i] + args[i + 2 :]
        elif a.startswith("--config="):
            path, rest = a.split("=", 1)[1], args[:i] + args[i + 1 :]
        else:
            continue
        return rest[: at + 1] + config_argv(path, parser) + rest[at + 1 :]
    return args
