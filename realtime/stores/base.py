"""The small shared-state stores, one interface each: the client-message dedup store, the
EventSource tickets, the announced presence and the pending ACKs. :mod:`realtime.stores.memory`
keeps them in this process, :mod:`realtime.stores.redis` in Redis for every node;
:mod:`realtime.backends` chooses."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal, Protocol

State = Literal["new", "pending", "done"]

# Dedup claims start with a NUL, which an encoded answer (a JSON object) never does.
CLAIM = "\x00claim:"


def claim(owner: str) -> str:
    """The stored value of ``owner``'s claim on a dedup key."""
    return CLAIM + owner


class Dedup(Protocol):
    """The client-message dedup store (:mod:`realtime.dedup`): claims and answers by key."""

    async def begin(self, key: str, owner: str) -> tuple[State, str | None]:
        """Claim ``key`` for ``owner`` for one lease. ``("new", None)``: claimed, run the
        handler, then :meth:`finish`. ``("pending", None)``: another attempt holds a live
        claim. ``("done", answer)``: the stored answer."""
        ...

    async def renew(self, key: str, owner: str) -> bool:
        """Extend ``owner``'s claim by one lease. False if the claim is no longer its own
        (expired, taken over, or answered): there is nothing left to renew."""
        ...

    async def finish(self, key: str, owner: str, answer: str) -> str:
        """Store ``answer`` for ``DEDUP_TTL`` in place of the claim, unless an answer is
        already stored; return the stored answer, which is the one to send."""
        ...


class Tickets(Protocol):
    """Single-use EventSource tickets (:mod:`realtime.tickets`), each valid ``TICKET_TTL``."""

    async def put(self, ticket: str, user_pk: str) -> None:
        """Keep ``ticket`` for the user with primary key ``user_pk``."""
        ...

    async def take(self, ticket: str) -> str | None:
        """The user pk of a live ``ticket``, which is removed; ``None`` if unknown or expired."""
        ...


class Presence(Protocol):
    """The users last announced on each presence topic (:mod:`realtime.roster`)."""

    async def swap(
        self, topic: str, node: str, now: dict[str, str], interval: float
    ) -> dict[str, str] | None:
        """Store ``now`` ({user_id: username}) as the announced set of ``topic`` and return
        the previous one, or ``None`` when another node announces this interval's changes
        (only one node per topic and ``interval`` gets the previous set)."""
        ...


@dataclass(frozen=True)
class Pending:
    """A message sent with ``ack=True`` that its user (or anonymous session) has not
    acknowledged yet: ``frame`` is what is sent again, ``sent_at`` (wall-clock seconds) when
    it was first sent, ``deadline`` when it is given up on (:mod:`realtime.acks`)."""

    message_id: str
    topic: str
    epoch: str
    offset: int
    frame: str
    sent_at: float
    deadline: float

    def encode(self) -> str:
        return json.dumps(
            [self.topic, self.epoch, self.offset, self.frame, self.sent_at, self.deadline]
        )

    @classmethod
    def decode(cls, message_id: str, text: str) -> Pending:
        topic, epoch, offset, frame, sent_at, deadline = json.loads(text)
        return cls(message_id, topic, epoch, int(offset), frame, sent_at, deadline)


class PendingAcks(Protocol):
    """The ``ack=True`` messages each scope (a user: ``u:<pk>``; an anonymous session:
    ``s:<key>``) still owes an ACK for, shared by every connection of that scope on every node
    (:mod:`realtime.acks`). An acknowledged id is remembered (``window`` seconds) so that a
    late :meth:`put` of it from another connection does not bring it back."""

    async def put(self, scope: str, entries: list[Pending]) -> None:
        """Keep ``entries``, except those already kept (their schedule stands) or
        acknowledged within ``window``."""
        ...

    async def pending(self, scope: str, ids: list[str]) -> set[str]:
        """Which of ``ids`` are kept for ``scope``."""
        ...

    async def acknowledge(self, scope: str, ids: list[str]) -> list[str]:
        """Forget ``ids`` as acknowledged; return those that were kept, each to exactly one
        caller cluster-wide (who runs ``on_ack`` for it)."""
        ...

    async def give_up(self, scope: str, ids: list[str]) -> list[str]:
        """Forget ``ids`` as undelivered; return those that were kept, each to exactly one
        caller cluster-wide (who reports it undelivered)."""
        ...

    async def of_topic(self, scope: str, topic: str) -> list[Pending]:
        """The entries of ``topic`` kept for ``scope`` (for a new subscription to send
        again)."""
        ...

    async def overdue(self, before: float, limit: int) -> list[tuple[str, Pending]]:
        """Up to ``limit`` (scope, entry) pairs whose deadline is before ``before``: those no
        connection gave up on (none was left to), for the sweeper."""
        ...
