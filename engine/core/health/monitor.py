"""Device health: tamper, silence, no location, battery; `Health` runs each concern at the
pipeline's moments (admission, seq order, the clock, the end of input).

A zone check is only half of monitoring: a cut strap, a tag that goes quiet beside the
victim's street, a battery left to die. These decisions share the breach alerts' book
(same ids, lifecycle, store and topics) and, like them, are made on event time, except
silence, which is about *arrival*: "nothing has arrived for too long" is measured on the
engine's clock (live: wall time; replay: the latest event time seen, see `ArrivalClock`).

- Tamper events open a critical `tamper` alert the moment they are admitted, before the
  seq ordering that breach decisions wait for, so a held seq gap never delays one. Each
  kind of tamper (strap, case, body, power) keeps its own latest state by seq, so events
  arriving out of order still settle to what the tag said last. The episode closes at the
  last restore once no new opening follows within `tamper_settle_s`: toggling is one
  episode (tamper.py).
- `tag_silent`: nothing from the tag for max(`silent_factor` x its reporting interval,
  `silent_min_s`). Severity rises when the last known position was inside or near an
  exclusion zone, or a curfew is on. When the tag is heard again the alert closes and
  says what the gap held (`detail.filled`, and breach alerts the late fixes opened)
  (silence.py).
- `no_location`: records keep coming but none is a usable fix (`no_gps` events, fixes
  worse than `no_location_acc_m`) for `no_location_after_s` (silence.py).
- `device_restart` (low): the tag restarted (a new `boot`, or its seq fell back while time
  moved on: engine/core/intake/seqspace.py); opened and closed at once at the first record
  after it, citing that record; `detail` has its seq, the highest seq before and the boot.
- `clock_fault` (medium): live, the tag's event times stay apart from when its records
  arrive (wall time); while it is open the tag's other alerts carry
  `detail.clock_offset_s` (clockfault.py).
- `battery_low` / `battery_critical`: level thresholds with hysteresis; `detail` carries
  the level, the drain trend and the predicted empty time, and when the tag last charged
  (battery.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from engine.core.episodes import EpisodeBook, TrackerKey, TrackerKind
from engine.core.health import battery
from engine.core.health.battery import CHARGING_OFF, CHARGING_ON, Battery, _Battery
from engine.core.health.clockfault import ClockFault
from engine.core.health.silence import Context, LastFix, NoLocation, Silence, ordered_clocks
from engine.core.health.tamper import Tamper
from engine.core.registry import Registry
from engine.settings import Settings
from engine.wire.alerts import Alert
from engine.wire.records import EVENT_CODE

if TYPE_CHECKING:
    from engine.core.remap import Ids, Remap

_NO_GPS = EVENT_CODE["no_gps"]
# Whether the walk of a batch's records may pass over those with nothing for battery or
# no_location to do (off: every record is looked at; tests/test_prune.py)
SKIP = True


class Health:
    """Per-tag health state for tag slots [0, n_tags); sparse dicts for the rare states,
    arrays for what every tag has."""

    def __init__(self, registry: Registry, book: EpisodeBook, settings: Settings) -> None:
        self.reg = registry
        self.book = book
        self.tamper = Tamper(registry, book, settings)
        self.silence = Silence(registry, book, settings)
        self.location = NoLocation(registry, book, settings)
        self.battery = Battery(registry, book, settings)
        self.clock = ClockFault(registry, book, settings)

    def restarted(self, s: int, t: float, eseq: int, seq: int, after: int, boot: int) -> None:
        """Slot s restarted at event time t: its record `eseq` (seq `seq`) began a new seq
        space after one whose highest seq was `after`."""
        if s >= self.reg.n_tags or not self.reg.monitored(s, t):
            return
        subject, tag = self.reg.who(s)
        key = TrackerKey(TrackerKind.RESTART, s)
        detail = {"seq": seq, "after_seq": after, **({"boot": boot} if boot >= 0 else {})}
        self.book.open_episode(
            key, "device_restart", subject=subject, tag=tag, zone=None, severity="low",
            confidence=1.0, t=t, seq=eseq, raised_t=t, detail=detail,
        )  # fmt: skip
        self.book.close(key, "device_restart", t)

    def credit(self, seconds: float) -> None:
        """The engine was down this long (restart): not the tags' silence."""
        self.silence.credit(seconds)

    def admit(self, rows: np.ndarray, arrival: np.ndarray, last_fix: LastFix) -> None:
        """Rows just received (deduplicated, in arrival order) and each one's arrival
        clock, before seq ordering: tamper is decided here, and gaps in arrival noted."""
        keep = rows["slot"] < self.reg.n_tags
        tags, arrival = rows[keep], arrival[keep]
        if tags.shape[0] == 0:
            return
        self.tamper.admit(tags)
        self.silence.admit(tags, arrival, last_fix)

    def ordered(self, rows: np.ndarray, usable: np.ndarray) -> None:
        """Tag rows in processing order (per tag in seq order): battery, charging,
        no_location and the reporting interval. `usable`: the row is a fix good enough to
        say where the tag is."""
        sil, bat, loc, st = self.silence, self.battery, self.location, self.silence.st
        code = rows["event"]
        after, gap = ordered_clocks(
            rows["slot"], rows["t"], code == 0, sil.interval, sil.last_fix_t,
            loc.last_rec_t, st.silent_factor, st.silent_min_s, st.interval_smoothing,
        )  # fmt: skip
        bad = (code == 0) | (code == _NO_GPS)
        batt = (rows["batt"] >= 0) | (code == CHARGING_ON) | (code == CHARGING_OFF)
        skip = SKIP and battery.SKIP
        # What is left per record in Python: the battery records that open or close an
        # episode (the rest only change the battery state: one numba walk), and
        # no_location for a slot that has had no usable fix since some record (now, or from
        # a bad record of the batch on)
        acts: dict[int, _Battery] = {}
        if skip:
            at = np.flatnonzero(batt)
            fields = (rows[f][at] for f in ("slot", "t", "seq", "batt", "event"))
            got, snaps = bat.observe_rows(*fields)
            acts = dict(zip(at[got].tolist(), snaps, strict=True))
            busy = np.zeros(rows.shape[0], dtype=np.bool_)
            busy[at[got]] = True
        else:
            busy = batt.copy()
        lost = {*loc.bad_since, *rows["slot"][bad & ~usable].tolist()}
        if lost or not SKIP:
            busy |= np.isin(rows["slot"], list(lost)) | (not SKIP)
        at = np.flatnonzero(busy)
        slot, t, seq, b, c = (rows[f][at].tolist() for f in ("slot", "t", "seq", "batt", "event"))
        after_, gap_ = after[at].tolist(), gap[at].tolist()
        use, bad_, pending = usable[at].tolist(), bad[at].tolist(), loc.bad_since
        rows_at = at.tolist()
        for i, s in enumerate(slot):
            if skip:
                snap = acts.get(rows_at[i])
                if snap is not None:
                    bat.episodes(s, t[i], seq[i], b[i], snap)
            elif b[i] >= 0 or c[i] in (CHARGING_ON, CHARGING_OFF):
                bat.observe(s, t[i], seq[i], b[i], c[i])
            if s in pending or (bad_[i] and not use[i]):
                loc.decide(s, t[i], seq[i], after_[i], gap_[i], use[i], bad_[i])

    def check(self, now: float, last_fix: LastFix, context: Context) -> None:
        """Time has passed (a batch, or live a tick): close tamper episodes that have
        settled, open silences that are due."""
        self.tamper.check(now, self.silence.heard_t)
        self.silence.check(now, last_fix, context)

    def settle(self, new_alerts: list[Alert], context: Context) -> None:
        """After a batch was decided: close the silences its records ended."""
        self.silence.settle(new_alerts, context)

    def finish(self) -> None:
        """End of input: restored tamper episodes close at their restore."""
        self.tamper.finish()

    # -- state as data (snapshots, configuration reloads: engine/core/remap.py) ----------
    def export_state(self, ids: Ids) -> dict[str, Any]:
        return {
            "tamper": self.tamper.export_state(),
            "silence": self.silence.export_state(ids),
            "location": self.location.export_state(),
            "battery": self.battery.export_state(),
            "clock": self.clock.export_state(),
        }

    def import_state(self, d: dict[str, Any], m: Remap) -> None:
        self.tamper.import_state(d["tamper"], m)
        self.silence.import_state(d["silence"], m)
        self.location.import_state(d["location"], m)
        self.battery.import_state(d["battery"], m)
        self.book.clock_note.clear()
        self.clock.import_state(d["clock"], m)
