"""How a tagwatch process logs in to the broker: username, password (never on the command
line), and the CA that the broker's TLS certificate must chain to."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import ConfigError

PASSWORD_ENV = "TAGWATCH_MQTT_PASSWORD"


@dataclass(frozen=True)
class MqttAuth:
    """Credentials and TLS settings for one MQTT connection.

    `cafile` turns TLS on: the broker's certificate must chain to it. `insecure` skips only
    the check that the certificate names the host dialled (the CA is still checked).
    """

    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in a log line
    cafile: str | None = None
    insecure: bool = False

    @property
    def tls(self) -> bool:
        return self.cafile is not None

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for aiomqtt.Client: username, password, tls_params."""
        import aiomqtt

        out: dict[str, Any] = {}
        if self.username is not None:
            out["username"] = self.username
            out["password"] = self.password
        if self.cafile is not None:
            out["tls_params"] = aiomqtt.TLSParameters(ca_certs=self.cafile)
            if self.insecure:
                out["tls_insecure"] = True
        return out

    @classmethod
    def from_args(
        cls, args: argparse.Namespace, environ: Mapping[str, str] | None = None
    ) -> MqttAuth:
        """From the options add_arguments() added; the password from --password-file, else
        from $TAGWATCH_MQTT_PASSWORD. ConfigError when they do not fit together."""
        env = os.environ if environ is None else environ
        username = getattr(args, "username", None)
        password_file = getattr(args, "password_file", None)
        cafile = getattr(args, "cafile", None)
        insecure = bool(getattr(args, "tls_insecure", False))
        password: str | None = None
        source = ""
        if password_file is not None:
            password = read_password_file(password_file)
            source = f"--password-file {password_file}"
        elif env.get(PASSWORD_ENV):
            password = env[PASSWORD_ENV]
            source = f"${PASSWORD_ENV}"
        if password is not None and not username:
            raise ConfigError(f"{source} gives a password but --username is missing")
        if cafile is not None:
            path = Path(cafile)
            if not path.is_file():
                raise ConfigError(f"--cafile {cafile}: no such file")
            cafile = str(path.resolve())
        elif insecure:
            raise ConfigError("--tls-insecure needs --cafile (it relaxes a TLS check)")
        return cls(username or None, password, cafile, insecure)


def read_password_file(path: str | os.PathLike[str]) -> str:
    """The first line of `path`, without its line ending; ConfigError if none."""
    try:
        with open(path, encoding="utf-8") as f:
            first = f.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(
            f"cannot read password file {path}: {getattr(e, 'strerror', None) or e}"
        ) from None
    if not first:
        raise ConfigError(f"password file {path} is empty: its first line is the password")
    return first


class _RefusePassword(argparse.Action):
    """`--password`: refused without echoing the value (and so no abbreviation of
    --password-file can swallow a password as a file name)."""

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        parser.error(
            f"passwords are not taken on the command line (other users can read it there): "
            f"use --password-file FILE or ${PASSWORD_ENV}"
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --username, --password-file, --cafile and --tls-insecure to a subcommand."""
    g = parser.add_argument_group("broker login and TLS (see docs/access.md)")
    g.add_argument("--username", help="MQTT username")
    g.add_argument("--password", action=_RefusePassword, help=argparse.SUPPRESS)
    g.add_argument(
        "--password-file", metavar="FILE",
        help=f"file whose first line is the MQTT password (else ${PASSWORD_ENV}); "
        "never given on the command line, where other users could read it",
    )  # fmt: skip
    g.add_argument(
        "--cafile", metavar="FILE",
        help="connect with TLS, trusting this CA certificate (broker-config's ca.crt)",
    )  # fmt: skip
    g.add_argument(
        "--tls-insecure", action="store_true",
        help="with --cafile: do not check that the certificate names the broker's host",
    )  # fmt: skip
