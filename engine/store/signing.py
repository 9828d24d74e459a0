"""Signed checkpoints: the engine's Ed25519 key (a file outside the database, mode 0600)
signs the chain's checkpoint in every commit, so rows appended, cut off or rewritten by
someone without the key no longer match a valid signature.

    key file      PEM PKCS#8, created 0600 beside the store (`tagwatch.db.key`; PostgreSQL:
                  `tagwatch.key` in the working folder) unless `tagwatch serve --key
                  PATH`; its public half is written to PATH.pub
    checkpoint    `Checkpoint` with `key` (public key, hex) and `sig` (Ed25519 over the
                  checkpoint's JSON with `sig` empty), kept in `meta` (key `checkpoint`),
                  checked and printed in full by `tagwatch audit verify`"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from engine.errors import StoreError
from engine.store.ledger import Head, read_anchor
from engine.store.sql.conn import Conn, is_url
from engine.wire.checkpoint import Checkpoint

__all__ = ["Checkpoint", "load_or_create_key", "load_public_key", "sign", "signature_problem"]


def default_key_path(db: str | Path) -> Path:
    """Beside a SQLite file (`DB.key`); for PostgreSQL, `tagwatch.key` in the working
    folder: every shard of a deployment signs with the same key (engine/store/sql/pgstore.py)."""
    return Path("tagwatch.key") if is_url(db) else Path(f"{db}.key")


def key_candidates(db: str | Path) -> list[Path]:
    """Where `audit verify` looks for the key that signed the store at `db`, public key
    first: beside it, and for a shard's SQLite file (`tagwatch.shard0.db`, beside the
    `--db` its engine was given) beside that base file too."""
    near = [default_key_path(db)]
    if not is_url(db):
        p = Path(db)
        m = re.fullmatch(r"(.+)\.shard\d+", p.stem)
        if m:
            near.append(default_key_path(p.with_name(m.group(1) + p.suffix)))
    return [c for k in near for c in (Path(f"{k}.pub"), k)]


def _raw(pub: Ed25519PublicKey) -> bytes:
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def load_or_create_key(path: str | Path) -> Ed25519PrivateKey:
    """The signing key at `path`; a new one (mode 0600, and PATH.pub) if there is none.
    Shards starting together may race to create it: the key appears whole or not at all
    (written aside, then linked into place), and the loser takes the winner's."""
    p = Path(path)
    try:
        if not p.exists():
            key = Ed25519PrivateKey.generate()
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            p.parent.mkdir(parents=True, exist_ok=True)
            aside = p.with_name(f".{p.name}.{os.getpid()}.new")
            fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(aside, p)  # fails if another process's key got there first
                made = True
            except FileExistsError:
                made = False
            finally:
                aside.unlink(missing_ok=True)
            if made:
                pub = key.public_key().public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
                Path(f"{p}.pub").write_bytes(pub)
                return key
        if os.stat(p).st_mode & 0o077:
            raise StoreError(f"signing key {p} is readable by others: chmod 600 {p}")
        loaded = serialization.load_pem_private_key(p.read_bytes(), password=None)
    except (OSError, ValueError) as e:
        raise StoreError(f"cannot use signing key {p}: {e}") from e
    if not isinstance(loaded, Ed25519PrivateKey):
        raise StoreError(f"signing key {p} is not an Ed25519 key")
    return loaded


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    """A trusted public key from a PEM file: the public half, or the private key itself."""
    p = Path(path)
    try:
        data = p.read_bytes()
        with contextlib.suppress(ValueError):
            pub = serialization.load_pem_public_key(data)
            if isinstance(pub, Ed25519PublicKey):
                return pub
        key = serialization.load_pem_private_key(data, password=None)
    except (OSError, ValueError) as e:
        raise StoreError(f"cannot read key {p}: {e}") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise StoreError(f"{p} is not an Ed25519 key")
    return key.public_key()


def _payload(cp: Checkpoint) -> bytes:
    return msgspec.structs.replace(cp, sig="").encode()


def sign(cp: Checkpoint, key: Ed25519PrivateKey) -> Checkpoint:
    cp = msgspec.structs.replace(cp, key=_raw(key.public_key()).hex(), sig="")
    return msgspec.structs.replace(cp, sig=key.sign(_payload(cp)).hex())


def signature_problem(cp: Checkpoint, trusted: Ed25519PublicKey | None) -> str | None:
    """None when `cp` is signed by `trusted` (or, with no trusted key, by the key it names)."""
    if not cp.sig:
        return "the checkpoint is not signed"
    try:
        pub = trusted or Ed25519PublicKey.from_public_bytes(bytes.fromhex(cp.key))
        if trusted is not None and cp.key != _raw(trusted).hex():
            return "the checkpoint is signed by another key than the trusted one"
        pub.verify(bytes.fromhex(cp.sig), _payload(cp))
    except (InvalidSignature, ValueError):
        return "the checkpoint's signature is not valid: forged or changed"
    return None


def read_mark(db: Conn, head: Head) -> Checkpoint:
    """The unsigned checkpoint of a store whose chain ends at `head`: the anchor, the last
    alert_log seq the ledger names, the engine clock of the last step."""
    anchor = read_anchor(db) or Head()
    (aseq,) = db.execute("SELECT MAX(seq) FROM ledger WHERE kind = 'alert'").fetchone()
    if aseq is None:
        row = db.execute("SELECT value FROM meta WHERE key = 'anchor_alert_seq'").fetchone()
        aseq = int(row[0]) if row else 0
    now = db.execute("SELECT t FROM ledger WHERE kind = 'step' ORDER BY n DESC LIMIT 1").fetchone()
    return Checkpoint(
        head.n, head.step, head.hash.hex(), anchor.n, anchor.hash.hex(), int(aseq),
        None if now is None else float(now[0]),
    )  # fmt: skip


def store_signed(db: Conn, mark: Checkpoint, key: Ed25519PrivateKey) -> None:
    """Keep `mark`, signed, in `meta` (inside the caller's transaction)."""
    cp = sign(mark, key)
    db.execute(
        "INSERT INTO meta(key, value) VALUES ('checkpoint', ?)"
        " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (cp.encode().decode(),),
    )
