"""The terminal console's model: alert records in, one row per alert id out, in queue order.

No terminal and no clock of its own (the caller passes `now`, wall time), so the rules
below are tested without either; `engine/cli/live.py` draws the rows with rich.

- One row per alert id: a later lifecycle record (an escalation, a close) replaces the
  row's record in place. A record older than the one shown (a redelivery after a close,
  an out-of-order copy) changes nothing: a close is later than any open record, then
  records compare by `raised_t` (an escalation raises it again), then state.
- Queue order: open, then acknowledged, then closed; within each, severity (critical
  first), then the subject's risk weight when known (highest first, unknown last), then
  age (the oldest open alert first; among closed ones the most recently closed first).
- A closed row stays `keep_closed_s` (wall seconds from when the board saw it close),
  then drops; a copy of the same or an older record arriving later does not bring it back.
- The cue: `apply` says True when a record makes a not-closed alert critical that was
  not before (a new critical alert, or one escalated to critical) — the console rings
  the bell once for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.wire.alerts import SEVERITY_RANK, Alert

STATE_RANK = {"open": 0, "acknowledged": 1, "closed": 2}
FRESH_S = 60.0  # a critical alert first seen this recently is drawn as new
_FORGET_GONE = 100_000  # a long-running console forgets dropped ids beyond this many


def record_key(a: Alert) -> tuple[int, float, float, int]:
    """Which of two records of one alert is the later one (the greater key): a close ends
    the lifecycle whatever its time says (a health alert's close may carry an event time
    before its raise), then the later raise (an escalation), then the state."""
    closed = a.state == "closed"
    return (int(closed), a.raised_t, a.closed_t or 0.0, STATE_RANK.get(a.state, 0))


@dataclass(frozen=True, slots=True)
class Row:
    """One alert as the console shows it: its newest record and what the board knows."""

    alert: Alert
    risk: int | None  # the subject's risk weight, when the console was given the subjects
    first_seen: float  # wall time the board first saw this alert id
    closed_seen: float | None = None  # wall time the board saw it close

    @property
    def id(self) -> str:
        return self.alert.id

    @property
    def state(self) -> str:
        return self.alert.state

    def sort_key(self) -> tuple[Any, ...]:
        a = self.alert
        age = -(a.closed_t or a.raised_t) if a.state == "closed" else a.opened_t
        risk = -(self.risk if self.risk is not None else 0)
        return (STATE_RANK.get(a.state, 0), SEVERITY_RANK.get(a.severity, 9), risk, age, a.id)

    def is_new_critical(self, now: float) -> bool:
        return (
            self.alert.severity == "critical"
            and self.alert.state != "closed"
            and now - self.first_seen < FRESH_S
        )


class Board:
    """The alerts a console shows; see the module docstring for the rules."""

    def __init__(
        self, *, keep_closed_s: float = 600.0, risk: Mapping[str, int] | None = None
    ) -> None:
        self.keep_closed_s = keep_closed_s
        self.risk = dict(risk or {})
        self._rows: dict[str, Row] = {}
        self._gone: dict[
            str, tuple[int, float, float, int]
        ] = {}  # dropped ids: their last record's key
        self._order: list[Row] | None = None  # cached queue order; None after a change

    def __len__(self) -> int:
        return len(self._rows)

    def apply(self, alert: Alert, now: float) -> bool:
        """Take one lifecycle record; True when it calls for the critical cue."""
        old = self._rows.get(alert.id)
        key = record_key(alert)
        if old is not None and key < record_key(old.alert):
            return False
        if old is None and alert.id in self._gone and key <= self._gone[alert.id]:
            return False
        closed_seen = None
        if alert.state == "closed":
            closed_seen = old.closed_seen if old and old.closed_seen is not None else now
        self._rows[alert.id] = Row(
            alert=alert,
            risk=self.risk.get(alert.subject),
            first_seen=old.first_seen if old else now,
            closed_seen=closed_seen,
        )
        self._order = None
        was_critical = (
            old is not None and old.alert.severity == "critical" and old.state != "closed"
        )
        return alert.severity == "critical" and alert.state != "closed" and not was_critical

    def apply_all(self, alerts: Iterable[Alert], now: float) -> None:
        for a in alerts:
            self.apply(a, now)

    def expire(self, now: float) -> int:
        """Drop closed rows shown for `keep_closed_s`; how many were dropped."""
        gone = [
            r
            for r in self._rows.values()
            if r.closed_seen is not None and now - r.closed_seen >= self.keep_closed_s
        ]
        if len(self._gone) + len(gone) > _FORGET_GONE:
            self._gone.clear()
        for r in gone:
            del self._rows[r.id]
            self._gone[r.id] = record_key(r.alert)
        if gone:
            self._order = None
        return len(gone)

    def rows(self, now: float) -> list[Row]:
        """The rows in queue order, after dropping the expired closed ones."""
        self.expire(now)
        if self._order is None:
            self._order = sorted(self._rows.values(), key=Row.sort_key)
        return self._order

    def counts(self) -> dict[str, int]:
        """Rows per state (open, acknowledged, closed), the closed ones still shown."""
        out = dict.fromkeys(STATE_RANK, 0)
        for r in self._rows.values():
            out[r.state] = out.get(r.state, 0) + 1
        return out


# --- what each cell says (plain text; live.py adds the colours) ---


def fmt_age(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86_400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86_400}d{s % 86_400 // 3600:02d}h"


def fmt_local(t: float, now: float) -> str:
    """Local time of day; with the date when it is not today's."""
    dt, today = datetime.fromtimestamp(t), datetime.fromtimestamp(now)
    return dt.strftime("%H:%M:%S") if dt.date() == today.date() else dt.strftime("%m-%d %H:%M")


def _num(d: Mapping[str, Any], name: str) -> float | None:
    v = d.get(name)
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def where_text(a: Alert) -> str:
    """The deciding fix, from `detail` when the record carries it (lat/lon, ±acc, depth
    inside the zone or distance from the victim); empty when it does not."""
    d = a.detail or {}
    lat, lon = _num(d, "lat"), _num(d, "lon")
    if lat is None or lon is None:
        return ""
    parts = [f"{lat:.5f},{lon:.5f}"]
    acc = _num(d, "acc")
    if acc is not None:
        parts.append(f"±{acc:.0f}m")
    depth = _num(d, "depth_m")
    dist = _num(d, "distance_m")
    if depth is not None:
        parts.append(f"{depth:.0f}m in")
    elif dist is not None:
        parts.append(f"{dist:.0f}m away")
    return " ".join(parts)


COLUMNS = (
    "severity", "kind", "subject", "tag", "zone", "conf", "opened", "age", "state", "where", "id",
)  # fmt: skip


def cells(r: Row, now: float) -> tuple[str, ...]:
    """A row's cells, in COLUMNS order."""
    a = r.alert
    return (
        a.severity,
        a.kind,
        a.subject,
        a.tag or "-",
        a.zone or "-",
        f"{a.confidence:.2f}",
        fmt_local(a.opened_t, now),
        fmt_age(now - a.opened_t),
        a.state,
        where_text(a),
        a.id,
    )


@dataclass
class Status:
    """The console's status line: the broker link and the engine's retained status."""

    link: str = "connecting"  # connecting | connected | reconnecting
    link_note: str = ""  # the broker's address, or why the link went down
    engine: dict[str, str] | None = None  # the decoded retained engine status, once heard
    # engine shards' statuses (serve --shard), by shard label ("0-of-2")
    shards: dict[str, dict[str, str]] = field(default_factory=dict)

    def heard_link(self, connected: bool, note: str) -> None:
        self.link = "connected" if connected else "reconnecting"
        self.link_note = note

    def heard_engine(self, shard: str | None, status: dict[str, str]) -> None:
        if shard is None:
            self.engine = status
        else:
            self.shards[shard] = status

    def engine_text(self, now: float) -> tuple[str, bool]:
        """What the engine says (or what each shard says, when some is wrong), and whether
        it is a problem (degraded, offline, a refused configuration reload)."""
        if not self.shards:
            return _engine_text(self.engine, "engine", now)
        said = [_engine_text(e, f"shard {k}", now) for k, e in sorted(self.shards.items())]
        if self.engine is not None:
            said.insert(0, _engine_text(self.engine, "engine", now))
        wrong = [(t, b) for t, b in said if b]
        if not wrong:
            return f"engine: {len(self.shards)} shards online", False
        return "; ".join(t for t, _ in wrong), True


def _engine_text(e: dict[str, str] | None, who: str, now: float) -> tuple[str, bool]:
    if e is None:
        return f"{who}: no status yet", False
    state = e.get("state", "?")
    text, bad = f"{who} {state}", state != "online"
    if state == "degraded" and e.get("reason"):
        text += f": {e['reason']}"
    config = e.get("config")
    if config:
        try:
            at = f" at {fmt_local(float(e.get('config_at', '')), now)}"
        except ValueError:
            at = ""
        text += f"; config {config}{at}"
        if config == "refused":
            bad = True
            if e.get("config_reason"):
                text += f": {e['config_reason']}"
    return text, bad


def counts_text(counts: Mapping[str, int]) -> str:
    return "  ".join(f"{state} {n}" for state, n in counts.items())
