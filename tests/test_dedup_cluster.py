"""Overlapping retries of one client ``send``, end to end: two real daphne nodes on one Redis,
a handler the test holds (tests.testapp.consumers ``handle_hold``), WebSocket and POST
clients. Every attempt gets the same answer, the handler runs once, and a claim whose node
died is taken over after ``SEND_LEASE``, not ``DEDUP_TTL``."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from tests.servers import Client, Daphne

pytestmark = pytest.mark.e2e

LEASE = 2.0  # SEND_LEASE of the nodes
WAIT = 3.0  # SEND_WAIT of the nodes
DEDUP_TTL = 300.0  # the default the nodes keep


@pytest.fixture(scope="module")
def node_settings() -> dict[str, str]:
    return {"RT_SEND_LEASE": str(LEASE), "RT_SEND_WAIT": str(WAIT)}


@pytest.fixture(scope="module")
def nodes(nodes: list[Daphne]) -> Iterator[list[Daphne]]:
    yield nodes
    for server in nodes:
        server.stop()  # the whole log: stopping again at the cluster's teardown is a no-op
        server.assert_no_tracebacks()


class Hold:
    """The test's side of ``handle_hold``: its runs, its starts, and the go signal."""

    def __init__(self, client: aioredis.Redis, key: str) -> None:
        self.client = client
        self.key = key

    async def started(self, run: int, timeout: float = 15) -> None:
        """Wait until run number ``run`` of the handler has started."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"run {run} of the handler did not start"
            popped = await self.client.blpop([f"{self.key}:started"], timeout=remaining)
            if popped is not None and int(popped[1]) >= run:
                return

    async def go(self) -> None:
        """Let one run of the handler finish."""
        await self.client.rpush(f"{self.key}:go", 1)

    async def runs(self) -> int:
        return int(await self.client.get(f"{self.key}:runs") or 0)


@pytest.fixture
async def hold(redis_url: str, cluster_prefix: str) -> AsyncIterator[Hold]:
    client = aioredis.Redis.from_url(redis_url)
    key = f"{cluster_prefix}:hold:{uuid.uuid4().hex[:8]}"
    yield Hold(client, key)
    await client.delete(f"{key}:runs", f"{key}:started", f"{key}:go")
    await client.aclose()


def send_frame(hold: Hold) -> dict[str, Any]:
    return {"type": "send", "id": f"h-{uuid.uuid4().hex[:8]}", "event": "hold", "data": hold.key}


async def connect(node: Daphne, database: Any) -> Client:
    token = database[1]["alice"]["token"]
    return await Client.connect(
        node, origin=False, subprotocols=["realtime.v1", f"realtime.token.{token}"]
    )


def in_progress(answer: dict[str, Any]) -> bool:
    return bool(answer.get("error", {}).get("code") == "in_progress")


async def answer_of(client: Client, frame: dict[str, Any], timeout: float = 20) -> dict[str, Any]:
    """Send ``frame`` and return its answer, sending it again on every ``in_progress`` (as
    docs/protocol.md tells a client to); the server paces the retries by ``SEND_WAIT``."""
    deadline = time.monotonic() + timeout
    await client.send(frame)
    while True:
        answer = await client.receive(timeout=max(0.1, deadline - time.monotonic()))
        assert (answer["type"], answer["id"]) == ("ack", frame["id"]), answer
        if not in_progress(answer):
            return answer
        assert time.monotonic() < deadline, "still in progress"
        await client.send(frame)


async def test_same_send_on_two_nodes_at_once_runs_once_and_both_get_its_answer(
    nodes, database, hold
):
    clients = [await connect(node, database) for node in nodes]
    frame = send_frame(hold)
    await asyncio.gather(*(client.send(frame) for client in clients))
    await hold.started(1)
    await hold.go()
    answers = []
    for client in clients:
        first = await client.receive(timeout=10)
        if in_progress(first):  # the loser waited SEND_WAIT before the go: it asks again
            first = await answer_of(client, frame)
        answers.append(first)
        await client.close()
    assert answers[0]["result"]["run"] == 1
    assert answers[1] == answers[0], "every attempt gets the one answer"
    assert await hold.runs() == 1


async def test_overlapping_send_is_answered_in_progress_then_gets_the_answer(nodes, database, hold):
    first, second = await connect(nodes[0], database), await connect(nodes[1], database)
    frame = send_frame(hold)
    await first.send(frame)
    await hold.started(1)
    await second.send(frame)
    subscribed = await second.subscribe(f"public.wait-{uuid.uuid4().hex[:6]}")
    assert subscribed["type"] == "subscribed", "other frames are handled while a send waits"
    answer = await second.receive(timeout=WAIT + 10)
    assert answer == {
        "type": "ack",
        "id": frame["id"],
        "error": {
            "code": "in_progress",
            "reason": "Another attempt with this id is still running; send it again with "
            "the same id.",
        },
    }
    await hold.go()
    done = await first.receive(timeout=10)
    assert done["result"]["run"] == 1
    assert await answer_of(second, frame) == done
    assert await hold.runs() == 1
    for client in (first, second):
        await client.close()


async def test_three_concurrent_posts_of_one_send_get_409_in_progress_then_the_answer(
    nodes, database, hold
):
    headers = {"Authorization": f"Bearer {database[1]['alice']['token']}"}
    frame = send_frame(hold)
    async with httpx.AsyncClient(headers=headers, timeout=30) as http:

        async def post(node: Daphne) -> httpx.Response:
            return await http.post(f"{node.http}/realtime/send/", json=frame)

        posts = [asyncio.ensure_future(post(node)) for node in (nodes[0], nodes[1], nodes[0])]
        await hold.started(1)
        # the handler is held: the two attempts that did not claim it answer on their own
        losers: set[asyncio.Future[httpx.Response]] = set()
        while len(losers) < 2:
            done, _ = await asyncio.wait(
                set(posts) - losers, timeout=WAIT + 10, return_when=asyncio.FIRST_COMPLETED
            )
            assert done, "an overlapping POST got no answer"
            losers |= done
        for loser in losers:
            response = loser.result()
            assert response.status_code == 409, response.text
            assert response.headers["Retry-After"] == "1"
            assert response.json()["error"]["code"] == "in_progress"
            assert response.json()["error"]["ref"] == frame["id"]
        await hold.go()
        (winner,) = set(posts) - losers
        answer = await winner
        assert answer.status_code == 200
        assert answer.json()["result"]["run"] == 1
        retries = await asyncio.gather(*(post(node) for node in nodes))
    assert [(r.status_code, r.json()) for r in retries] == [(200, answer.json())] * 2
    assert await hold.runs() == 1


async def test_claim_of_a_killed_node_is_taken_over_after_the_lease(
    nodes, database, node_env, hold
):
    doomed = Daphne(database[0], node_env)
    try:
        client = await connect(doomed, database)
        frame = send_frame(hold)
        await client.send(frame)
        await hold.started(1)
        doomed.kill()
        killed_at = time.monotonic()
        survivor = await connect(nodes[1], database)
        retry = asyncio.ensure_future(answer_of(survivor, frame, timeout=LEASE + 20))
        await hold.started(2)  # the retry claimed the expired lease and runs the handler
        await hold.go()
        answer = await retry
        elapsed = time.monotonic() - killed_at
    finally:
        doomed.stop()
    assert answer["result"]["run"] == 2
    assert elapsed < min(LEASE + 15, DEDUP_TTL / 10), elapsed
    again = await connect(nodes[0], database)
    assert await answer_of(again, frame) == answer
    assert await hold.runs() == 2
    for each in (survivor, again):
        await each.close()
