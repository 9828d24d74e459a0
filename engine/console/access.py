"""Who may see and do what in the console, and the access log of every look at a person.

- Roles are cumulative: `monitor` works the alerts of their team's subjects (and of
  subjects that name no team); `supervisor` also sees every team, reopens resolved alerts,
  reads reports and the access log; `admin` also manages users.
- A monitor may open another team's subject or alert only by stating a reason (`?reason=`
  or the `X-Access-Reason` header). The view is then logged as `view_other_team`, which
  is what a supervisor's review (`GET /api/access?flagged=1`) lists first; without a reason
  the answer is 403 with `need_reason`.
- A supervisor's live feed gets an `event: access` notice of each such view at once.
- Every view of an alert page (it shows the protected device's positions) and of a
  subject page (the track) is in the access log with who, when, from where, and what:
  the log is append-only (engine/store/access/schema.py triggers).
- Workflow actions on another team's alert are refused to a monitor (reasons let one look,
  not act)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from engine.console.auth import Principal, client_of
from engine.store.access.accounts import AccountStore
from zones.model import Subject

RANK = {"monitor": 0, "supervisor": 1, "admin": 2}
MAX_REASON = 500


def at_least(who: Principal, role: str) -> bool:
    return RANK.get(who.user.role, -1) >= RANK[role]


def own_team(who: Principal, subject: Subject | None) -> bool:
    """The subject is in the asker's caseload (or the asker sees every team)."""
    if at_least(who, "supervisor"):
        return True
    team = subject.team if subject else None
    return team is None or team == who.user.team


def visible(who: Principal, subjects: Mapping[str, Subject]) -> Callable[[str], bool]:
    """Whether the asker's queue and live feed show alerts of this subject id."""
    if at_least(who, "supervisor"):
        return lambda _sid: True
    return lambda sid: own_team(who, subjects.get(sid))


def reason_of(request: Request) -> str | None:
    text = request.query_params.get("reason") or request.headers.get("x-access-reason") or ""
    text = " ".join(text.split())[:MAX_REASON]
    return text or None


class AccessLog:
    """Writes the console's views to the access log (on the accounts' own thread)."""

    def __init__(
        self, accounts: AccountStore, notify: Callable[[dict[str, Any]], None] | None = None
    ) -> None:
        self.accounts = accounts
        self.notify = notify  # told of every view of another team's subject

    async def viewed(
        self,
        request: Request,
        who: Principal,
        what: str,
        subject: Subject | str,
        *,
        alert: str | None = None,
        reason: str | None = None,
    ) -> None:
        sid = subject.id if isinstance(subject, Subject) else subject
        team = subject.team if isinstance(subject, Subject) else None
        other = isinstance(subject, Subject) and not own_team(who, subject)
        detail: dict[str, Any] = {"subject": sid, "team": team}
        if alert:
            detail["alert"] = alert
        if reason:
            detail["reason"] = reason
        action = "view_other_team" if other else what
        if other:
            detail["view"] = what
        await run_in_threadpool(
            self.accounts.log, who.user.name, client_of(request), action,
            json.dumps(detail, separators=(",", ":"), sort_keys=True),
        )  # fmt: skip
        if other and self.notify is not None:
            self.notify({"user": who.user.name, "action": action, **detail})
