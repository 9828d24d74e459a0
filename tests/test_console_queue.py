"""The console's queue order and its failed-login limit, as plain functions."""

from __future__ import annotations

from engine.console.queue import queue
from engine.console.ratelimit import FailureLimit
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
    got = queue(alerts, subjects)
    assert [a["id"] for a in got] == [
        "crit-high-risk-older", "crit-high-risk-newer", "crit-low-risk",
        "unknown-subject", "high-low-risk",  # risk 1 both: older first
        "closed-new", "closed-old",  # closed last, latest closed first
    ]  # fmt: skip
    assert got[2]["team"] == "north" and got[2]["risk"] == 1 and got[3]["team"] is None
    assert all(a["workflow"] == "new" and a["actions"] == [] for a in got)
    assert [a["id"] for a in queue(alerts, subjects, "closed")] == ["closed-new", "closed-old"]
    assert len(queue(alerts, subjects, "open", "new")) == 5
    assert queue(alerts, subjects, "all", "acknowledged") == []


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
