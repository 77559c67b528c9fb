"""In-process topic log: the embedded default, for development and single-process sites."""

from __future__ import annotations

import threading
import time as _time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from realtime.log.base import Entry, NewEntry, Replay, new_epoch


@dataclass
class _Topic:
    epoch: str = field(default_factory=new_epoch)
    offset: int = 0
    entries: deque[Entry] = field(default_factory=deque)
    # message id -> offset of the entries still held: appends are idempotent by id
    ids: dict[str, int] = field(default_factory=dict)


class MemoryLog:
    """Per-topic deques bounded by count and age. A process restart starts new epochs, so
    cursors from before it get ``reset``. Appending a message id the topic's log still holds
    returns that entry's position and appends nothing. Thread-safe: publish() may run in any
    thread."""

    def __init__(self, size: int, ttl: float) -> None:
        self.size = size
        self.ttl = ttl
        self._topics: dict[str, _Topic] = {}
        self._lock = threading.Lock()

    def _topic(self, topic: str) -> _Topic:
        state = self._topics.get(topic)
        if state is None:
            state = self._topics[topic] = _Topic()
        return state

    def _trim(self, state: _Topic, now: float) -> None:
        horizon = now - self.ttl
        while state.entries and (len(state.entries) > self.size or state.entries[0].time < horizon):
            state.ids.pop(state.entries.popleft().message_id, None)

    async def append(
        self, topic: str, message_id: str, event: str, data: str, ack: bool, time: float
    ) -> tuple[str, int]:
        with self._lock:
            state = self._topic(topic)
            self._trim(state, time)
            known = state.ids.get(message_id)
            if known is not None:
                return state.epoch, known
            state.offset += 1
            state.entries.append(Entry(state.offset, message_id, event, data, ack, time))
            state.ids[message_id] = state.offset
            self._trim(state, time)
            return state.epoch, state.offset

    async def append_many(self, topic: str, messages: Sequence[NewEntry]) -> list[tuple[str, int]]:
        return [await self.append(topic, *message) for message in messages]

    async def read_after(self, topic: str, epoch: str | None, offset: int) -> Replay:
        with self._lock:
            state = self._topic(topic)
            self._trim(state, _time.time())
            if epoch is None:
                return Replay(state.epoch, state.offset, [])
            if epoch != state.epoch:
                return Replay(state.epoch, state.offset, [], "epoch_changed")
            if offset > state.offset:
                return Replay(state.epoch, state.offset, [], "cursor_ahead")
            if offset == state.offset:
                return Replay(state.epoch, offset, [])
            first = state.entries[0].offset if state.entries else state.offset + 1
            if first > offset + 1:
                return Replay(state.epoch, state.offset, [], "too_old")
            return Replay(state.epoch, offset, [e for e in state.entries if e.offset > offset])

    async def clear(self) -> None:
        with self._lock:
            self._topics.clear()
