"""Single-use tickets for a bare ``EventSource``, which can send neither an ``Authorization``
header nor a body: ``POST realtime/ticket/`` (authenticated) returns one, valid
``TICKET_TTL`` seconds, and ``GET realtime/sse/?ticket=…`` consumes it."""

from __future__ import annotations

import secrets
import threading
import time

from realtime._redis import get_client
from realtime.conf import get_config

_memory: dict[str, tuple[float, str]] = {}
_lock = threading.Lock()


async def issue(user_pk: str) -> str:
    """A fresh ticket for the user with primary key ``user_pk``."""
    config = get_config()
    ticket = secrets.token_urlsafe(24)
    if config.redis_url:
        await get_client(config.redis_url).set(
            f"{config.key_prefix}:ticket:{ticket}", user_pk, px=int(config.ticket_ttl * 1000)
        )
    else:
        now = time.monotonic()
        with _lock:
            for key in [k for k, (expiry, _) in _memory.items() if expiry < now]:
                del _memory[key]
            _memory[ticket] = (now + config.ticket_ttl, user_pk)
    return ticket


async def redeem(ticket: str) -> str | None:
    """The user pk of a valid ticket, which is used up; ``None`` if unknown or expired."""
    config = get_config()
    if len(ticket) > 64:
        return None
    if config.redis_url:
        value = await get_client(config.redis_url).getdel(f"{config.key_prefix}:ticket:{ticket}")
        return value.decode() if isinstance(value, bytes) else value
    with _lock:
        found = _memory.pop(ticket, None)
    if found is None or found[0] < time.monotonic():
        return None
    return found[1]
