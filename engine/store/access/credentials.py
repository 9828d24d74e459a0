"""Passwords (Argon2id), API tokens, session ids and CSRF tokens: made, hashed, checked.

Passwords are hashed with argon2-cffi's defaults (Argon2id, RFC 9106's low-memory profile:
t=3, m=64 MiB, p=4): slow on purpose, so a stolen file is expensive to guess at. Tokens
and session ids are 256 random bits: one SHA-256 is enough to keep them out of the file
(there is nothing to guess), and it keeps a request's check cheap."""

from __future__ import annotations

import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from engine.errors import TagwatchError

PASSWORD_MIN = 10  # characters; NIST SP 800-63B asks at least 8, we ask a little more
TOKEN_PREFIX = "tw_"  # a tagwatch API token is recognisable in a leaked log or a config

_hasher = PasswordHasher()
# What a check against an unknown user costs: the same as against a known one, so the
# time a login takes does not say whether the name exists.
_DUMMY = _hasher.hash("tagwatch: no such user")


class PasswordError(TagwatchError):
    """A new password is refused (empty, too short, the user's own name)."""


def check_new_password(name: str, password: str) -> None:
    """Refuse a password a guesser tries first; PasswordError says why."""
    if not password:
        raise PasswordError("the password is empty")
    if len(password) < PASSWORD_MIN:
        raise PasswordError(
            f"the password is too short ({len(password)} characters; at least {PASSWORD_MIN})"
        )
    if password.strip().lower() == name.lower() or len(set(password)) < 3:
        raise PasswordError("the password is too easy to guess (the user's name, or repeats)")


def hash_password(password: str) -> str:
    """The Argon2id PHC string to store."""
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """True when `password` matches `stored` (None: no such user, still costs a check)."""
    try:
        return _hasher.verify(stored or _DUMMY, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def new_token() -> str:
    """A new API token (shown once; only its sha256 is stored)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_secret() -> str:
    """A session id or a CSRF token: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
