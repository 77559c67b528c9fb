"""Every SSE ``id:`` carries the position of every topic of the stream that has one, so a
reconnect with any id (on any node) loses nothing (issue 7, item 1). Two real daphne nodes on
one Redis, httpx clients."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async

import realtime
from realtime import protocol
from tests.servers import Daphne, SSEReader

pytestmark = pytest.mark.e2e


@contextlib.asynccontextmanager
async def stream(node: Daphne, topics: list[str], headers: Any) -> AsyncIterator[SSEReader]:
    async with (
        httpx.AsyncClient(base_url=node.http, timeout=10) as http,
        http.stream("GET", "/realtime/sse/", params={"topic": topics}, headers=headers) as response,
    ):
        assert response.status_code == 200, await response.aread()
        yield SSEReader(response)


async def publish(topic: str, data: Any) -> None:
    await sync_to_async(realtime.publish)(topic, "n", data)


def positions(event_id: str) -> dict[str, tuple[str, int]]:
    return {
        topic: (cursor["epoch"], cursor["offset"])
        for topic, cursor in protocol.parse_cursors(event_id).items()
    }


async def test_every_sse_id_carries_every_topic_so_a_resume_from_any_id_loses_nothing(
    nodes, use_redis, alice
):
    t1, t2 = (f"public.sse-pos-{uuid.uuid4().hex[:8]}" for _ in range(2))
    async with stream(nodes[0], [t1, t2], alice) as events:
        assert (await events.frame())["type"] == "welcome"
        first = await events.frame()
        second = await events.frame()
    assert [(f["type"], f["topic"]) for f in (first, second)] == [
        ("subscribed", t1),
        ("subscribed", t2),
    ]
    # even the first `subscribed` names both topics: T2 is subscribed before streaming starts
    assert set(positions(first["_id"])) == {t1, t2}
    for n in range(3):
        await publish(t1, n)
    for n in range(2):
        await publish(t2, n)

    # the sequence: resume on the other node, keep the first message's id, drop
    headers = {**alice, "Last-Event-ID": second["_id"]}
    async with stream(nodes[1], [t1, t2], headers) as events:
        assert (await events.frame())["type"] == "welcome"
        frames = [await events.frame() for _ in range(7)]
    assert [(f["type"], f["topic"], f.get("offset")) for f in frames] == [
        ("subscribed", t1, 0),
        ("message", t1, 1),
        ("message", t1, 2),
        ("message", t1, 3),
        ("subscribed", t2, 0),
        ("message", t2, 1),
        ("message", t2, 2),
    ]
    for frame in frames:
        assert set(positions(frame["_id"])) == {t1, t2}, frame["_id"]
    first_message = frames[1]
    assert positions(first_message["_id"])[t2][1] == 0  # T2's cursor from the request

    headers = {**alice, "Last-Event-ID": first_message["_id"]}
    async with stream(nodes[0], [t1, t2], headers) as events:
        assert (await events.frame())["type"] == "welcome"
        frames = [await events.frame() for _ in range(6)]
    assert [(f["type"], f["topic"], f.get("offset")) for f in frames] == [
        ("subscribed", t1, 1),
        ("message", t1, 2),
        ("message", t1, 3),
        ("subscribed", t2, 0),
        ("message", t2, 1),
        ("message", t2, 2),
    ]
    assert all(f["recovered"] for f in frames if f["type"] == "subscribed")
