"""Pending ACKs outlive the connection that sent the message, end to end: two real daphne
nodes on one Redis, `websockets` and httpx clients of one user (docs/protocol.md, "ACKs")."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async

import realtime
from tests.servers import Client, Daphne, SSEReader

pytestmark = pytest.mark.e2e

# resends 0.3 s and 0.9 s after the first send; given up on 2.1 s after it
ACK_TIMEOUT, ACK_MAX_RETRIES = 0.3, 2
WINDOW = ACK_TIMEOUT * (2 ** (ACK_MAX_RETRIES + 1) - 1)


@pytest.fixture(scope="module")
def node_settings() -> dict[str, str]:
    return {
        "RT_ACK_TIMEOUT": str(ACK_TIMEOUT),
        "RT_ACK_MAX_RETRIES": str(ACK_MAX_RETRIES),
        "RT_POLL_TIMEOUT": "1.0",
    }


def topic() -> str:
    return f"public.redeliver-{uuid.uuid4().hex[:8]}"


async def publish(name: str, data: Any = None) -> str:
    return await sync_to_async(realtime.publish)(name, "note", data, ack=True)


async def as_alice(node: Daphne, database: Any) -> Client:
    token = database[1]["alice"]["token"]
    return await Client.connect(
        node, origin=False, subprotocols=["realtime.v1", f"realtime.token.{token}"]
    )


def counts(nodes: list[Daphne], kind: str) -> Counter[str]:
    """``on_ack`` runs (``acked``) or undelivered reports, per message id, over every node."""
    total: Counter[str] = Counter()
    for node in nodes:
        total.update(httpx.get(f"{node.http}/test/acks/").json()[kind])
    return total


async def cut_after_message(node: Daphne, database: Any, name: str) -> dict[str, Any]:
    """Alice subscribes ``name`` on ``node`` and receives a new ``ack=True`` message; her
    connection is cut before she acknowledges it. Returns the message."""
    client = await as_alice(node, database)
    assert (await client.subscribe(name))["type"] == "subscribed"
    message_id = await publish(name, "important")
    message = await client.receive()
    assert message["id"] == message_id
    await client.close()
    return message


async def nothing_sent_before(client: Client, name: str) -> None:
    """Unsubscribe ``name``: its answer is the next frame, so nothing came before it."""
    await client.send({"type": "unsubscribe", "topic": name})
    assert (await client.receive())["type"] == "unsubscribed"


async def eventually(predicate: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not await sync_to_async(predicate)():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_a_cut_before_the_ack_redelivers_to_the_next_connection_past_the_cursor(
    nodes, use_redis, database
):
    name = topic()
    message = await cut_after_message(nodes[0], database, name)  # shown, its ACK never sent
    message_id = message["id"]

    # the next connection, on the other node, resumes past the message, and still gets it
    second = await as_alice(nodes[1], database)
    cursor = {"epoch": message["epoch"], "offset": message["offset"]}
    answer = await second.subscribe(name, cursor)
    assert (answer["type"], answer["recovered"], answer["offset"]) == (
        "subscribed",
        True,
        message["offset"],
    )
    again = await second.receive()
    assert again == message, "the same frame: same id, epoch and offset"
    assert counts(nodes, "acked")[message_id] == 0
    await second.send({"type": "ack", "ids": [message_id]})
    while (frame := await second.receive())["type"] == "message":
        assert frame["id"] == message_id  # a resend already under way
    assert frame == {"type": "acked", "ids": [message_id]}
    await eventually(lambda: counts(nodes, "acked")[message_id] == 1)

    third = await as_alice(nodes[0], database)
    await third.subscribe(name, cursor)
    await nothing_sent_before(third, name)
    for client in (second, third):
        await client.close()
    await asyncio.sleep(WINDOW + 1)
    assert counts(nodes, "acked")[message_id] == 1, "on_ack ran once"
    assert counts(nodes, "undelivered")[message_id] == 0


async def test_an_ack_kept_by_the_client_is_accepted_by_its_next_connection(
    nodes, use_redis, database
):
    # The client flushes the ACK it kept before it subscribes: the new connection never sent
    # the message, yet the ack is the user's, free of the rate budget, and runs on_ack once.
    name = topic()
    message_id = (await cut_after_message(nodes[0], database, name))["id"]
    second = await as_alice(nodes[1], database)
    await second.send({"type": "ack", "ids": [message_id, "unknown"]})
    assert await second.receive() == {"type": "acked", "ids": [message_id, "unknown"]}
    await eventually(lambda: counts(nodes, "acked")[message_id] == 1)
    await second.subscribe(name)
    await nothing_sent_before(second, name)
    await second.close()


async def test_one_ack_from_any_connection_of_the_user_is_enough(nodes, use_redis, database):
    name = topic()
    tabs = [await as_alice(node, database) for node in nodes]
    for tab in tabs:
        await tab.subscribe(name)
    message_id = await publish(name)
    for tab in tabs:
        assert (await tab.receive())["id"] == message_id
    await tabs[0].send({"type": "ack", "ids": [message_id]})
    assert (await tabs[0].receive())["type"] == "acked"
    # the other tab's resends stop: the ACK is the user's
    with pytest.raises(TimeoutError):
        await tabs[1].receive(timeout=WINDOW)
    assert counts(nodes, "acked")[message_id] == 1
    for tab in tabs:
        await tab.close()


async def test_retries_run_out_without_a_connection_and_it_is_reported_undelivered_once(
    nodes, use_redis, database
):
    name = topic()
    message = await cut_after_message(nodes[0], database, name)  # nobody comes back for it
    message_id = message["id"]
    await eventually(lambda: counts(nodes, "undelivered")[message_id] >= 1, WINDOW + 10)
    await asyncio.sleep(2)  # every node's sweeper has run since
    assert counts(nodes, "undelivered")[message_id] == 1, "once, cluster-wide"
    late = await as_alice(nodes[1], database)
    await late.subscribe(name, {"epoch": message["epoch"], "offset": message["offset"]})
    await nothing_sent_before(late, name)  # given up on: not sent again
    await late.close()
    assert counts(nodes, "acked")[message_id] == 0


async def test_retries_run_out_on_a_live_connection_and_it_is_reported_undelivered_once(
    nodes, use_redis, database
):
    name = topic()
    client = await as_alice(nodes[0], database)
    await client.subscribe(name)
    message_id = await publish(name)
    copies = 0
    with pytest.raises(TimeoutError):
        while True:
            assert (await client.receive(timeout=WINDOW))["id"] == message_id
            copies += 1
    assert copies == 1 + ACK_MAX_RETRIES
    await asyncio.sleep(1)
    assert counts(nodes, "undelivered")[message_id] == 1
    await client.close()


async def test_sse_ack_posted_after_the_stream_was_cut_runs_on_ack_once(
    nodes, use_redis, database, alice
):
    name = topic()
    async with (
        httpx.AsyncClient(base_url=nodes[0].http, timeout=10) as http,
        http.stream("GET", "/realtime/sse/", params={"topic": name}, headers=alice) as response,
    ):
        events = SSEReader(response)
        welcome = await events.frame()
        assert (await events.frame())["type"] == "subscribed"
        message_id = await publish(name)
        assert (await events.frame())["id"] == message_id
    # the stream is gone; its ACK arrives late, on the other node
    async with httpx.AsyncClient(base_url=nodes[1].http, timeout=10) as http:
        for _ in range(2):  # the client resends it (its answer was lost, say)
            posted = await http.post(
                "/realtime/send/",
                json={"type": "ack", "ids": [message_id]},
                headers={**alice, "X-Realtime-Connection": welcome["connection_id"]},
            )
            assert posted.status_code == 204
    assert counts(nodes, "acked")[message_id] == 1


async def test_a_long_poll_cursor_past_a_message_acknowledges_it_once(
    nodes, use_redis, database, alice
):
    name = topic()
    async with httpx.AsyncClient(timeout=10) as http:
        first = await http.get(
            f"{nodes[0].http}/realtime/poll/", params={"topic": name}, headers=alice
        )
        cursor = first.json()["cursor"]
        message_id = await publish(name)
        answer = await http.get(
            f"{nodes[0].http}/realtime/poll/",
            params={"topic": name, "cursor": cursor},
            headers=alice,
        )
        assert [f["id"] for f in answer.json()["frames"]] == [message_id]
        assert counts(nodes, "acked")[message_id] == 0
        # the next poll, on the other node, starts after the message: that is its ACK
        params = {"topic": name, "cursor": answer.json()["cursor"]}
        late = await http.get(f"{nodes[1].http}/realtime/poll/", params=params, headers=alice)
        assert late.status_code == 204, "nothing sent again"
        posted = await http.post(
            f"{nodes[1].http}/realtime/send/",
            json={"type": "ack", "ids": [message_id]},
            headers=alice,
        )
        assert posted.status_code == 204
    assert counts(nodes, "acked")[message_id] == 1
