"""The console's casework routes: one alert's page, the workflow actions, a subject's page.

- `GET /api/alerts/{id}`: the alert as it stands, its lifecycle records, its actions, the
  fixes it cites, the track of the subject's tags around the episode (30 min either side),
  the protected devices' positions in that window with their age at the alert, and the
  zone as GeoJSON. Every view is in the access log.
- `POST /api/alerts/{id}/ack|note|assign|resolve|reopen`: written by the engine's store
  (ledger, alert log, outbox) and published as an alert record; the answer is the alert as
  it now stands. 404 unknown, 409 not now (already acknowledged, resolved...), 400 bad body,
  403 not the asker's to work.
- `GET /api/alerts/{id}/export`: the alert's evidence pack (engine/evidence/: PDF, GeoJSON,
  manifest of ledger rows) as a zip; logged as `export_alert`; one pack at a time.
- `GET /api/subjects/{id}`: the subject, its zones and schedules, its recent track, its
  alerts, its devices' health and its outcome history. Logged too.

Who may see and do what: engine/console/access.py."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from engine.console import geo
from engine.console.access import at_least, own_team, reason_of
from engine.console.auth import Principal
from engine.console.queue import Entry
from engine.errors import StoreError, TagwatchError
from engine.evidence.pack import build_pack
from engine.store.casework.workflow import ACTIONS, Action, ActionRefused, UnknownAlert, Workflow
from engine.wire.alerts import decode_alert
from zones.model import Subject

if TYPE_CHECKING:
    from engine.console.app import Console

Guard = Callable[[Callable[[Request, Principal], Awaitable[Response]]], Any]
AROUND_S = 1800.0  # track shown either side of an episode
RECENT_S = 7200.0  # a subject page's recent track
MAX_BODY = 16_384


def error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else x


def _need_reason() -> JSONResponse:
    return error(403, "another team's subject: state a reason (?reason=...); it is logged and"
                 " shown to supervisors", need_reason=True)  # fmt: skip


def _may_look(request: Request, who: Principal, subject: Subject | None) -> tuple[bool, str | None]:
    """(allowed, reason): another team's subject needs a stated reason."""
    if own_team(who, subject):
        return True, None
    reason = reason_of(request)
    return reason is not None, reason


def routes(console: Console, guarded: Guard) -> list[Route]:
    reader, engine = console.reader, console.engine

    async def alert_page(request: Request, who: Principal) -> Response:
        aid = request.path_params["id"]
        rows = await run_in_threadpool(reader.records, aid)
        if not rows:
            return error(404, f"no alert {aid}")
        records = [a for _, a in rows]
        latest = records[-1]
        subjects = engine.subjects()
        subject = subjects.get(latest.subject)
        ok, reason = _may_look(request, who, subject)
        if not ok:
            return _need_reason()
        await console.access.viewed(request, who, "view_alert", subject or latest.subject,
                                    alert=aid, reason=reason)  # fmt: skip
        lifecycle = [a for a in records if a.workflow is None]
        first = lifecycle[0] if lifecycle else latest
        since = first.opened_t - AROUND_S
        until = (latest.closed_t or max(a.raised_t for a in records)) + AROUND_S
        cited: list[Any] = []
        for a in lifecycle:
            cited += [ev for ev in a.evidence if ev not in cited]
        tags = [latest.tag] if latest.tag else list(subject.tags if subject else ())
        track: list[Any] = []
        for tag in tags:
            track += await run_in_threadpool(reader.positions, tag, since, until)
        victim = []
        for p in subject.protected if subject else ():
            for pos in await run_in_threadpool(reader.positions, p.device, since, until):
                victim.append({**msgspec.to_builtins(pos), "device": p.device,
                               "age_s": first.raised_t - pos.t})  # fmt: skip
        zone = engine.zones().get(latest.zone) if latest.zone else None
        entry = Entry(rows[-1][0], latest, Workflow.of(records))
        return JSONResponse({
            "alert": entry.as_json(subjects),
            "records": [msgspec.to_builtins(a) for a in lifecycle],
            "actions": list(entry.workflow.actions),
            "fixes": msgspec.to_builtins(await run_in_threadpool(reader.cited, cited)),
            "track": msgspec.to_builtins(sorted(track, key=lambda p: p.t)),
            "victim": victim,
            "zone": geo.feature(zone) if zone else None,
            "subject": _subject_json(subject, latest.subject),
        })  # fmt: skip

    async def act(request: Request, who: Principal) -> Response:
        aid, verb = request.path_params["id"], request.path_params["action"]
        if verb not in ACTIONS:
            return error(404, f"no action {verb!r}: one of {', '.join(ACTIONS)}")
        if verb == "reopen" and not at_least(who, "supervisor"):
            return error(403, "only a supervisor can reopen an alert")
        body = await _body(request)
        if body is None:
            return error(400, "send a JSON object (or nothing)")
        entry = console.feed.board.entries.get(aid)
        subject = engine.subjects().get(entry.alert.subject) if entry else None
        if entry is not None and not own_team(who, subject):
            return error(403, "another team's alert: their monitors work it")
        to = body.get("to")
        if verb == "assign" and isinstance(to, str):
            names = {u.name for u in await run_in_threadpool(console.accounts.users)
                     if not u.disabled}  # fmt: skip
            if to not in names:
                return error(400, f"no enabled user {to!r} to assign to")
        text = body.get("text", body.get("note"))
        outcome = body.get("outcome")
        if not all(v is None or isinstance(v, str) for v in (text, to, outcome)):
            return error(400, "text, note, to and outcome are strings")
        action = Action(verb, who.user.name, round(time.time(), 3), text or None, to, outcome)
        try:
            item = await engine.act(aid, action)
        except UnknownAlert:
            return error(404, f"no alert {aid}")
        except ActionRefused as e:
            return error(e.status, str(e))
        except StoreError as e:
            return error(503, f"not recorded, try again: {e}")
        console.feed.poke()
        alert = decode_alert(item.payload)
        return JSONResponse(Entry(item.seq, alert, Workflow.of([alert])).as_json(engine.subjects()))

    async def subject_page(request: Request, who: Principal) -> Response:
        sid = request.path_params["id"]
        subject = engine.subjects().get(sid)
        if subject is None:
            return error(404, f"no subject {sid} in force")
        ok, reason = _may_look(request, who, subject)
        if not ok:
            return _need_reason()
        await console.access.viewed(request, who, "view_subject", subject, reason=reason)
        zones = engine.zones_of(sid)
        health, track = [], []
        for tag in subject.tags:
            seen = await run_in_threadpool(reader.last_seen, tag)
            health.append({"tag": tag, "last_seen_t": seen[0] if seen else None,
                           "battery": seen[1] if seen else None})  # fmt: skip
            if seen:
                track += await run_in_threadpool(reader.positions, tag, seen[0] - RECENT_S, seen[0])
        mine = [e for e in console.feed.board.entries.values() if e.alert.subject == sid]
        outcomes: dict[str, int] = {}
        for e in mine:
            if e.workflow.outcome:
                outcomes[e.workflow.outcome] = outcomes.get(e.workflow.outcome, 0) + 1
        subjects = engine.subjects()
        return JSONResponse({
            "subject": {**_subject_json(subject, sid), "zones": [z.id for z in zones]},
            "zones": geo.collection(zones),
            "track": msgspec.to_builtins(sorted(track, key=lambda p: p.t)),
            "alerts": [e.as_json(subjects) for e in sorted(mine, key=lambda e: -e.alert.raised_t)],
            "health": health,
            "outcomes": outcomes,
        })  # fmt: skip

    async def export(request: Request, who: Principal) -> Response:
        aid = request.path_params["id"]
        rows = await run_in_threadpool(reader.records, aid)
        if not rows:
            return error(404, f"no alert {aid}")
        subject = engine.subjects().get(rows[-1][1].subject)
        ok, reason = _may_look(request, who, subject)
        if not ok:
            return _need_reason()
        await console.access.viewed(request, who, "export_alert", subject or rows[-1][1].subject,
                                    alert=aid, reason=reason)  # fmt: skip
        async with console.exports:  # each pack is CPU work: one at a time
            try:
                pack = await run_in_threadpool(build_pack, reader.target_of(aid), aid)
                body = await run_in_threadpool(pack.zip)
            except TagwatchError as e:
                return error(404, str(e))
        return Response(body, media_type="application/zip", headers={
            "Content-Disposition": f'attachment; filename="{pack.name}.zip"'})  # fmt: skip

    return [
        Route("/api/alerts/{id}/export", guarded(export)),
        Route("/api/alerts/{id}", guarded(alert_page)),
        Route("/api/alerts/{id}/{action}", guarded(act), methods=["POST"]),
        Route("/api/subjects/{id}", guarded(subject_page)),
    ]


async def _body(request: Request) -> dict[str, Any] | None:
    if int(request.headers.get("content-length") or 0) > MAX_BODY:
        return None
    raw = await request.body()
    if not raw.strip():
        return {}
    if len(raw) > MAX_BODY:
        return None
    try:
        obj = json.loads(raw)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def _subject_json(subject: Subject | None, sid: str) -> dict[str, Any]:
    if subject is None:
        return {"id": sid, "team": None, "risk": None, "tags": [], "protected": []}
    return {
        "id": subject.id, "team": subject.team, "risk": subject.risk, "tags": list(subject.tags),
        "protected": [p.device for p in subject.protected],
        "valid_from": _finite(subject.valid_from), "valid_until": _finite(subject.valid_until),
    }  # fmt: skip
