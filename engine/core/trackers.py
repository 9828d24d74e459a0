"""The table of live trackers by `TrackerKey` (engine/core/decide.py): made on first
evidence, forgotten once idle; and the trackers' state as data (snapshots, reloads)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.core.decide import BreachTracker, Crossing, CurfewTracker
from engine.core.episodes import EpisodeBook, TrackerKey, TrackerKind
from engine.core.observe import Entry, Obs, obs_data, obs_from
from engine.settings import Settings
from engine.wire.alerts import Severity

if TYPE_CHECKING:
    from engine.core.episodes import Where
    from engine.core.remap import Ids, Remap

# The trackers of one zone: while any of them lives, the zone is followed for every fix
_ZONE_KINDS = _Z, _A, _C = (TrackerKind.ZONE, TrackerKind.APPROACH, TrackerKind.CURFEW)


class Trackers:
    """Every live tracker by key. `tracked[z]`: zone z has a live tracker, so each fix of
    its subject is followed (a far fix is what closes an episode)."""

    def __init__(self, book: EpisodeBook, settings: Settings, n_zones: int) -> None:
        self.book = book
        self.settings = settings
        self.live: dict[TrackerKey, BreachTracker | CurfewTracker] = {}
        self.tracked = np.zeros(n_zones, dtype=np.bool_)

    def __contains__(self, key: TrackerKey) -> bool:
        return key in self.live

    def breach(
        self, key: TrackerKey, kind: str, subject: str, zone: str, sev: Severity
    ) -> BreachTracker:
        tr = self.live.get(key)
        if tr is None:
            tr = BreachTracker(self.book, self.settings, key, kind, subject, zone, sev)
            self.live[key] = tr
        assert isinstance(tr, BreachTracker)
        return tr

    def curfew(self, key: TrackerKey, subject: str, zone: str) -> CurfewTracker:
        tr = self.live.get(key)
        if tr is None:
            tr = CurfewTracker(self.book, self.settings, key, subject, zone)
            self.live[key] = tr
        assert isinstance(tr, CurfewTracker)
        return tr

    def forget_if_idle(self, key: TrackerKey, z: int | None = None) -> None:
        """Drop the tracker when it holds nothing; with `z`, refresh that zone's flag."""
        live = self.live
        tr = live.get(key)
        if tr is not None and tr.idle:
            del live[key]
            tr = None
        if z is not None:
            if tr is not None and key.idx == z and key.kind in _ZONE_KINDS:
                self.tracked[z] = True  # `key` itself is one of the zone's and lives
            else:  # (kind, z) finds the TrackerKey (a tuple) without making one
                self.tracked[z] = (_Z, z) in live or (_A, z) in live or (_C, z) in live

    def approach(
        self, key: TrackerKey, kind: str, sev: Severity, subject: str, zone: str,
        breach: BreachTracker | None, o: Obs, at: Where | None = None,
    ) -> None:  # fmt: skip
        """Approach ring: an earlier, lower-severity alert, superseded by the breach (if any)."""
        ap = self.breach(key, kind, subject, zone, sev)
        if breach is not None and breach.episode is not None:
            if ap.episode is not None:
                self.book.close(key, kind, breach.episode.opened_t)
                ap.episode = None
            ap.pending.clear()
            ap.leaving_since = None
            return
        ap.observe(o, at)

    def end(self, key: TrackerKey, kind: str, until: float, reason: str) -> None:
        """What the open episode (key, kind) is about stopped binding at `until` (a zone's
        validity, a tagging period): close it then, saying why, and let its tracker start
        afresh (nothing it held is evidence any more)."""
        ep = self.book.get(key, kind)
        if ep is None:
            return
        ep.detail = {**(ep.detail or {}), "closed_reason": reason, "valid_until": until}
        self.book.close(key, kind, until)
        tr = self.live.get(key)
        if isinstance(tr, BreachTracker):
            tr.episode, tr.leaving_since = None, None
            tr.pending.clear()
        elif isinstance(tr, CurfewTracker):
            tr.episode, tr.was_out = None, False
            tr.away.clear()
        if tr is not None:
            self.forget_if_idle(key, key.idx if key.kind in _ZONE_KINDS else None)

    def finish(self) -> None:
        """End of input: breach episodes whose tag was last seen outside are closed."""
        for tr in self.live.values():
            if isinstance(tr, BreachTracker):
                tr.finish()

    # -- state as data (snapshots, configuration reloads: engine/core/remap.py) ----------
    def export_state(self, ids: Ids) -> list[Any]:
        """Every live tracker in the order it was made; an open episode is the book's."""
        out: list[Any] = []
        for key, tr in self.live.items():
            if isinstance(tr, BreachTracker):
                d: dict[str, Any] = {
                    "type": "breach", "kind": tr.kind, "subject": tr.subject, "zone": tr.zone,
                    "severity": tr.severity, "pending": [obs_data(o) for o in tr.pending],
                    "leaving_since": tr.leaving_since, "n_inside": tr.n_inside,
                    "recent": [obs_data(o) for o in tr.recent], "run_from": tr.run_from,
                    "burst": None if tr.burst is None else list(tr.burst),
                    "dismissed": list(tr.dismissed) if math.isfinite(tr.dismissed[0]) else None,
                    "jumped": tr.jumped, "entry": tr.entry.data(),
                    "crossing": None if tr.crossing is None else list(tr.crossing),
                }  # fmt: skip
            else:
                d = {"type": "curfew", "subject": tr.subject, "zone": tr.zone,
                     "away": [obs_data(o) for o in tr.away], "was_out": tr.was_out}  # fmt: skip
            d["episode"] = tr.episode is not None
            out.append([ids.key_ref(key), d])
        return out

    def import_state(self, data: list[Any], m: Remap) -> None:
        """Trackers of keys still in the configuration; each re-linked to its open episode
        in the book (load the book first)."""
        self.live.clear()
        self.tracked[:] = False
        for ref, d in data:
            key = m.key(ref)
            if key is None:
                continue
            tr: BreachTracker | CurfewTracker
            if d["type"] == "breach":
                tr = BreachTracker(self.book, self.settings, key, str(d["kind"]),
                                   str(d["subject"]), str(d["zone"]), d["severity"])  # fmt: skip
                tr.pending = [obs_from(o) for o in d["pending"]]
                ls = d["leaving_since"]
                tr.leaving_since = None if ls is None else float(ls)
                tr.n_inside = int(d["n_inside"])
                tr.recent = [obs_from(o) for o in d.get("recent", [])]  # older snapshots: none
                rf = d.get("run_from")
                tr.run_from = None if rf is None else float(rf)
                b = d.get("burst")
                tr.burst = None if b is None else (float(b[0]), float(b[1]))
                dm = d.get("dismissed")
                tr.dismissed = (math.inf, math.inf) if dm is None else (float(dm[0]), float(dm[1]))
                tr.jumped = bool(d.get("jumped", False))
                tr.entry = Entry.from_data(d.get("entry"))
                cr = d.get("crossing")  # older snapshots: none
                tr.crossing = None if cr is None else Crossing(*(float(x) for x in cr))
                kind = tr.kind
            elif d["type"] == "curfew":
                tr = CurfewTracker(self.book, self.settings, key, str(d["subject"]), str(d["zone"]))
                tr.away = [obs_from(o) for o in d["away"]]
                tr.was_out = bool(d["was_out"])
                kind = "curfew_breach"
            else:
                raise ValueError(f"unknown tracker type {d['type']!r} in state")
            if d["episode"]:
                tr.episode = self.book.get(key, kind)
            self.live[key] = tr
            if key.kind in _ZONE_KINDS:
                self.tracked[key.idx] = True
