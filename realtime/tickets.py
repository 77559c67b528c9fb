"""Single-use tickets for a bare ``EventSource``, which can send neither an ``Authorization``
header nor a body: ``POST realtime/ticket/`` (authenticated) returns one, valid
``TICKET_TTL`` seconds, and ``GET realtime/sse/?ticket=…`` consumes it. Kept in the store
:func:`realtime.backends.get_tickets` chooses (memory, or Redis for every node)."""

from __future__ import annotations

import secrets

from realtime.backends import get_tickets


async def issue(user_pk: str) -> str:
    """A fresh ticket for the user with primary key ``user_pk``."""
    ticket = secrets.token_urlsafe(24)
    await get_tickets().put(ticket, user_pk)
    return ticket


async def redeem(ticket: str) -> str | None:
    """The user pk of a valid ticket, which is used up; ``None`` if unknown or expired."""
    if len(ticket) > 64:
        return None
    return await get_tickets().take(ticket)
