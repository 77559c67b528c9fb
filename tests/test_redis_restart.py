"""Redis restarted under load (without persistence, so every key is lost): the nodes
reconnect by themselves, live clients are told `reset` and go on receiving without being
disconnected, and a publish during the outage fails loudly instead of vanishing."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async

import realtime
from tests.conftest import realtime_on_redis
from tests.follower import Follower
from tests.servers import Client, Daphne, make_database, running_nodes

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def nodes(private_redis) -> Iterator[list[Daphne]]:
    path, _ = make_database()
    env = {"RT_REDIS_URL": private_redis.url, "RT_PREFIX": "rt-restart"}
    with running_nodes(path, env) as servers:
        yield servers
    os.unlink(path)


@pytest.fixture
def publisher(private_redis) -> Iterator[None]:
    with realtime_on_redis(private_redis.url, "rt-restart"):
        yield


async def publish_until_it_works(topic: str, data: Any, within: float = 15) -> str:
    """Publish, retrying while Redis is still coming back; every failure is an exception."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await sync_to_async(realtime.publish)(topic, "n", data)
        except realtime.PublishError:
            assert time.monotonic() < deadline, "publishing never recovered"
            await asyncio.sleep(0.2)


async def test_nodes_and_clients_survive_a_redis_restart(nodes, private_redis, publisher):
    topic = f"public.restart-{uuid.uuid4().hex[:6]}"
    clients = [await Client.connect(node) for node in nodes]
    for client in clients:
        await client.subscribe(topic)
    await publish_until_it_works(topic, "before")
    before = [await client.receive() for client in clients]
    followers = [
        Follower(nodes, topic, c, {"epoch": b["epoch"], "offset": b["offset"]})
        for c, b in zip(clients, before, strict=True)
    ]

    private_redis.stop()
    with pytest.raises(realtime.PublishError):
        await sync_to_async(realtime.publish)(topic, "n", "during")  # loud, not lost silently
    private_redis.start()

    deadline = time.monotonic() + 30
    while not all(any(f["type"] == "reset" for f in x.frames) for x in followers):
        assert time.monotonic() < deadline, [x.frames for x in followers]
        await publish_until_it_works(topic, "after")
        for follower in followers:
            await follower.drain()

    for follower, first in zip(followers, before, strict=True):
        reset = next(f for f in follower.frames if f["type"] == "reset")
        assert (reset["reason"], reset["topic"]) == ("epoch_changed", topic)
        assert reset["epoch"] != first["epoch"]
        assert follower.closes == [], "a restart costs a live client a reset, not a disconnect"
        after = [
            f for f in follower.frames[follower.frames.index(reset) + 1 :] if f["type"] == "message"
        ]
        offsets = [m["offset"] for m in after]
        assert offsets == sorted(set(offsets)), "in order, no duplicates"
        assert all(m["epoch"] == reset["epoch"] for m in after)
        await follower.client.close()
