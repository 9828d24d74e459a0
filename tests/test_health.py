"""Device health through `tagwatch replay` (the public entry point) and the pipeline:
tamper, silence (beside a zone, filled by a late batch), no location, battery, and the
reporting-rate commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.cli.main import main
from engine.core.pipeline import Pipeline
from engine.settings import Settings
from engine.wire.alerts import Alert, decode_alert, encode_alert
from engine.wire.records import EventRecord, FixRecord
from tests.helpers import fix, offset, write_world
from zones.load import load

T0 = 1_790_000_000.0  # 2026-09-21
TWO = '[[subjects]]\nid = "S1"\ntags = ["T1"]\n\n[[subjects]]\nid = "S2"\ntags = ["T2"]\n'


def ev(seq: int, t: float, name: str, **extra: Any) -> dict[str, Any]:
    return {"type": "event", "seq": seq, "t": t, "event": name, **extra}


def replay(tmp: Path, lines: list[dict[str, Any]], settings: str = "", **kw: Any) -> list[Alert]:
    tmp.mkdir(parents=True, exist_ok=True)
    zones, subjects = write_world(tmp, subjects_toml=kw.get("subjects", TWO))
    src = tmp / "in.jsonl"
    src.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = tmp / "alerts.jsonl"
    args = ["replay", str(src), "--zones", str(zones), "--subjects", str(subjects)]
    args += ["--out", str(out), "-q"]
    if settings:
        (tmp / "s.toml").write_text(settings)
        args += ["--settings", str(tmp / "s.toml")]
    assert main(args) == 0
    return [decode_alert(x) for x in out.read_bytes().splitlines()]


def kinds(alerts: list[Alert], kind: str) -> list[tuple[str, str | None]]:
    return [(a.state, a.tag) for a in alerts if a.kind == kind]


def steady(tag: str, t0: float, t1: float, dx: float, seq0: int = 0, step: float = 60.0):  # type: ignore[no-untyped-def]
    """A tag reporting every `step` s at a fixed spot from t0 until before t1."""
    out, t, seq = [], t0, seq0
    while t < t1:
        out.append({"tag": tag, **fix(seq, t, dx, 0.0)})
        t, seq = t + step, seq + 1
    return out


# -- tamper ------------------------------------------------------------------------------


def test_tamper_opens_at_once_even_behind_a_seq_gap_and_toggling_is_one_episode(
    tmp_path: Path,
) -> None:
    lines = steady("T1", T0, T0 + 600, 2000.0)  # seq 0-9
    # seq 10 never arrives: the breach side waits on the gap, tamper must not
    lines += [
        {"tag": "T1", **ev(11, T0 + 605, "strap_open")},
        {"tag": "T1", **ev(12, T0 + 610, "strap_closed")},
        {"tag": "T1", **ev(13, T0 + 620, "strap_open")},
        {"tag": "T1", **ev(14, T0 + 640, "strap_closed")},
    ]
    lines += steady("T1", T0 + 660, T0 + 1200, 2000.0, seq0=15)
    alerts = replay(tmp_path, lines)
    tam = [a for a in alerts if a.kind == "tamper"]
    assert [a.state for a in tam] == ["open", "closed"]
    assert len({a.id for a in tam}) == 1
    op, cl = tam
    assert op.severity == "critical" and op.opened_t == T0 + 605 and op.raised_t == T0 + 605
    assert cl.closed_t == T0 + 640  # the last restore, after nothing reopened for 60 s
    assert ("T1", 13) in cl.evidence and ("T1", 14) in cl.evidence


def test_tamper_is_decided_on_admission_not_after_the_gap() -> None:
    p = _pipeline()
    for i in range(3):
        p.process([FixRecord("T1", i, T0 + 60 * i, *offset(2000.0, 0.0), 5.0)])
    res = p.process([EventRecord("T1", 7, T0 + 200, "case_open")])  # seq 3-6 missing
    assert [(a.kind, a.state) for a in res.alerts] == [("tamper", "open")]
    assert res.alerts[0].detail == {"events": ["case_open"]}


def test_restore_before_open_out_of_order_is_still_one_closed_episode(tmp_path: Path) -> None:
    lines = steady("T1", T0, T0 + 300, 2000.0)
    lines += [
        {"tag": "T1", **ev(6, T0 + 330, "body_restored")},  # arrives first
        {"tag": "T1", **ev(5, T0 + 310, "body_lost")},
    ]
    lines += steady("T1", T0 + 360, T0 + 900, 2000.0, seq0=7)
    tam = [a for a in replay(tmp_path, lines) if a.kind == "tamper"]
    assert [a.state for a in tam] == ["open", "closed"]
    assert tam[0].opened_t == T0 + 310 and tam[1].closed_t == T0 + 330


def test_power_off_on_a_flat_battery_is_not_tamper_but_power_off_otherwise_is(
    tmp_path: Path,
) -> None:
    flat = [{"tag": "T1", **fix(0, T0, 2000, 0), "batt": 4}]
    flat += [{"tag": "T1", **ev(1, T0 + 30, "power_off")}]
    flat += steady("T2", T0, T0 + 900, 3000.0)
    assert kinds(replay(tmp_path / "a", flat), "tamper") == []
    cut = [{"tag": "T1", **fix(0, T0, 2000, 0), "batt": 80}]
    cut += [{"tag": "T1", **ev(1, T0 + 30, "power_off")}]
    cut += steady("T1", T0 + 240, T0 + 600, 2000.0, seq0=2)  # back on: any record restores
    got = replay(tmp_path / "b", cut)
    assert kinds(got, "tamper") == [("open", "T1"), ("closed", "T1")]
    assert [a.closed_t for a in got if a.kind == "tamper" and a.state == "closed"] == [T0 + 240]


# -- silence -----------------------------------------------------------------------------


def _silence_lines(dx: float) -> list[dict[str, Any]]:
    """T1 reports at dx metres east of the zone centre, goes quiet for 20 min, comes back;
    T2 reports all along (the replay clock)."""
    lines = steady("T2", T0, T0 + 2400, 5000.0)
    lines += steady("T1", T0, T0 + 600, dx)  # seq 0-9, last at T0 + 540
    lines += steady("T1", T0 + 1800, T0 + 2400, dx, seq0=10)
    lines.sort(key=lambda x: x["t"])
    return lines


@pytest.mark.parametrize(
    ("dx", "severity"), [(4000.0, "medium"), (250.0, "high"), (0.0, "critical")]
)
def test_silence_opens_when_due_and_says_where_the_tag_was(
    tmp_path: Path, dx: float, severity: str
) -> None:
    alerts = replay(tmp_path, _silence_lines(dx))
    sil = [a for a in alerts if a.kind == "tag_silent"]
    assert [(a.state, a.tag) for a in sil] == [("open", "T1"), ("closed", "T1")]
    op, cl = sil
    assert op.severity == severity
    assert op.opened_t == T0 + 540 and op.evidence == [("T1", 9)]
    assert op.raised_t == T0 + 540 + 300  # heard last at T0 + 540, five 60 s reports late
    assert cl.closed_t == T0 + 1800
    assert op.detail is not None and op.detail["last_fix_t"] == T0 + 540
    if dx < 3000:
        assert op.detail["zone"] == "Z1"
    assert cl.detail is not None and cl.detail["filled"] == 0


def test_silence_filled_by_a_late_batch_says_what_the_gap_held(tmp_path: Path) -> None:
    # T1 walks into the zone while its radio is out; the buffered fixes come as one
    # store-and-forward upload when coverage returns, then live fixes resume
    lines = steady("T2", T0, T0 + 2400, 5000.0)
    lines += steady("T1", T0, T0 + 600, 600.0)  # seq 0-9
    buffered = [{"tag": "T1", **fix(10 + i, T0 + 600 + 60 * i, 600.0 - 60.0 * i, 0.0)}
                for i in range(15)]  # fmt: skip
    lines += steady("T1", T0 + 1800, T0 + 2400, -600.0, seq0=25)
    lines.sort(key=lambda x: x["t"])
    at = next(i for i, x in enumerate(lines) if x["t"] >= T0 + 1800)
    lines[at:at] = buffered  # uploaded the moment coverage returns
    alerts = replay(tmp_path, lines)
    breach = [a for a in alerts if a.kind == "zone_breach"]
    assert breach and breach[0].opened_t < T0 + 1800  # the late fixes are breach evidence
    sil = [a for a in alerts if a.kind == "tag_silent"]
    assert [a.state for a in sil] == ["open", "closed"]
    closed = sil[-1]
    assert closed.detail is not None and closed.detail["filled"] == 15
    assert closed.detail["alerts"] == [breach[0].id]
    assert closed.closed_t == T0 + 1740  # heard again: the clock then was T2's last fix


def test_silence_is_the_same_whatever_the_replay_batch_size(tmp_path: Path) -> None:
    lines = _silence_lines(250.0)
    one = replay(tmp_path / "a", lines, "batch_max = 1\n")
    big = replay(tmp_path / "b", lines, "batch_max = 5000\n")
    assert kinds(one, "tag_silent") == [("open", "T1"), ("closed", "T1")]
    assert sorted(encode_alert(a) for a in one) == sorted(encode_alert(a) for a in big)


def test_one_device_with_a_wild_clock_does_not_silence_the_fleet(tmp_path: Path) -> None:
    lines = steady("T1", T0, T0 + 1200, 3000.0)
    lines += steady("T2", T0, T0 + 1200, 4000.0, seq0=0)
    lines.sort(key=lambda x: x["t"])
    lines.insert(5, {"tag": "T2", **fix(100, T0 + 10 * 365 * 86400.0, 4000.0, 0.0)})
    assert kinds(replay(tmp_path, lines), "tag_silent") == []


# -- no location, battery ----------------------------------------------------------------


def test_no_location_after_half_an_hour_of_cell_fixes_and_no_gps(tmp_path: Path) -> None:
    lines = [{"tag": "T1", **fix(0, T0, 2000.0, 0.0)}]
    for i in range(1, 40):  # indoors: cell fixes 600 m and no_gps events, every minute
        t = T0 + 60 * i
        if i % 2:
            lines.append({"tag": "T1", **fix(i, t, 2000.0, 0.0, acc=600.0), "src": "cell"})
        else:
            lines.append({"tag": "T1", **ev(i, t, "no_gps")})
    lines.append({"tag": "T1", **fix(40, T0 + 2400, 2000.0, 0.0)})
    alerts = replay(tmp_path, lines)
    nl = [a for a in alerts if a.kind == "no_location"]
    assert [a.state for a in nl] == ["open", "closed"]
    assert nl[0].opened_t == T0 + 60 and nl[0].raised_t == T0 + 60 + 1800
    assert nl[1].closed_t == T0 + 2400
    assert kinds(alerts, "tag_silent") == []  # records kept coming


def test_battery_low_and_critical_with_hysteresis_and_a_predicted_empty_time(
    tmp_path: Path,
) -> None:
    lines, seq = [], 0
    # 3 % an hour: from 26 % down to 8 %, one fix a minute
    for i in range(0, 6 * 60 + 1):
        b = int(26 - 3 * i / 60)
        lines.append({"tag": "T1", **fix(seq, T0 + 60 * i, 2000.0, 0.0), "batt": b})
        seq += 1
    t = T0 + 6 * 3600 + 60
    lines.append({"tag": "T1", **ev(seq, t, "charging_on")})
    for k, b in enumerate([12, 19, 21, 25, 29, 31, 40]):
        seq += 1
        lines.append({"tag": "T1", **ev(seq, t + 600 * (k + 1), "battery", batt=b)})
    alerts = replay(tmp_path, lines)
    low = [a for a in alerts if a.kind == "battery_low"]
    crit = [a for a in alerts if a.kind == "battery_critical"]
    assert [a.state for a in low] == ["open", "closed"]
    assert [a.state for a in crit] == ["open", "closed"]
    assert low[0].severity == "medium" and crit[0].severity == "high"
    assert low[0].detail is not None and low[0].detail["batt"] == 20
    d = crit[0].detail
    assert d is not None and d["batt"] == 10
    assert 2.5 <= d["drain_pct_h"] <= 3.5
    # 10 % left at 3 %/h: about 3 h 20 min after it reported 10 %
    assert abs(d["empty_t"] - (crit[0].opened_t + 10 / 3 * 3600)) < 1800
    assert crit[1].closed_t == t + 1800  # 21 %: critical clears at 20
    assert low[1].closed_t == t + 3600  # 31 %: low clears at 30
    assert low[1].detail is not None and low[1].detail["charging"] is True


# -- reporting rate ----------------------------------------------------------------------


def _pipeline(**kw: Any) -> Pipeline:
    import tempfile

    d = Path(tempfile.mkdtemp())
    feats = [
        {
            "type": "Feature",
            "properties": {"id": "Z1", "subject": "S1", "kind": "exclusion", "warn_m": 200},
            "geometry": {"type": "Point", "coordinates": [offset(0, 0)[1], offset(0, 0)[0]]},
        }
    ]
    feats[0]["properties"]["radius_m"] = 100
    zones, subjects = write_world(d, feats, TWO)
    return Pipeline(load(zones, subjects), Settings(**kw))


def test_rate_commands_speed_up_in_the_approach_ring_and_relax_after() -> None:
    p = _pipeline()
    cmds = []
    for i, dx in enumerate([1000, 250, 150, 0, 0, 150, 600, 1000, 1200, 1400]):
        cmds += [
            (i, c)
            for c in p.process([FixRecord("T1", i, T0 + 60 * i, *offset(dx, 0), 5.0)]).commands
        ]
    assert [c for _, c in cmds] == [("T1", 15.0), ("T1", 60.0)]
    assert cmds[0][0] in (1, 2)  # in the approach ring
    assert cmds[1][0] >= 6  # after leaving


# -- a simulated day, end to end ---------------------------------------------------------


def test_a_simulated_day_replays_to_its_health_truth(tmp_path: Path) -> None:
    """`tagwatch simulate --health` then `tagwatch replay`: every true health episode
    alerted, nothing spurious, no duplicates (the bench does 200 subjects)."""
    from bench.healthscore import score_health

    d = tmp_path / "day"
    args = ["simulate", "--seed", "4", "--subjects", "25", "--duration", "24h", "--health"]
    assert main([*args, "--out-dir", str(d)]) == 0
    out = tmp_path / "alerts.jsonl"
    rargs = ["replay", str(d / "replay.jsonl"), "--zones", str(d / "zones.geojson")]
    assert main([*rargs, "--subjects", str(d / "subjects.toml"), "--out", str(out), "-q"]) == 0
    alerts = [decode_alert(x) for x in out.read_bytes().splitlines()]
    truth = [json.loads(x) for x in (d / "truth.jsonl").read_text().splitlines()]
    scores = score_health(alerts, truth)
    allk = scores["all"]
    assert allk.true >= 10  # the day has health episodes to find
    assert {k for k, s in scores.items() if s.true} >= {"tag_silent", "battery_low"}
    assert (allk.missed, allk.spurious, allk.duplicates) == (0, 0, 0), {
        k: (s.true, s.missed, s.spurious, s.duplicates) for k, s in scores.items()
    }
    assert max(allk.start_err) <= 60.0


def test_health_scoring_counts_hand_made_alerts() -> None:
    from bench.healthscore import score_health

    truth = [
        {"kind": "tamper", "tag": "T1", "start_t": 100.0, "end_t": 200.0, "material": True},
        {"kind": "tag_silent", "tag": "T1", "start_t": 500.0, "end_t": 900.0, "material": True},
        {"kind": "tag_silent", "tag": "T2", "start_t": 500.0, "end_t": 800.0, "material": False},
    ]

    def rec(i: str, kind: str, tag: str, state: str, o: float, c: float | None = None) -> dict:  # type: ignore[type-arg]
        return {"id": i, "kind": kind, "tag": tag, "state": state, "opened_t": o,
                "raised_t": o + 5, "closed_t": c}  # fmt: skip

    alerts = [
        rec("a", "tamper", "T1", "open", 101.0),
        rec("a", "tamper", "T1", "closed", 101.0, 200.0),
        rec("b", "tamper", "T1", "open", 150.0),  # the same episode again
        rec("c", "tamper", "T2", "open", 150.0),  # nothing happened to T2
        rec("d", "tag_silent", "T2", "open", 500.0),  # ambiguous: no credit, no penalty
    ]
    s = score_health(alerts, truth)
    assert (s["tamper"].true, s["tamper"].found, s["tamper"].duplicates) == (1, 1, 1)
    assert s["tamper"].spurious == 1 and s["tamper"].start_err == [1.0]
    assert (s["tag_silent"].true, s["tag_silent"].missed, s["tag_silent"].spurious) == (1, 1, 0)
    assert s["all"].missed == 1


def test_uploads_more_than_an_hour_late_never_turn_the_clock_back(tmp_path: Path) -> None:
    subjects = TWO + '\n[[subjects]]\nid = "S3"\ntags = ["T3"]\n'
    lines = steady("T3", T0, T0 + 9000, 6000.0)
    for tag in ("T1", "T2"):  # both underground for 2 h, then their buffers arrive
        lines += steady(tag, T0, T0 + 600, 3000.0)
        lines += steady(tag, T0 + 8000, T0 + 9000, 3000.0, seq0=130)
    lines.sort(key=lambda x: x["t"])
    at = next(i for i, x in enumerate(lines) if x["t"] >= T0 + 8000)
    for tag in ("T1", "T2"):
        lines[at:at] = steady(tag, T0 + 600, T0 + 8000, 3000.0, seq0=10)[:120]
    alerts = replay(tmp_path, lines, subjects=subjects)
    sil = [a for a in alerts if a.kind == "tag_silent"]
    assert sorted((a.tag, a.state) for a in sil) == [
        ("T1", "closed"), ("T1", "open"), ("T2", "closed"), ("T2", "open"),
    ]  # fmt: skip
    for a in sil:
        if a.state == "closed":  # heard again at the upload, about T0 + 7990, not in the past
            assert T0 + 7900 <= (a.closed_t or 0) <= T0 + 8000
            assert a.detail is not None and a.detail["filled"] == 120


def test_the_console_says_what_a_health_alert_means() -> None:
    from engine.cli.console import alert_row

    def a(kind: str, detail: dict[str, Any]) -> Alert:
        return Alert(id="x", kind=kind, state="open", subject="S1", tag="T1", zone=None,
                     severity="high", confidence=1.0, opened_t=T0, raised_t=T0, closed_t=None,
                     evidence=[("T1", 1)], detail=detail)  # fmt: skip

    assert "strap_open+case_open" in alert_row(a("tamper", {"events": ["strap_open", "case_open"]}))
    row = alert_row(a("tag_silent", {"zone": "Z1", "distance_m": 150.4, "filled": 15}))
    assert "last seen 150 m from Z1" in row and "gap held 15 records" in row
    row = alert_row(a("battery_critical", {"batt": 9, "empty_t": T0 + 3600}))
    assert "9 %" in row and "empty ~" in row
