"""Battery: `battery_low` / `battery_critical` on level thresholds with hysteresis; the
alert's detail carries the level, the drain trend and predicted empty time, and when the
tag last charged."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.core.episodes import EpisodeBook, TrackerKey, TrackerKind
from engine.core.registry import Registry
from engine.settings import Settings
from engine.wire.alerts import Severity
from engine.wire.records import EVENT_CODE

if TYPE_CHECKING:
    from engine.core.remap import Remap

# Whether a batch walk may skip the episode look-ups of records above every threshold of
# a slot with no battery episode open (off: each record looks; tests/test_prune.py)
SKIP = True
CHARGING_ON = EVENT_CODE["charging_on"]
CHARGING_OFF = EVENT_CODE["charging_off"]


@dataclass
class _Battery:
    level: int = -1
    seq: int = -1
    samples: list[tuple[float, int]] = field(default_factory=list)  # since the last charge
    charging: bool = False
    last_charge_t: float = math.nan


class Battery:
    """Per tag slot, in seq order: the level, charging state and the samples since the
    last charge that the drain trend is fitted to."""

    def __init__(self, registry: Registry, book: EpisodeBook, settings: Settings) -> None:
        self.reg = registry
        self.book = book
        self.st = settings
        self.battery: dict[int, _Battery] = {}
        self.levels: tuple[tuple[str, int, int, Severity], ...] = (
            ("battery_low", settings.battery_low_pct, settings.battery_low_clear_pct, "medium"),
            ("battery_critical", settings.battery_critical_pct,
             settings.battery_critical_clear_pct, "high"),
        )  # fmt: skip
        self.low_max = max(low for _, low, _, _ in self.levels)
        # While a batch is walked (`walk`): the slots with a battery episode open (only
        # `observe` opens or closes one meanwhile); None: look each record up
        self.open_slots: set[int] | None = None

    def walk(self, on: bool) -> None:
        """A batch's records are about to be observed (on), or have been (off)."""
        self.open_slots = None
        if on and SKIP:
            self.open_slots = {k.idx for k, _ in self.book.open if k.kind == TrackerKind.BATTERY}

    def observe(self, s: int, t: float, seq: int, b: int, code: int) -> None:
        """A record of slot s with battery level b (-1: none) or a charging event."""
        st = self.st
        bat = self.battery.get(s)
        if bat is None:  # (setdefault would build a _Battery per call)
            bat = self.battery[s] = _Battery()
        if code == CHARGING_ON:
            bat.charging, bat.last_charge_t = True, t
            bat.samples = []
        elif code == CHARGING_OFF:
            bat.charging, bat.last_charge_t = False, t
            bat.samples = []
        if b < 0:
            return
        if bat.level >= 0 and b > bat.level + 2 and not bat.charging:
            bat.samples = []  # charged (or swapped) without telling us
            bat.last_charge_t = t
        bat.level, bat.seq = b, seq
        if not bat.charging:
            bat.samples.append((t, b))
            cut = t - st.battery_trend_s
            while len(bat.samples) > 2 and bat.samples[0][0] < cut:
                bat.samples.pop(0)
        if b > self.low_max and self.open_slots is not None and s not in self.open_slots:
            return  # no episode to close, and none opens above the thresholds
        key = TrackerKey(TrackerKind.BATTERY, s)
        episodes = self.book.open
        for kind, low, high, sev in self.levels:
            ep = episodes.get((key, kind))  # self.book.get
            if ep is None and b <= low and self.reg.monitored(s, t):
                subject, tag = self.reg.who(s)
                if self.open_slots is not None:
                    self.open_slots.add(s)
                self.book.open_episode(
                    key, kind, subject=subject, tag=tag, zone=None, severity=sev,
                    confidence=1.0, t=t, seq=seq, raised_t=t, detail=_detail(bat),
                )  # fmt: skip
            elif ep is not None and b >= high:
                ep.detail = _detail(bat)
                self.book.close(key, kind, t)

    # -- state as data (snapshots, configuration reloads: engine/core/remap.py) ----------
    def export_state(self) -> dict[str, Any]:
        ids = self.reg.device_ids
        return {
            ids[s]: {"level": b.level, "seq": b.seq, "samples": [list(x) for x in b.samples],
                     "charging": b.charging, "last_charge_t": b.last_charge_t}
            for s, b in self.battery.items()
        }  # fmt: skip

    def import_state(self, d: dict[str, Any], m: Remap) -> None:
        self.battery = {}
        for dev, b in d.items():
            s = m.tag(dev)
            if s >= 0:
                samples = [(float(t), int(v)) for t, v in b["samples"]]
                self.battery[s] = _Battery(int(b["level"]), int(b["seq"]), samples,
                                           bool(b["charging"]), float(b["last_charge_t"]))  # fmt: skip


def _detail(bat: _Battery) -> dict[str, Any]:
    d: dict[str, Any] = {"batt": bat.level, "charging": bat.charging}
    if math.isfinite(bat.last_charge_t):
        d["last_charge_t"] = bat.last_charge_t
    pts = bat.samples
    if len(pts) >= 3 and pts[-1][0] - pts[0][0] >= 600.0:
        t = np.array([p[0] for p in pts])
        v = np.array([p[1] for p in pts], dtype=np.float64)
        slope = float(np.polyfit(t - t[0], v, 1)[0])  # % per second
        if slope < 0.0:
            d["drain_pct_h"] = round(-slope * 3600.0, 2)
            d["empty_t"] = round(pts[-1][0] + bat.level / -slope, 1)
    return d
