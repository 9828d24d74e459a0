"""The alert queue: every alert as it stands (its latest record and its workflow), kept in
memory and brought up to date from the alert log (`Board`), and which of them
`GET /api/alerts` returns, in what order, as what JSON.

Order: alerts still to be worked first — not closed and not resolved — then, among them,
new (unacknowledged) before acknowledged; then severity (critical first); the subject's
risk (highest first); age: among open alerts the oldest raised first (it has waited
longest), among closed or resolved ones the most recently closed first; the id last, so the
order is total and stable.

Each object is the alert's latest record (the contract's fields) plus `workflow`,
`actions`, `assigned`, `outcome` (shared/DESIGN.md "Console and API", additive), `seq` (its
alert_log seq: the live feed's event id) and the subject's `team` and `risk`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from engine.store.casework.workflow import WORKFLOWS, Workflow
from engine.wire.alerts import SEVERITY_RANK, Alert
from zones.model import Subject

STATES = ("open", "closed", "all")
__all__ = ["STATES", "WORKFLOWS", "Board", "Entry", "queue"]


@dataclass(frozen=True)
class Entry:
    """One alert as it stands: its latest record, that record's alert_log seq, workflow."""

    seq: int
    alert: Alert
    workflow: Workflow

    def as_json(self, subjects: Mapping[str, Subject]) -> dict[str, Any]:
        subject = subjects.get(self.alert.subject)
        obj = msgspec.to_builtins(self.alert)
        w = self.workflow
        obj.update(
            workflow=w.workflow,
            actions=list(w.actions),
            assigned=w.assigned,
            outcome=w.outcome,
            seq=self.seq,
            team=subject.team if subject else None,
            risk=subject.risk if subject else None,
        )
        return obj


class Board:
    """Every alert by id, as the alert log says it stands; `apply` takes the next records."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.seq = 0  # the newest alert_log seq applied

    def load(self, current: list[tuple[int, Alert, Workflow]]) -> None:
        for seq, alert, workflow in current:
            self.entries[alert.id] = Entry(seq, alert, workflow)
            self.seq = max(self.seq, seq)

    def apply(self, seq: int, alert: Alert) -> Entry:
        """Take the record at alert_log `seq`; a record without a workflow keeps the
        alert's workflow as it was."""
        old = self.entries.get(alert.id)
        if alert.workflow is not None:
            workflow = Workflow.of([alert])
        else:
            workflow = old.workflow if old else Workflow()
        entry = Entry(seq, alert, workflow)
        self.entries[alert.id] = entry
        self.seq = max(self.seq, seq)
        return entry


def _key(e: Entry, subjects: Mapping[str, Subject]) -> tuple[Any, ...]:
    a = e.alert
    subject = subjects.get(a.subject)
    risk = subject.risk if subject else 1
    done = a.state == "closed" or e.workflow.workflow == "resolved"
    age = -(a.closed_t or a.raised_t) if done else a.raised_t
    return (
        done, e.workflow.workflow != "new", SEVERITY_RANK.get(a.severity, 9), -risk, age, a.id,
    )  # fmt: skip


def queue(
    entries: list[Entry],
    subjects: Mapping[str, Subject],
    state: str = "all",
    workflow: str | None = None,
    visible: Callable[[str], bool] = lambda subject: True,
) -> list[dict[str, Any]]:
    """The alerts to show, in queue order, as JSON-ready objects. `state=open` means not
    closed; `visible(subject id)` says whether the asker may see that subject's alerts."""
    if state == "open":
        entries = [e for e in entries if e.alert.state != "closed"]
    elif state == "closed":
        entries = [e for e in entries if e.alert.state == "closed"]
    if workflow is not None:
        entries = [e for e in entries if e.workflow.workflow == workflow]
    entries = [e for e in entries if visible(e.alert.subject)]
    return [e.as_json(subjects) for e in sorted(entries, key=lambda e: _key(e, subjects))]
