"""Who is asking: console sessions (cookie + CSRF token), API tokens (bearer), logins and
their limits, and the access log of each.

- A login checks the Argon2id hash off the event loop, at most two at a time (each takes
  ~64 MiB and ~50 ms of a core: a login storm must not starve the engine), and refuses a
  user name or a client address past its failure limit (engine/console/ratelimit.py) with
  429 without checking anything.
- The session cookie holds 256 random bits; the store keeps only their SHA-256, with the
  session's CSRF token. It is HttpOnly, SameSite=Strict, Path=/, Secure under TLS.
- A request carried by the cookie that changes anything (any method but GET, HEAD and
  OPTIONS) must send the session's CSRF token in `X-CSRF-Token` (403 otherwise). A bearer
  token needs none: a browser never sends it on its own.
- Every login, failed login, refused (limited) login and logout is in the access log.
- The client address is the socket's peer: behind a reverse proxy that is the proxy."""

from __future__ import annotations

import asyncio
import hmac
from dataclasses import dataclass
from typing import Literal

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from engine.console.ratelimit import FailureLimit
from engine.settings import Settings
from engine.store.access.accounts import AccountStore, User
from engine.store.access.credentials import new_secret, sha256, verify_password

COOKIE = "tagwatch_session"
CSRF_HEADER = "X-CSRF-Token"
_SAFE = ("GET", "HEAD", "OPTIONS")


@dataclass(frozen=True)
class Principal:
    user: User
    via: Literal["session", "token"]
    csrf: str | None = None  # the session's CSRF token
    session_sha256: str | None = None


@dataclass(frozen=True)
class LoginResult:
    ok: bool
    status: int  # 200, 401 or 429
    principal: Principal | None = None
    session_id: str | None = None  # the cookie's value (only on success)
    retry_after_s: float = 0.0


def client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


class Auth:
    def __init__(self, accounts: AccountStore, settings: Settings) -> None:
        self.accounts = accounts
        self.settings = settings
        st = settings
        self.per_user = FailureLimit(st.login_failures_per_user, st.login_failure_window_s)
        self.per_address = FailureLimit(st.login_failures_per_address, st.login_failure_window_s)
        self._checks = asyncio.Semaphore(2)

    async def login(self, name: str, password: str, client: str) -> LoginResult:
        wait = max(
            self.per_user.retry_after(f"user:{name}"),
            self.per_address.retry_after(f"addr:{client}"),
        )
        if wait > 0:
            await run_in_threadpool(
                self.accounts.log, name, client, "login_limited", f"retry after {wait:.0f} s"
            )
            return LoginResult(False, 429, retry_after_s=wait)
        async with self._checks:
            found = await run_in_threadpool(self.accounts.password_of, name)
            ok = await run_in_threadpool(verify_password, found[1] if found else None, password)
        if not ok or found is None:
            self.per_user.failed(f"user:{name}")
            self.per_address.failed(f"addr:{client}")
            why = "wrong password" if found else "no such enabled user"
            await run_in_threadpool(self.accounts.log, name, client, "login_failed", why)
            return LoginResult(False, 401)
        self.per_user.clear(f"user:{name}")
        sid, csrf = new_secret(), new_secret()
        session = await run_in_threadpool(
            self.accounts.open_session,
            found[0], sha256(sid), csrf, client, self.settings.session_max_age_s,
        )  # fmt: skip
        return LoginResult(
            True, 200, Principal(session.user, "session", csrf, sha256(sid)), session_id=sid
        )

    async def logout(self, who: Principal, client: str) -> None:
        if who.session_sha256 is not None:
            await run_in_threadpool(
                self.accounts.close_session, who.session_sha256, who.user.name, client
            )

    async def identify(self, request: Request) -> Principal | None:
        """The bearer token's user, else the session cookie's, else None. A bearer token
        that is wrong is not passed over for the cookie: the request fails."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if header:
            if scheme.lower() != "bearer" or not token.strip():
                return None
            user = await run_in_threadpool(self.accounts.by_token, sha256(token.strip()))
            return None if user is None else Principal(user, "token")
        sid = request.cookies.get(COOKIE)
        if not sid:
            return None
        session = await run_in_threadpool(self.accounts.session, sha256(sid))
        if session is None:
            return None
        return Principal(session.user, "session", session.csrf, sha256(sid))

    @staticmethod
    def csrf_ok(request: Request, who: Principal) -> bool:
        """A state-changing request by cookie carries the session's CSRF token."""
        if who.via != "session" or request.method in _SAFE:
            return True
        sent = request.headers.get(CSRF_HEADER, "")
        return bool(sent) and who.csrf is not None and hmac.compare_digest(sent, who.csrf)
