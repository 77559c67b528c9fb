"""SSE, long-poll and client frames by POST, end to end: two real daphne nodes on one Redis,
httpx clients, no sticky routing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async

import realtime
from realtime.publishing import aget_cursors
from tests.pubsub import subscribed_on_redis
from tests.servers import Daphne, SSEReader

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def node_settings() -> dict[str, str]:
    return {"RT_ACK_TIMEOUT": "0.3", "RT_POLL_TIMEOUT": "1.0", "RT_SSE_KEEPALIVE": "0.5"}


def topic() -> str:
    return f"public.http-{uuid.uuid4().hex[:8]}"


async def publish(*args: Any, **kwargs: Any) -> str:
    return await sync_to_async(realtime.publish)(*args, **kwargs)


@contextlib.asynccontextmanager
async def stream(node: Daphne, params: Any, headers: Any = None) -> AsyncIterator[SSEReader]:
    async with (
        httpx.AsyncClient(base_url=node.http, timeout=10) as http,
        http.stream("GET", "/realtime/sse/", params=params, headers=headers or {}) as response,
    ):
        assert response.status_code == 200, await response.aread()
        yield SSEReader(response)


# ---- SSE -----------------------------------------------------------------------------------


async def test_sse_stream_headers_welcome_and_live_message(nodes, use_redis, alice):
    name = topic()
    async with stream(nodes[0], {"topic": name}, alice) as events:
        headers = events.response.headers
        assert headers["content-type"].startswith("text/event-stream")
        assert headers["cache-control"].startswith("no-cache")
        assert headers["x-accel-buffering"] == "no"
        first = await events.next()
        assert first == {"retry": "1000"}
        assert len(events.comments[0]) >= 2000, "padding comment first"
        welcome = await events.frame()
        assert (welcome["type"], welcome["_event"]) == ("welcome", "welcome")
        subscribed = await events.frame()
        assert subscribed["type"] == "subscribed"
        assert subscribed["_id"] == f"{name}~{subscribed['epoch']}~0"
        message_id = await publish(name, "hello", {"n": 1})
        message = await events.frame()
        assert (message["_event"], message["id"], message["data"]) == (
            "message",
            message_id,
            {"n": 1},
        )
        assert message["_id"] == f"{name}~{subscribed['epoch']}~1"


async def test_sse_keepalive_comments_flow_while_idle(nodes, use_redis, alice):
    async with stream(nodes[0], {"topic": topic()}, alice) as events:
        await events.frame()
        await events.frame()
        with pytest.raises(TimeoutError):
            await events.next(timeout=1.2)
        assert "keep-alive" in events.comments


async def test_sse_resume_with_last_event_id_on_the_other_node(nodes, use_redis, alice):
    name, other = topic(), topic()
    async with stream(nodes[0], {"topic": [name, other]}, alice) as events:
        await events.frame()  # welcome
        await events.frame()  # subscribed
        await events.frame()  # subscribed
        for n in range(2):
            await publish(name, "n", n)
        seen = [await events.frame() for _ in range(2)]
    for n in range(2, 5):
        await publish(name, "n", n)
    await publish(other, "o", "x")
    last_id = seen[-1]["_id"]
    async with stream(
        nodes[1], {"topic": [name, other]}, {**alice, "Last-Event-ID": last_id}
    ) as events:
        assert (await events.frame())["type"] == "welcome"
        frames = [await events.frame() for _ in range(6)]
    kinds = [(f["type"], f.get("topic"), f.get("offset")) for f in frames]
    assert kinds == [
        ("subscribed", name, 2),
        ("message", name, 3),
        ("message", name, 4),
        ("message", name, 5),
        ("subscribed", other, 0),
        ("message", other, 1),
    ]
    assert frames[0]["recovered"] is True


async def test_sse_stale_cursor_gets_reset(nodes, use_redis, alice):
    name = topic()
    await publish(name, "n", 1)
    async with stream(nodes[0], {"topic": name, "cursor": f"{name}~gone~1"}, alice) as events:
        await events.frame()
        reset = await events.frame()
        assert (reset["type"], reset["reason"]) == ("reset", "epoch_changed")
        assert reset["_id"] == f"{name}~{reset['epoch']}~0"
        subscribed = await events.frame()
        assert (subscribed["type"], subscribed["recovered"]) == ("subscribed", False)
        replayed = await events.frame()
        assert (replayed["type"], replayed["data"]) == ("message", 1)


async def test_sse_ack_posted_to_another_node_stops_redelivery(nodes, use_redis, alice):
    name = topic()
    async with stream(nodes[0], {"topic": name}, alice) as events:
        connection_id = (await events.frame())["connection_id"]
        await events.frame()
        message_id = await publish(name, "important", 1, ack=True)
        first = await events.frame()
        again = await events.frame(timeout=3)
        assert (first["id"], again["id"], again["offset"]) == (message_id, message_id, 1)
        async with httpx.AsyncClient(base_url=nodes[1].http) as http:
            response = await http.post(
                "/realtime/send/",
                json={"type": "ack", "ids": [message_id]},
                headers={**alice, "X-Realtime-Connection": connection_id},
            )
        assert response.status_code == 204
        with pytest.raises(TimeoutError):
            while True:  # only keep-alive comments from now on
                frame = await events.frame(timeout=1.5)
                assert frame["id"] != message_id


async def test_sse_disconnect_is_detected_and_the_node_leaves_the_topic(
    nodes, use_redis, alice, redis_url, cluster_prefix, broker
):
    name = topic()
    async with stream(nodes[0], {"topic": name}, alice) as events:
        await events.frame()
        await events.frame()
        await subscribed_on_redis(redis_url, cluster_prefix, broker, name)
    await subscribed_on_redis(redis_url, cluster_prefix, broker, name, present=False)


async def test_sse_ticket_is_single_use(nodes, use_redis, alice):
    name = topic()
    async with httpx.AsyncClient(base_url=nodes[0].http) as http:
        issued = await http.post("/realtime/ticket/", headers=alice)
        assert issued.status_code == 201
        ticket = issued.json()["ticket"]
    async with stream(nodes[1], {"topic": name, "ticket": ticket}) as events:
        welcome = await events.frame()
        assert welcome["user"] is not None
    async with httpx.AsyncClient(base_url=nodes[0].http) as http:
        reused = await http.get("/realtime/sse/", params={"topic": name, "ticket": ticket})
    assert reused.status_code == 401
    assert reused.json()["error"]["code"] == "invalid_token"


@pytest.mark.parametrize(
    ("params", "headers", "status", "code"),
    [
        ({"topic": "staff.board"}, "alice", 403, "forbidden"),
        ({"topic": "no such!"}, "alice", 400, "invalid_topic"),
        ({}, "alice", 400, "invalid_frame"),
        ({"topic": "public.x", "cursor": "nonsense"}, "alice", 400, "invalid_frame"),
        ({"topic": [f"public.t{n}" for n in range(130)]}, "alice", 409, "too_many_topics"),
        ({"topic": "public.x"}, {"Authorization": "Bearer forged"}, 401, "invalid_token"),
        ({"topic": "public.x"}, {"Authorization": "Basic abc"}, 401, "invalid_token"),
        ({"topic": "public.x"}, {"Origin": "https://evil.example"}, 403, "forbidden"),
    ],
)
@pytest.mark.parametrize("path", ["/realtime/sse/", "/realtime/poll/"])
async def test_bad_requests_get_documented_statuses(
    nodes, alice, path, params, headers, status, code
):
    async with httpx.AsyncClient(base_url=nodes[0].http) as http:
        response = await http.get(
            path, params=params, headers=alice if headers == "alice" else headers
        )
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    if code in ("forbidden", "invalid_topic") and headers == "alice":
        assert response.json()["error"]["ref"] == params["topic"]


# ---- long-poll -----------------------------------------------------------------------------


async def test_poll_waits_for_the_first_message(
    nodes, use_redis, alice, redis_url, cluster_prefix, broker
):
    name = topic()
    position = (await aget_cursors([name]))[name]
    cursor = f"{name}~{position['epoch']}~0"
    async with httpx.AsyncClient(base_url=nodes[0].http, headers=alice, timeout=10) as http:
        waiting = asyncio.create_task(
            http.get("/realtime/poll/", params={"topic": name, "cursor": cursor})
        )
        # the poll is waiting on its node
        await subscribed_on_redis(redis_url, cluster_prefix, broker, name)
        message_id = await publish(name, "hi", 1)
        response = await waiting
    assert response.status_code == 200
    body = response.json()
    [message] = body["frames"]
    assert (message["type"], message["id"]) == ("message", message_id)
    assert body["cursor"] == f"{name}~{message['epoch']}~1"


async def test_first_poll_gives_the_position_then_204_when_nothing_comes(nodes, use_redis, alice):
    name = topic()
    await publish(name, "old", 1)
    async with httpx.AsyncClient(base_url=nodes[0].http, headers=alice, timeout=10) as http:
        first = await http.get("/realtime/poll/", params={"topic": name})
        body = first.json()
        assert [(f["type"], f["offset"]) for f in body["frames"]] == [("subscribed", 1)]
        second = await http.get("/realtime/poll/", params={"topic": name, "cursor": body["cursor"]})
        assert second.status_code == 204
    # no `welcome` on long-poll: every answer says the limits, as `welcome.limits` does
    limits = {"max_frame_bytes": 65536, "max_topics": 128, "rate": 20.0, "burst": 60}
    for answer in (first, second):
        assert json.loads(answer.headers["X-Realtime-Limits"]) == limits


async def test_consecutive_polls_on_alternating_nodes_lose_nothing(nodes, use_redis, alice):
    name = topic()
    await publish(name, "n", -1)
    position = (await aget_cursors([name]))[name]
    cursor = f"{name}~{position['epoch']}~{position['offset']}"

    async def producer() -> list[str]:
        ids = []
        for n in range(12):
            ids.append(await publish(name, "n", n))
            await asyncio.sleep(0.05)
        return ids

    producing = asyncio.create_task(producer())
    received: list[str] = []
    clients = [httpx.AsyncClient(base_url=node.http, headers=alice, timeout=10) for node in nodes]
    try:
        for round_number in range(60):
            if len(received) == 12:
                break
            response = await clients[round_number % 2].get(
                "/realtime/poll/", params={"topic": name, "cursor": cursor}
            )
            if response.status_code == 204:
                continue
            body = response.json()
            received += [f["id"] for f in body["frames"] if f["type"] == "message"]
            cursor = body["cursor"]
    finally:
        for client in clients:
            await client.aclose()
    assert received == await producing


async def test_poll_replays_ack_messages_until_the_cursor_moves_past_them(nodes, use_redis, alice):
    name = topic()
    position = (await aget_cursors([name]))[name]
    cursor = f"{name}~{position['epoch']}~0"
    message_id = await publish(name, "important", 1, ack=True)
    async with httpx.AsyncClient(base_url=nodes[0].http, headers=alice) as http:
        for _ in range(2):  # the client did not advance its cursor: sent again
            body = (
                await http.get("/realtime/poll/", params={"topic": name, "cursor": cursor})
            ).json()
            assert [f["id"] for f in body["frames"]] == [message_id]
        moved = await http.get("/realtime/poll/", params={"topic": name, "cursor": body["cursor"]})
    assert moved.status_code == 204


# ---- client frames by POST -----------------------------------------------------------------


async def test_post_send_runs_the_handler_once_on_any_node(nodes, alice):
    frame = {"type": "send", "id": f"p-{uuid.uuid4().hex[:8]}", "event": "stamp"}
    answers = []
    for node in nodes:
        async with httpx.AsyncClient(base_url=node.http) as http:
            response = await http.post("/realtime/send/", json=frame, headers=alice)
        assert response.status_code == 200
        answers.append(response.json())
    assert answers[0]["type"] == "ack"
    assert answers[1] == answers[0]


async def test_post_send_errors(nodes, alice):
    async with httpx.AsyncClient(base_url=nodes[0].http) as http:
        unknown = await http.post(
            "/realtime/send/", headers=alice, json={"type": "send", "id": "u-1", "event": "nope"}
        )
        assert unknown.json()["error"]["code"] == "unknown_event"
        wrong = await http.post(
            "/realtime/send/", headers=alice, json={"type": "subscribe", "topic": "public.x"}
        )
        assert (wrong.status_code, wrong.json()["error"]["code"]) == (400, "invalid_frame")
        big = await http.post(
            "/realtime/send/",
            headers=alice,
            content=b'{"type":"send","id":"b","event":"echo","data":"' + b"x" * 70000 + b'"}',
        )
        assert (big.status_code, big.json()["error"]["code"]) == (413, "too_large")
        garbage = await http.post("/realtime/send/", headers=alice, content=b"{oops")
        assert (garbage.status_code, garbage.json()["error"]["code"]) == (400, "invalid_json")


async def test_post_with_session_cookie_needs_the_csrf_token(nodes):
    async with httpx.AsyncClient(base_url=nodes[0].http) as http:
        # an anonymous session-cookie caller: CSRF applies as to any cookie-authenticated POST
        response = await http.post(
            "/realtime/send/", json={"type": "send", "id": "c-1", "event": "echo"}
        )
    assert response.status_code == 403
