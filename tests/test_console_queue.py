"""The console's queue order and its failed-login limit, as plain functions."""

from __future__ import annotations

from engine.console.queue import Board, queue
from engine.console.ratelimit import FailureLimit
from engine.store.casework.workflow import Action, ActionRefused, Workflow
from engine.wire.alerts import Alert
from zones.model import Subject


def alert(aid: str, subject: str, severity: str, raised: float, closed: float | None = None):
    return Alert(
        id=aid, kind="zone_breach", state="closed" if closed else "open", subject=subject,
        tag="T", zone="Z", severity=severity, confidence=0.9, opened_t=raised,  # type: ignore[arg-type]
        raised_t=raised, closed_t=closed, evidence=[("T", 1)],
    )  # fmt: skip


def test_open_then_severity_then_risk_then_age() -> None:
    subjects = {
        "LOW": Subject("LOW", ("T1",), risk=1, team="north"),
        "HIGH": Subject("HIGH", ("T2",), risk=4),
    }
    alerts = [
        alert("closed-old", "HIGH", "critical", 10, closed=20),
        alert("closed-new", "HIGH", "critical", 30, closed=40),
        alert("high-low-risk", "LOW", "high", 5),
        alert("crit-low-risk", "LOW", "critical", 1),
        alert("crit-high-risk-newer", "HIGH", "critical", 50),
        alert("crit-high-risk-older", "HIGH", "critical", 40),
        alert("unknown-subject", "GONE", "high", 2),
    ]
    board = Board()
    for seq, a in enumerate(alerts, 1):
        board.apply(seq, a)
    entries = list(board.entries.values())
    got = queue(entries, subjects)
    assert [a["id"] for a in got] == [
        "crit-high-risk-older", "crit-high-risk-newer", "crit-low-risk",
        "unknown-subject", "high-low-risk",  # risk 1 both: older first
        "closed-new", "closed-old",  # closed last, latest closed first
    ]  # fmt: skip
    assert got[2]["team"] == "north" and got[2]["risk"] == 1 and got[3]["team"] is None
    assert all(a["workflow"] == "new" and a["actions"] == [] for a in got)
    assert [a["id"] for a in queue(entries, subjects, "closed")] == ["closed-new", "closed-old"]
    assert len(queue(entries, subjects, "open", "new")) == 5
    assert queue(entries, subjects, "all", "acknowledged") == []
    assert [a["id"] for a in queue(entries, subjects, visible=lambda s: s == "GONE")] == [
        "unknown-subject"
    ]


def test_worked_alerts_sink_and_a_record_without_workflow_keeps_it() -> None:
    subjects = {"S": Subject("S", ("T",), risk=2)}
    board = Board()
    board.apply(1, alert("a", "S", "critical", 1))
    board.apply(2, alert("b", "S", "high", 2))
    board.apply(3, alert("c", "S", "high", 3))
    acked = Workflow().after(Action("ack", "alice", 10.0))
    board.apply(4, acked.record(board.entries["a"].alert))
    resolved = acked.after(Action("resolve", "alice", 11.0, outcome="false_alarm"))
    board.apply(5, resolved.record(board.entries["c"].alert))
    # an escalation of "a" decided by the engine: no workflow in it, the ack stands
    board.apply(6, alert("a", "S", "critical", 1))
    got = queue(list(board.entries.values()), subjects)
    assert [(a["id"], a["workflow"]) for a in got] == [
        ("b", "new"),
        ("a", "acknowledged"),
        ("c", "resolved"),
    ]  # new before acknowledged (even of lower severity), resolved last
    assert got[1]["seq"] == 6 and got[1]["actions"][0]["user"] == "alice"
    assert got[2]["outcome"] == "false_alarm" and got[2]["state"] == "acknowledged"


def test_the_workflow_refuses_what_cannot_follow() -> None:
    w = Workflow()
    for bad in (Action("reopen", "u", 1), Action("note", "u", 1, text="  "),
                Action("resolve", "u", 1, outcome="guilty"), Action("frob", "u", 1)):  # fmt: skip
        try:
            w.after(bad)
        except ActionRefused as e:
            assert e.status in (400, 409)
        else:
            raise AssertionError(f"{bad} was accepted")
    w = w.after(Action("ack", "u", 1)).after(Action("resolve", "u", 2, outcome="breach"))
    assert w.workflow == "resolved" and w.outcome == "breach"
    for again in (Action("ack", "v", 3), Action("resolve", "v", 3, outcome="other"),
                  Action("assign", "v", 3, to="u")):  # fmt: skip
        try:
            w.after(again)
        except ActionRefused as e:
            assert e.status == 409
        else:
            raise AssertionError(f"{again} was accepted after resolve")
    w = w.after(Action("reopen", "boss", 4)).after(Action("note", "boss", 5, text="see call"))
    assert w.workflow == "acknowledged" and w.outcome is None and len(w.actions) == 4


def test_failure_limit_per_key_with_a_sliding_window() -> None:
    lim = FailureLimit(max_failures=3, window_s=100.0, max_keys=2)
    for t in (0.0, 10.0, 20.0):
        assert lim.retry_after("a", t) == 0
        lim.failed("a", t)
    assert lim.retry_after("a", 50.0) == 50.0  # until the failure at 0 is 100 s old
    assert lim.retry_after("a", 100.0) == 0  # it aged out: one more try
    assert lim.retry_after("b", 50.0) == 0  # another key is not held back
    lim.clear("a")
    assert lim.retry_after("a", 50.0) == 0
    for key in ("x", "y", "z"):  # at most max_keys remembered: the oldest goes
        for t in (0.0, 1.0, 2.0):
            lim.failed(key, t)
    assert lim.retry_after("x", 3.0) == 0 and lim.retry_after("z", 3.0) > 0
