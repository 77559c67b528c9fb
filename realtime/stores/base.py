"""The small shared-state stores, one interface each: the client-message dedup store, the
EventSource tickets and the announced presence. :mod:`realtime.stores.memory` keeps them in this
process, :mod:`realtime.stores.redis` in Redis for every node; :mod:`realtime.backends` chooses."""

from __future__ import annotations

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
