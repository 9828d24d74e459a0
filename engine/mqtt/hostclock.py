"""The live engine's clock: the host's wall time, never backwards, that a stepped host clock
can neither poison nor freeze (docs/durability.md, "The host's clock").

Every pipeline step runs on it and records it, so recovery replays the same times; it is
the serve loop's (engine/mqtt/serve.py), kept apart because it is about time, not MQTT."""

from __future__ import annotations

import logging
import time

log = logging.getLogger("tagwatch.serve")

# Wall time this far off what the monotonic clock says since the last reading is a step
CLOCK_STEP_S = 5.0


class HostClock:
    """Wall time read through the monotonic clock; `now` is its latest reading."""

    def __init__(self, confirm_s: float) -> None:
        self.confirm_s = confirm_s  # a step ahead is followed once it held this long
        self.now = 0.0  # the engine clock: wall time that never runs backwards
        self._mono: float | None = None  # time.monotonic() at the last reading
        self._step = 0.0  # wall time's known offset from the engine clock (< 0: stepped back)
        self._ahead: tuple[float, float] | None = None  # a step ahead not yet followed: (s, mono)
        self._base: tuple[float, float] | None = None  # (engine clock, monotonic) at start

    def read(self) -> float:
        """Wall time, never backwards (an NTP step back must not reopen decided gaps).
        Every pipeline step runs on it and records it, so recovery replays the same times.

        Between two readings the clock also runs on the monotonic clock, which no one can
        step. A step of the host's wall time more than CLOCK_STEP_S off what monotonic time
        says is logged loudly, and:
        - ahead: not followed until it has held for `clock_step_confirm_s`; meanwhile the
          engine clock runs on monotonic time. A step ahead that comes back sooner (a bad
          NTP source for one poll) never reaches the pipeline: followed, it would have put
          the engine clock ahead of every record until wall time caught up.
        - back (after a confirmed step ahead that was wrong, or a bad source): the engine
          clock keeps running on monotonic time until wall time catches up, so silence is
          still measured instead of freezing at the step."""
        wall, mono = time.time(), time.monotonic()
        if self._mono is None:
            self.now = max(self.now, wall)
            self._mono = mono
            self._base = (self.now, mono)
            return self.now
        run = self.now + max(0.0, mono - self._mono)  # the clock as monotonic time has it
        self._mono = mono
        off = wall - run
        confirm = self.confirm_s
        if off > CLOCK_STEP_S:  # wall time is ahead of where the engine clock runs
            held = self._ahead
            if held is None or abs(off - held[0]) > CLOCK_STEP_S:
                self._ahead = (off, mono)
                log.warning(
                    "host clock stepped ahead by %.1f s (wall %.3f, engine clock %.3f): not"
                    " followed until it holds for %.0f s; keep the host on NTP"
                    " (docs/durability.md)", off, wall, run, confirm,
                )  # fmt: skip
            elif mono - held[1] >= confirm:
                log.warning(
                    "host clock step ahead by %.1f s has held for %.0f s: following it", off,
                    mono - held[1],
                )  # fmt: skip
                self._ahead, self._step, self.now = None, 0.0, wall
                return self.now
            self.now = run
            return self.now
        if self._ahead is not None:
            log.warning(
                "host clock came back after %.1f s: its step ahead by %.1f s was not followed",
                mono - self._ahead[1], self._ahead[0],
            )  # fmt: skip
            self._ahead = None
        if abs(off - self._step) > CLOCK_STEP_S:
            log.warning(
                "host clock stepped back by %.1f s (wall %.3f, engine clock %.3f): the engine"
                " clock runs on monotonic time until wall time catches up; keep the host on"
                " NTP (docs/durability.md)", abs(off - self._step), wall, run,
            )  # fmt: skip
        self._step = off if off < -CLOCK_STEP_S else 0.0
        if wall >= self.now:
            self.now = wall
        elif self.now - wall > CLOCK_STEP_S:  # stepped back: keep running
            self.now = run
        # else jitter or a slewing NTP: hold until wall time is back (as ever)
        return self.now

    def retention(self) -> float:
        """What retention measures age on: the engine clock, but never ahead of the wall
        time this process started with plus the monotonic time since. A confirmed step
        ahead that was wrong must not make months of evidence look old."""
        if self._base is None:
            return self.now
        return min(self.now, self._base[0] + (time.monotonic() - self._base[1]))
