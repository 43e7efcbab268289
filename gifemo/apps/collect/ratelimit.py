"""Client-side rate limit of the Giphy API: a token bucket and an exact sliding-hour cap.

Giphy's beta keys allow about 100 search calls per hour (DESIGN §9); going over earns HTTP 429
for the rest of the hour. :class:`RateLimiter` lets a call through only when both hold:

- *token bucket* (pacing): tokens refill at r = ``calls_per_hour`` / 3600 per second up to
  ``burst``; a call takes one token. In any interval of length T the bucket alone admits at
  most ``burst`` + r·T calls.
- *sliding window* (the promise): fewer than ``calls_per_hour`` calls in the last
  ``window_s`` (3600) seconds, i.e. in every half-open hour [s, s + 3600) there are at most
  ``calls_per_hour`` calls — whatever ``burst`` is, and across restarts: the collector
  persists the times of its calls in its state database and passes them as ``history``.

Time comes from ``clock`` (seconds, default :func:`time.time`, so persisted times stay
meaningful across processes) and waiting goes through ``sleep``; tests inject a fake clock
whose ``sleep`` advances it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable

WINDOW_S = 3600.0
_MIN_WAIT_S = 1e-3


class RateLimiter:
    """Token bucket (``burst``, refill ``calls_per_hour``/``window_s`` per s) + window cap."""

    def __init__(
        self,
        calls_per_hour: int,
        *,
        burst: int = 10,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        history: Iterable[float] = (),
    ) -> None:
        if int(calls_per_hour) != calls_per_hour or calls_per_hour < 1:
            raise ValueError(f"calls_per_hour must be a positive integer, got {calls_per_hour!r}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst!r}")
        self.limit = int(calls_per_hour)
        self.capacity = float(min(burst, self.limit))
        self.window_s = float(window_s)
        self.rate = self.limit / self.window_s  # tokens per second
        self.clock, self.sleep = clock, sleep
        now = clock()
        past = sorted(t for t in history if t > now - self.window_s)
        self._calls: deque[float] = deque(past)
        # replay the recorded calls through a bucket that was full an hour ago
        self._tokens, self._stamp = self.capacity, now - self.window_s
        for t in past:
            self._refill(t)
            self._tokens -= 1.0
        self._refill(now)

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now

    def delay(self) -> float:
        """Seconds until the next call may go (0.0: now)."""
        now = self.clock()
        self._refill(now)
        while self._calls and self._calls[0] <= now - self.window_s:
            self._calls.popleft()
        wait_bucket = 0.0 if self._tokens >= 1.0 else (1.0 - self._tokens) / self.rate
        wait_window = 0.0
        if len(self._calls) >= self.limit:
            wait_window = self._calls[len(self._calls) - self.limit] + self.window_s - now
        return max(wait_bucket, wait_window, 0.0)

    def acquire(self, wait: Callable[[float], None] | None = None) -> float:
        """Wait (through ``wait``, default ``sleep``) until a call may go, take it; its time."""
        while (d := self.delay()) > 0.0:
            (wait or self.sleep)(max(d, _MIN_WAIT_S))  # floor: float rounding near the edge
        now = self.clock()
        self._refill(now)
        self._tokens -= 1.0
        self._calls.append(now)
        return now
