"""The one settings object: every threshold and limit with its documented default."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from engine.errors import ConfigError
from engine.wire import topics

# Live clocks (Settings.live_clock): the host's wall time, or the fleet's as a second witness
LIVE_CLOCKS = ("wall", "fleet")


@dataclass(frozen=True)
class Settings:
    """Engine settings. Load overrides from TOML with `Settings.from_toml` (a flat table
    of the field names below, or the same under `[engine]`); unknown keys are errors."""

    # --- ingest -----------------------------------------------------------------------
    # Largest micro-batch handed to the pipeline (replay: lines read per call), and the
    # longest a live record waits for one to fill. Under load batches fill while the one
    # before is decided and committed anyway, so a long wait only adds latency: at 5,000
    # fixes/s 5 ms gave breach p50 10 ms, p99 20 ms; 20 ms gave 14 / 35 ms (bench/latency.py)
    batch_max: int = 5000
    batch_wait_s: float = 0.005
    # Live, a batch is at most this many messages: 2000 drains a backlog faster than 5000
    # and keeps a tamper event's wait for the batch in progress short (bench/backlog.py)
    live_batch_max: int = 2000
    # A live main batch is decided in chunks of this many messages; a priority item (a
    # strap cut) that arrives meanwhile is decided after the chunk in progress and
    # committed with the chunks before it, instead of after the whole batch
    live_chunk: int = 500
    # Bound on received-but-unprocessed messages per lane; beyond it the session stops
    # reading its socket (TCP back-pressure: the broker holds the rest) until half drained
    queue_max: int = 50_000
    # Per-tag (tag, seq) duplicate window held in memory, in sequence numbers
    dedupe_window: int = 1024
    # Device restarts (engine/core/intake/seqspace.py): a tag's seq that falls back at least
    # this far below its highest (or to 0 or 1) while its event time moves past its latest
    # starts a new seq space (a reboot or a counter that wrapped); so does a new `boot`
    restart_seq_drop: int = 64
    # Per-tag ordering: records behind a seq gap wait for it to fill, but at most this many
    # records, this much event time, or (live) this much wall time; what fills a gap
    # after that is late and is still decided, with raised_t telling when
    hold_max: int = 8
    hold_s: float = 1800.0
    hold_wall_s: float = 10.0
    # Largest excerpt of a rejected payload kept in a dead-letter row (the rest is cut; the
    # row keeps its full size and SHA-256). At most the wire's 512-byte excerpt
    dead_letter_max_bytes: int = 512
    # Dead letters stored per device per window: beyond dead_letter_budget in
    # dead_letter_window_s, one summary row ("N more dead letters from T ...") stands for
    # the rest, so a device sending garbage fills no disk (0: no budget). 50 per 10 min
    # is at most ~7 MB a day for a device sending nothing but garbage
    dead_letter_budget: int = 50
    dead_letter_window_s: float = 600.0
    # Dead letters are kept this many days (0: forever); they explain input, not decisions
    dead_letter_retention_days: float = 30.0
    # Input limits on the engine's clock (engine/core/intake/admission.py; live: wall time, replay: the
    # latest event time admitted). A record more than max_future_s ahead of the clock is
    # dead-lettered: tags stamp fixes from GNSS time (UTC within a second; 18 s ahead if a
    # receiver forgets the leap seconds) or network time, and 5 min still covers an RTC
    # drifting between fixes and the engine host's own NTP error, while every real clock
    # fault is years, not minutes (an RTC reset to 2038, a week-number rollover). A record
    # from the future would make the tag's real records look late and, in replay, move
    # the clock the fleet's silence is measured on.
    max_future_s: float = 300.0
    # ...and more than max_past_s behind it: a store-and-forward backlog after a long
    # coverage gap (tag memory holds weeks of fixes) or an engine outage (the broker holds
    # the session for a week) must still be accepted, while a GPS week-number rollover
    # (1024 weeks: 19.6 years back) must not
    max_past_s: float = 2_592_000.0
    # Token bucket per device: rate_max_per_s sustained, rate_burst at once. No tag reports
    # faster than its GNSS receiver's 1 Hz (the engine asks for every 15 s at most); the
    # burst holds five full /fixes uploads (Limits.max_batch = 2000) back to back: a week of
    # one-minute fixes after a coverage gap. Beyond it a device is flooding (a firmware
    # loop, a replayed capture) and the excess is dead-lettered
    rate_max_per_s: float = 2.0
    rate_burst: int = 10_000
    # Live, the clock the time limits are judged on. "wall": the host's wall time, which
    # must be kept by NTP (docs/durability.md); a record outside [wall - max_past_s,
    # wall + max_future_s] is dead-lettered, the first one the engine hears included.
    # "fleet": for simulators and tests in warped or historical time only: the fleet's own
    # event clock is a second witness and a record is refused only when it disagrees with
    # both (the first record heard sets that clock, whatever its time). Replay always
    # judges on the event clock
    live_clock: str = "wall"

    # --- decisions ------------------------------------------------------------------
    # Number of (tag, seq) pairs kept as evidence on one alert
    evidence_max: int = 50
    # Risk weight at or above which a zone breach is critical rather than high
    critical_risk: int = 3
    # Smallest 68% radius trusted, metres: no fix is more certain than this (model error)
    acc_floor_m: float = 3.0
    # A single fix decides a breach at once when it is this deep and this many sigma inside
    decisive_depth_m: float = 25.0
    decisive_sigmas: float = 3.0
    # Uncertain fixes open a breach when their combined P(inside) reaches this...
    open_probability: float = 0.95
    # ...and their weighted mean depth is at least this (GPS drift near a boundary is not
    # a breach): lurking 20 m outside with 20 m correlated error must not alarm
    open_min_depth_m: float = 10.0
    # Weaker evidence still says a breach is possible and a monitor hears of it, at a
    # confidence no higher than possible_confidence_max: combined P(inside) of at least
    # possible_probability and a mean depth of at least possible_min_depth_m
    possible_probability: float = 0.85
    possible_min_depth_m: float = 5.0
    possible_confidence_max: float = 0.6
    # Uncertain evidence older than this (event time) no longer counts towards opening
    evidence_window_s: float = 900.0
    # GPS error decorrelates over roughly this long: fixes closer together than this are
    # not independent evidence (real receivers: 30-300 s)
    error_corr_s: float = 120.0
    # A fix counts as confidently outside when P(inside) is at most this
    outside_probability: float = 0.05
    # While a breach is open, a fix at least this likely to be inside (a cell fix, drift at
    # the edge) restarts the exit gap: absence must be established by confident fixes
    stay_probability: float = 0.2
    # Hysteresis: a breach closes only after the tag has been confidently outside this long;
    # re-entries within it extend the episode rather than open a new alert
    exit_gap_s: float = 120.0
    # Confidence ceilings for evidence that cannot rule out an artefact: one fix (a
    # multipath burst or wild fix looks the same), inside fixes spanning less than
    # confident_span_s (a multipath burst shifts up to ~5 consecutive fixes together), a
    # straight-line transit with no fix inside
    single_fix_confidence_max: float = 0.8
    two_fix_confidence_max: float = 0.88
    # ...graded from likely_confidence_min up to it by how far the run has gone towards
    # confident (its span, its fixes, its depth): the longer and deeper, the higher it ranks
    likely_confidence_min: float = 0.7
    confident_span_s: float = 420.0
    # ...or at least confident_fixes inside fixes (more than a burst shifts) spanning at
    # least confident_min_span_s; and >= 0.9 needs a weighted mean depth of at least
    # confident_min_depth_m (drift beside buildings keeps a lurker's fixes 10-20 m in)
    confident_fixes: int = 8
    # ...of a run seen walking in (watched or seen coming, no leap, not from beside a
    # steady track: observe.Entry, steady_judge), this many
    confident_walked_fixes: int = 6
    confident_min_span_s: float = 60.0
    confident_min_depth_m: float = 20.0
    confident_min_sigmas: float = 2.0
    transit_confidence_max: float = 0.85
    # ...graded from likely_confidence_min, reached when going round would take
    # transit_speedup more speed than the tag had (+50 %)
    transit_speedup: float = 0.5
    # A breach opened by a short run of fixes inside (at most crossing_max_fixes), when the
    # fixes either side of the run (outside) put it there: each fix of the run lies within
    # crossing_sigmas combined sigmas of where the straight track through its neighbours,
    # at a steady speed, is at its time, and the track from the fix before the run to the
    # one after is inside the zone all through it. A wild fix lands anywhere and a
    # multipath burst off a track outside stays off it: a crossing seen both ways rises to
    # crossing_confidence_max at the fix after the run
    crossing_confidence_max: float = 0.95
    # ...and a segment with no fix inside, whose start lies on the straight, steady track
    # from the fix before it to its end (crossing_sigmas), when going round needed the
    # transit cap's full speed-up and it goes deeper than a burst from its end could fake
    straight_crossings: bool = True
    crossing_sigmas: float = 3.0
    crossing_max_fixes: int = 4
    # ...short of the depth that rules out a burst shifting the run and the fix after it
    # together, but on the track and deep enough for a transit, from a tag going at least
    # this fast (fix before the run to fix after): likely, graded up to
    # transit_confidence_max by how much of that shift the depth rules out
    crossing_likely_min_speed_mps: float = 2.5
    # Transit: the straight segment between two fixes outside must go this deep (and two
    # sigma of the fixes) into a zone to count; fixes further apart than max_gap say
    # nothing about the route; and when a route round the zone no longer than the tag could
    # drive at its previous speed (x slack) exists, the crossing is not evidence
    transit_min_depth_m: float = 20.0
    transit_max_gap_s: float = 600.0
    transit_speed_slack: float = 0.95
    # A segment that ends inside says no more than its last fix, which the breach tracker
    # judges itself: from a track going slower than this before it (not a vehicle; or
    # unknown) such a transit is a possible breach at most (possible_confidence_max)
    transit_inside_min_speed_mps: float = 2.5
    # A tag moving at least onward_min_speed_mps (into A and on to B) may have kept going
    # the way it was going and turned later: when that route (straight on at the speed it
    # came in at x slack, then one turn to B) goes into a zone the straight segment misses,
    # the breach is possible (possible_confidence_max). Slowing for the turn costs
    # onward_turn_s x (1 - cos turn angle) seconds at that speed: 6 s for a right angle
    # Issue 15: at 3 m/s these raised most of the 24-hour fleets' false alerts (cyclists
    # beside zones) and found no breach the other rules missed there; a vehicle's speed
    # (6 m/s) keeps the drive-throughs on bends they find, at a cost in drive-arounds
    onward_routes: bool = True
    onward_min_speed_mps: float = 6.0
    onward_speed_slack: float = 1.0
    onward_turn_s: float = 6.0

    # Multipath bursts (issue 15): beside tall buildings a receiver puts 2-4 consecutive
    # fixes 30-80 m off, together. A run of fixes into a zone that starts at least
    # burst_jump_m deeper than the track's course predicts (a straight line through the
    # depths of its last burst_anchor_fixes fixes, none more than burst_still_m off it, and
    # outside the zone) opens no zone breach until it outlasts a burst (more than
    # burst_max_fixes fixes, or burst_max_s); back where the track was going, it was one,
    # and its fixes are not evidence. An approach ring still sees them. 0 (the default):
    # off, as it delays a still tag's real step into a zone by as many fixes (4 at 60 s:
    # bench/quality.py, README); with 15 s fixes it costs about a minute
    burst_max_fixes: int = 0
    burst_max_s: float = 300.0
    burst_jump_m: float = 25.0
    burst_still_m: float = 30.0
    burst_anchor_fixes: int = 5
    # A steady track beside a zone (issue 15): someone who has kept a steady depth outside
    # a zone (home next door, a bus stop, a shop, a road round it) for at least
    # steady_min_fixes fixes over steady_min_span_s (looking back steady_window_s; their
    # depths' robust spread at most steady_max_spread_m, no trend) shows their GPS error
    # in that spread. A run of fixes into the zone opens a breach only when its mean is
    # deeper than the steady level by more than steady_sigmas x that spread (shrinking with
    # the run's decorrelated length, error correlated over steady_corr_s): less is what the
    # error does there. An approach ring still sees them. steady_window_s 0: off
    steady_window_s: float = 1800.0
    steady_min_fixes: int = 6
    steady_min_span_s: float = 300.0
    steady_max_spread_m: float = 40.0
    steady_sigmas: float = 2.5
    steady_corr_s: float = 300.0
    steady_max_fixes: int = 64
    # ...but no run is held longer than this: a real step in is reported by then
    steady_hold_s: float = 240.0
    steady_jump_spreads: float = 2.0
    steady_burst_spread_m: float = 10.0
    steady_burst_fixes: int = 12
    steady_burst_s: float = 200.0
    # a run from beside a steady track (or one that jumped off the track's course) is
    # confident (>= 0.9) only once it outlasts a burst and the error's slow wander
    steady_confident_s: float = 450.0
    # A new run into the zone while its breach is open (the tag stepped out and back, not
    # out long enough to close it) that came in as a walk (watched or seen coming, no
    # leap) from fixes confidently outside does not inherit the wait of the run that
    # opened the breach (a burst from a steady spot, say)
    steady_rejudge: bool = True
    # How a run came in (observe.entry_wait): one whose entry nobody watched (no fix within
    # steady_watch_s before it) may be a burst that began in the gap: confident only after
    # steady_unwatched_s, unless within steady_progress_s two fixes average
    # steady_progress_m deeper than its first (walking on in); one that leapt in
    # (burst_jump_m deeper than the fix before, faster than steady_leap_mps and twice the
    # track's depth rate), only after steady_leap_s. While a run from beside a steady
    # track, off the track's course or leapt in waits, it is at most wary_confidence_max
    wary_confidence_max: float = 0.7
    steady_watch_s: float = 40.0
    steady_unwatched_s: float = 300.0
    # ...unless it was seen coming (observe.seen_coming): the fixes before it lie on a
    # straight walk or drive deeper at 0.5 m/s or more, within steady_burst_spread_m of it
    # (a receiver that is not struggling), and its first fix is no jump off that line
    steady_seen_coming: bool = True
    steady_leap_mps: float = 2.5
    steady_leap_s: float = 600.0
    steady_progress_m: float = 20.0
    steady_progress_s: float = 90.0
    steady_burst_min_fixes: int = 3
    steady_burst_min_span_s: float = 120.0
    steady_burst_max_m: float = 100.0
    steady_drift_spreads: float = 2.5
    # Outliers: a fix that would put the tag in a zone, reached faster than both this floor
    # and factor x the track's recent speed (+2 m/s), waits for the next fix; if the next
    # fix is back where the tag could have been all along, it is an implausible_fix
    jump_speed_floor_mps: float = 4.0
    jump_speed_factor: float = 2.5
    # Curfew: absence becomes a breach after this grace unless it is unambiguous (far out)
    curfew_grace_s: float = 300.0
    curfew_far_m: float = 200.0
    # ...and, short of far, by how far out the absence is on average (weighted, correlated
    # error allowed for): at least curfew_sure_m for confidence >= 0.9, curfew_min_away_m to
    # open after the grace (at most curfew_unsure_confidence_max); shallower, only after
    # curfew_shallow_s and as possible. Around a home 30-55 m across, indoor GPS drifts
    # 10-40 m out for minutes (issue 15: monitors phoned people at home at 2 a.m.)
    curfew_sure_m: float = 60.0
    curfew_min_away_m: float = 40.0
    curfew_unsure_confidence_max: float = 0.85
    curfew_shallow_s: float = 900.0
    # ...where "out" also means beyond curfew_away_sigmas x the fixes' own sigma (x 1.5
    # for confident): a mean 40 m out from fixes claiming 30 m is drift, not an absence
    curfew_away_sigmas: float = 2.5
    # Victim phone: its position grows uncertain at this speed while it is silent (phones
    # running OwnTracks in significant-change mode are silent mostly when still), and past
    # this age the engine says the device is stale instead of pretending to know
    victim_drift_mps: float = 0.25
    victim_stale_s: float = 900.0

    # --- device health ------------------------------------------------------------------
    # A tag's reporting interval until its own fixes say otherwise (smoothed over gaps)
    report_interval_s: float = 60.0
    interval_smoothing: float = 0.2
    # tag_silent: nothing has arrived for max(silent_factor x interval, silent_min_s).
    # Five missed reports is past any radio hiccup; 5 min is what schemes promise to act on
    silent_factor: float = 5.0
    silent_min_s: float = 300.0
    # ...escalated to high when the last fix was within this of an exclusion zone (or its
    # warn ring) or a curfew is on, critical when it was inside an exclusion zone
    silent_near_m: float = 500.0
    # Replay's clock is the latest event time seen; a jump further than this ahead needs a
    # second device to confirm it (one tag with a wild clock must not silence the fleet)
    clock_max_jump_s: float = 3600.0
    # Tamper closes at the last restore once no new opening follows within this
    tamper_settle_s: float = 60.0
    # no_location: records keep coming but none is a fix this accurate, for this long
    no_location_acc_m: float = 250.0
    no_location_after_s: float = 1800.0
    # clock_fault (live, on wall time): a tag whose records all arrive more than
    # clock_fault_s after their event time (or all more than clock_fault_ahead_s before it)
    # over clock_fault_window_s of arrival time, at least clock_fault_min_records of them.
    # One fresh record in a window clears it (a store-and-forward backlog is old, the
    # records sent after it are not). 0 turns it off (engine/core/health/clockfault.py)
    clock_fault_s: float = 900.0
    clock_fault_ahead_s: float = 120.0
    clock_fault_window_s: float = 1800.0
    clock_fault_min_records: int = 5
    # Battery thresholds (percent) with hysteresis: open at or below, close at or above
    battery_low_pct: int = 20
    battery_low_clear_pct: int = 30
    battery_critical_pct: int = 10
    battery_critical_clear_pct: int = 20
    # power_off at or below this level is a flat battery, not tamper
    battery_flat_pct: int = 5
    # Drain trend for the predicted empty time: a line through this much recent history
    battery_trend_s: float = 7200.0
    # Adaptive reporting: while a tag is in an approach ring or breaching the engine asks it
    # (tagwatch/v1/tags/{tag}/cmd) to report every report_fast_s, then back to
    # report_interval_s once every such episode has closed
    report_fast_s: float = 15.0
    # ...and while it is heading for an exclusion zone in force: moving at least
    # ahead_min_speed_mps since its previous fix, its straight-on track for the next
    # ahead_s seconds at that speed passes within ahead_margin_m (and two sigma) of the
    # zone. At report_interval_s a car crosses a zone between two fixes, where only the
    # straight line between them says it went in; at report_fast_s fixes land inside
    # (decisions.md, "A crossing seen both ways"). A finding holds ahead_s after its fix,
    # and while it holds the tag's fixes count as they are (15 s steps of a walker are
    # shorter than the fixes' accuracy): a walker seen heading in (1 m/s beyond accuracy
    # over a minute) is watched as it enters, not decided on a fix a minute later that
    # may be a burst begun in the gap (observe.entry_wait). ahead_s 0: off
    ahead_s: float = 90.0
    ahead_min_speed_mps: float = 1.0
    ahead_margin_m: float = 50.0
    # ...and while it is within watch_near_m of an exclusion zone in force: a walker
    # (1.5 m/s) goes 90 m between two fixes at 60 s, so from nearer a step into the zone
    # falls between them, where it looks like a multipath burst and waits as one; at 15 s
    # it is seen walking. Costs a tag that lives beside a zone 4x the fixes while it is
    # there (health.md, "Reporting rate"). 0: off
    watch_near_m: float = 100.0

    # --- alerts -----------------------------------------------------------------------
    alert_topic_prefix: str = topics.ALERTS

    # --- durability (live engine) ---------------------------------------------------------
    # The broker keeps the engine's MQTT session (subscriptions, queued messages) this long
    # while it is disconnected: a week covers a long outage and a weekend without staff
    session_expiry_s: int = 604_800
    # MQTT v5 Receive Maximum: QoS 1 messages the broker may send before the engine has
    # committed and acknowledged them; bounds memory when the store is stuck
    receive_max: int = 2000
    # Tags' events also come on a second broker session, a priority lane processed first
    # (engine/mqtt/lanes.py): a strap cut goes ahead of a backlog of fixes in the broker
    urgent_lane: bool = True
    # ... and the fixes of at most this many watched tags (in an approach ring or breaching,
    # asked for fast reports, of a subject with no other tag and no protected device), so
    # the fix that may open a critical breach goes ahead of a backlog too (0: events only)
    urgent_watch_max: int = 2000
    # The retained status says the engine lags (degraded, by how much) while the input it
    # processes was received more than this long before; online again once caught up
    lag_status_s: float = 10.0
    # One engine per store (engine/store/sql/enginelock.py): a start that finds another
    # engine serving the store waits this long for it to go, then refuses
    engine_lock_wait_s: float = 10.0
    # Pipeline state is snapshotted this often; a restart replays the evidence after it.
    # 30 s: replaying 30 s of a 1000 records/s fleet takes ~8 s on 2 cores (make bench),
    # a snapshot of 2000 subjects ~0.5 s
    snapshot_every_s: float = 30.0
    # Alert records the broker has not confirmed are republished this often
    outbox_retry_s: float = 5.0
    # Evidence ledger rows (fixes, events, steps, alert records) are kept this many days
    # (0: forever); court cases come months after the events
    evidence_retention_days: float = 730.0
    # A batch step's fixes and events go in one ledger row ("step", hashed over their
    # Merkle root so one record is still proven alone) or a row each ("record", the
    # layout before; its (device, seq) index grows dearer with the ledger: a gateway
    # fleet's commit dirties an index page per device). A device's places in step rows
    # are filed every ledger_index_s seconds or ledger_index_max records
    # (engine/store/records/index.py); readers scan what is not filed yet (a 100,000-record
    # tail: 12-22 ms a device). A flush rides in a commit: at 5,000 fixes/s, filing every
    # 5 s gave breach p99 17 ms, every 300 s (100,000 records) 43. A fleet fixing once a
    # minute files one place per device each 5 s, an index row a fix (180 bytes a fix, as
    # a row per record; 142 filed every 300 s): raise ledger_index_s for such a fleet
    ledger_rows: str = "step"
    ledger_index_s: float = 5.0
    ledger_index_max: int = 100_000
    # The host's clock stepping ahead (more than 5 s off what the monotonic clock says) is
    # followed only once it has held this long: a step that comes back sooner (a bad NTP
    # source for one poll) was wrong, and following it would put the engine clock ahead of
    # every record (refused as too old) until wall time caught up (docs/durability.md)
    clock_step_confirm_s: float = 60.0

    # --- console (serve --http; docs/console.md) -------------------------------------------
    # A console login lasts this long (12 h: a shift and its handover), then log in again
    session_max_age_s: float = 43_200.0
    # Failed logins allowed per user name and per client address within the window; past
    # that the next attempt is refused (429) unchecked until the oldest failure ages out
    login_failures_per_user: int = 5
    login_failures_per_address: int = 20
    login_failure_window_s: float = 300.0

    def __post_init__(self) -> None:
        for key in ("batch_max", "live_batch_max", "live_chunk", "queue_max"):
            if getattr(self, key) < 1:  # a batch of nothing would never move
                raise ConfigError(f"setting '{key}' must be >= 1, got {getattr(self, key)!r}")
        if self.ledger_rows not in ("step", "record"):
            raise ConfigError(
                f"setting 'ledger_rows' must be step or record, got {self.ledger_rows!r}"
            )
        if self.live_clock not in LIVE_CLOCKS:
            raise ConfigError(
                f"setting 'live_clock' must be one of {', '.join(LIVE_CLOCKS)}, "
                f"got {self.live_clock!r}"
            )

    @classmethod
    def from_toml(cls, path: str | Path) -> Settings:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"settings file {p} does not exist") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"settings file {p}: {e}") from None
        if isinstance(data.get("engine"), dict):
            data = data["engine"]
        return cls.from_mapping(data, origin=str(p))

    @classmethod
    def from_mapping(cls, data: dict[str, Any], origin: str = "settings") -> Settings:
        known = {f.name: f for f in fields(cls)}
        base = cls()
        changes: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                raise ConfigError(f"{origin}: unknown setting '{key}'")
            default = getattr(base, key)
            if isinstance(default, bool) or not isinstance(default, (int, float, str)):
                ok = isinstance(value, type(default))
            elif isinstance(default, float):
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            else:
                ok = isinstance(value, type(default)) and not isinstance(value, bool)
            if not ok:
                raise ConfigError(
                    f"{origin}: setting '{key}' must be {type(default).__name__}, got {value!r}"
                )
            if isinstance(default, (int, float)) and not isinstance(default, bool) and value < 0:
                raise ConfigError(f"{origin}: setting '{key}' must be >= 0, got {value!r}")
            changes[key] = float(value) if isinstance(default, float) else value
        return replace(base, **changes)
