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


def _websocket_scope(*headers: tuple[bytes, bytes]) -> dict[str, Any]:
    return {"type": "websocket", "path": "/realtime/ws/", "headers": list(headers)}


async def _through(stack: Any, scope: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    seen: dict[str, Any] = {}

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.update(scope=scope, send=send)

    async def send(message: dict[str, Any]) -> None:
        pass

    await stack(inner)(scope, None, send)
    return seen["scope"], seen["send"] is send


async def test_a_websocket_gets_what_channels_auth_stack_gives_and_the_servers_own_send(
    settings, monkeypatch
):
    from channels.auth import AuthMiddlewareStack
    from django.contrib.sessions.backends.signed_cookies import SessionStore

    from realtime.session_user import SessionUserMiddlewareStack

    async def get_user(scope: dict[str, Any]) -> Any:
        return f"the user of {scope['session'].session_key}"

    monkeypatch.setattr(channels_auth, "get_user", get_user)

    settings.SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
    cookie = (b"cookie", f"a=1; {settings.SESSION_COOKIE_NAME}=the-session-key".encode())
    ours, same_send = await _through(SessionUserMiddlewareStack, _websocket_scope(cookie))
    assert same_send, "no wrapper: a WebSocket never sends what Channels' wrapper saves on"
    theirs, _ = await _through(AuthMiddlewareStack, _websocket_scope(cookie))
    assert (
        ours["cookies"]
        == theirs["cookies"]
        == {"a": "1", settings.SESSION_COOKIE_NAME: "the-session-key"}
    )
    assert isinstance(ours["session"]._wrapped, SessionStore)
    assert ours["session"].session_key == "the-session-key"
    assert ours["user"]._wrapped == theirs["user"]._wrapped == "the user of the-session-key"
    assert ours.keys() == theirs.keys()

    anonymous, _ = await _through(SessionUserMiddlewareStack, _websocket_scope())
    assert anonymous["cookies"] == {} and anonymous["session"].session_key is None
    assert isinstance(anonymous["user"]._wrapped, AnonymousUser)


async def test_an_http_scope_goes_through_channels_stack(settings):
    from realtime.session_user import SessionUserMiddlewareStack

    scope = {"type": "http", "path": "/", "headers": []}
    seen, same_send = await _through(SessionUserMiddlewareStack, scope)
    assert not same_send, "Channels' session wrapper saves the session on an HTTP response"
    assert seen["session"].session_key is None
