"""Durable publishing across real processes: two daphne nodes with ``DURABLE`` on (each runs
a relay) on a SQLite file and a private redis-server, and publishers in processes of their
own. A publisher SIGKILLed right after its commit, before its own relay could run, still
gets its message to every client exactly once (a node's relay sweeps it up); messages
committed while Redis is stopped all reach the log, in order and once each, when it is
started again, and reach the clients that stayed connected through the outage once each, in
order."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from tests.follower import Follower
from tests.servers import Client, Daphne, make_database, running_nodes, script_process

pytestmark = [pytest.mark.e2e, pytest.mark.clean_server_log]

PREFIX = "rt-durable"

# Publishes durably inside a transaction whose first on-commit callback kills the process:
# the row is committed, and the process's own relay is never woken.
KILLED_AFTER_COMMIT = """
import os, signal, sys, django
django.setup()
from django.db import transaction
import realtime
with transaction.atomic():
    transaction.on_commit(lambda: os.kill(os.getpid(), signal.SIGKILL))
    realtime.publish(sys.argv[1], "shipped", {"n": 1}, message_id=sys.argv[2], durable=True)
print("not killed")
"""

# Commits sys.argv[2] durable publishes to topic sys.argv[1], one transaction each, and exits
# at once (its relay, unable to reach Redis, dies with it).
PUBLISH_MANY = """
import sys, django
django.setup()
from django.db import transaction
import realtime
for n in range(int(sys.argv[2])):
    with transaction.atomic():
        realtime.publish(sys.argv[1], "n", {"n": n}, message_id=f"m{n}", durable=True)
print("committed")
"""


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    path, _ = make_database()
    yield path
    os.unlink(path)


@pytest.fixture(scope="module")
def env(private_redis) -> dict[str, str]:
    return {
        "RT_REDIS_URL": private_redis.url,
        "RT_PREFIX": PREFIX,
        "RT_DURABLE": "1",
        "RT_RELAY_INTERVAL": "0.3",
        "RT_PUBLISH_TIMEOUT": "1",
    }


@pytest.fixture(scope="module")
def nodes(database: str, env: dict[str, str]) -> Iterator[list[Daphne]]:
    with running_nodes(database, env) as servers:
        yield servers


def run_publisher(database: str, env: dict[str, str], script: str, *args: str) -> int:
    """Run ``script`` as a publisher process; return its exit status."""
    return script_process(database, script, *args, env=env).returncode


async def test_a_publisher_killed_after_its_commit_is_delivered_once_by_a_node(
    nodes, database, env
):
    topic = f"public.killed-{uuid.uuid4().hex[:6]}"
    clients = [await Client.connect(node) for node in nodes]
    for client in clients:
        assert (await client.subscribe(topic))["type"] == "subscribed"
    status = run_publisher(database, env, KILLED_AFTER_COMMIT, topic, "shipped-1")
    assert status == -9  # SIGKILL: it never reached its relay
    for client in clients:
        frame = await client.receive(timeout=10)
        assert (frame["type"], frame["id"], frame["data"]) == ("message", "shipped-1", {"n": 1})
    # exactly once: the next frame each client gets is the next message, not a second copy
    marker = f"marker-{uuid.uuid4().hex[:6]}"
    assert run_publisher(database, env, PUBLISH_MANY.replace("m{n}", marker), topic, "1") == 0
    for client in clients:
        frame = await client.receive(timeout=10)
        assert frame["id"] == marker
        await client.close()


async def test_publishes_committed_while_redis_is_down_reach_the_log_in_order(
    nodes, database, env, private_redis
):
    topic = f"public.outage-{uuid.uuid4().hex[:6]}"
    for node in nodes:  # a server process starts its relay with its first connection
        await (await Client.connect(node)).close()
    with private_redis.down():
        assert run_publisher(database, env, PUBLISH_MANY, topic, "100") == 0
    # Redis is back (empty): the nodes' relays, retrying, move the backlog into the log
    client_redis = redis.Redis.from_url(private_redis.url, decode_responses=True)
    deadline = time.monotonic() + 30
    while client_redis.xlen(f"{PREFIX}:log:{{{topic}}}") < 100:
        assert time.monotonic() < deadline, "the backlog was not relayed"
        await asyncio.sleep(0.05)
    entries = client_redis.xrange(f"{PREFIX}:log:{{{topic}}}")
    assert [fields["i"] for _, fields in entries] == [f"m{n}" for n in range(100)]
    epoch = client_redis.hget(f"{PREFIX}:meta:{{{topic}}}", "epoch")
    client_redis.close()
    # a client resuming from the epoch's start gets all of them, in order, once each
    client = await Client.connect(nodes[1])
    subscribed = await client.subscribe(topic, {"epoch": epoch, "offset": 0})
    assert subscribed["type"] == "subscribed" and subscribed["recovered"] is True
    received = [await client.receive(timeout=10) for _ in range(100)]
    assert [frame["id"] for frame in received] == [f"m{n}" for n in range(100)]
    assert [frame["offset"] for frame in received] == list(range(1, 101))
    await client.close()


async def test_clients_connected_through_a_redis_outage_get_its_durable_publishes_once(
    nodes, database, env, private_redis
):
    topic = f"public.through-{uuid.uuid4().hex[:6]}"
    followers = []
    for node in nodes:
        client = await Client.connect(node)
        subscribed = await client.subscribe(topic)
        assert subscribed["type"] == "subscribed"
        cursor = {"epoch": subscribed["epoch"], "offset": subscribed["offset"]}
        followers.append(Follower(nodes, topic, client, cursor))
    marks = [node.mark() for node in nodes]
    with private_redis.down():
        # a worker without Redis settings commits the rows and runs no relay: the nodes'
        # relays alone meet the outage, and Redis stays down until each of them failed
        assert run_publisher(database, {}, PUBLISH_MANY, topic, "100") == 0
        deadline = time.monotonic() + 15
        while not all(
            any("Backend 'log' is down" in line for line in node.log[mark:])
            for node, mark in zip(nodes, marks, strict=True)
        ):
            assert time.monotonic() < deadline, "a node's relay never met the outage"
            await asyncio.sleep(0.05)
    # Redis is back (empty): the nodes' relays, retrying, move the backlog; the clients get
    # it live or by the resume a reset or a reconnect brings
    expected = [f"m{n}" for n in range(100)]
    marker = f"marker-{uuid.uuid4().hex[:6]}"
    deadline = time.monotonic() + 30
    while not all(len(follower.messages()) >= 100 for follower in followers):
        assert time.monotonic() < deadline, [len(f.messages()) for f in followers]
        for follower in followers:
            await follower.drain()
    # then one more message: whatever came twice would come before it
    assert run_publisher(database, env, PUBLISH_MANY.replace("m{n}", marker), topic, "1") == 0
    while not all(follower.messages()[-1]["id"] == marker for follower in followers):
        assert time.monotonic() < deadline, [f.messages()[-1] for f in followers]
        for follower in followers:
            await follower.drain()
    for follower in followers:
        assert [frame["id"] for frame in follower.messages()] == [*expected, marker]
        await follower.client.close()


@pytest.fixture(scope="module")
def redisless() -> Iterator[tuple[Daphne, str]]:
    """One daphne node without Redis (its topic log in its memory), relaying the outbox of a
    database of its own (the other nodes' relays would take its rows), and that database."""
    path, _ = make_database()
    node = Daphne(path, {"RT_DURABLE": "1", "RT_RELAY_INTERVAL": "0.3"})
    yield node, path
    node.stop()
    os.unlink(path)


async def test_without_redis_a_shells_durable_publish_reaches_the_servers_clients(redisless):
    redisless_node, database = redisless
    topic = f"public.shell-{uuid.uuid4().hex[:6]}"
    client = await Client.connect(redisless_node)
    assert (await client.subscribe(topic))["type"] == "subscribed"
    # a process without Redis that serves no connection: a plain publish there reaches nobody,
    # a durable one waits in the table for the server's relay
    env = {"RT_DURABLE": "1"}
    assert run_publisher(database, env, PUBLISH_MANY, topic, "3") == 0
    received = [await client.receive(timeout=10) for _ in range(3)]
    assert [frame["id"] for frame in received] == ["m0", "m1", "m2"]
    await client.close()
