"""The dead-letter budget: how many dead letters one device may have stored in a window.

One device sending garbage (a broken firmware, a hostile tag) must hurt only itself: the
first `budget` dead letters of a device in a window of `window_s` seconds are stored as
they are; the rest are counted, and when the window ends (or the store closes) one summary
row says "N more dead letters from DEVICE in the last M s: reasons...". Counts elsewhere
(the replay summary, the serve counters) still see every dead letter.

A dead letter's device is the one it carries (decoding and the pipeline set it), else the
tag, gateway or OwnTracks device its MQTT topic names, else its replay file; input naming no device
shares one budget."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from engine.wire.records import DeadLetter

# Devices tracked at once; beyond it (a flood of made-up ids) the rest share one budget.
MAX_DEVICES = 10_000
# Distinct reasons a summary names (the rest are "other").
MAX_REASONS = 5
_SHARED = "(unattributed input)"
_INDEX = re.compile(r"^fixes\[\d+\]")


@dataclass
class _Window:
    start: float
    stored: int = 0
    more: int = 0
    more_bytes: int = 0
    origin: str = ""
    reasons: dict[str, int] = field(default_factory=dict)

    def copy(self) -> _Window:
        return replace(self, reasons=dict(self.reasons))


@dataclass
class Plan:
    """What one commit stores, and the budget's state once that commit has succeeded."""

    rows: list[DeadLetter]
    windows: dict[str, _Window | None]  # None: the window ended and was summarised


class DeadLetterBudget:
    """Per-device dead-letter budget; `plan` is pure, `apply` after the commit succeeded
    (a failed commit is retried with the same dead letters: they must not count twice)."""

    def __init__(self, budget: int, window_s: float) -> None:
        self.budget = budget
        self.window_s = window_s
        self._windows: dict[str, _Window] = {}

    def plan(self, dead: Sequence[DeadLetter], now: float) -> Plan:
        touched: dict[str, _Window | None] = {}
        rows: list[DeadLetter] = []
        for key, old in self._windows.items():
            if now - old.start >= self.window_s or now < old.start:
                rows.extend(_summary(key, old, now, self.window_s))
                touched[key] = None
        if self.budget <= 0:  # 0: no budget, every dead letter is stored
            return Plan(rows + list(dead), touched)
        for d in dead:
            key = device_of(d)
            full = len(self._windows) + len(touched) >= MAX_DEVICES
            if full and key not in self._windows and key not in touched:
                key = _SHARED
            w = touched.get(key)
            if w is None:
                cur = None if key in touched else self._windows.get(key)
                w = cur.copy() if cur is not None else _Window(now)
                touched[key] = w
            if w.stored < self.budget:
                w.stored += 1
                rows.append(d)
                continue
            w.more += d.count
            w.more_bytes += max(d.size, 0)
            w.origin = d.origin
            why = _INDEX.sub("fixes[i]", d.reason)[:160]
            if why not in w.reasons and len(w.reasons) >= MAX_REASONS:
                why = "other reasons"
            w.reasons[why] = w.reasons.get(why, 0) + d.count
        return Plan(rows, touched)

    def apply(self, plan: Plan) -> None:
        for key, w in plan.windows.items():
            if w is None:
                self._windows.pop(key, None)
            else:
                self._windows[key] = w

    def drain(self, now: float) -> list[DeadLetter]:
        """Summaries of every open window (the store is closing); forgets them."""
        rows = [r for k, w in self._windows.items() for r in _summary(k, w, now, self.window_s)]
        self._windows.clear()
        return rows


def _summary(key: str, w: _Window, now: float, window_s: float) -> list[DeadLetter]:
    if not w.more:
        return []
    span = max(0.0, min(now, w.start + window_s) - w.start)
    reasons = "; ".join(
        f"{why} x{n}" for why, n in sorted(w.reasons.items(), key=lambda kv: (-kv[1], kv[0]))
    )
    text = (
        f"{w.more} more dead letters from {key} in the last {span:.0f} s"
        f" (over the budget of {w.stored}): {reasons}"
    )
    return [DeadLetter(w.origin, b"", text, size=w.more_bytes, device=key, count=w.more)]


def device_of(d: DeadLetter) -> str:
    """The budget a dead letter counts against."""
    if d.device:
        return d.device
    parts = d.origin.split("/")
    if len(parts) >= 5 and parts[0] == "tagwatch" and parts[2] in ("tags", "gateway") and parts[3]:
        return parts[3]
    if len(parts) >= 3 and parts[0] == "owntracks" and parts[1] and parts[2]:
        return f"{parts[1]}/{parts[2]}"
    if ":" in d.origin and "/" not in d.origin:  # FILE:LINE from replay
        return d.origin.rsplit(":", 1)[0]
    return _SHARED


@dataclass(frozen=True)
class DeadLetterRow:
    """A stored dead letter, as the store reads it back."""

    seq: int
    received_at: float
    origin: str
    reason: str
    size: int
    payload: bytes  # an excerpt (the first bytes) when size is larger
    sha256: str | None = None  # None in rows written before the hash was kept
    device: str | None = None
    count: int = 1  # dead letters this row stands for (> 1: a budget summary)
