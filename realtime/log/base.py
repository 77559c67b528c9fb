"""The topic log interface shared by the memory and Redis backends.

Every published message is appended to its topic's log and gets the next ``offset`` (1, 2, …)
in the topic's current ``epoch``. The epoch is a random string that changes whenever the log
loses continuity (the process or Redis restarted without its data, keys were flushed, or a topic
idled out), so a cursor from before the loss is recognised and answered with ``reset`` instead of
being silently trusted."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

ResetReason = Literal["epoch_changed", "too_old", "cursor_ahead"]

# What append_many takes per message: message id, event, data (JSON), ack, time.
NewEntry = tuple[str, str, str, bool, float]


def new_epoch() -> str:
    """A fresh epoch: 8 URL-safe characters."""
    return secrets.token_urlsafe(6)


@dataclass(frozen=True, slots=True)
class Entry:
    """One logged message. ``data`` is the payload already encoded as JSON."""

    offset: int
    message_id: str
    event: str
    data: str
    ack: bool
    time: float


@dataclass(frozen=True, slots=True)
class Replay:
    """The answer to :meth:`Log.read_after`.

    ``epoch``/``offset`` is the position the ``entries`` follow: the cursor when it was
    honoured, the topic's current position for a fresh subscribe, or, with ``reset`` set, the
    position the reader must jump to (the current one; entries are then empty)."""

    epoch: str
    offset: int
    entries: list[Entry]
    reset: ResetReason | None = None


class Log(Protocol):
    """A bounded per-topic history. Implementations are safe to call from any event loop."""

    async def append(
        self, topic: str, message_id: str, event: str, data: str, ack: bool, time: float
    ) -> tuple[str, int]:
        """Append one message; return its ``(epoch, offset)``.

        Idempotent by ``message_id``: while the topic's log still holds an entry with that id
        (same epoch, not yet trimmed by ``HISTORY_SIZE`` or ``HISTORY_TTL``), appending it
        again returns that entry's position and changes nothing (the first append's event
        and data stay). So a publish whose outcome was unknown can be retried safely."""
        ...

    async def append_many(self, topic: str, messages: Sequence[NewEntry]) -> list[tuple[str, int]]:
        """Append several messages to one topic in order, in one operation (one round trip
        to Redis): the same as :meth:`append` for each in turn, idempotent by message id
        alike; return each one's ``(epoch, offset)``. The outbox relay moves its backlog
        with it."""
        ...

    async def read_after(self, topic: str, epoch: str | None, offset: int) -> Replay:
        """Entries after ``offset`` in ``epoch``, oldest first.

        With ``epoch=None`` return no entries and the current position (a fresh subscribe).
        If the epoch differs (``epoch_changed``), the log no longer holds the entry right
        after ``offset`` (trimmed by count or age: ``too_old``), or ``offset`` is past the
        epoch's last offset (``cursor_ahead``), return no entries and that ``reset`` reason."""
        ...

    async def clear(self) -> None:
        """Forget every topic (tests, and the operator's 'flush' command)."""
        ...
