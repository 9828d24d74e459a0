"""Failed-login limits: at most N failures per key (a user name, a client address) within a
sliding window; past that, attempts are refused unchecked until the oldest failure ages
out. A success clears the user name's failures, never the address's (one known password
must not reset a guesser's budget against every other name).

Memory is bounded: at most `max_keys` keys are remembered (the oldest forgotten first),
so a guesser rotating names or addresses costs memory it cannot grow."""

from __future__ import annotations

import collections
import time


class FailureLimit:
    def __init__(self, max_failures: int, window_s: float, max_keys: int = 100_000) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_keys = max_keys
        self._failures: collections.OrderedDict[str, collections.deque[float]] = (
            collections.OrderedDict()
        )

    def _recent(self, key: str, now: float) -> collections.deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def retry_after(self, key: str, now: float | None = None) -> float:
        """0 when an attempt for `key` may be checked, else the seconds until it may."""
        now = time.monotonic() if now is None else now
        times = self._recent(key, now)
        if times is None or len(times) < self.max_failures:
            return 0.0
        return max(0.001, times[0] + self.window_s - now)

    def failed(self, key: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        times = self._recent(key, now)
        if times is None:
            times = self._failures[key] = collections.deque(maxlen=max(1, self.max_failures))
        times.append(now)
        self._failures.move_to_end(key)
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)

    def clear(self, key: str) -> None:
        self._failures.pop(key, None)
