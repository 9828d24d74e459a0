"""The workflow of an alert: which action may follow which, and the record an action
writes.

An alert's workflow is `new` until someone acknowledges it, `acknowledged` until someone
resolves it with an outcome, `resolved` until a supervisor reopens it (back to
`acknowledged`). Notes and assignments may come at any time before it is resolved (a note
also after). Each action becomes one alert record: a copy of the alert's latest record with
`workflow` and every action so far in `actions`, and state `acknowledged` while the engine
still has the alert open and someone has taken it (the contract's state; the engine's
own records say `open` or `closed`). The store writes that record like any decided one:
alert log, ledger row, outbox (engine/store/sql/store.py `act`).

Who may do what (roles, teams) is the console's business (engine/console/access.py): this
module knows only the order of things."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from engine.errors import TagwatchError
from engine.wire.alerts import Alert

WORKFLOWS = ("new", "acknowledged", "resolved")
ACTIONS = ("ack", "note", "assign", "resolve", "reopen")
OUTCOMES = ("breach", "false_alarm", "device_fault", "other")
MAX_TEXT = 2000  # characters of a note


class ActionRefused(TagwatchError):
    """The action cannot follow the alert's workflow (HTTP 409) or is malformed (400)."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


class UnknownAlert(TagwatchError):
    """No alert with that id in the store (HTTP 404)."""


@dataclass(frozen=True)
class Action:
    """One monitor's action: what, who, when (wall clock, Unix s) and its words."""

    action: str
    user: str
    t: float
    text: str | None = None  # note, resolve, reopen
    to: str | None = None  # assign
    outcome: str | None = None  # resolve
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        """Raise ActionRefused(400) for a malformed action."""
        if self.action not in ACTIONS:
            raise ActionRefused(f"unknown action {self.action!r}", 400)
        if self.text is not None and len(self.text) > MAX_TEXT:
            raise ActionRefused(f"text longer than {MAX_TEXT} characters", 400)
        if self.action == "note" and not (self.text or "").strip():
            raise ActionRefused('a note needs {"text": "..."}', 400)
        if self.action == "assign" and not (self.to or "").strip():
            raise ActionRefused('assign needs {"to": "user name"}', 400)
        if self.action == "resolve" and self.outcome not in OUTCOMES:
            raise ActionRefused(f"resolve needs an outcome: one of {', '.join(OUTCOMES)}", 400)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.action, "user": self.user, "t": self.t}
        for k in ("text", "to", "outcome"):
            v = getattr(self, k)
            if v is not None:
                out[k] = v
        return out


@dataclass(frozen=True)
class Workflow:
    """Where an alert's human side stands, read from its records."""

    workflow: str = "new"
    actions: tuple[dict[str, Any], ...] = ()

    @classmethod
    def of(cls, records: list[Alert]) -> Workflow:
        """The workflow of the newest record (of `records`, newest last) that has one."""
        for r in reversed(records):
            if r.workflow is not None:
                return cls(r.workflow, tuple(r.actions or ()))
        return cls()

    @property
    def assigned(self) -> str | None:
        return next((a.get("to") for a in reversed(self.actions) if a["action"] == "assign"), None)

    @property
    def outcome(self) -> str | None:
        if self.workflow != "resolved":
            return None
        return next(
            (a.get("outcome") for a in reversed(self.actions) if a["action"] == "resolve"), None
        )

    def after(self, act: Action) -> Workflow:
        """The workflow once `act` is done; ActionRefused if it cannot be done now."""
        act.check()
        w = self.workflow
        if act.action == "ack":
            if w != "new":
                by = next((a["user"] for a in self.actions if a["action"] == "ack"), None)
                raise ActionRefused(f"already {w}" + (f" (acknowledged by {by})" if by else ""))
            w = "acknowledged"
        elif act.action in ("assign",) and w == "resolved":
            raise ActionRefused("resolved: a supervisor must reopen it first")
        elif act.action == "resolve":
            if w == "resolved":
                raise ActionRefused("already resolved")
            w = "resolved"
        elif act.action == "reopen":
            if w != "resolved":
                raise ActionRefused(f"not resolved ({w}): nothing to reopen")
            w = "acknowledged"
        return Workflow(w, (*self.actions, act.as_json()))

    def record(self, latest: Alert) -> Alert:
        """The alert record this workflow's latest action writes, from the alert's latest."""
        state = latest.state
        if state != "closed":
            state = "open" if self.workflow == "new" else "acknowledged"
        return msgspec.structs.replace(
            latest, state=state, workflow=self.workflow, actions=list(self.actions)
        )
