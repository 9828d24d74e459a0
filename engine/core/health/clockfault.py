"""`clock_fault`: a tag whose event time stays apart from when its records arrive.

A tag takes its time from GPS; one that sends local time as UTC, or whose real-time clock
was set wrong after a flat battery, is decided at the wrong time (curfews included) or,
when it runs ahead by more than `max_future_s`, has every record refused and looks silent.
Arrival time is only known live, where the host's wall time (kept by NTP) witnesses it:
a replay file carries no arrival times and its clock is the event times themselves, and
with `live_clock = "fleet"` (simulators, warped time) the wall is no witness either. So
the judgement runs live on wall time only; replay and fleet-clock runs raise none.

Per tag, over a window of `clock_fault_window_s` of arrival time holding at least
`clock_fault_min_records` records (admitted, or refused as too far ahead or behind),
the offset event time - arrival time of every record is taken:

- every record more than `clock_fault_ahead_s` ahead: the clock runs ahead (no honest
  record is ever ahead of its own arrival by more than the NTP error);
- every record more than `clock_fault_s` behind: the clock runs behind. A store-and-forward
  backlog is old too, but a tag that uploads a backlog also sends fresh records, and one
  fresh record in the window clears it.

The episode opens at the record that completes such a window (evidence: that record) with
`detail` {offset_s, records, window_s} (the offset nearest zero: the least the clock is
off by) and closes at the first window with a record near arrival time. While it is open,
every other alert the tag opens carries `detail.clock_offset_s`: a decision made on a
clock known to be off says so (EpisodeBook.clock_note)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from engine.core.episodes import EpisodeBook, TrackerKey, TrackerKind
from engine.core.registry import Registry
from engine.core.remap import Remap
from engine.settings import Settings
from engine.wire.alerts import Evidence


class ClockFault:
    """Per-tag offset windows for tag slots [0, n_tags)."""

    def __init__(self, registry: Registry, book: EpisodeBook, settings: Settings) -> None:
        self.reg = registry
        self.book = book
        st = settings
        self.behind_s = st.clock_fault_s
        self.ahead_s = st.clock_fault_ahead_s
        self.window_s = st.clock_fault_window_s
        self.min_records = st.clock_fault_min_records
        n = registry.n_tags
        self.start = np.full(n, math.nan)  # arrival time the current window began
        self.count = np.zeros(n, dtype=np.int64)
        self.lo = np.full(n, math.inf)  # lowest event - arrival offset in the window
        self.hi = np.full(n, -math.inf)  # highest
        self.faults: dict[int, float] = {}  # slot -> offset of its open clock_fault

    @property
    def enabled(self) -> bool:
        return self.behind_s > 0 and self.window_s > 0

    def observe(
        self, slots: np.ndarray, t: np.ndarray, arrival: float, cite: Callable[[int], Evidence]
    ) -> None:
        """Records that arrived at wall time `arrival` (admitted or refused for their time),
        in arrival order; `cite(i)`: what evidence cites for row i."""
        if not self.enabled:
            return
        rows = np.flatnonzero(slots < self.reg.n_tags)
        if rows.shape[0] == 0:
            return
        slots, t = slots[rows], t[rows]
        off = t - arrival
        fresh = np.isnan(self.start[slots])
        self.start[slots[fresh]] = arrival
        np.add.at(self.count, slots, 1)
        np.minimum.at(self.lo, slots, off)
        np.maximum.at(self.hi, slots, off)
        due = (arrival - self.start[slots] >= self.window_s) & (
            self.count[slots] >= self.min_records
        )
        if not due.any():
            return
        last: dict[int, int] = {}  # slot -> its last row in this batch
        for i in np.flatnonzero(due).tolist():
            last[int(slots[i])] = i
        for s, i in sorted(last.items()):
            self._judge(s, float(t[i]), cite(int(rows[i])))

    def _judge(self, s: int, t: float, evidence: Evidence) -> None:
        lo, hi, n = float(self.lo[s]), float(self.hi[s]), int(self.count[s])
        span = self.window_s
        self.start[s], self.count[s], self.lo[s], self.hi[s] = math.nan, 0, math.inf, -math.inf
        offset = lo if lo > self.ahead_s else (hi if hi < -self.behind_s else None)
        key = TrackerKey(TrackerKind.CLOCK, s)
        subject, tag = self.reg.who(s)
        if offset is None:
            if self.faults.pop(s, None) is not None:
                self.book.clock_note.pop(tag, None)
                self.book.close(key, "clock_fault", t)
            return
        if s in self.faults or not self.reg.monitored(s, t):
            return  # outside the tagging period a clock fault pages nobody
        self.faults[s] = offset
        self.book.clock_note[tag] = round(offset, 1)
        self.book.open_episode(
            key, "clock_fault", subject=subject, tag=tag, zone=None, severity="medium",
            confidence=1.0, t=t, seq=0, raised_t=t, first=evidence,
            detail={"offset_s": round(offset, 1), "records": n, "window_s": span},
        )  # fmt: skip

    # -- state as data (snapshots, configuration reloads: engine/core/remap.py) ----------
    def export_state(self) -> dict[str, Any]:
        ids = self.reg.device_ids
        return {
            "start": self.start, "count": self.count, "lo": self.lo, "hi": self.hi,
            "faults": {ids[s]: off for s, off in sorted(self.faults.items())},
        }  # fmt: skip

    def import_state(self, d: dict[str, Any], m: Remap) -> None:
        """Also the book's clock notes: they are the open faults' offsets."""
        self.start = m.rows(d["start"], self.start)
        self.count = m.rows(d["count"], self.count)
        self.lo = m.rows(d["lo"], self.lo)
        self.hi = m.rows(d["hi"], self.hi)
        self.faults = {}
        for dev, off in d["faults"].items():
            s = m.tag(str(dev))
            if s >= 0:
                self.faults[s] = float(off)
                self.book.clock_note[self.reg.device_ids[s]] = round(float(off), 1)
