"""Implausible fixes: a fix that would put a tag inside a zone at a speed its track does
not allow is held as a suspect until the tag's next fix says whether it really went there
(a breach after all) or was a wild fix (`implausible_fix`, low severity, no breach)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from engine.core.episodes import EpisodeBook, TrackerKey, TrackerKind
from engine.core.history import speed
from engine.core.measure import Step
from engine.core.registry import Registry
from engine.settings import Settings
from engine.wire.records import ROW_ACC, ROW_LAT, ROW_LON, ROW_T
from zones.compile import ZoneTable

if TYPE_CHECKING:
    from engine.core.remap import Remap


class Outliers:
    """`suspects`: tag slot -> its fix held until the next one."""

    def __init__(
        self, table: ZoneTable, registry: Registry, settings: Settings, book: EpisodeBook
    ) -> None:
        self.table = table
        self.registry = registry
        self.settings = settings
        self.book = book
        self.suspects: dict[int, Step] = {}
        # Whether a zone is in force at a time, when schedules limit exclusion zones
        self.binds: Callable[[int, float], bool] | None = None

    def _jump_limit(self, st: Step) -> float:
        """Speed beyond which a fix is suspect, given how fast the track was going."""
        recent = speed(st.pprev, st.prev)
        recent = 0.0 if math.isnan(recent) else recent
        s = self.settings
        return max(s.jump_speed_floor_mps, s.jump_speed_factor * recent + 2.0)

    def _binding(self, st: Step) -> list[tuple[int, float]]:
        """The step's (zone, signed distance) pairs of zones in force at its time."""
        table, binds = self.table, self.binds
        if binds is None and not table.has_validity:
            return st.zone_pairs
        t = float(st.row["t"])
        if binds is not None:
            return [(z, sd) for z, sd in st.zone_pairs if binds(z, t)]
        return [(z, sd) for z, sd in st.zone_pairs
                if table.valid_from[z] <= t < table.valid_until[z]]  # fmt: skip

    def is_suspect(self, st: Step) -> bool:
        """A fix that would put the tag inside a zone, reached at a speed the track does not
        allow: held until the next fix says whether the tag really went there."""
        for _, sd in self._binding(st):
            if sd < 0.0:
                break
        else:
            return False
        # speed reads floats a[0..3]: a tuple of them does (no array per fix); the row's
        # fields read at once (FIX_DTYPE: each field read by name costs as much as all)
        f = st.row.item()
        v = speed(st.prev, cast("np.ndarray", (f[ROW_T], f[ROW_LAT], f[ROW_LON], f[ROW_ACC])))
        # The limit is never below jump_speed_floor_mps: a fix no faster is not suspect
        if math.isnan(v) or v <= self.settings.jump_speed_floor_mps:
            return False
        return v > self._jump_limit(st)

    def settle(self, sus: Step, nxt: Step, apply: Callable[[Step], None]) -> bool:
        """Decide a suspect fix with the fix after it: if the next fix is where the tag could
        have got to from before the jump but not from the suspect (in and back), the jump was
        an artefact (implausible_fix, not a breach); otherwise the tag really moved and the
        suspect is `apply`-ed, decided at the next fix. Returns True when it is accepted."""
        cur = np.array([nxt.row["t"], nxt.row["lat"], nxt.row["lon"], nxt.row["acc"]], float)
        limit = self._jump_limit(sus)
        back = speed(sus.prev, cur)
        sus_fix = np.array([sus.row["t"], sus.row["lat"], sus.row["lon"], sus.row["acc"]], float)
        onward = speed(sus_fix, cur)
        if not math.isnan(back) and back <= limit and onward > limit:
            self._implausible(sus)
            nxt.prev, nxt.pprev = sus.prev, sus.pprev
            return False
        self.book.decided_at = float(nxt.row["t"])
        try:
            apply(sus)
        finally:
            self.book.decided_at = None
        return True

    def _implausible(self, st: Step) -> None:
        reg, table = self.registry, self.table
        slot = int(st.row["slot"])
        tag, seq, t = reg.device_ids[slot], int(st.row["seq"]), float(st.row["t"])
        z = min(self._binding(st), key=lambda p: p[1])[0]
        key = TrackerKey(TrackerKind.IMPLAUSIBLE, slot)  # opened and closed at once
        self.book.open_episode(
            key, "implausible_fix", subject=reg.subject_ids[st.subject], tag=tag,
            zone=table.zone_ids[z], severity="low", confidence=0.9, t=t, seq=seq,
        )  # fmt: skip
        self.book.close(key, "implausible_fix", t)

    # -- state as data (snapshots, configuration reloads: engine/core/remap.py) ----------
    def export_state(self) -> dict[str, Any]:
        """The suspect fixes held for their tag's next fix, by device id."""
        ids, zones = self.registry.device_ids, self.table.zone_ids
        out: dict[str, Any] = {}
        for s, st in self.suspects.items():
            out[ids[s]] = {
                "row": np.frombuffer(st.row.tobytes(), dtype=st.row.dtype).copy(),
                "subject": self.registry.subject_ids[st.subject], "sigma": st.sigma,
                "prev": np.asarray(st.prev), "pprev": np.asarray(st.pprev),
                "zone_pairs": [[zones[z], sd] for z, sd in st.zone_pairs],
                "transits": [[zones[z], *rest] for z, *rest in st.transits],
                "onward": [[zones[z], *rest] for z, *rest in st.onward], "prox": st.prox,
            }  # fmt: skip
        return out

    def import_state(self, d: dict[str, Any], m: Remap) -> None:
        self.suspects = {}
        subjects = {sid: i for i, sid in enumerate(self.registry.subject_ids)}
        for dev, x in d.items():
            s = m.tag(dev)
            subject = subjects.get(str(x["subject"]), -1)
            if s < 0 or subject < 0:
                continue
            row = np.asarray(x["row"]).copy()
            row["slot"] = s

            def zs(items: list[Any]) -> list[Any]:
                got = [(m.zone_id(str(z)), *rest) for z, *rest in items]
                return [(z, *(float(v) for v in rest)) for z, *rest in got if z >= 0]

            self.suspects[s] = Step(
                row[0], subject, float(x["sigma"]), np.asarray(x["prev"]).copy(),
                np.asarray(x["pprev"]).copy(), zs(x["zone_pairs"]),  # type: ignore[arg-type]
                zs(x["transits"]), bool(x["prox"]), zs(x["onward"]),  # type: ignore[arg-type]
            )  # fmt: skip
