"""The console's HTTP routes (Starlette): login, logout, session, the alert queue,
/healthz, /metrics, and the console's page at `/` with its assets (engine/console/pages.py).

Open without a login: `POST /api/login`, `GET /healthz`, `GET /metrics` and `/` (the
console's page: it will hold the login form). Everything else answers 401 without a
session cookie or a bearer token, and 403 to a cookie request that changes something
without the session's CSRF token (engine/console/auth.py).

Handlers run on the engine's event loop, so nothing here blocks: every store call goes to
a thread (`run_in_threadpool`), and those land on the console's own store connections,
never on the engine's store thread."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from engine.console import cases, metrics, pages, review
from engine.console.access import AccessLog, at_least, visible
from engine.console.auth import COOKIE, Auth, Principal, client_of
from engine.console.feed import Feed
from engine.console.pages import Tiles
from engine.console.queue import STATES, WORKFLOWS, queue
from engine.console.view import EngineView
from engine.settings import Settings
from engine.store.access.accounts import AccountStore
from engine.store.casework.reader import CaseReads

Handler = Callable[[Request, Principal], Awaitable[Response]]


@dataclass
class Console:
    """What the routes work with: accounts, the store reader, the engine's view, the live
    feed (the alert board) and the access log."""

    accounts: AccountStore
    reader: CaseReads  # or casework/shards.py ShardedReader: the same reads
    engine: EngineView
    settings: Settings
    tls: bool = False
    tiles: Tiles | None = None  # the maps' tile layer, when the operator gave one

    def __post_init__(self) -> None:
        self.auth = Auth(self.accounts, self.settings)
        self.feed = Feed(self.reader, self.engine.subjects)
        self.access = AccessLog(self.accounts, self.feed.notice)
        self.exports = asyncio.Semaphore(1)


def _error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


def _who(p: Principal) -> dict[str, Any]:
    return {"user": p.user.name, "role": p.user.role, "team": p.user.team}


def build_app(console: Console) -> Starlette:
    auth = console.auth

    def guarded(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            who = await auth.identify(request)
            if who is None:
                return _error(401, "log in (POST /api/login) or send Authorization: Bearer")
            if not auth.csrf_ok(request, who):
                return _error(403, "missing or wrong X-CSRF-Token (from GET /api/session)")
            return await handler(request, who)

        return endpoint

    async def login(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
            name, password = body["username"], body["password"]
            if not isinstance(name, str) or not isinstance(password, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return _error(400, 'send JSON {"username": ..., "password": ...}')
        got = await auth.login(name, password, client_of(request))
        if got.status == 429:
            wait = f"{got.retry_after_s:.0f}"
            return _error(429, f"too many failed logins; try again in {wait} s",
                          **{"Retry-After": str(max(1, int(got.retry_after_s + 0.999)))})  # fmt: skip
        if not got.ok or got.principal is None or got.session_id is None:
            return _error(401, "wrong user name or password")
        response = JSONResponse({**_who(got.principal), "csrf": got.principal.csrf})
        response.set_cookie(
            COOKIE, got.session_id, max_age=int(console.settings.session_max_age_s),
            path="/", httponly=True, samesite="strict", secure=console.tls,
        )  # fmt: skip
        return response

    async def logout(request: Request, who: Principal) -> Response:
        await auth.logout(who, client_of(request))
        response = JSONResponse({"logged_out": who.user.name})
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict",
                               secure=console.tls)  # fmt: skip
        return response

    async def session(request: Request, who: Principal) -> Response:
        tiles = console.tiles.template if console.tiles else None
        return JSONResponse({**_who(who), "csrf": who.csrf, "via": who.via, "tiles": tiles})

    async def alerts(request: Request, who: Principal) -> Response:
        state = request.query_params.get("state", "all")
        workflow = request.query_params.get("workflow") or None
        if state not in STATES:
            return _error(400, f"state must be one of {', '.join(STATES)}")
        if workflow is not None and workflow not in WORKFLOWS:
            return _error(400, f"workflow must be one of {', '.join(WORKFLOWS)}")
        if not console.feed.loaded:
            await console.feed.load()
        subjects = console.engine.subjects()
        entries = list(console.feed.board.entries.values())
        return JSONResponse(queue(entries, subjects, state, workflow, visible(who, subjects)))

    async def events(request: Request, who: Principal) -> Response:
        last = request.headers.get("last-event-id") or request.query_params.get("last") or ""
        last_id = int(last) if last.isdigit() else None
        see = visible(who, console.engine.subjects())
        stream = console.feed.stream(see, last_id, at_least(who, "supervisor"))
        return StreamingResponse(stream, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})  # fmt: skip

    async def healthz(request: Request) -> Response:
        why = console.engine.health()
        if why is None:
            return JSONResponse({"status": "online"})
        return JSONResponse({"status": "unavailable", "why": why}, status_code=503)

    async def scrape(request: Request) -> Response:
        stats, online = console.engine.stats(), console.engine.health() is None
        open_alerts = [
            e.alert for e in console.feed.board.entries.values() if e.alert.state != "closed"
        ]
        body = await run_in_threadpool(metrics.render, stats, online, open_alerts)
        return Response(body, media_type=metrics.CONTENT_TYPE)

    async def unknown(request: Request, who: Principal) -> Response:
        return _error(404, f"no such API: {request.method} {request.url.path}")

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    return Starlette(
        routes=[
            *pages.routes(console.tiles),
            Route("/healthz", healthz),
            Route("/metrics", scrape),
            Route("/api/login", login, methods=["POST"]),
            Route("/api/logout", guarded(logout), methods=["POST"]),
            Route("/api/session", guarded(session)),
            Route("/api/alerts", guarded(alerts)),
            Route("/api/events", guarded(events)),
            *cases.routes(console, guarded),
            *review.routes(console, guarded),
            Route("/api/{rest:path}", guarded(unknown), methods=methods),
        ]
    )
