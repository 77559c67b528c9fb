"""Rate limits: a token bucket per connection, and per-scope buckets for the stateless HTTP
requests (long-poll, SSE, POST) that have no connection to hold one."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable

from realtime.conf import get_config
from realtime.exceptions import RateLimited


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; one token per inbound frame. Starts full.
    ``clock`` (seconds, monotonic) is :func:`time.monotonic` unless a test gives its own."""

    __slots__ = ("_clock", "burst", "rate", "stamp", "tokens")

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self._clock = clock
        self.stamp = clock()

    def take(self) -> bool:
        """Spend one token; False (and nothing spent) when the bucket is empty."""
        now = self._clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class ScopedBuckets:
    """One :class:`TokenBucket` per scope (a user, a session, an address), with the ``RATE``
    and ``BURST`` settings, for requests that hold no connection. At most ``limit`` scopes are
    kept: the least recently seen is forgotten first (and starts full when it comes back).
    Thread-safe."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._buckets: collections.OrderedDict[str, TokenBucket] = collections.OrderedDict()
        self._lock = threading.Lock()

    def take(self, scope: str) -> None:
        """Spend one token of ``scope``'s bucket. Raises :class:`RateLimited` when it is
        empty."""
        config = get_config()
        with self._lock:
            bucket = self._buckets.pop(scope, None) or TokenBucket(config.rate, config.burst)
            self._buckets[scope] = bucket
            while len(self._buckets) > self.limit:
                self._buckets.popitem(last=False)
            if not bucket.take():
                raise RateLimited("Too many requests; slow down.")
