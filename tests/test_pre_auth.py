"""A WebSocket client without Origin and without a token (docs/protocol.md, Authentication):
until it sends a good `auth` frame every other frame is answered `error` `auth_required` and
the connection stays open; after AUTH_TIMEOUT it is closed 4401; the rate limit still applies;
a bad token (first `auth` frame or subprotocol) is answered with `error` and then closed (issue
7, item 4). In-process with the communicator, and over a real daphne with `websockets`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import websockets
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model

import realtime
from realtime.testing import RealtimeCommunicator
from tests.asgi import application
from tests.servers import Client, Daphne

pytestmark = pytest.mark.django_db(transaction=True)

FRAMES_BEFORE_AUTH = [
    {"type": "subscribe", "topic": "public.x"},
    {"type": "subscribe", "topic": "public.x", "cursor": {"epoch": "e", "offset": 1}},
    {"type": "unsubscribe", "topic": "public.x"},
    {"type": "ack", "ids": ["m1"]},
    {"type": "send", "id": "s1", "event": "echo", "data": 1},
    {"type": "pong"},
]


@sync_to_async
def make_user(name: str) -> Any:
    return get_user_model().objects.create_user(name, password="pw")


async def closed_with(client: Any, code: int, timeout: float = 2) -> list[dict[str, Any]]:
    """The frames sent before the close, once the close with ``code`` arrived."""
    frames = []
    while True:
        output = await client.receive_output(timeout)
        if output["type"] == "websocket.close":
            assert output.get("code") == code, output
            return frames
        frames.append(json.loads(output["text"]))


async def unauthenticated() -> Any:
    client = RealtimeCommunicator(application, origin=None)
    connected, _ = await client.connect()
    assert connected
    return client


async def test_every_frame_but_auth_is_answered_auth_required_and_the_socket_stays_open():
    user = await make_user("pre-auth")
    client = await unauthenticated()
    for frame in FRAMES_BEFORE_AUTH:
        await client.send_frame(frame)
        answer = await client.receive_frame()
        assert (answer["type"], answer["code"]) == ("error", "auth_required"), frame
    welcome = await client.auth(realtime.make_token(user))
    assert (welcome["type"], welcome["user"]) == ("welcome", user.pk)
    await client.disconnect()


async def test_a_malformed_frame_before_auth_gets_its_own_error_code():
    client = await unauthenticated()
    for text, code in [
        ("nope", "invalid_json"),
        ('{"type":"subscribe"}', "invalid_frame"),
        ('{"type":"dance"}', "unknown_type"),
    ]:
        await client.send_to(text_data=text)
        assert (await client.receive_frame())["code"] == code
    await client.disconnect()


async def test_closed_4401_after_auth_timeout_even_while_sending(realtime_settings):
    realtime_settings(AUTH_TIMEOUT=0.3)
    client = await unauthenticated()
    await client.send_frame({"type": "pong"})
    frames = await closed_with(client, 4401)
    assert [f["code"] for f in frames] == ["auth_required"]


async def test_the_rate_limit_applies_before_auth(realtime_settings):
    realtime_settings(RATE=1.0, BURST=3)
    client = await unauthenticated()
    for _ in range(4):
        await client.send_frame({"type": "pong"})
    frames = await closed_with(client, 4429)
    assert [f["code"] for f in frames] == ["auth_required"] * 3


@pytest.mark.parametrize(
    ("kind", "code", "close"),
    [("garbage", "invalid_token", 4401), ("expired", "token_expired", 4419)],
)
@pytest.mark.parametrize("path", ["auth_frame", "subprotocol"])
async def test_a_bad_token_is_answered_with_error_then_closed(kind, code, close, path):
    user = await make_user(f"bad-{kind}-{path}")
    token = "not-a-token" if kind == "garbage" else realtime.make_token(user, expires_in=-1)
    if path == "auth_frame":
        client = await unauthenticated()
        await client.send_frame({"type": "auth", "token": token})
    else:
        client = RealtimeCommunicator(
            application, origin=None, subprotocols=["realtime.v1", f"realtime.token.{token}"]
        )
        connected, _ = await client.connect()
        assert connected
    frames = await closed_with(client, close)
    assert [(f["type"], f["code"]) for f in frames] == [("error", code)]


# ---- over a real daphne ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def node(database) -> Iterator[Daphne]:
    server = Daphne(database[0], {"RT_AUTH_TIMEOUT": "3"})
    yield server
    server.stop()


@pytest.mark.e2e
async def test_real_socket_without_origin_or_token_gets_auth_required_then_4401(node, database):
    client = await Client.connect(node, origin=False)
    await client.send({"type": "subscribe", "topic": "public.x"})
    answer = await client.receive()
    assert (answer["type"], answer["code"]) == ("error", "auth_required")
    await client.send({"type": "pong"})
    assert (await client.receive())["code"] == "auth_required"
    assert await client.close_code(timeout=10) == 4401


@pytest.mark.e2e
async def test_real_socket_authenticates_after_auth_required(node, database):
    client = await Client.connect(node, origin=False)
    await client.send({"type": "subscribe", "topic": "public.x"})
    assert (await client.receive())["code"] == "auth_required"
    await client.send({"type": "auth", "token": database[1]["alice"]["token"]})
    welcome = await client.receive()
    assert (welcome["type"], welcome["user"]) == ("welcome", database[1]["alice"]["pk"])
    assert (await client.subscribe("public.x"))["type"] == "subscribed"
    await client.close()


@pytest.mark.e2e
async def test_real_socket_with_a_bad_subprotocol_token_gets_error_then_4401(node):
    ws = await websockets.connect(
        node.url, subprotocols=["realtime.v1", "realtime.token.not-a-token"], open_timeout=10
    )
    client = Client(ws)
    frame = await client.receive()
    assert (frame["type"], frame["code"]) == ("error", "invalid_token")
    assert await client.close_code() == 4401
