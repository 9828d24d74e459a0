"""The arrival clock: the engine's sense of "now" for silence (live: wall time; replay: the
latest event time seen), robust to one device whose clock is far off."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from engine.core.remap import Remap


class ArrivalClock:
    """The engine's sense of "now" for silence: live, wall time; replay, the latest event
    time seen. One device with a clock far ahead (a tag reset to 2038) must not make the
    whole fleet look silent, so a jump of more than `max_jump_s` is taken only when a
    second device confirms it."""

    def __init__(self, max_jump_s: float) -> None:
        self.now = -math.inf
        self.max_jump_s = max_jump_s
        self._pending: tuple[int, float] | None = None
        self._anchor = -1  # the device whose record set the clock first
        self.confirmed = False  # a second device has agreed with it

    def observe(self, slots: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Each record's arrival clock, in arrival order: the running latest event time.
        Late records (store-and-forward, any age) never move it back. A jump of more than
        max_jump_s ahead is taken only once a second device confirms it; and until a second
        device has agreed with the first record that set the clock, two devices far behind
        it correct it (a wild first record)."""
        out = np.empty(t.shape[0])
        jump = self.max_jump_s
        tt = np.where(np.isfinite(t), t, -np.inf)
        if self.confirmed:
            run = np.maximum.accumulate(np.concatenate([[self.now], tt]))
            if not np.any(tt > run[:-1] + jump):
                out[:] = run[1:]
                self.now = float(run[-1])
                return out
        for i in range(t.shape[0]):  # a far jump somewhere: one record at a time
            v, s = float(tt[i]), int(slots[i])
            if not math.isfinite(v):
                pass
            elif not math.isfinite(self.now):
                self.now, self._anchor = v, s
            elif v > self.now + jump or (v < self.now - jump and not self.confirmed):
                p = self._pending
                if p is None or p[0] == s or (p[1] > self.now) != (v > self.now):
                    self._pending = (s, v)
                else:  # two devices agree the clock is far off: the nearer of the two
                    self.now = min(v, p[1]) if v > self.now else max(v, p[1])
                    self._pending = None
                    self.confirmed = True
            else:
                if s != self._anchor and abs(v - self.now) <= jump:
                    self.confirmed = True
                self.now = max(self.now, v)
            out[i] = self.now
        return out

    def set(self, wall: float) -> float:
        self.confirmed = True
        self.now = max(self.now, wall)
        return self.now

    # -- state as data (snapshots, configuration reloads: engine/core/remap.py) ----------
    def export_state(self, device_ids: list[str]) -> dict[str, Any]:
        p = self._pending
        return {
            "now": self.now, "confirmed": self.confirmed,
            "anchor": device_ids[self._anchor] if self._anchor >= 0 else None,
            "pending": None if p is None else [device_ids[p[0]], p[1]],
        }  # fmt: skip

    def import_state(self, d: dict[str, Any], m: Remap) -> None:
        """A device gone from the configuration no longer anchors or holds a jump."""
        self.now = float(d["now"])
        self.confirmed = bool(d["confirmed"])
        self._anchor = -1 if d["anchor"] is None else m.device(str(d["anchor"]))
        p = d["pending"]
        s = -1 if p is None else m.device(str(p[0]))
        self._pending = None if s < 0 else (s, float(p[1]))
