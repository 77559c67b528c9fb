"""The WebSocket stack's user middleware (realtime/session_user.py): no thread hop to the
database for a connection without a session cookie; the session's user otherwise, as
Channels' ``AuthMiddlewareStack`` gives it."""

from __future__ import annotations

from typing import Any

import pytest
from channels import auth as channels_auth
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.signed_cookies import SessionStore

from realtime.session_user import SessionUserMiddleware


async def _resolved(session: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, list[Any]]:
    lookups: list[Any] = []

    async def get_user(scope: dict[str, Any]) -> Any:
        lookups.append(scope["session"])
        return "the session's user"

    monkeypatch.setattr(channels_auth, "get_user", get_user)
    middleware = SessionUserMiddleware(inner=None)
    scope: dict[str, Any] = {"session": session}
    middleware.populate_scope(scope)
    await middleware.resolve_scope(scope)
    return scope["user"]._wrapped, lookups


async def test_a_connection_without_a_session_cookie_is_anonymous_without_a_lookup(monkeypatch):
    user, lookups = await _resolved(SessionStore(session_key=None), monkeypatch)
    assert isinstance(user, AnonymousUser)
    assert lookups == []


async def test_a_session_cookie_is_looked_up_as_channels_does(monkeypatch):
    user, lookups = await _resolved(SessionStore(session_key="from-a-cookie"), monkeypatch)
    assert user == "the session's user"
    assert len(lookups) == 1
