"""What :mod:`realtime.connection` and :mod:`realtime.inbound` share: a connection's states,
what its transport gives it, and who its user is."""

from __future__ import annotations

import enum
from typing import Any, Protocol

from realtime.exceptions import CloseCode


class State(enum.Enum):
    """A connection's life: awaiting auth → open → closed."""

    AWAITING_AUTH = "awaiting_auth"
    OPEN = "open"
    CLOSED = "closed"


class Transport(Protocol):
    """What a transport gives its connection."""

    def send_text(self, text: str) -> None:
        """Queue one frame for the client; never blocks."""

    def close(self, code: CloseCode, reason: str = "") -> None:
        """Close the connection with ``code``; the transport then calls
        :meth:`Connection.closed`."""


def user_id(user: Any) -> Any:
    """The primary key of an authenticated ``user``; None for an anonymous one (or none)."""
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return user.pk
