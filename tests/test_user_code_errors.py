"""User code never takes a connection down (issue 9, item 3): a permission callable, a consumer
hook or a handler that raises answers that one request, logs its traceback once, and leaves
the connection and its other topics alone. Real daphne, real `websockets` and httpx clients.

The test app's ``crash.{name}`` topic has a permission that raises; its consumer's hooks raise
when the client's User-Agent says ``crash-<hook>`` (tests/testapp)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets

from tests.servers import Client, Daphne, SSEReader

# Nothing but the failures provoked on purpose may reach the node's log.
PROVOKED = ("hook of EchoConsumer raised", "crashing_permission", "Handler for event 'crash'")
pytestmark = [pytest.mark.e2e, pytest.mark.clean_server_log(allow=PROVOKED)]


@pytest.fixture(scope="module")
def server(database) -> Iterator[Daphne]:
    """One in-memory node (the embedded defaults: no Redis needed to show these)."""
    node = Daphne(database[0], {"RT_ACK_TIMEOUT": "30"})
    yield node
    node.stop()


@pytest.fixture
def alice(database) -> dict[str, Any]:
    return dict(database[1]["alice"])


def name(kind: str = "public") -> str:
    return f"{kind}.uce-{uuid.uuid4().hex[:8]}"


async def connect(server: Daphne, user_agent: str = "test") -> Client:
    ws = await websockets.connect(
        server.url,
        origin=server.origin,  # type: ignore[arg-type]
        subprotocols=["realtime.v1"],  # type: ignore[list-item]
        user_agent_header=user_agent,
        open_timeout=10,
    )
    client = Client(ws)
    client.welcome = await client.receive()
    assert client.welcome["type"] == "welcome", client.welcome
    return client


async def publish(server: Daphne, topic: str, data: Any, ack: bool = False) -> str:
    async with httpx.AsyncClient(base_url=server.http) as http:
        response = await http.post(
            "/test/publish/", json={"topic": topic, "event": "e", "data": data, "ack": ack}
        )
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


async def problems(server: Daphne, since: int, count: int = 1, timeout: float = 10) -> list[str]:
    """The problems (tracebacks, ERROR records) the node logged since ``since``, once there
    are at least ``count`` (the log is read by a thread: wait for it, at most ``timeout``)."""
    deadline = time.monotonic() + timeout
    # the lines come from the node's stderr reader thread, which offers nothing to await
    while len(found := server.problems(since)) < count and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    return found


def one_traceback(found: list[str], *texts: str) -> None:
    assert len(found) == 1, found
    assert found[0].count("Traceback (most recent call last)") == 1, found[0]
    for text in texts:
        assert text in found[0], found[0]


# ---- WebSocket ---------------------------------------------------------------------------


async def test_ws_raising_permission_is_forbidden_and_the_other_topics_stay(server):
    since = server.mark()
    client = await connect(server)
    good, bad = name(), name("crash")
    assert (await client.subscribe(good))["type"] == "subscribed"
    answer = await client.subscribe(bad)
    assert (answer["type"], answer["code"], answer["ref"]) == ("error", "forbidden", bad)
    message_id = await publish(server, good, {"n": 1})
    message = await client.receive()
    assert (message["type"], message["id"], message["data"]) == ("message", message_id, {"n": 1})
    # the connection still answers frames: the refused topic can be asked for again
    answer = await client.subscribe(bad)
    assert (answer["code"], answer["ref"]) == ("forbidden", bad)
    await client.close()
    found = await problems(server, since, 2)
    assert len(found) == 2, found  # one per failed subscribe
    for block in found:
        assert block.count("Traceback (most recent call last)") == 1, block
        assert f"permission bug for {bad.split('.', 1)[1]}" in block
        assert repr(bad) in block and "crashing_permission" in block


async def test_ws_raising_can_subscribe_hook_is_forbidden_and_the_connection_stays(server):
    since = server.mark()
    client = await connect(server, "crash-can_subscribe")
    topic = name()
    answer = await client.subscribe(topic)
    assert (answer["type"], answer["code"], answer["ref"]) == ("error", "forbidden", topic)
    await client.send({"type": "send", "id": uuid.uuid4().hex, "event": "echo", "data": 1})
    assert (await client.receive())["result"] == {"echo": 1}
    await client.close()
    one_traceback(await problems(server, since), "can_subscribe hook", repr(topic))


async def test_ws_raising_on_ack_keeps_the_connection(server):
    since = server.mark()
    client = await connect(server, "crash-on_ack")
    topic = name()
    assert (await client.subscribe(topic))["type"] == "subscribed"
    first = await publish(server, topic, 1, ack=True)
    assert (await client.receive())["id"] == first
    await client.send({"type": "ack", "ids": [first]})
    assert await client.receive() == {"type": "acked", "ids": [first]}
    second = await publish(server, topic, 2)
    assert (await client.receive())["id"] == second
    await client.close()
    one_traceback(await problems(server, since), "on_ack", "on_ack bug")


async def test_ws_raising_on_connect_keeps_the_connection(server):
    since = server.mark()
    client = await connect(server, "crash-on_connect")
    topic = name()
    assert (await client.subscribe(topic))["type"] == "subscribed"
    message_id = await publish(server, topic, 1)
    assert (await client.receive())["id"] == message_id
    await client.close()
    one_traceback(await problems(server, since), "on_connect", "on_connect bug")


async def test_ws_raising_on_disconnect_is_logged_once(server):
    since = server.mark()
    client = await connect(server, "crash-on_disconnect")
    assert (await client.subscribe(name()))["type"] == "subscribed"
    await client.close()
    one_traceback(await problems(server, since), "on_disconnect", "on_disconnect bug")


async def test_ws_raising_handler_answers_handler_error_and_keeps_the_connection(server):
    since = server.mark()
    client = await connect(server)
    topic = name()
    assert (await client.subscribe(topic))["type"] == "subscribed"
    await client.send({"type": "send", "id": uuid.uuid4().hex, "event": "crash", "data": None})
    answer = await client.receive()
    assert (answer["type"], answer["error"]["code"]) == ("ack", "handler_error")
    message_id = await publish(server, topic, 1)
    assert (await client.receive())["id"] == message_id
    await client.close()
    one_traceback(await problems(server, since), "'crash'", "ZeroDivisionError")


async def test_ws_raising_authenticate_is_closed_4011_once(server):
    since = server.mark()
    ws = await websockets.connect(
        server.url,
        origin=server.origin,  # type: ignore[arg-type]
        subprotocols=["realtime.v1"],  # type: ignore[list-item]
        user_agent_header="crash-authenticate",
        open_timeout=10,
    )
    assert await Client(ws).close_code() == 4011
    one_traceback(await problems(server, since), "authenticate", "authenticate bug")


# ---- SSE, long-poll, POST ----------------------------------------------------------------


@pytest.mark.parametrize("path", ["/realtime/sse/", "/realtime/poll/"])
async def test_http_raising_permission_is_403_with_ref(server, alice, path):
    since = server.mark()
    good, bad = name(), name("crash")
    async with httpx.AsyncClient(base_url=server.http, timeout=10) as http:
        response = await http.get(
            path,
            params=[("topic", good), ("topic", bad)],
            headers={"Authorization": f"Bearer {alice['token']}"},
        )
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "forbidden"
    assert response.json()["error"]["ref"] == bad
    one_traceback(await problems(server, since), repr(bad), "crashing_permission")


@pytest.mark.parametrize("path", ["/realtime/sse/", "/realtime/poll/"])
async def test_http_raising_permission_for_an_anonymous_caller_is_401_with_ref(server, path):
    # refused like a permission that returned false: no credentials, so 401 auth_required
    since = server.mark()
    bad = name("crash")
    async with httpx.AsyncClient(base_url=server.http, timeout=10) as http:
        response = await http.get(path, params=[("topic", name()), ("topic", bad)])
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "auth_required"
    assert response.json()["error"]["ref"] == bad
    one_traceback(await problems(server, since), repr(bad))


@pytest.mark.parametrize("hook", ["on_connect", "on_disconnect"])
async def test_poll_with_raising_notification_hooks_answers(server, alice, hook):
    since = server.mark()
    topic = name()
    async with httpx.AsyncClient(base_url=server.http, timeout=10) as http:
        response = await http.get(
            "/realtime/poll/",
            params={"topic": topic},
            headers={"Authorization": f"Bearer {alice['token']}", "User-Agent": f"crash-{hook}"},
        )
    assert response.status_code == 200, response.text
    assert response.json()["frames"][0]["type"] == "subscribed"
    one_traceback(await problems(server, since), hook, f"{hook} bug")


async def test_sse_with_raising_on_connect_streams(server, alice):
    since = server.mark()
    topic = name()
    headers = {"Authorization": f"Bearer {alice['token']}", "User-Agent": "crash-on_connect"}
    async with (
        httpx.AsyncClient(base_url=server.http, timeout=10) as http,
        http.stream("GET", "/realtime/sse/", params={"topic": topic}, headers=headers) as stream,
    ):
        assert stream.status_code == 200
    one_traceback(await problems(server, since), "on_connect", "on_connect bug")


async def test_sse_raising_on_ack_keeps_the_stream(server, alice):
    # the POSTed ack reaches the stream's connection through the channel layer, which runs
    # on_ack there
    since = server.mark()
    topic = name()
    headers = {"Authorization": f"Bearer {alice['token']}", "User-Agent": "crash-on_ack"}
    async with (
        httpx.AsyncClient(base_url=server.http, timeout=10) as http,
        http.stream("GET", "/realtime/sse/", params={"topic": topic}, headers=headers) as body,
    ):
        events = SSEReader(body)
        connection_id = (await events.frame())["connection_id"]
        assert (await events.frame())["type"] == "subscribed"
        first = await publish(server, topic, 1, ack=True)
        assert (await events.frame())["id"] == first
        response = await http.post(
            "/realtime/send/",
            json={"type": "ack", "ids": [first]},
            headers={**headers, "X-Realtime-Connection": connection_id},
        )
        assert response.status_code == 204
        one_traceback(await problems(server, since), "on_ack hook", repr(first))
        second = await publish(server, topic, 2)
        assert (await events.frame())["id"] == second
    assert len(server.problems(since)) == 1


@pytest.mark.parametrize("method,path", [("GET", "sse"), ("GET", "poll"), ("POST", "send")])
async def test_http_raising_authenticate_is_503_once(server, alice, method, path):
    since = server.mark()
    frame = {"type": "send", "id": uuid.uuid4().hex, "event": "echo", "data": 1}
    async with httpx.AsyncClient(base_url=server.http, timeout=10) as http:
        response = await http.request(
            method,
            f"/realtime/{path}/",
            params={"topic": name()} if method == "GET" else None,
            json=frame if method == "POST" else None,
            headers={
                "Authorization": f"Bearer {alice['token']}",
                "User-Agent": "crash-authenticate",
            },
        )
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "unavailable"
    assert response.headers["Retry-After"] == "1"
    one_traceback(await problems(server, since), "authenticate hook", "authenticate bug")


async def test_post_ack_with_raising_on_ack_is_204_once(server, alice):
    topic = name()
    bearer = {"Authorization": f"Bearer {alice['token']}"}
    async with httpx.AsyncClient(base_url=server.http, timeout=10) as http:
        # two messages alice owes an ACK for (sent to her long-poll)
        started = await http.get("/realtime/poll/", params={"topic": topic}, headers=bearer)
        ids = [await publish(server, topic, n, ack=True) for n in range(2)]
        params = {"topic": topic, "cursor": started.json()["cursor"]}
        polled = await http.get("/realtime/poll/", params=params, headers=bearer)
        assert [f["id"] for f in polled.json()["frames"]] == ids
        since = server.mark()
        response = await http.post(
            "/realtime/send/",
            json={"type": "ack", "ids": ids},
            headers={**bearer, "User-Agent": "crash-on_ack"},
        )
    assert response.status_code == 204, response.text
    found = await problems(server, since, 2)
    assert len(found) == 2, found  # one per acknowledged id
    assert all("on_ack bug" in block for block in found)


async def test_post_send_raising_handler_answers_handler_error(server, alice):
    since = server.mark()
    async with httpx.AsyncClient(base_url=server.http, timeout=10) as http:
        response = await http.post(
            "/realtime/send/",
            json={"type": "send", "id": uuid.uuid4().hex, "event": "crash"},
            headers={"Authorization": f"Bearer {alice['token']}"},
        )
    assert response.status_code == 200, response.text
    assert response.json()["error"]["code"] == "handler_error"
    one_traceback(await problems(server, since), "'crash'", "ZeroDivisionError")
