"""The terminal console's board (engine/cli/board.py) and its drawing (engine/cli/live.py),
without a terminal: records in, rows out in queue order, one row per alert id."""

from __future__ import annotations

import asyncio
import io
import re
import time

from rich.console import Console

from engine.cli.board import Board, Row, Status, cells, where_text
from engine.cli.live import LiveBoard, render
from engine.wire.alerts import Alert

NOW = 1_760_000_000.0


def alert(
    n: int,
    *,
    severity: str = "high",
    state: str = "open",
    subject: str = "S1",
    opened: float = NOW - 600,
    raised: float | None = None,
    closed: float | None = None,
    confidence: float = 0.6,
    detail: dict[str, object] | None = None,
) -> Alert:
    return Alert(
        id=f"{n:020x}", kind="zone_breach", state=state, subject=subject, tag="T1",  # type: ignore[arg-type]
        zone="Z1", severity=severity, confidence=confidence, opened_t=opened,  # type: ignore[arg-type]
        raised_t=opened if raised is None else raised, closed_t=closed,
        evidence=[("T1", n)], detail=detail,
    )  # fmt: skip


def ids(rows: list[Row]) -> list[int]:
    return [int(r.id, 16) for r in rows]


def test_queue_order_state_then_severity_then_risk_then_age() -> None:
    board = Board(risk={"HI": 5, "LO": 1})
    board.apply_all(
        [
            alert(1, severity="low"),
            alert(2, severity="critical", opened=NOW - 100),  # newer critical
            alert(3, severity="critical", opened=NOW - 900),  # older critical: first
            alert(4, severity="high", subject="LO"),
            alert(5, severity="high", subject="HI"),  # same severity, higher risk: before 4
            alert(6, severity="high", subject="UNKNOWN"),  # risk not known: after 4 and 5
            alert(7, severity="critical", state="acknowledged"),  # acknowledged: after open
            alert(8, severity="critical", state="closed", closed=NOW - 50),
            alert(9, severity="low", state="closed", closed=NOW - 10),
            alert(10, severity="medium"),
        ],
        NOW,
    )
    assert ids(board.rows(NOW)) == [3, 2, 5, 4, 6, 10, 1, 7, 8, 9]
    closed = [r for r in board.rows(NOW) if r.state == "closed"]
    assert [r.alert.severity for r in closed] == ["critical", "low"]  # severity before age


def test_closed_rows_most_recently_closed_first_within_a_severity() -> None:
    board = Board()
    board.apply(alert(1, state="closed", closed=NOW - 300), NOW)
    board.apply(alert(2, state="closed", closed=NOW - 30), NOW)
    assert ids(board.rows(NOW)) == [2, 1]


def test_an_escalation_and_a_close_update_the_row_in_place() -> None:
    board = Board()
    assert board.apply(alert(1, confidence=0.6), NOW) is False
    board.apply(alert(2, severity="medium"), NOW)
    board.apply(alert(1, confidence=0.88, raised=NOW - 500), NOW + 1)  # escalation
    rows = board.rows(NOW + 1)
    assert ids(rows) == [1, 2] and rows[0].alert.confidence == 0.88
    board.apply(
        alert(1, confidence=0.88, raised=NOW - 500, state="closed", closed=NOW - 10), NOW + 2
    )
    rows = board.rows(NOW + 2)
    assert ids(rows) == [2, 1]  # still one row per id; the closed one sinks
    assert rows[1].state == "closed" and rows[1].first_seen == NOW
    assert board.counts() == {"open": 1, "acknowledged": 0, "closed": 1}


def test_a_close_whose_time_is_before_the_raise_still_closes() -> None:
    board = Board()
    board.apply(alert(1, opened=NOW - 600, raised=NOW - 60), NOW)
    board.apply(alert(1, opened=NOW - 600, state="closed", closed=NOW - 300), NOW)
    assert [r.state for r in board.rows(NOW)] == ["closed"]


def test_an_older_record_arriving_late_changes_nothing() -> None:
    board = Board()
    board.apply(alert(1, state="closed", closed=NOW - 10, confidence=0.9), NOW)
    board.apply(alert(1, confidence=0.6), NOW + 1)  # a redelivered open record
    (row,) = board.rows(NOW + 1)
    assert row.state == "closed" and row.alert.confidence == 0.9


def test_closed_rows_stay_for_keep_closed_s_then_drop_and_do_not_come_back() -> None:
    board = Board(keep_closed_s=600)
    board.apply(alert(1), NOW)
    board.apply(alert(2), NOW)
    closing = alert(1, state="closed", closed=NOW - 3000)  # event time long ago: wall time counts
    board.apply(closing, NOW + 10)
    assert ids(board.rows(NOW + 609)) == [2, 1]
    assert ids(board.rows(NOW + 610)) == [2]
    board.apply(closing, NOW + 700)  # the same record again (a session redelivery)
    assert ids(board.rows(NOW + 700)) == [2]
    assert len(board) == 1


def test_the_cue_rings_once_for_a_new_critical_alert() -> None:
    board = Board()
    assert board.apply(alert(1, severity="critical"), NOW) is True
    assert board.apply(alert(1, severity="critical", raised=NOW - 1, confidence=0.9), NOW) is False
    assert board.apply(alert(2, severity="high"), NOW) is False
    assert board.apply(alert(2, severity="critical", raised=NOW - 1), NOW) is True  # escalated
    assert board.apply(alert(3, severity="critical", state="closed", closed=NOW), NOW) is False
    (first,) = [r for r in board.rows(NOW) if int(r.id, 16) == 1]
    assert first.is_new_critical(NOW) and not first.is_new_critical(NOW + 3600)


def test_five_hundred_alerts_one_row_each_in_order() -> None:
    board = Board(risk={f"S{i}": 1 + i % 4 for i in range(50)})
    sev = ["critical", "high", "medium", "low"]
    for n in range(500):
        board.apply(alert(n, severity=sev[n % 4], subject=f"S{n % 50}", opened=NOW - 10 * n), NOW)
    for n in range(0, 500, 2):  # every other escalates
        a = alert(n, severity=sev[n % 4], subject=f"S{n % 50}", opened=NOW - 10 * n,
                  raised=NOW - 1, confidence=0.9)  # fmt: skip
        board.apply(a, NOW + 1)
    for n in range(0, 500, 5):  # every fifth closes
        a = alert(n, severity=sev[n % 4], subject=f"S{n % 50}", opened=NOW - 10 * n,
                  raised=NOW - 1, closed=NOW, state="closed", confidence=0.9)  # fmt: skip
        board.apply(a, NOW + 2)
    rows = board.rows(NOW + 3)
    assert len(rows) == 500 and len({r.id for r in rows}) == 500
    assert [r.sort_key() for r in rows] == sorted(r.sort_key() for r in rows)
    assert board.counts() == {"open": 400, "acknowledged": 0, "closed": 100}
    assert all(r.alert.confidence == 0.9 for r in rows if int(r.id, 16) % 2 == 0)
    assert rows[0].alert.severity == "critical" and rows[0].state == "open"
    assert board.rows(NOW + 3) is rows  # nothing changed: the order is not sorted again


def test_where_shows_the_deciding_fix_when_detail_has_it() -> None:
    assert where_text(alert(1)) == ""
    d = {"lat": 51.501234, "lon": -0.123456, "acc": 8.4, "depth_m": 12.6}
    assert where_text(alert(1, detail=d)) == "51.50123,-0.12346 ±8m 13m in"
    assert where_text(alert(1, detail={"lat": 51.5, "lon": 0.1, "distance_m": 240})) == (
        "51.50000,0.10000 240m away"
    )
    assert where_text(alert(1, detail={"lat": "x", "lon": 0.1})) == ""  # tolerated
    assert where_text(alert(1, detail={"batt": 9})) == ""
    row = Board().rows(NOW) or [Row(alert(1, detail=d), None, NOW)]
    assert cells(row[0], NOW)[9] == "51.50123,-0.12346 ±8m 13m in"


def test_status_line_says_what_the_engine_says() -> None:
    st = Status()
    assert st.engine_text(NOW) == ("engine: no status yet", False)
    st.engine = {"state": "online"}
    assert st.engine_text(NOW) == ("engine online", False)
    st.engine = {"state": "degraded", "reason": "store full"}
    assert st.engine_text(NOW) == ("engine degraded: store full", True)
    st.engine = {"state": "online", "config": "refused", "config_reason": "bad zone",
                 "config_at": str(NOW)}  # fmt: skip
    text, bad = st.engine_text(NOW)
    assert bad and "config refused at" in text and text.endswith(": bad zone")
    st.heard_link(False, "connection lost")
    assert st.link == "reconnecting"


def test_status_line_with_shards_names_the_shard_that_is_wrong() -> None:
    st = Status()
    st.heard_engine("0-of-2", {"state": "online"})
    st.heard_engine("1-of-2", {"state": "online"})
    assert st.engine_text(NOW) == ("engine: 2 shards online", False)
    st.heard_engine("1-of-2", {"state": "offline"})
    assert st.engine_text(NOW) == ("shard 1-of-2 offline", True)
    st.heard_engine("0-of-2", {"state": "degraded", "reason": "lagging: input waits 12 s"})
    text, bad = st.engine_text(NOW)
    assert bad and text == "shard 0-of-2 degraded: lagging: input waits 12 s; shard 1-of-2 offline"


def _draw(board: Board, max_rows: int) -> list[str]:
    out = io.StringIO()
    Console(file=out, width=160, force_terminal=False).print(render(board, Status(), NOW, max_rows))
    return out.getvalue().splitlines()


def test_render_one_line_per_alert_and_never_hides_criticals_unmentioned() -> None:
    board = Board()
    board.apply_all([alert(n, severity="low", opened=NOW - 1000 + n) for n in range(10)], NOW)
    board.apply(alert(99, severity="critical", state="acknowledged"), NOW)
    board.apply(alert(98, severity="critical", opened=NOW - 5000), NOW)
    lines = _draw(board, 50)
    for n in (*range(10), 98, 99):
        assert sum(f"{n:020x}" in ln for ln in lines) == 1
    assert re.search(r"open 11\s+acknowledged 1\s+closed 0", lines[0])
    shown = _draw(board, 3)
    assert f"{98:020x}" in "\n".join(shown)  # the open critical is first
    assert shown[-1] == "... 9 more alerts, 1 of them critical and not closed"


def test_a_burst_of_500_records_is_one_redraw_and_one_bell() -> None:
    out = io.StringIO()
    console = Console(file=out, width=200, height=40, force_terminal=True)
    view = LiveBoard(console, Board(), Status(), tick_s=3600, min_gap_s=0)

    async def burst() -> None:
        drawing = asyncio.create_task(view.redraws())
        await asyncio.sleep(0)  # the drawing task waits for a change
        for n in range(500):
            view.apply(alert(n, severity="critical" if n % 10 == 0 else "high"))
        while view.frames < 2:
            await asyncio.sleep(0.01)
        drawing.cancel()

    with view:
        asyncio.run(burst())
    assert view.frames == 3  # on start, after the burst, on stop
    assert out.getvalue().count("\a") == 1
    assert len(view.board.rows(time.time())) == 500
