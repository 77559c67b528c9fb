"""Operating a cluster, end to end: two (or three) real daphne nodes on the real Redis; the
registry across nodes, disconnect orders, a node killed with SIGKILL, revocation."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest
import websockets
from asgiref.sync import sync_to_async

import realtime
from realtime import control
from realtime.backends import get_registry
from realtime.registry import Query
from tests.servers import Client, Daphne

pytestmark = pytest.mark.e2e

HEARTBEAT_TIMEOUT = 0.6


@pytest.fixture(scope="module")
def node_settings() -> dict[str, str]:
    return {"RT_HEARTBEAT_INTERVAL": "1.0", "RT_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT)}


@pytest.fixture
def cluster(request, realtime_settings) -> None:
    """The test process reads the cluster's registry with the nodes' heartbeat settings."""
    realtime_settings(HEARTBEAT_INTERVAL=1.0, HEARTBEAT_TIMEOUT=HEARTBEAT_TIMEOUT)
    request.getfixturevalue("use_redis")  # over those settings, so teardown restores cleanly


def token_protocols(database: Any, name: str = "alice") -> list[str]:
    return ["realtime.v1", f"realtime.token.{database[1][name]['token']}"]


async def connect(node: Daphne, database: Any, name: str = "alice") -> Client:
    return await Client.connect(node, origin=False, subprotocols=token_protocols(database, name))


async def listed(ids: set[str], topic: str | None = None, within: float = 5) -> dict[str, Any]:
    """The registry entries of ``ids`` once all are listed (with ``topic``, if given): nodes
    write the registry in the background, a moment after ``welcome`` or ``subscribed``."""
    deadline = time.monotonic() + within
    while True:
        entries = {e.id: e for e in await get_registry().all() if e.id in ids}
        if len(entries) == len(ids) and (
            topic is None or all(topic in e.topics for e in entries.values())
        ):
            return entries
        assert time.monotonic() < deadline, f"not listed: {ids - set(entries)}"
        await asyncio.sleep(0.05)


async def test_registry_lists_connections_of_both_nodes(nodes, database, cluster):
    clients = [await connect(nodes[0], database), await connect(nodes[1], database, "bob")]
    await clients[0].subscribe("public.cluster")
    await listed({clients[0].welcome["connection_id"]}, "public.cluster")
    await listed({clients[1].welcome["connection_id"]})
    page = await get_registry().query(Query(limit=100))
    mine = {e.id: e for e in page.entries}
    a, b = (mine[c.welcome["connection_id"]] for c in clients)
    assert a.node != b.node
    assert (a.username, b.username) == ("alice", "bob")
    assert a.topics == ["public.cluster"]
    assert len(page.nodes) == 2
    for client in clients:
        await client.close()


async def test_disconnect_order_reaches_the_node_that_holds_the_socket(nodes, database, cluster):
    client = await connect(nodes[1], database)
    await listed({client.welcome["connection_id"]})
    assert await control.adisconnect([client.welcome["connection_id"]], "operator") == 1
    assert await client.close_code() == 4403


async def test_logout_on_one_node_closes_the_users_sockets_on_the_other(nodes, database, cluster):
    async with httpx.AsyncClient(base_url=nodes[0].http) as http:
        response = await http.post("/test/login/", json={"username": "bob", "password": "pw"})
        assert response.status_code == 204
        cookie = f"sessionid={http.cookies['sessionid']}"
        ws = await websockets.connect(
            nodes[1].url,
            origin=nodes[1].origin,  # type: ignore[arg-type]
            subprotocols=["realtime.v1"],  # type: ignore[list-item]
            additional_headers={"Cookie": cookie},
        )
        client = Client(ws)
        welcome = await client.receive()
        assert welcome["user"] == database[1]["bob"]["pk"]
        await listed({welcome["connection_id"]})
        assert (await http.post("/test/logout/")).status_code == 204
    assert await client.close_code() == 4403


async def test_killed_node_leaves_the_registry_and_its_clients_recover_elsewhere(
    nodes, database, node_env, cluster
):
    doomed = Daphne(database[0], node_env)
    topic = f"public.kill-{uuid.uuid4().hex[:6]}"
    clients = [await connect(doomed, database) for _ in range(3)]
    for client in clients:
        await client.subscribe(topic)
    await realtime.apublish(topic, "n", 0)
    last = [await client.receive() for client in clients]
    ids = {c.welcome["connection_id"] for c in clients}
    await listed(ids)

    doomed.kill()
    killed_at = time.monotonic()
    published = [await sync_to_async(realtime.publish)(topic, "n", n) for n in range(1, 4)]
    while ids & {e.id for e in await get_registry().all()}:
        assert time.monotonic() - killed_at < HEARTBEAT_TIMEOUT + 1.0, "zombie connections"
        await asyncio.sleep(0.05)
    for client, seen in zip(clients, last, strict=True):
        assert await client.close_code() in (None, 1006)
        again = await connect(nodes[len(published) % 2], database)
        answer = await again.subscribe(topic, {"epoch": seen["epoch"], "offset": seen["offset"]})
        assert answer["recovered"] is True
        assert [(await again.receive())["id"] for _ in published] == published
        await again.close()
