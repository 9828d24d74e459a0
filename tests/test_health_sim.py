"""The simulator's device-health model: contract-shaped events and `/fixes` batches, seq
and battery behaviour, and the health truth rules re-derived here from the messages alone."""

from __future__ import annotations

import hashlib
import itertools
import json
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from devices.health.drawn import HealthConfig
from devices.health.truth import (
    BATTERY_CRITICAL,
    BATTERY_LOW,
    NO_LOCATION_AFTER_S,
    SILENT_MATERIAL_FACTOR,
    TAMPER_SETTLE_S,
    silent_after_s,
)
from devices.sim.fleet import Message, SimRun, simulate
from devices.sim.output import write_replay, write_run, write_truth
from devices.world.city import build_world

# DESIGN.md section 3, plus the additive restoring events case_closed and power_on
EVENTS = {"strap_open", "strap_closed", "case_open", "body_lost", "body_restored",
          "charging_on", "charging_off", "no_gps", "battery", "power_off",
          "case_closed", "power_on"}  # fmt: skip
FIX_KEYS = ["seq", "t", "lat", "lon", "acc", "batt", "src"]
TRUTH_KEYS = ["kind", "subject", "tag", "zone", "start_t", "end_t", "material", "depth_m"]
HEALTH_KINDS = {"tamper", "tag_silent", "no_location", "battery_low", "battery_critical"}
OPENING = {"strap_open": "strap", "case_open": "case", "body_lost": "body", "power_off": "power"}
RESTORING = {"strap_closed": "strap", "case_closed": "case", "body_restored": "body",
             "power_on": "power"}  # fmt: skip
# replay.jsonl / truth.jsonl of simulate(build_world(2, 3), 3600, breach_fraction=1.0), as
# written before the health model existed: health=None must not change a byte
GOLDEN_REPLAY = "18108ea2ceca269497b9174f38d08a3e6ccf12ab7cb6d86964dd9008d385968a"
GOLDEN_TRUTH = "a62032633797c5826de84b7d11179dcd3d12040f70b49168220e76722ba2a528"
BUSY = HealthConfig(
    forget_charge_fraction=0.5,
    tamper_fraction=1.0,
    coverage_gap_fraction=1.0,
    indoor_loss_fraction=1.0,
    tamper_toggle_fraction=0.5,
)

Span = tuple[float, float]


@pytest.fixture(scope="module")
def busy() -> SimRun:
    """Everyone in trouble: 10 subjects, 8 h, every kind of health episode."""
    return simulate(build_world(5, 10), duration_s=8 * 3600.0, health=BUSY)


@pytest.fixture(scope="module")
def day() -> SimRun:
    """The realistic defaults on a 24 h day for 20 subjects."""
    return simulate(build_world(3, 20), duration_s=86400.0, health=HealthConfig())


@pytest.fixture(scope="module", params=["busy", "day"])
def run(request: pytest.FixtureRequest) -> SimRun:
    r: SimRun = request.getfixturevalue(request.param)
    return r


def _tag_lines(run: SimRun) -> dict[str, list[dict[str, Any]]]:
    """Each tag's replay lines in seq order."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for m in run.messages:
        if not m.is_owntracks:
            out[m.device] += m.replay_records()
    for lines in out.values():
        lines.sort(key=lambda r: r["seq"])
    return out


def _send_times(run: SimRun) -> dict[str, list[float]]:
    out: dict[str, list[float]] = defaultdict(list)
    for m in run.messages:
        if not m.is_owntracks:
            out[m.device].append(m.t)
    return out


def _truth(run: SimRun, kind: str) -> set[tuple[str, float, float, bool]]:
    return {
        (e.tag, round(e.start_t, 3), round(e.end_t, 3), e.material)
        for e in run.truth
        if e.kind == kind
    }


def _as_set(tag: str, spans: Iterable[Span]) -> set[tuple[str, float, float, bool]]:
    return {(tag, round(a, 3), round(b, 3), True) for a, b in spans}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- determinism and the default path ------------------------------------------------------


def test_same_seed_same_bytes_and_another_seed_differs(tmp_path: Path) -> None:
    world = build_world(4, 6)
    files = []
    for i, seed in enumerate((None, None, 99)):
        r = simulate(world, duration_s=6 * 3600.0, health=BUSY, seed=seed)
        files.append(write_run(r, tmp_path / str(i)))
    for name in ("replay", "truth"):
        assert files[0][name].read_bytes() == files[1][name].read_bytes()
        assert files[0][name].read_bytes() != files[2][name].read_bytes()
    kinds = {json.loads(ln)["kind"] for ln in files[0]["truth"].read_text().splitlines()}
    assert {"tamper", "tag_silent", "no_location"} <= kinds


def test_health_none_changes_nothing(tmp_path: Path) -> None:
    world = build_world(2, 3)
    runs = [
        simulate(world, duration_s=3600.0, breach_fraction=1.0),
        simulate(world, duration_s=3600.0, breach_fraction=1.0, health=None),
    ]
    for i, r in enumerate(runs):
        write_replay(r, tmp_path / f"replay{i}.jsonl")
        write_truth(r, tmp_path / f"truth{i}.jsonl")
        assert _digest(tmp_path / f"replay{i}.jsonl") == GOLDEN_REPLAY
        assert _digest(tmp_path / f"truth{i}.jsonl") == GOLDEN_TRUTH
        assert r.health == ()
        assert {m.kind for m in r.messages} == {"fix", "owntracks"}
        assert "tag events" not in r.summary()
    assert runs[0].messages == runs[1].messages


# -- contract --------------------------------------------------------------------------------


def test_messages_and_replay_lines_follow_the_contract(run: SimRun, tmp_path: Path) -> None:
    tags = {s.tag for s in run.world.subjects}
    n_lines = 0
    for m in run.messages:
        lines = m.replay_records()
        n_lines += len(lines)
        if m.is_owntracks:
            continue
        assert m.device in tags
        assert m.topic == f"tagwatch/v1/tags/{m.device}/{m.kind}"
        assert run.start_t <= m.t < run.end_t
        if m.kind == "event":
            p = m.payload
            assert list(p) == (["seq", "t", "event", "batt"] if p["event"] == "battery"
                               else ["seq", "t", "event"])  # fmt: skip
            assert p["event"] in EVENTS
            assert isinstance(p["seq"], int) and isinstance(p["t"], float)
            assert p["t"] <= m.t  # published when it happens, or later when buffered
            assert lines == [{"tag": m.device, "type": "event", **p}]
            assert m.replay_record() == lines[0]
        else:
            fixes = m.payload if m.kind == "fixes" else [m.payload]
            assert fixes and all(list(f) == FIX_KEYS for f in fixes)
            assert lines == [{"tag": m.device, **f} for f in fixes]
            for f in fixes:
                assert isinstance(f["seq"], int) and isinstance(f["t"], float)
                assert isinstance(f["acc"], float) and f["acc"] > 0
                assert f["src"] in ("gps", "wifi", "cell")
            if m.kind == "fixes":
                assert all(f["t"] < m.t for f in fixes)  # taken during the gap, sent after
                with pytest.raises(ValueError):
                    m.replay_record()
            else:
                assert m.payload["t"] == m.t
    assert {m.kind for m in run.messages} == {"fix", "fixes", "event", "owntracks"}
    assert write_replay(run, tmp_path / "replay.jsonl") == n_lines
    written = [json.loads(ln) for ln in (tmp_path / "replay.jsonl").read_text().splitlines()]
    assert written == [r for m in run.messages for r in m.replay_records()]
    assert [m.t for m in run.messages] == sorted(m.t for m in run.messages)


def test_truth_file_has_the_health_episodes(busy: SimRun, tmp_path: Path) -> None:
    files = write_run(busy, tmp_path)
    lines = [json.loads(ln) for ln in files["truth"].read_text().splitlines()]
    assert len(lines) == len(busy.truth)
    assert all(list(r) == TRUTH_KEYS for r in lines)
    health = [r for r in lines if r["kind"] in HEALTH_KINDS]
    assert {r["kind"] for r in health} == HEALTH_KINDS
    assert all(r["zone"] == "" and r["depth_m"] == 0 for r in health)
    assert all(r["start_t"] <= r["end_t"] <= busy.end_t for r in health)
    keys = [(r["start_t"], r["subject"], r["kind"], r["zone"]) for r in lines]
    assert keys == sorted(keys)
    assert "tag events" in busy.summary() and "tamper" in busy.summary()


def test_seq_is_one_counter_per_tag_in_the_order_things_happen(run: SimRun) -> None:
    for tag, lines in _tag_lines(run).items():
        seqs = [r["seq"] for r in lines]
        assert seqs == list(range(len(seqs))), tag  # no duplicates, no holes
        ts = [r["t"] for r in lines]
        assert ts == sorted(ts), tag
    # in send order, every live record is newer than everything sent before it
    newest: dict[str, int] = {}
    for m in run.messages:
        if m.is_owntracks:
            continue
        for r in m.replay_records():
            if r["t"] == m.t:
                assert r["seq"] > newest.get(m.device, -1)
            newest[m.device] = max(newest.get(m.device, -1), r["seq"])


def test_battery_levels_and_events(run: SimRun) -> None:
    for tag, lines in _tag_lines(run).items():
        charging = False
        prev: dict[str, Any] | None = None
        for r in lines:
            if r.get("event") == "charging_on":
                charging, prev = True, None
            elif r.get("event") == "charging_off":
                charging, prev = False, None
            if "batt" not in r:
                continue
            b = r["batt"]
            assert isinstance(b, int) and 0 <= b <= 100
            if r.get("event") == "battery":
                assert b % 5 == 0
            if prev is not None:
                p = prev["batt"]
                assert (b >= p) if charging else (b <= p), (tag, prev, r)
                # a multiple of 5 is never passed without a battery event reporting it
                crossed = [v for v in range(0, 101, 5) if (b <= v < p) or (p < v <= b)]
                if crossed:
                    assert crossed == [b] and r.get("event") == "battery", (tag, prev, r)
            prev = r


def test_a_flat_tag_says_power_off_then_nothing_until_charged(day: SimRun) -> None:
    lines = _tag_lines(day)
    sent = _send_times(day)
    flats = 0
    for tag, recs in lines.items():
        for i, r in enumerate(recs):
            if r.get("event") == "battery" and r["batt"] == 0:
                flats += 1
                assert recs[i + 1]["event"] == "power_off"
                after = recs[i + 2 : i + 4]
                if after:  # recharged within the run
                    assert [a["event"] for a in after] == ["power_on", "charging_on"]
                    quiet = [t for t in sent[tag] if r["t"] < t < after[0]["t"]]
                    assert quiet == []
                    assert after[0]["t"] - r["t"] >= 3600.0  # 1-5 h later
                else:
                    assert max(sent[tag]) == r["t"]
    assert flats >= 1


# -- truth rules, re-derived from the messages -------------------------------------------


def _silent(ts: list[float], silent_s: float, end: float) -> list[tuple[float, float, bool]]:
    ts = sorted(ts)
    gaps = [(a, b) for a, b in itertools.pairwise(ts) if b - a > silent_s]
    if end - ts[-1] > silent_s:
        gaps.append((ts[-1], end))
    return [(a, b, b - a > SILENT_MATERIAL_FACTOR * silent_s) for a, b in gaps]


def test_tag_silent_is_a_long_gap_in_publish_time(run: SimRun) -> None:
    silent_s = silent_after_s(run.config.fix_interval_s)
    mine: set[tuple[str, float, float, bool]] = set()
    for tag, ts in _send_times(run).items():
        mine |= {(tag, round(a, 3), round(b, 3), m) for a, b, m in _silent(ts, silent_s, run.end_t)}
    assert mine == _truth(run, "tag_silent")
    assert mine and all(m for *_, m in mine)  # scripted silences are clearly long


def _battery(lines: list[dict[str, Any]], levels: tuple[int, int], end: float) -> list[Span]:
    out, start = [], None
    for r in lines:
        b = r.get("batt")
        if b is None:
            continue
        if start is None and b <= levels[0]:
            start = r["t"]
        elif start is not None and b >= levels[1]:
            out.append((start, r["t"]))
            start = None
    return out + ([(start, end)] if start is not None else [])


def test_battery_episodes(run: SimRun) -> None:
    for kind, levels in (("battery_low", BATTERY_LOW), ("battery_critical", BATTERY_CRITICAL)):
        mine = set()
        for tag, lines in _tag_lines(run).items():
            mine |= _as_set(tag, _battery(lines, levels, run.end_t))
        assert mine == _truth(run, kind), kind
    for h in run.health:  # who forgets to charge runs down (and then flat)
        if "forgetful" in h.roles:
            assert any(e.tag == h.tag for e in run.truth if e.kind == "battery_critical")


def _tamper(lines: list[dict[str, Any]], end: float) -> list[Span]:
    out: list[Span] = []
    opened: set[str] = set()
    start: float | None = None
    restored, batt = 0.0, None
    for r in lines:
        ev = r.get("event")
        flat = ev == "power_off" and batt == 0  # a flat battery is no tamper
        batt = r.get("batt", batt)
        if ev in OPENING and not flat:
            if start is not None and not opened and r["t"] - restored > TAMPER_SETTLE_S:
                out.append((start, restored))
                start = None
            start = r["t"] if start is None else start
            opened.add(OPENING[ev])
        elif ev in RESTORING and RESTORING[ev] in opened:
            opened.remove(RESTORING[ev])
            restored = r["t"]
    if start is not None:
        out.append((start, end if opened else restored))
    return out


def test_tamper_episodes(run: SimRun) -> None:
    mine = set()
    for tag, lines in _tag_lines(run).items():
        mine |= _as_set(tag, _tamper(lines, run.end_t))
        batt = None
        for r in lines:  # a flat battery's power_off follows batt 0; tamper's, batt > 10
            if r.get("event") == "power_off":
                assert batt is not None and (batt == 0 or batt > 10), (tag, r)
            batt = r.get("batt", batt)
    assert mine == _truth(run, "tamper")
    scripted = {(h.tag, round(s.start_t, 3), round(s.end_t, 3), True)
                for h in run.health for s in h.tamper}  # fmt: skip
    assert mine == scripted


def test_toggling_tamper_is_one_episode(busy: SimRun) -> None:
    toggling = [(h, s) for h in busy.health for s in h.tamper if s.opens > 1]
    assert toggling
    lines = _tag_lines(busy)
    for h, s in toggling:
        inside = [r for r in lines[h.tag] if s.start_t <= r["t"] <= s.end_t]
        opens = [r for r in inside if OPENING.get(r.get("event", "")) == s.kind]
        assert len(opens) == s.opens >= 2
        eps = [e for e in busy.truth
               if e.kind == "tamper" and e.tag == h.tag and e.start_t <= s.end_t
               and s.start_t <= e.end_t]  # fmt: skip
        assert [(e.start_t, e.end_t) for e in eps] == [(s.start_t, s.end_t)]
    assert any(s.with_body for h in busy.health for s in h.tamper)  # strap + body, merged


def _minus(span: Span, holes: list[Span]) -> list[Span]:
    out, (a, b) = [], span
    for h0, h1 in sorted(holes):
        if h0 < b and h1 > a:
            if h0 > a:
                out.append((a, h0))
            a = max(a, h1)
    return out + ([(a, b)] if a < b else [])


def test_no_location_episodes(run: SimRun) -> None:
    silent_s = silent_after_s(run.config.fix_interval_s)
    sent = _send_times(run)
    mine: set[tuple[str, float, float, bool]] = set()
    for tag, lines in _tag_lines(run).items():
        gaps = [(a, b) for a, b, _ in _silent(sent[tag], silent_s, run.end_t)]
        first = None
        for r in [*lines, None]:
            usable = r is None or ("lat" in r and r["acc"] <= 250.0)
            if not usable and first is None:
                assert r is not None
                first = r["t"]
            elif usable and first is not None:
                end = run.end_t if r is None else r["t"]
                pieces = _minus((first, end), gaps)
                mine |= _as_set(tag, [p for p in pieces if p[1] - p[0] >= NO_LOCATION_AFTER_S])
                first = None
    assert mine == _truth(run, "no_location")
    for h in run.health:  # every scripted indoor period is one of them
        for a, b in h.indoor:
            assert any(e.tag == h.tag and e.start_t < b and a < e.end_t
                       for e in run.truth if e.kind == "no_location"), (h.tag, a, b)  # fmt: skip


def test_indoor_loss_sends_cell_fixes_or_no_gps(busy: SimRun) -> None:
    lines = _tag_lines(busy)
    seen = set()
    for h in busy.health:
        for a, b in h.indoor:
            inside = [r for r in lines[h.tag] if a <= r["t"] < b]
            for r in inside:
                if "lat" in r:
                    assert r["src"] == "cell" and 300.0 <= r["acc"] <= 1000.0
                    seen.add("cell")
                elif r["event"] == "no_gps":
                    seen.add("no_gps")
            assert b - a >= 35 * 60 and len(inside) >= (b - a) / busy.config.fix_interval_s - 2
    assert seen == {"cell", "no_gps"}


def test_a_coverage_gap_is_published_as_one_batch(run: SimRun) -> None:
    by_tag: dict[str, list[Message]] = defaultdict(list)
    for m in run.messages:
        by_tag[m.device].append(m)
    gaps = 0
    for h in run.health:
        for g0, g1 in h.gaps:
            gaps += 1
            ms = by_tag[h.tag]
            assert not [m for m in ms if g0 <= m.t < g1]  # nothing live in the gap
            batches = [m for m in ms if m.kind == "fixes" and m.t == g1]
            assert len(batches) == 1
            taken = [r for r in h.records if r.event is None and g0 <= r.t < g1]
            assert [f["seq"] for f in batches[0].payload] == [r.seq for r in taken]
            assert len(taken) >= (g1 - g0) / run.config.fix_interval_s - 2
            # the batch comes first when coverage returns, then live records again
            i = ms.index(batches[0])
            assert all(m.t >= g1 for m in ms[i:]) and ms[i + 1 :]
            assert g1 in {round(e.end_t, 3) for e in run.truth
                          if e.kind == "tag_silent" and e.tag == h.tag}  # fmt: skip
    assert gaps == sum(m.kind == "fixes" for m in run.messages) > 0


def test_the_day_has_a_realistic_mix(day: SimRun) -> None:
    roles = [r for h in day.health for r in h.roles]
    assert {"forgetful", "tamper", "coverage", "indoor"} <= set(roles)
    lines = _tag_lines(day)
    for h in day.health:
        events = [r["event"] for r in lines[h.tag] if "event" in r]
        if "forgetful" not in h.roles:
            assert "charging_on" in events and "charging_off" in events, h.tag
        # drain while neither charging nor off: 1-4 %/h (a little slack for rounding)
        spans = _drain_spans(lines[h.tag])
        assert spans or "forgetful" in h.roles, h.tag
        for t0, b0, t1, b1 in spans:
            rate = (b0 - b1) / ((t1 - t0) / 3600.0)
            assert 0.5 <= rate <= 4.5, (h.tag, t0, b0, t1, b1)
    counts = {k: sum(e.kind == k for e in day.truth) for k in HEALTH_KINDS}
    assert all(counts.values()), counts


def _drain_spans(lines: list[dict[str, Any]]) -> list[tuple[float, int, float, int]]:
    """(t, batt) at both ends of each stretch of >= 3 h, not charging, with a record at
    least every 10 min and no charging or power event: the battery drains at its own rate."""
    out: list[tuple[float, int, float, int]] = []
    stretch: list[dict[str, Any]] = []
    charging = False
    for r in [*lines, {"event": "end", "t": float("inf")}]:
        ev = r.get("event")
        charging = {"charging_on": True, "charging_off": False}.get(ev or "", charging)
        quiet = ev in (None, "battery", "no_gps") and not charging
        if quiet and (not stretch or r["t"] - stretch[-1]["t"] < 600):
            stretch.append(r)
            continue
        fixes = [x for x in stretch if "lat" in x]
        if len(fixes) > 1 and fixes[-1]["t"] - fixes[0]["t"] >= 3 * 3600:
            out.append((fixes[0]["t"], fixes[0]["batt"], fixes[-1]["t"], fixes[-1]["batt"]))
        stretch = [r] if quiet else []
    return out


def test_health_config_is_checked() -> None:
    with pytest.raises(ValueError):
        HealthConfig(tamper_fraction=1.5)
    with pytest.raises(ValueError):
        HealthConfig(drain_pct_h=(4.0, 1.0))
    with pytest.raises(ValueError):
        HealthConfig(cell_acc_m=(100.0, 500.0))
