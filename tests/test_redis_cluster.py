"""Realtime on a real three-master Redis Cluster (tests/redis_topologies.py): the log, the
registry and the console's listing, presence, dedup, tickets and pending ACKs with their keys
on every master; then two real daphne nodes whose log, registry and stores are on the Cluster.

The channel layer of these tests stays on one plain Redis (channels_redis does not speak
Cluster): the cross-node broadcast over the Cluster is the broker's business."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.http import QueryDict
from django.test import override_settings

import realtime
from realtime import checks
from realtime._redis import get_client
from realtime.backends import (
    get_dedup,
    get_log,
    get_pending_acks,
    get_presence,
    get_registry,
    get_tickets,
)
from realtime.console.listing import PER_PAGE, Params, asnapshot
from realtime.registry import Entry
from realtime.stores.base import Pending
from tests.redis_topologies import LocalCluster, master_of, slots, topics_on_every_master
from tests.servers import Client, Daphne, SSEReader

LAYER = {"default": {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer"}}

# ---- the backends, in this process, with keys on every master ------------------------------


@pytest.fixture
def spread(redis_cluster: LocalCluster) -> Iterator[Any]:
    """``spread(stem, key)``: one name per master, ``key(name)`` naming a key of each."""
    client = redis_cluster.client()

    def names(stem: str, key: Any) -> list[str]:
        found: dict[str, str] = {}
        for n in range(10_000):
            found.setdefault(master_of(client, key(f"{stem}{n}")), f"{stem}{n}")
            if len(found) == len(redis_cluster.ports):
                return [found[master] for master in sorted(found)]
        raise AssertionError("no names found for every master")

    yield names
    client.close()


async def test_each_topics_log_lives_in_one_slot_and_the_topics_cover_every_master(
    use_cluster, redis_cluster
):
    prefix = use_cluster["prefix"]
    client = redis_cluster.client()
    names = topics_on_every_master(client, prefix, "public.spread-")
    assert len({master_of(client, f"{prefix}:log:{{{t}}}") for t in names}) == 3
    client.close()
    log = get_log()
    for name in names:
        assert len(slots(f"{prefix}:{kind}:{{{name}}}" for kind in ("meta", "log", "ids"))) == 1
        first = await log.append(name, f"{name}-1", "e", "1", False, time.time())
        again = await log.append(name, f"{name}-1", "e", "1", False, time.time())
        assert again == first, "a retried append is found by its message id"
        await log.append_many(
            name, [(f"{name}-{n}", "e", str(n), False, time.time()) for n in (2, 3)]
        )
        replay = await log.read_after(name, first[0], 1)
        assert [e.data for e in replay.entries] == ["2", "3"]


async def test_registry_and_console_pages_cover_nodes_on_every_master(use_cluster, spread):
    prefix = use_cluster["prefix"]
    nodes = spread("node-", lambda name: f"{prefix}:node:{name}")
    registry = get_registry()
    for index, node in enumerate(nodes):
        entries = [
            Entry(
                id=f"c{index}-{n:03d}",
                node=node,
                address="nowhere",
                transport="websocket",
                user_id=n,
                username=f"user{n:03d}",
                topics=["public.listed"],
                client="10.0.0.1:5000",
                user_agent="ua",
                connected_at=1000.0 + 3 * n + index,
                last_seen=2000.0,
            )
            for n in range(25)
        ]
        await registry.write(node, entries[:20], [])
        await registry.refresh(node, entries, 10.0)
    listed = []
    for page in (1, 2):
        snapshot = await asnapshot(Params.from_query(QueryDict(f"p={page}")))
        assert (snapshot.page.total, snapshot.pages, snapshot.connections) == (75, 2, 75)
        assert set(snapshot.nodes) == set(nodes)
        listed += [entry.id for entry in snapshot.page.entries]
    assert len(listed) == 75 == len(set(listed)), "every connection once, across the pages"
    times = [int(i.split("-")[1]) * 3 + int(i[1]) for i in listed]
    assert times == sorted(times, reverse=True), "newest first, across the masters"
    assert len(listed[:PER_PAGE]) == PER_PAGE
    await registry.forget_node(nodes[0])
    assert len(await registry.all()) == 50


async def test_dedup_tickets_presence_and_pending_acks_on_every_master(use_cluster, spread):
    prefix = use_cluster["prefix"]
    dedup, tickets, presence, acks = (
        get_dedup(),
        get_tickets(),
        get_presence(),
        get_pending_acks(),
    )
    for key in spread("send-", lambda name: f"{prefix}:dedup:{name}"):
        assert await dedup.begin(key, "a") == ("new", None)
        assert await dedup.begin(key, "b") == ("pending", None)
        assert await dedup.finish(key, "a", "answer") == "answer"
        assert await dedup.begin(key, "b") == ("done", "answer")
    for ticket in spread("t-", lambda name: f"{prefix}:ticket:{name}"):
        await tickets.put(ticket, "42")
        assert (await tickets.take(ticket), await tickets.take(ticket)) == ("42", None)
    for topic in spread("room.", lambda name: f"{prefix}:presence:{name}"):
        assert await presence.swap(topic, "n1", {"1": "ann"}, 1.0) == {}
        assert await presence.swap(topic, "n2", {}, 1.0) is None, "one node announces"
    scopes = spread("u:", lambda name: f"{prefix}:acks:{{{name}}}")
    for scope in scopes:
        entry = Pending("m1", "t", "e", 1, "frame", 1.0, 2.0)
        await acks.put(scope, [entry])
        assert await acks.pending(scope, ["m1", "m2"]) == {"m1"}
    overdue = await acks.overdue(time.time(), 100)
    assert sorted(scope for scope, _ in overdue) == sorted(scopes), "the sweeper sees them all"
    for scope in scopes:
        assert await acks.acknowledge(scope, ["m1"]) == ["m1"]
        await acks.put(scope, [Pending("m1", "t", "e", 1, "frame", 1.0, 2.0)])
        assert await acks.pending(scope, ["m1"]) == set(), "acknowledged, not kept again"
    assert await acks.overdue(time.time(), 100) == []


async def test_no_request_path_command_crosses_slots(use_cluster):
    """redis-py refuses a multi-key command or MULTI across slots before sending it: reaching
    here through the writes above is the proof; this checks the refusal is real."""
    client = get_client(use_cluster["url"])
    with pytest.raises(Exception, match=r"same .*slot"):
        await client.eval("return 1", 2, "a:{x}", "a:{y}")


# ---- two daphne nodes on the Cluster -------------------------------------------------------


@pytest.fixture(scope="module")
def cluster_broker() -> str:
    """This process publishes over the Cluster's sharded pub/sub, as the nodes listen."""
    return "redis"


@pytest.fixture(scope="module")
def node_env(redis_cluster: LocalCluster, redis_url: str, cluster_prefix: str) -> dict[str, str]:
    """The nodes keep their log, registry and stores on the Cluster and broadcast over its
    sharded pub/sub (the Redis broker, as docs/scaling.md says); the channel layer, which then
    carries nothing of realtime's, on the one Redis."""
    return {
        "RT_REDIS_URL": redis_cluster.url,
        "RT_LAYER_URL": redis_url,
        "RT_PREFIX": cluster_prefix,
        "RT_BROKER": "redis",
    }


async def publish(*args: Any, **kwargs: Any) -> str:
    return await sync_to_async(realtime.publish)(*args, **kwargs)


async def until(check: Any, within: float = 5) -> Any:
    """``await check()`` until it is truthy: the nodes write the registry in the background."""
    deadline = time.monotonic() + within
    while not (found := await check()):
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.05)
    return found


async def connect(node: Daphne, database: Any, name: str = "alice") -> Client:
    subprotocols = ["realtime.v1", f"realtime.token.{database[1][name]['token']}"]
    return await Client.connect(node, origin=False, subprotocols=subprotocols)


@pytest.mark.e2e
async def test_topics_on_every_master_reach_both_nodes_and_resume_on_the_other(
    nodes: list[Daphne], database: Any, use_cluster: Any, redis_cluster: LocalCluster
):
    client = redis_cluster.client()
    stem = f"public.c{uuid.uuid4().hex[:6]}-"
    names = topics_on_every_master(client, use_cluster["prefix"], stem)
    client.close()
    first, second = [await connect(node, database) for node in nodes]
    cursors = {}
    for name in names:
        for each in (first, second):
            assert (await each.subscribe(name))["type"] == "subscribed"
        message_id = await publish(name, "n", 1)
        for each in (first, second):
            message = await each.receive()
            assert (message["id"], message["offset"]) == (message_id, 1)
        cursors[name] = {"epoch": message["epoch"], "offset": 1}
    await first.close()
    for name in names:
        for n in (2, 3):
            await publish(name, "n", n)
        assert [(await second.receive())["data"] for _ in (2, 3)] == [2, 3]
    again = await connect(nodes[1], database)
    for name in names:
        answer = await again.subscribe(name, cursors[name])
        assert (answer["recovered"], answer["offset"]) == (True, 1)
        replayed = [await again.receive() for _ in (2, 3)]
        assert [(m["topic"], m["offset"]) for m in replayed] == [(name, 2), (name, 3)]
    for each in (again, second):
        await each.close()


@pytest.mark.e2e
async def test_console_listing_and_presence_of_both_nodes_come_from_the_cluster(
    nodes: list[Daphne], database: Any, use_cluster: Any
):
    room = f"room.c{uuid.uuid4().hex[:6]}"
    clients = [await connect(nodes[0], database), await connect(nodes[1], database, "bob")]
    for each in clients:
        assert (await each.subscribe(room))["type"] == "subscribed"
    ids = {each.welcome["connection_id"] for each in clients}

    async def listed() -> Any:
        snapshot = await asnapshot(Params.from_query(QueryDict(f"topic={room}")))
        found = {e.id for e in snapshot.page.entries}
        return snapshot if found == ids else None

    snapshot = await until(listed)
    assert len({e.node for e in snapshot.page.entries}) == 2, "one connection per node"
    present = await realtime.apresence(room)
    assert [(u["username"], u["connections"]) for u in present] == [("alice", 1), ("bob", 1)]
    for each in clients:
        await each.close()


@pytest.mark.e2e
async def test_a_client_send_retried_on_the_other_node_runs_once(
    nodes: list[Daphne], database: Any, use_cluster: Any
):
    frame = {"type": "send", "id": f"m-{uuid.uuid4().hex[:8]}", "event": "stamp"}
    answers = []
    for node in nodes:
        client = await connect(node, database)
        await client.send(frame)
        answers.append(await client.receive())
        await client.close()
    assert answers[0]["type"] == "ack"
    assert answers[1] == answers[0], "the retry on node B must not run the handler again"


@pytest.mark.e2e
async def test_a_ticket_issued_on_one_node_is_redeemed_once_on_the_other(
    nodes: list[Daphne], database: Any, use_cluster: Any, alice: dict[str, str]
):
    async with httpx.AsyncClient(base_url=nodes[0].http, timeout=10) as http:
        issued = await http.post("/realtime/ticket/", headers=alice)
        assert issued.status_code == 201
        ticket = issued.json()["ticket"]
    params = {"topic": "public.ticketed", "ticket": ticket}
    async with (
        httpx.AsyncClient(base_url=nodes[1].http, timeout=10) as http,
        http.stream("GET", "/realtime/sse/", params=params) as response,
    ):
        assert response.status_code == 200
        assert (await SSEReader(response).frame())["user"] is not None
    async with httpx.AsyncClient(base_url=nodes[0].http, timeout=10) as http:
        reused = await http.get("/realtime/sse/", params=params)
    assert reused.status_code == 401


def test_deploy_check_pings_every_master_of_a_cluster_that_answers(redis_cluster: LocalCluster):
    realtime = {"REDIS_URL": redis_cluster.url}
    with override_settings(REALTIME=realtime, CHANNEL_LAYERS=LAYER, STATIC_ROOT="/srv/static"):
        assert checks.check_deploy() == []
