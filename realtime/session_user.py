"""The WebSocket stack's cookies, session and user: what Channels' ``AuthMiddlewareStack``
puts in the scope, in one step per connection.

Channels' stack is three middlewares, each copying the scope; its session middleware wraps
``send`` to save a modified session on ``http.response.start``, a message a WebSocket never
sends, so for a WebSocket the wrapper only costs a look at the session on every frame sent.
And its ``AuthMiddleware`` loads the session's user through ``database_sync_to_async`` on
every connection, also when there is no session to read: a hop to the one thread that runs
sync database code (and ``close_old_connections()``) per connect, which a reconnect storm of
token or anonymous clients queues up on. Without a session key the user is ``AnonymousUser``,
exactly what Channels would find, so it is set at once.

:func:`SessionUserMiddlewareStack` does the same for a WebSocket scope with one scope copy and
the server's own ``send``; any other scope (or one that has a session already) goes through
Channels' stack."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from channels.auth import AuthMiddleware, UserLazyObject
from channels.sessions import CookieMiddleware, SessionMiddleware
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http import parse_cookie
from django.utils.functional import LazyObject


class SessionUserMiddleware(AuthMiddleware):  # type: ignore[misc]  # Channels is untyped
    """``scope["user"]``: the session's user (as Channels' ``AuthMiddleware``), and
    ``AnonymousUser`` without a query when the connection has no session key."""

    async def resolve_scope(self, scope: dict[str, Any]) -> None:
        session = scope.get("session")
        if session is not None and session.session_key is None:
            scope["user"]._wrapped = AnonymousUser()
            return
        await super().resolve_scope(scope)


class WebSocketSessionMiddleware:
    """Cookies (``scope["cookies"]``), the session (``scope["session"]``, from the
    ``SESSION_COOKIE_NAME`` cookie) and the user (``scope["user"]``, see
    :class:`SessionUserMiddleware`) of a WebSocket, then ``inner``."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self._auth = SessionUserMiddleware(inner)
        self._stack = CookieMiddleware(SessionMiddleware(self._auth))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket" or "session" in scope or "user" in scope:
            await self._stack(scope, receive, send)
            return
        cookies: dict[str, str] = {}
        for name, value in scope.get("headers", ()):
            if name == b"cookie":  # the first one, as Channels' CookieMiddleware reads it
                cookies = parse_cookie(value.decode("latin1"))
                break
        session: Any = LazyObject()
        store = import_module(settings.SESSION_ENGINE).SessionStore
        session._wrapped = store(cookies.get(settings.SESSION_COOKIE_NAME))
        scope = {**scope, "cookies": cookies, "session": session, "user": UserLazyObject()}
        await self._auth.resolve_scope(scope)
        await self.inner(scope, receive, send)


def SessionUserMiddlewareStack(inner: Any) -> Any:  # named as Channels' stack
    """Cookies, session and user for ``inner``, as ``AuthMiddlewareStack(inner)``."""
    return WebSocketSessionMiddleware(inner)
