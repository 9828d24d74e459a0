"""What supervisors and admins review: the access log, outcomes per subject and zone, and
the users.

- `GET /api/access?limit=N&flagged=1` (supervisor): the access log, newest first; each row
  `{seq, t, user, client, action, subject, team, alert, reason}`. `flagged=1`: only views
  of another team's subject (`view_other_team`), which a supervisor should look at.
- `GET /api/reports/outcomes` (supervisor): per subject and zone, alerts worked, counts per
  outcome, the false alarm rate (false alarms / resolved) and the median time from raised
  to acknowledged (a resolve without an ack counts as the acknowledgement).
- `GET /api/users` (admin): the accounts (name, role, team, disabled). Accounts are made
  and changed with `tagwatch users` on the engine's host."""

from __future__ import annotations

import json
import statistics
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from engine.console.access import at_least
from engine.console.auth import Principal
from engine.console.queue import Entry

if TYPE_CHECKING:
    from engine.console.app import Console

Guard = Callable[[Callable[[Request, Principal], Awaitable[Response]]], Any]


def _refused(role: str) -> JSONResponse:
    return JSONResponse({"error": f"needs the {role} role"}, status_code=403)


def outcomes(entries: list[Entry]) -> list[dict[str, Any]]:
    """Per (subject, zone): alerts, counts per outcome, false alarm rate, median time to
    acknowledge (seconds), from the alerts as they stand."""
    groups: dict[tuple[str, str | None], list[Entry]] = {}
    for e in entries:
        groups.setdefault((e.alert.subject, e.alert.zone), []).append(e)
    out = []
    for (subject, zone), es in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        counts: dict[str, int] = {}
        waits = []
        for e in es:
            if e.workflow.outcome:
                counts[e.workflow.outcome] = counts.get(e.workflow.outcome, 0) + 1
            took = next(
                (a["t"] for a in e.workflow.actions if a["action"] in ("ack", "resolve")), None
            )
            if took is not None:
                waits.append(max(0.0, took - e.alert.raised_t))
        resolved = sum(counts.values())
        out.append({
            "subject": subject, "zone": zone, "alerts": len(es), "resolved": resolved,
            "outcomes": counts,
            "false_alarm_rate": counts.get("false_alarm", 0) / resolved if resolved else None,
            "median_time_to_ack_s": statistics.median(waits) if waits else None,
        })  # fmt: skip
    return out


def routes(console: Console, guarded: Guard) -> list[Route]:
    async def access(request: Request, who: Principal) -> Response:
        if not at_least(who, "supervisor"):
            return _refused("supervisor")
        try:
            limit = max(1, min(10_000, int(request.query_params.get("limit", "1000"))))
        except ValueError:
            return JSONResponse({"error": "limit must be a number"}, status_code=400)
        flagged = request.query_params.get("flagged") in ("1", "true", "yes")
        only = "view_other_team" if flagged else None
        rows = await run_in_threadpool(console.accounts.access_log, limit, only)  # oldest first
        out = []
        for r in reversed(rows):  # newest first, as documented
            try:
                detail = json.loads(r.detail) if r.detail.startswith("{") else {}
            except ValueError:
                detail = {}
            out.append({
                "seq": r.seq, "t": r.t, "user": r.user, "client": r.client,
                "action": r.action, "subject": detail.get("subject"), "team": detail.get("team"),
                "alert": detail.get("alert"), "reason": detail.get("reason"),
                "view": detail.get("view"), "detail": None if detail else r.detail,
            })  # fmt: skip
        return JSONResponse(out)

    async def report(request: Request, who: Principal) -> Response:
        if not at_least(who, "supervisor"):
            return _refused("supervisor")
        return JSONResponse(outcomes(list(console.feed.board.entries.values())))

    async def users(request: Request, who: Principal) -> Response:
        if not at_least(who, "admin"):
            return _refused("admin")
        got = await run_in_threadpool(console.accounts.users)
        return JSONResponse(
            [{"name": u.name, "role": u.role, "team": u.team, "disabled": u.disabled} for u in got]
        )

    return [
        Route("/api/access", guarded(access)),
        Route("/api/reports/outcomes", guarded(report)),
        Route("/api/users", guarded(users)),
    ]
