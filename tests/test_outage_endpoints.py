"""A Redis outage seen from the endpoints of a real daphne node: the POST endpoints answer 503
with ``Retry-After`` (never 500), the token view needs no Redis, and a hung Redis (SIGSTOP)
does not hold up ``welcome``: the registry write is off the handshake's path."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import websockets

from tests.conftest import RedisServer
from tests.servers import Client, Daphne

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def node(database, private_redis) -> Iterator[Daphne]:
    server = Daphne(database[0], {"RT_REDIS_URL": private_redis.url, "RT_PREFIX": "rt-outage"})
    yield server
    server.stop()


@pytest.fixture
def redis_down(private_redis: RedisServer) -> Iterator[None]:
    """Redis stopped (connections refused) for the test, started again (empty) after it."""
    with private_redis.down():
        yield


@pytest.fixture
def redis_hung(private_redis: RedisServer) -> Iterator[None]:
    """Redis paused with SIGSTOP: connections open, commands never answer."""
    with private_redis.paused():
        yield


def bearer(database, name: str = "alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {database[1][name]['token']}"}


async def warm_up(node: Daphne) -> None:
    """One full connection while Redis answers, so the node's hub has its channel (creating
    it during an outage is the hub's own recovery, tested elsewhere)."""
    client = await Client.connect(node)
    assert (await client.subscribe(f"public.warm-{uuid.uuid4().hex[:6]}"))["type"] == "subscribed"
    await client.ws.close()


async def test_welcome_is_not_held_up_by_a_hung_registry(node, private_redis, database):
    await warm_up(node)
    with private_redis.paused():
        started = time.monotonic()
        ws = await websockets.connect(
            node.url, origin=node.origin, subprotocols=["realtime.v1"], open_timeout=10
        )
        client = Client(ws)
        welcome = await client.receive(timeout=10)
        took = time.monotonic() - started
        await ws.close()
    assert welcome["type"] == "welcome"
    # Unfixed, the registry write waited for the 15 s socket timeout. 1 s is the promise;
    # the margin is for a loaded test machine.
    assert took < 1.5, f"welcome took {took:.1f} s while Redis hung"


async def test_a_closed_connection_is_removed_from_the_registry(node, private_redis, database):
    """Registry writes run in the background, in order: add, then remove."""
    import redis

    client = await Client.connect(node)
    connection_id = client.welcome["connection_id"]
    store = redis.Redis.from_url(private_redis.url)

    def listed() -> bool:
        return any(store.hexists(key, connection_id) for key in store.scan_iter("rt-outage:node:*"))

    for _ in range(100):
        if listed():
            break
        await asyncio.sleep(0.05)
    assert listed()
    await client.ws.close()
    for _ in range(100):
        if not listed():
            break
        await asyncio.sleep(0.05)
    assert not listed()


async def test_ticket_post_is_503_with_retry_after_while_redis_is_down(node, database, redis_down):
    async with httpx.AsyncClient(base_url=node.http, timeout=20) as http:
        response = await http.post("/realtime/ticket/", headers=bearer(database))
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "1"
    assert response.json()["error"]["code"] == "unavailable"


async def test_send_post_is_503_with_retry_after_while_redis_is_down(node, database, redis_down):
    frame = {"type": "send", "id": f"o-{uuid.uuid4().hex[:8]}", "event": "echo", "data": 1}
    async with httpx.AsyncClient(base_url=node.http, timeout=20) as http:
        response = await http.post("/realtime/send/", json=frame, headers=bearer(database))
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "1"
    assert response.json()["error"]["code"] == "unavailable"


async def test_ack_post_to_a_stream_is_503_while_redis_is_down(node, database, redis_down):
    headers = {**bearer(database), "X-Realtime-Connection": "c1@realtime.hub.nowhere!x"}
    async with httpx.AsyncClient(base_url=node.http, timeout=20) as http:
        response = await http.post(
            "/realtime/send/", json={"type": "ack", "ids": ["m1"]}, headers=headers
        )
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "1"


async def test_the_token_view_needs_no_redis(node, database, redis_down):
    """``GET realtime/token/`` signs a token with the secret key and touches no backend."""
    async with httpx.AsyncClient(base_url=node.http, timeout=20) as http:
        login = await http.post("/test/login/", json={"username": "alice", "password": "pw"})
        assert login.status_code < 400, login.text
        response = await http.get("/realtime/token/")
    assert response.status_code == 200, response.text
    assert response.json()["token"]
