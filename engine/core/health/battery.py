"""Battery: `battery_low` / `battery_critical` on level thresholds with hysteresis; the
alert's detail carries the level, the drain trend and predicted empty time, and when the
tag last charged."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.core.episodes import EpisodeBook, TrackerKey, TrackerKind
from engine.core.health.levels import Levels, walk
from engine.core.registry import Registry
from engine.settings import Settings
from engine.wire.alerts import Severity
from engine.wire.records import EVENT_CODE

if TYPE_CHECKING:
    from engine.core.remap import Remap

# Whether a batch's battery records are taken by the numba walk (levels.walk), Python
# seeing only those that open or close an episode (off: each record is observed on its
# own, every one of its episodes looked up; tests/test_prune.py)
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
    last charge that the drain trend is fitted to (as arrays: levels.Levels)."""

    def __init__(self, registry: Registry, book: EpisodeBook, settings: Settings) -> None:
        self.reg = registry
        self.book = book
        self.st = settings
        self.levels: tuple[tuple[str, int, int, Severity], ...] = (
            ("battery_low", settings.battery_low_pct, settings.battery_low_clear_pct, "medium"),
            ("battery_critical", settings.battery_critical_pct,
             settings.battery_critical_clear_pct, "high"),
        )  # fmt: skip
        self.state = Levels(registry.n_tags)
        subj = registry.subject_of_slot[: registry.n_tags]
        self.from_t = np.ascontiguousarray(registry.subject_from[subj], dtype=np.float64)
        self.until_t = np.ascontiguousarray(registry.subject_until[subj], dtype=np.float64)
        self.lows = np.array([low for _, low, _, _ in self.levels], dtype=np.int64)
        self.highs = np.array([high for _, _, high, _ in self.levels], dtype=np.int64)
        self.level_of = {kind: lv for lv, (kind, _, _, _) in enumerate(self.levels)}

    def observe_rows(
        self, slot: np.ndarray, t: np.ndarray, seq: np.ndarray, b: np.ndarray, code: np.ndarray
    ) -> tuple[list[int], list[_Battery]]:
        """Records of tag slots with a battery level (b, -1: none) or a charging event, in
        processing order: the state after all of them. Returns those that open or close an
        episode (indices) and each one's slot's state as of it, for `episodes`."""
        lv = self.state
        lv.reserve(slot.shape[0])
        open_lv = np.zeros((self.reg.n_tags, len(self.levels)), dtype=np.bool_)
        for key, kind in self.book.open:
            if key.kind == TrackerKind.BATTERY:
                open_lv[key.idx, self.level_of[kind]] = True
        new, acts, ch, lt, off, snap_t, snap_b = walk(
            slot, t, seq, b, code, CHARGING_ON, CHARGING_OFF, float(self.st.battery_trend_s),
            self.lows, self.highs, self.from_t, self.until_t, open_lv, lv.level, lv.seq,
            lv.charging, lv.last_t, lv.seen, lv.head, lv.tail, lv.cnt, lv.pt, lv.pb, lv.nxt,
            lv.meta,
        )  # fmt: skip
        if new.shape[0]:
            lv.order += new.tolist()
        at = acts.tolist()
        if not at:
            return at, []
        bs, seqs, ends = b[acts].tolist(), seq[acts].tolist(), off.tolist()
        pts = list(zip(snap_t[: ends[-1]].tolist(), snap_b[: ends[-1]].tolist(), strict=True))
        snaps = [
            _Battery(bs[k], seqs[k], pts[ends[k] : ends[k + 1]], c, x)
            for k, (c, x) in enumerate(zip(ch.tolist(), lt.tolist(), strict=True))
        ]
        return at, snaps

    def observe(self, s: int, t: float, seq: int, b: int, code: int) -> None:
        """A record of slot s with battery level b (-1: none) or a charging event."""
        one = np.array
        self.observe_rows(one([s]), one([t]), one([seq]), one([b]), one([code]))
        if b >= 0:
            self.episodes(s, t, seq, b, self.now(s))

    def now(self, s: int) -> _Battery:
        """Slot s's state."""
        lv = self.state
        return _Battery(int(lv.level[s]), int(lv.seq[s]), lv.samples(s), bool(lv.charging[s]),
                        float(lv.last_t[s]))  # fmt: skip

    def episodes(self, s: int, t: float, seq: int, b: int, bat: _Battery) -> None:
        """Slot s's record with level b opens or closes its battery episodes (`bat`: the
        slot's state after it)."""
        key = TrackerKey(TrackerKind.BATTERY, s)
        episodes = self.book.open
        for kind, low, high, sev in self.levels:
            ep = episodes.get((key, kind))  # self.book.get
            if ep is None and b <= low and self.reg.monitored(s, t):
                subject, tag = self.reg.who(s)
                self.book.open_episode(
                    key, kind, subject=subject, tag=tag, zone=None, severity=sev,
                    confidence=1.0, t=t, seq=seq, raised_t=t, detail=_detail(bat),
                )  # fmt: skip
            elif ep is not None and b >= high:
                ep.detail = _detail(bat)
                self.book.close(key, kind, t)

    # -- state as data (snapshots, configuration reloads: engine/core/remap.py) ----------
    def export_state(self) -> dict[str, Any]:
        ids, lv, order = self.reg.device_ids, self.state, self.state.order
        level, seq = lv.level[order].tolist(), lv.seq[order].tolist()
        charging, last_t = lv.charging[order].tolist(), lv.last_t[order].tolist()
        samples = lv.all_samples(order)
        return {
            ids[s]: {"level": level[k], "seq": seq[k], "samples": samples[k],
                     "charging": charging[k], "last_charge_t": last_t[k]}
            for k, s in enumerate(order)
        }  # fmt: skip

    def import_state(self, d: dict[str, Any], m: Remap) -> None:
        self.state = Levels(self.reg.n_tags)
        for dev, b in d.items():
            s = m.tag(dev)
            if s >= 0:
                samples = [(float(t), int(v)) for t, v in b["samples"]]
                self.state.put(s, int(b["level"]), int(b["seq"]), samples,
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
