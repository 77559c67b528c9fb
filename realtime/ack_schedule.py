"""When a message sent with ``ack=True`` is due again on one connection: its schedule
(:func:`schedule`, see :mod:`realtime.acks`) and the connection's queue of messages in the
order they fall due (:class:`DueQueue`)."""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass

from realtime.conf import Config
from realtime.stores.base import Pending


@dataclass
class PendingAck:
    """A message waiting for its ACK on this connection: ``entry`` as kept in the store, the
    resends made (or skipped while no connection was there), and when the next is ``due``."""

    entry: Pending
    attempts: int
    due: float

    @property
    def topic(self) -> str:
        return self.entry.topic


def schedule(entry: Pending, now: float, config: Config) -> PendingAck:
    """Where ``entry`` stands in its schedule at ``now``: the resends whose time has passed
    count as made, the next is due at its time (the deadline after the last)."""
    attempts = 0
    while attempts < config.ack_max_retries and now >= _resend_time(entry, attempts + 1, config):
        attempts += 1
    due = (
        entry.deadline
        if attempts >= config.ack_max_retries
        else _resend_time(entry, attempts + 1, config)
    )
    return PendingAck(entry, attempts, due)


def _resend_time(entry: Pending, k: int, config: Config) -> float:
    return float(entry.sent_at + config.ack_timeout * (2**k - 1))


class DueQueue:
    """The :class:`PendingAck` of one connection in the order they fall due: O(1) to add one
    and, per resend pass, O(1) per message due (never a scan of everything pending).

    Messages tracked as they are sent fall due in the order they were sent at each attempt
    count (same timeout, same doubling), so each attempt count has a FIFO queue; one that
    would not be in order there (adopted from another connection, or a clock step back) goes
    in a heap. A queued item whose message left ``pending`` (acknowledged) or was queued again
    is dropped when it reaches the head."""

    __slots__ = ("_heap", "_levels", "_order", "_pending")

    def __init__(self, pending: dict[str, PendingAck]) -> None:
        self._pending = pending
        self._levels: dict[int, deque[tuple[float, PendingAck]]] = {}
        self._heap: list[tuple[float, int, PendingAck]] = []
        self._order = 0

    def push(self, waiting: PendingAck) -> None:
        """Queue ``waiting`` at its ``due`` (after changing it, push it again)."""
        level = self._levels.get(waiting.attempts)
        if level is None:
            level = self._levels[waiting.attempts] = deque()
        if not level or level[-1][0] <= waiting.due:
            level.append((waiting.due, waiting))
        else:
            self._order += 1
            heapq.heappush(self._heap, (waiting.due, self._order, waiting))

    def _live(self, due: float, waiting: PendingAck) -> bool:
        return self._pending.get(waiting.entry.message_id) is waiting and waiting.due == due

    def _heads(self) -> None:
        for level in self._levels.values():
            while level and not self._live(*level[0]):
                level.popleft()
        while self._heap and not self._live(self._heap[0][0], self._heap[0][2]):
            heapq.heappop(self._heap)

    def pop_due(self, now: float) -> list[PendingAck]:
        """Take the live items due at ``now``, earliest first per queue."""
        found = []
        self._heads()
        for level in self._levels.values():
            while level and level[0][0] <= now:
                due, waiting = level.popleft()
                if self._live(due, waiting):
                    found.append(waiting)
        while self._heap and self._heap[0][0] <= now:
            due, _, waiting = heapq.heappop(self._heap)
            if self._live(due, waiting):
                found.append(waiting)
        return found

    def next_due(self) -> float | None:
        """When the earliest live item falls due; None when none is left."""
        self._heads()
        heads = [level[0][0] for level in self._levels.values() if level]
        if self._heap:
            heads.append(self._heap[0][0])
        return min(heads, default=None)

    def clear(self) -> None:
        self._levels.clear()
        self._heap.clear()
