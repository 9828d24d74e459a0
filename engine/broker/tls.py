"""TLS material for `tagwatch broker-config`: a private CA and a server certificate signed
by it, with the broker's host names and addresses as subject alternative names.

cryptography is imported inside these functions: it costs every other `tagwatch` command a
tenth of a second at start-up otherwise."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import ConfigError

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

CA_DAYS = 3650
# Apple platforms (OwnTracks on iOS) reject TLS server certificates valid for > 825 days,
# even from a private CA.
SERVER_DAYS = 825
_DNS_NAME = re.compile(r"(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9][A-Za-z0-9-]{0,62})*")


def _new_key() -> RSAPrivateKey:
    from cryptography.hazmat.primitives.asymmetric import rsa

    # RSA 2048: what every tracker's TLS stack and OwnTracks on iOS and Android accept
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(obj: RSAPrivateKey | x509.Certificate) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization as ser

    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(ser.Encoding.PEM)
    return obj.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())


def _certificate(
    cn: str,
    key: RSAPrivateKey,
    issuer: tuple[RSAPrivateKey, x509.Certificate] | None,
    start: dt.datetime,
    end: dt.datetime,
    extensions: Sequence[tuple[x509.ExtensionType, bool]],
) -> x509.Certificate:
    """A certificate for `key` signed by `issuer` (self-signed when None)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tagwatch"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn[:64]),
        ]
    )
    signer, issuer_name = (key, name) if issuer is None else (issuer[0], issuer[1].subject)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    for ext, critical in extensions:
        builder = builder.add_extension(ext, critical)
    return builder.sign(signer, hashes.SHA256())


def _key_usage(*allowed: str) -> x509.KeyUsage:
    from cryptography import x509

    flags: tuple[str, ...] = ("digital_signature", "content_commitment", "key_encipherment")
    flags += ("data_encipherment",)
    flags += ("key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
    return x509.KeyUsage(**{f: f in allowed for f in flags})


def make_ca(now: dt.datetime) -> tuple[RSAPrivateKey, x509.Certificate]:
    """A self-signed CA, valid CA_DAYS, for signing the broker's certificate."""
    from cryptography import x509

    key = _new_key()
    end = now + dt.timedelta(days=CA_DAYS)
    cert = _certificate(
        f"tagwatch broker CA {now:%Y-%m-%d}",
        key,
        None,
        now - dt.timedelta(hours=1),
        end,
        [
            (x509.BasicConstraints(ca=True, path_length=0), True),
            (_key_usage("key_cert_sign", "crl_sign"), True),
        ],
    )
    return key, cert


def check_host(h: str, option: str) -> str:
    """An IP address (normalised) or a DNS name (lower case); ConfigError otherwise."""
    try:
        return str(ipaddress.ip_address(h.strip("[]")))
    except ValueError:
        if not _DNS_NAME.fullmatch(h) or len(h) > 253:
            raise ConfigError(f"{option} {h!r} is neither an IP address nor a DNS name") from None
        return h.lower()


def sans(hosts: Sequence[str]) -> list[str]:
    """localhost, 127.0.0.1, ::1 and `hosts`, without repeats; ConfigError for a bad one."""
    out = ["localhost", "127.0.0.1", "::1"]
    for h in hosts:
        if (h := check_host(h, "--host")) not in out:
            out.append(h)
    return out


def make_server_cert(
    ca: tuple[RSAPrivateKey, x509.Certificate], hosts: Sequence[str], now: dt.datetime
) -> tuple[RSAPrivateKey, x509.Certificate]:
    """The broker's certificate, signed by `ca`, for localhost, loopback and `hosts`."""
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    names: list[x509.GeneralName] = []
    for h in sans(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    ca_ski = ca[1].extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    key = _new_key()
    cert = _certificate(
        hosts[0] if hosts else "localhost",
        key,
        ca,
        now - dt.timedelta(hours=1),
        min(now + dt.timedelta(days=SERVER_DAYS), ca[1].not_valid_after_utc),
        [
            (x509.SubjectAlternativeName(names), False),
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (_key_usage("digital_signature", "key_encipherment"), True),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
            (x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), False),
        ],
    )
    return key, cert


def load_ca(out_dir: Path) -> tuple[RSAPrivateKey, x509.Certificate] | None:
    """The CA already in `out_dir`, None if there is none; ConfigError if it is broken."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    crt, key = out_dir / "ca.crt", out_dir / "ca.key"
    if not crt.exists() and not key.exists():
        return None
    if not (crt.exists() and key.exists()):
        have, missing = (crt, key) if crt.exists() else (key, crt)
        raise ConfigError(
            f"{have} is there but {missing} is not; restore it, or delete {have} to make a new "
            "CA (every device then needs the new ca.crt)"
        )
    try:
        cert = x509.load_pem_x509_certificate(crt.read_bytes())
        ca_key = serialization.load_pem_private_key(key.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise ConfigError(f"cannot load the CA in {out_dir}: {e}") from None
    if not isinstance(ca_key, rsa.RSAPrivateKey) or ca_key.public_key() != cert.public_key():
        raise ConfigError(f"{key} is not the RSA key of {crt}")
    return ca_key, cert


# -- writing the directory ----------------------------------------------------------------
