"""The alert queue: which alerts `GET /api/alerts` returns, in what order, and as what JSON.

Order: not closed before closed; then severity (critical first); then the subject's risk
(highest first); then age: among open alerts the oldest raised first (it has waited
longest), among closed ones the most recently closed first; the alert id last, so the
order is total and stable.

Each object is the alert's latest lifecycle record (the contract's fields) plus `workflow`
and `actions` (contract: shared/DESIGN.md "Console and API") and the subject's `team` and
`risk`. No workflow action exists yet (acknowledge, note, assign, resolve come with the
workflow): every alert is `new` with no actions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from engine.wire.alerts import SEVERITY_RANK, Alert
from zones.model import Subject

STATES = ("open", "closed", "all")
WORKFLOWS = ("new", "acknowledged", "resolved")


def _key(a: Alert, subjects: Mapping[str, Subject]) -> tuple[Any, ...]:
    subject = subjects.get(a.subject)
    risk = subject.risk if subject else 1
    closed = a.state == "closed"
    age = -(a.closed_t or a.raised_t) if closed else a.raised_t
    return (closed, SEVERITY_RANK.get(a.severity, 9), -risk, age, a.id)


def queue(
    alerts: list[Alert],
    subjects: Mapping[str, Subject],
    state: str = "all",
    workflow: str | None = None,
) -> list[dict[str, Any]]:
    """The alerts to show, in queue order, as JSON-ready objects."""
    if state == "open":
        alerts = [a for a in alerts if a.state != "closed"]
    elif state == "closed":
        alerts = [a for a in alerts if a.state == "closed"]
    if workflow not in (None, "new"):
        alerts = []  # nothing can be acknowledged or resolved yet
    out = []
    for a in sorted(alerts, key=lambda a: _key(a, subjects)):
        subject = subjects.get(a.subject)
        obj = msgspec.to_builtins(a)
        obj.update(
            workflow="new",
            actions=[],
            team=subject.team if subject else None,
            risk=subject.risk if subject else None,
        )
        out.append(obj)
    return out
