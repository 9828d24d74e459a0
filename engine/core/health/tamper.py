"""Tamper: strap, case, body and power events open a critical `tamper` alert the moment
they are admitted (before seq ordering, so a held seq gap never delays one); it closes at
the last restore once nothing reopens it within `tamper_settle_s`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.core.episodes import EpisodeBook, TrackerKey, TrackerKind
from engine.core.registry import Registry
from engine.settings import Settings
from engine.wire.records import EVENT_CODE

if TYPE_CHECKING:
    from engine.core.remap import Remap

# Tamper kinds: the event that opens one, and the events that restore it
TAMPER_OPEN = {
    "strap_open": "strap",
    "case_open": "case",
    "body_lost": "body",
    "power_off": "power",
}
TAMPER_RESTORE = {
    "strap_closed": "strap",
    "case_closed": "case",
    "body_restored": "body",
    "power_on": "power",
}
_OPEN_CODE = {EVENT_CODE[k]: v for k, v in TAMPER_OPEN.items()}
_RESTORE_CODE = {EVENT_CODE[k]: v for k, v in TAMPER_RESTORE.items()}
_POWER_OFF = EVENT_CODE["power_off"]
_EVENT_NAME = {v: k for k, v in EVENT_CODE.items()}


def event_name(code: int) -> str:
    return _EVENT_NAME.get(code, "record")


@dataclass
class _Tamper:
    state: dict[str, tuple[int, bool, float]] = field(
        default_factory=dict
    )  # kind -> (seq, open, t)
    restored_t: float = math.nan  # all kinds restored at this event time (NaN: some open)
    seq: int = -1  # the restore's seq


class Tamper:
    """Per tag slot: each kind of tamper keeps its own latest state by seq, so events
    arriving out of order still settle to what the tag said last; toggling is one episode.
    A power_off with a flat battery is not tamper (battery_critical says it), and any
    record after a power_off says the tag is on again."""

    def __init__(self, registry: Registry, book: EpisodeBook, settings: Settings) -> None:
        self.reg = registry
        self.book = book
        self.st = settings
        self.tamper: dict[int, _Tamper] = {}
        self.settling: set[int] = set()  # all restored: closes after tamper_settle_s
        self.powered_off: dict[int, int] = {}  # slot -> seq of its power_off
        self.batt_seen = np.full(registry.n_tags, -1, dtype=np.int16)  # last level, on arrival
        self._codes = np.array([*_OPEN_CODE, *_RESTORE_CODE], dtype=np.uint8)

    def admit(self, tags: np.ndarray) -> None:
        """Tag rows just received (deduplicated, in arrival order)."""
        tamper = np.isin(tags["event"], self._codes)
        off = tags["slot"][tags["event"] == _POWER_OFF]
        if self.powered_off or off.shape[0]:  # any record after power_off restores it
            tamper |= np.isin(tags["slot"], [*self.powered_off, *off.tolist()])
        if tamper.any():
            has_batt = tags["batt"] >= 0
            for i in np.flatnonzero(tamper).tolist():
                s = int(tags["slot"][i])
                seen = np.flatnonzero(has_batt[:i] & (tags["slot"][:i] == s))
                if seen.shape[0]:
                    self.batt_seen[s] = tags["batt"][seen[-1]]
                self._event(tags[i])
        b = np.flatnonzero(tags["batt"] >= 0)
        self.batt_seen[tags["slot"][b]] = tags["batt"][b]  # the last one in arrival order

    def _event(self, row: np.void) -> None:
        s, code = int(row["slot"]), int(row["event"])
        seq, t = int(row["seq"]), float(row["t"])
        if code in _OPEN_CODE:
            kind, opening = _OPEN_CODE[code], True
            if code == _POWER_OFF and self._flat(s, row):
                return  # a flat battery, not tamper: battery_critical says it
        elif code in _RESTORE_CODE:
            kind, opening = _RESTORE_CODE[code], False
        else:  # any other record after power_off: the tag is evidently on again
            kind, opening = "power", False
            if seq <= self.powered_off.get(s, seq):
                return
        tp = self.tamper.setdefault(s, _Tamper())
        prev = tp.state.get(kind)
        if prev is None or seq > prev[0]:
            tp.state[kind] = (seq, opening, t)
        if kind == "power":
            if tp.state["power"][1]:
                self.powered_off[s] = tp.state["power"][0]
            else:
                self.powered_off.pop(s, None)
        key = TrackerKey(TrackerKind.TAMPER, s)
        ep = self.book.get(key, "tamper")
        subject, tag = self.reg.who(s)
        name = event_name(code)
        if opening and ep is None and self.reg.monitored(s, t):
            self.book.open_episode(
                key, "tamper", subject=subject, tag=tag, zone=None, severity="critical",
                confidence=1.0, t=t, seq=seq, raised_t=t, detail={"events": [name]},
            )  # fmt: skip
        elif ep is not None:
            self.book.add_evidence(ep, tag, seq, 1.0)
            assert ep.detail is not None
            if opening:
                ep.opened_t = min(ep.opened_t, t)
                if name not in ep.detail["events"]:
                    ep.detail["events"].append(name)
        if any(o for _, o, _ in tp.state.values()):
            tp.restored_t = math.nan
            self.settling.discard(s)
        elif self.book.get(key, "tamper") is not None:
            last = max(tp.state.values(), key=lambda v: v[2])
            tp.restored_t, tp.seq = last[2], last[0]
            self.settling.add(s)

    def _flat(self, s: int, row: np.void) -> bool:
        b = int(row["batt"])
        if b < 0:
            b = int(self.batt_seen[s])
        return 0 <= b <= self.st.battery_flat_pct

    def check(self, now: float, heard_t: np.ndarray) -> None:
        """Close tamper episodes that have settled by `now` (or by the tag's own latest
        event time, `heard_t`)."""
        for s in sorted(self.settling):
            tp = self.tamper[s]
            if math.isnan(tp.restored_t):
                self.settling.discard(s)
            elif max(now, heard_t[s]) >= tp.restored_t + self.st.tamper_settle_s:
                self.book.close(TrackerKey(TrackerKind.TAMPER, s), "tamper", tp.restored_t)
                self.settling.discard(s)

    def finish(self) -> None:
        """End of input: restored tamper episodes close at their restore."""
        for s in sorted(self.settling):
            tp = self.tamper[s]
            if not math.isnan(tp.restored_t):
                self.book.close(TrackerKey(TrackerKind.TAMPER, s), "tamper", tp.restored_t)
        self.settling.clear()

    # -- state as data (snapshots, configuration reloads: engine/core/remap.py) ----------
    def export_state(self) -> dict[str, Any]:
        ids = self.reg.device_ids
        return {
            "tamper": {ids[s]: {"state": {k: list(v) for k, v in tp.state.items()},
                                "restored_t": tp.restored_t, "seq": tp.seq}
                       for s, tp in self.tamper.items()},
            "settling": [ids[s] for s in sorted(self.settling)],
            "powered_off": {ids[s]: q for s, q in self.powered_off.items()},
            "batt_seen": self.batt_seen,
        }  # fmt: skip

    def import_state(self, d: dict[str, Any], m: Remap) -> None:
        self.tamper = {}
        for dev, tp in d["tamper"].items():
            s = m.tag(dev)
            if s >= 0:
                state = {
                    str(k): (int(v[0]), bool(v[1]), float(v[2])) for k, v in tp["state"].items()
                }
                self.tamper[s] = _Tamper(state, float(tp["restored_t"]), int(tp["seq"]))
        self.settling = {s for s in map(m.tag, d["settling"]) if s >= 0}
        self.powered_off = {m.tag(k): int(v) for k, v in d["powered_off"].items() if m.tag(k) >= 0}
        self.batt_seen = m.rows(d["batt_seen"], self.batt_seen)
