"""Admission control: a server process takes at most ``ADMISSION_RATE`` new connections per
second (WebSocket handshakes, SSE streams, long-polls without a cursor), in bursts of as
many, and answers the others at once with "try again later" and a hint of when
(docs/protocol.md, "Admission"), instead of queueing them until they time out.

A reconnect storm (a node restarted, thousands of clients back within a second) then costs
the node one cheap refusal per client above the budget, and the clients come back spread over
the next seconds: the hint grows by one second for every ``ADMISSION_RATE`` connections
refused within the same second, and clients wait between the hint and twice the hint.

The budget is per process (an ASGI server runs one event loop per process), read on the
event loop only; ``0`` turns it off."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from realtime.conf import get_config

#: The longest hint given, in seconds.
MAX_RETRY_AFTER = 60


class Admission:
    """A token bucket of new connections (``rate`` a second, ``rate`` at most), and the
    refusals of the current second, which set the hint."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tokens: float | None = None  # full at the first call
        self._updated = 0.0
        self._second = 0
        self._refused = 0

    def admit(self, rate: float) -> int | None:
        """Take one connection: ``None`` when admitted, else the seconds after which the
        client should try again (at least 1, at most :data:`MAX_RETRY_AFTER`)."""
        if rate <= 0:
            return None
        now = self._clock()
        tokens = rate if self._tokens is None else self._tokens
        tokens = min(rate, tokens + (now - self._updated) * rate)
        self._updated = now
        if tokens >= 1:
            self._tokens = tokens - 1
            return None
        self._tokens = tokens
        second = math.floor(now)
        if second != self._second:
            self._second, self._refused = second, 0
        self._refused += 1
        # one more second of wait for every `rate` clients already sent away this second
        return min(MAX_RETRY_AFTER, 1 + int((self._refused - 1) // max(rate, 1)))


_admission = Admission()


def admit() -> int | None:
    """Take one new connection into this process's budget (``ADMISSION_RATE``): ``None``
    when it may proceed, else the ``Retry-After`` hint in seconds to refuse it with."""
    return _admission.admit(get_config().admission_rate)


def reset() -> None:
    """Start with a full budget (tests)."""
    global _admission
    _admission = Admission()
