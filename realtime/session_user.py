"""Channels' ``AuthMiddlewareStack`` without its thread hop for connections that bring no
session cookie.

Channels' ``AuthMiddleware`` loads the session's user through ``database_sync_to_async`` on
every connection, also when there is no session to read: a hop to the one thread that runs
sync database code (and ``close_old_connections()``) per connect, which a reconnect storm of
token or anonymous clients queues up on. Without a session key the user is
``AnonymousUser``, exactly what Channels would find, so it is set at once."""

from __future__ import annotations

from typing import Any

from channels.auth import AuthMiddleware
from channels.sessions import CookieMiddleware, SessionMiddleware
from django.contrib.auth.models import AnonymousUser


class SessionUserMiddleware(AuthMiddleware):  # type: ignore[misc]  # Channels is untyped
    """``scope["user"]``: the session's user (as Channels' ``AuthMiddleware``), and
    ``AnonymousUser`` without a query when the connection has no session key."""

    async def resolve_scope(self, scope: dict[str, Any]) -> None:
        session = scope.get("session")
        if session is not None and session.session_key is None:
            scope["user"]._wrapped = AnonymousUser()
            return
        await super().resolve_scope(scope)


def SessionUserMiddlewareStack(inner: Any) -> Any:  # named as Channels' stack
    """Cookies, session and user for ``inner``, as ``AuthMiddlewareStack(inner)``."""
    return CookieMiddleware(SessionMiddleware(SessionUserMiddleware(inner)))
