"""The server's side of ``ack=True`` messages: which of them one connection still waits an ACK
for, when each is sent again, and when one is given up on.

A message is sent again ``ACK_TIMEOUT`` seconds after it was sent, then after twice that, four
times that, … (``ACK_TIMEOUT * 2**attempt``); after ``ACK_MAX_RETRIES`` resends without an ACK
it is reported undelivered (the ``message_undelivered`` signal and the
``realtime_messages_undelivered_total`` metric) and forgotten here. It stays in the topic log,
where a resume finds it.

Every operation costs O(1) per message and per acknowledged id, whatever is pending: the
messages wait in one queue per attempt number, and since every message of one queue was given
the same delay when it entered it, each queue is in due order. The next message to resend is
the head of one of those ``ACK_MAX_RETRIES + 1`` queues, and one timer per connection waits
for it."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from realtime.conf import Config
from realtime.metrics import ACKED, RETRIED, UNDELIVERED
from realtime.signals import message_undelivered

# What schedules the retry timer: ``loop.call_later`` (delay in seconds, callback).
CallLater = Callable[[float, Callable[[], None]], asyncio.TimerHandle]


@dataclass(slots=True)
class PendingAck:
    """A message waiting for its ACK: resent as ``frame`` when ``due`` (monotonic seconds)."""

    topic: str
    frame: str
    attempts: int
    due: float


class AckTracker:
    """The messages one connection waits an ACK for, and their retry timer.

    ``send`` writes a frame to the client again; ``connection`` is what the
    ``message_undelivered`` signal names (its ``sender`` is the connection's class); ``config``
    gives ``ACK_TIMEOUT`` and ``ACK_MAX_RETRIES``.
    ``call_later`` and ``clock`` are the event loop's and :func:`time.monotonic` unless a test
    gives its own. One timer runs at a time, set for the earliest due message."""

    def __init__(
        self,
        connection: Any,
        send: Callable[[str], None],
        config: Config,
        call_later: CallLater | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.connection = connection
        self.timeout = config.ack_timeout
        self.max_retries = config.ack_max_retries
        self.pending: dict[str, PendingAck] = {}
        # _queues[n]: the messages resent n times, in due order (see the module docstring).
        self._queues: list[OrderedDict[str, PendingAck]] = [
            OrderedDict() for _ in range(self.max_retries + 1)
        ]
        self._send = send
        self._call_later = call_later or asyncio.get_running_loop().call_later
        self._clock = clock
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self.pending)

    def track(self, topic: str, message_id: str, frame: str) -> None:
        """``frame`` (message ``message_id`` of ``topic``) was just sent and waits its ACK. A
        message already waiting keeps its schedule."""
        if message_id in self.pending:
            return
        pending = PendingAck(topic, frame, 0, self._clock() + self.timeout)
        self.pending[message_id] = self._queues[0][message_id] = pending
        if self._timer is None:
            self._set_timer(self.timeout)

    def waits_for(self, message_ids: Iterable[str]) -> bool:
        """Whether any of ``message_ids`` waits its ACK here."""
        return any(message_id in self.pending for message_id in message_ids)

    def acknowledge(self, message_ids: Iterable[str]) -> list[str]:
        """The client acknowledged ``message_ids``: those that were waiting, now forgotten
        (each counted in the ``realtime_messages_acked_total`` metric). Unknown and repeated
        ids are ignored."""
        acked = []
        for message_id in message_ids:
            pending = self.pending.pop(message_id, None)
            if pending is not None:
                del self._queues[pending.attempts][message_id]
                acked.append(message_id)
        ACKED.inc(len(acked))
        return acked

    def forget_topic(self, topic: str) -> None:
        """Stop waiting for the messages of ``topic`` (the client unsubscribed from it)."""
        for message_id in [m for m, p in self.pending.items() if p.topic == topic]:
            del self._queues[self.pending.pop(message_id).attempts][message_id]

    def clear(self) -> None:
        """Stop the timer and forget every message (the connection closed)."""
        self.stop()
        self.pending.clear()
        for queue in self._queues:
            queue.clear()

    def stop(self) -> None:
        """Stop the retry timer; :meth:`track` starts it again."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _set_timer(self, delay: float) -> None:
        self._timer = self._call_later(max(0.0, delay), self._retry)

    def _retry(self) -> None:
        self._timer = None
        now = self._clock()
        # The last queue first, so a message moved one queue up is not looked at twice.
        for attempts in range(self.max_retries, -1, -1):
            queue = self._queues[attempts]
            while queue:
                message_id, pending = next(iter(queue.items()))
                if pending.due > now:
                    break
                del queue[message_id]
                if attempts >= self.max_retries:
                    del self.pending[message_id]
                    UNDELIVERED.inc()
                    message_undelivered.send(
                        sender=type(self.connection),
                        connection=self.connection,
                        topic=pending.topic,
                        message_id=message_id,
                    )
                    continue
                RETRIED.inc()
                pending.attempts += 1
                pending.due = now + self.timeout * 2**pending.attempts
                self._queues[pending.attempts][message_id] = pending
                self._send(pending.frame)
        heads = [next(iter(queue.values())).due for queue in self._queues if queue]
        if heads:
            self._set_timer(min(heads) - now)
