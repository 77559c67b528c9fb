"""One timer per event loop for the deadlines of every connection it serves (heartbeat pings
and pong checks, the auth deadline, token expiry): a connection's timer is a small
:class:`Deadline` in the loop's :class:`Sweep`, not an event-loop timer of its own.

Deadlines of the same delay (every connection's ping is ``HEARTBEAT_INTERVAL`` after the last)
fall due in the order they were set, so each delay has a FIFO queue: setting one costs O(1),
and the loop's single timer waits for the earliest head. Other deadlines (a token's expiry)
go in a heap. A deadline may run up to 1% of its delay late (at most :data:`MAX_SLACK`
seconds), never early, so that the deadlines falling due in that span run in one wake-up of
the loop: with 10,000 idle connections the loop wakes a few times per second, not 800.
Cancelling is O(1): the deadline stays queued, inert, until its time."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("realtime.connection")

#: The most a deadline runs late so that it shares a wake-up with others (seconds).
MAX_SLACK = 0.25
# A queue per fixed delay only for the delays seen often; past this many, deadlines of new
# delays go in the heap.
MAX_QUEUES = 16


class Deadline:
    """One deadline: ``callback(*args)`` runs once at ``due`` (loop time) unless cancelled."""

    __slots__ = ("args", "callback", "due")

    def __init__(self, due: float, callback: Callable[..., None], args: tuple[Any, ...]) -> None:
        self.due = due
        self.callback: Callable[..., None] | None = callback
        self.args = args

    def cancel(self) -> None:
        self.callback = None
        self.args = ()

    def _run(self) -> None:
        callback, args = self.callback, self.args
        if callback is not None:
            self.cancel()
            callback(*args)


def _slack(delay: float) -> float:
    return min(MAX_SLACK, delay / 100.0)


class Sweep:
    """The deadlines of one event loop, run by one loop timer (:func:`sweep_of`)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queues: dict[float, deque[Deadline]] = {}
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._wake_at = float("inf")

    def __len__(self) -> int:
        """How many deadlines are queued (cancelled ones included until their time)."""
        return sum(len(q) for q in self._queues.values()) + len(self._heap)

    def call_later(self, delay: float, callback: Callable[..., None], *args: Any) -> Deadline:
        """Run ``callback(*args)`` in ``delay`` seconds (at once if not positive), or up to 1%
        of ``delay`` later; cancel it with the returned deadline's ``cancel()``."""
        delay = max(0.0, delay)
        deadline = Deadline(self._loop.time() + delay, callback, args)
        queue = self._queues.get(delay)
        if queue is None and len(self._queues) < MAX_QUEUES:
            queue = self._queues[delay] = deque()
        if queue is not None:
            queue.append(deadline)
        else:
            heapq.heappush(self._heap, (deadline.due, next(self._order), deadline))
        self._arm(deadline.due + _slack(delay))
        return deadline

    def _arm(self, at: float) -> None:
        if at >= self._wake_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._wake_at = at
        self._timer = self._loop.call_at(at, self._wake)

    def _wake(self) -> None:
        self._timer, self._wake_at = None, float("inf")
        now = self._loop.time()
        due: list[Deadline] = []
        for delay, queue in list(self._queues.items()):
            while queue and queue[0].due <= now:
                due.append(queue.popleft())
            if not queue:
                del self._queues[delay]
        while self._heap and self._heap[0][0] <= now:
            due.append(heapq.heappop(self._heap)[2])
        for deadline in due:
            try:
                deadline._run()
            except Exception:  # one connection's bug must not stop the others' deadlines
                logger.exception("A connection's timer failed")
        nexts = [q[0].due + _slack(d) for d, q in self._queues.items()]
        if self._heap:
            nexts.append(self._heap[0][0])
        if nexts:
            self._arm(max(min(nexts), now))


_sweeps: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Sweep] = weakref.WeakKeyDictionary()


def sweep_of(loop: asyncio.AbstractEventLoop) -> Sweep:
    """The sweep of ``loop``, made on first use."""
    sweep = _sweeps.get(loop)
    if sweep is None:
        sweep = _sweeps[loop] = Sweep(loop)
    return sweep
