"""End to end: real daphne processes on 127.0.0.1, the real Redis, `websockets` clients."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
import redis
import websockets
from asgiref.sync import sync_to_async

import realtime
from tests.servers import Client, Daphne

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def node_settings() -> dict[str, str]:
    return {"RT_ACK_TIMEOUT": "0.3", "RT_AUTH_TIMEOUT": "2"}


async def publish(*args: Any, **kwargs: Any) -> str:
    return await sync_to_async(realtime.publish)(*args, **kwargs)


def topic() -> str:
    return f"public.e2e-{uuid.uuid4().hex[:8]}"


# ---- embedded defaults, one node ---------------------------------------------------------


async def test_in_memory_node_delivers_what_a_sync_view_publishes(database):
    server = Daphne(database[0])
    try:
        client = await Client.connect(server)
        name = topic()
        assert (await client.subscribe(name))["type"] == "subscribed"
        async with httpx.AsyncClient(base_url=server.http) as http:
            response = await http.post(
                "/test/publish/", json={"topic": name, "event": "hi", "data": {"n": 1}}
            )
        assert response.status_code == 200
        message = await client.receive()
        assert (message["id"], message["data"], message["offset"]) == (
            response.json()["id"],
            {"n": 1},
            1,
        )
        await client.close()
    finally:
        server.stop()


async def test_a_consumer_may_name_its_own_methods_close_dispatch_and_send_text(database):
    # The hooks object is not the transport: the socket calls none of these user methods, so
    # frames go out, a `send` reaches the user's handler (which calls them), and the server
    # still closes with its own code.
    server = Daphne(database[0], application="tests.asgi:own_names_application")
    try:
        client = await Client.connect(server)
        name = topic()
        assert (await client.subscribe(name))["type"] == "subscribed"
        async with httpx.AsyncClient(base_url=server.http) as http:
            response = await http.post("/test/publish/", json={"topic": name, "event": "hi"})
        assert (await client.receive())["id"] == response.json()["id"]
        await client.send({"type": "send", "id": "s-1", "event": "ship", "data": "order 7"})
        assert await client.receive() == {
            "type": "ack",
            "id": "s-1",
            "result": ["closed order 7", "dispatched order 7", "texted order 7", "sent order 7"],
        }
        await client.ws.send(b"binary")
        assert await client.close_code() == 4400
        server.assert_no_tracebacks()
    finally:
        server.stop()


async def test_wrong_origin_gets_http_403(nodes):
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(nodes[0].url, origin="https://evil.example")  # type: ignore[arg-type]
    assert refused.value.response.status_code == 403


async def test_token_in_subprotocol_over_a_real_socket(nodes, database):
    alice = database[1]["alice"]
    client = await Client.connect(
        nodes[0], origin=False, subprotocols=["realtime.v1", f"realtime.token.{alice['token']}"]
    )
    assert client.welcome["user"] == alice["pk"]
    assert client.ws.subprotocol == "realtime.v1"
    answer = await client.subscribe(f"user.{database[1]['bob']['pk']}")
    assert answer["code"] == "forbidden"
    await client.close()


async def test_oversized_frame_is_closed_4009_by_a_real_daphne(nodes):
    client = await Client.connect(nodes[0])
    await client.ws.send('{"type":"send","id":"x","event":"echo","data":"' + "x" * 70000 + '"}')
    assert await client.close_code() == 4009


async def test_client_without_origin_or_token_is_closed_4401(nodes):
    client = await Client.connect(nodes[0], origin=False)
    await client.send({"type": "subscribe", "topic": "public.x"})
    assert (await client.receive())["code"] == "auth_required"
    assert await client.close_code(timeout=10) == 4401  # after AUTH_TIMEOUT (2 s here)


# ---- two nodes, one Redis ------------------------------------------------------------------


async def test_published_once_received_on_both_nodes(nodes, use_redis):
    name = topic()
    clients = [await Client.connect(node) for node in nodes]
    for client in clients:
        assert (await client.subscribe(name))["type"] == "subscribed"
    message_id = await publish(name, "both", {"x": 1})
    for client in clients:
        message = await client.receive()
        assert (message["id"], message["offset"]) == (message_id, 1)
    # and a message published by a view on node A reaches node B
    async with httpx.AsyncClient(base_url=nodes[0].http) as http:
        await http.post("/test/publish/", json={"topic": name, "event": "view", "data": 2})
    for client in clients:
        assert (await client.receive())["offset"] == 2
        await client.close()


async def test_resume_on_the_other_node_gets_exactly_the_missed_messages(nodes, use_redis):
    name = topic()
    client = await Client.connect(nodes[0])
    await client.subscribe(name)
    for n in range(2):
        await publish(name, "n", n)
    seen = [await client.receive() for _ in range(2)]
    await client.close()
    for n in range(2, 5):
        await publish(name, "n", n)

    again = await Client.connect(nodes[1])
    cursor = {"epoch": seen[-1]["epoch"], "offset": seen[-1]["offset"]}
    answer = await again.subscribe(name, cursor)
    assert (answer["recovered"], answer["offset"]) == (True, 2)
    replayed = [await again.receive() for _ in range(3)]
    assert [(m["offset"], m["data"]) for m in replayed] == [(3, 2), (4, 3), (5, 4)]
    await publish(name, "n", 5)
    assert (await again.receive())["offset"] == 6
    with pytest.raises(TimeoutError):
        await again.receive(timeout=0.3)
    await again.close()


async def test_flushed_log_answers_an_old_cursor_with_reset(nodes, use_redis, redis_url):
    name = topic()
    client = await Client.connect(nodes[0])
    await client.subscribe(name)
    await publish(name, "n", 1)
    first = await client.receive()
    await client.close()
    plain = redis.Redis.from_url(redis_url)
    plain.delete(f"{use_redis['prefix']}:meta:{{{name}}}", f"{use_redis['prefix']}:log:{{{name}}}")

    again = await Client.connect(nodes[1])
    answer = await again.subscribe(name, {"epoch": first["epoch"], "offset": 1})
    assert (answer["type"], answer["reason"]) == ("reset", "epoch_changed")
    assert (await again.receive())["recovered"] is False
    await again.close()


async def test_unacked_message_is_sent_again_and_stops_after_ack(nodes, use_redis):
    name = topic()
    client = await Client.connect(nodes[1])
    await client.subscribe(name)
    message_id = await publish(name, "important", {"v": 1}, ack=True)
    first = await client.receive()
    again = await client.receive(timeout=3)
    assert again == first
    await client.send({"type": "ack", "ids": [message_id]})
    while (frame := await client.receive())["type"] == "message":
        assert frame == first  # a resend already on its way
    assert frame == {"type": "acked", "ids": [message_id]}
    with pytest.raises(TimeoutError):
        await client.receive(timeout=1.0)
    await client.close()


async def test_a_client_acking_every_message_of_a_busy_topic_stays_connected(nodes, use_redis):
    # 200 ack=True messages at 50/s, each acknowledged in a frame of its own: acks at 50
    # frames/s for 4 s, far past RATE (20/s) and BURST (60). An ack of a pending message
    # answers the server's own traffic and costs no rate budget.
    name, count = topic(), 200
    client = await Client.connect(nodes[0])
    await client.subscribe(name)

    async def publisher() -> None:
        for n in range(count):
            await publish(name, "tick", n, ack=True)
            await asyncio.sleep(1 / 50)  # the topic's pace, not a synchronisation

    publishing = asyncio.create_task(publisher())
    received: dict[str, int] = {}
    confirmed: set[str] = set()
    while len(received) < count:
        frame = await client.receive()
        if frame["type"] == "acked":
            confirmed.update(frame["ids"])
            continue
        assert frame["type"] == "message", frame
        await client.send({"type": "ack", "ids": [frame["id"]]})
        received[frame["id"]] = frame["data"]
    await publishing
    assert sorted(received.values()) == list(range(count))
    # still open, and still answering: every ack confirmed, then the subscribe's answer
    await client.send({"type": "subscribe", "topic": topic()})
    while (frame := await client.receive())["type"] == "acked":
        confirmed.update(frame["ids"])
    assert frame["type"] == "subscribed", frame
    assert confirmed == set(received)
    await client.close()


async def test_acks_of_nothing_pending_are_rate_limited(nodes):
    client = await Client.connect(nodes[0])
    for n in range(100):  # RATE 20/s, BURST 60: the bucket runs dry within the burst
        await client.send({"type": "ack", "ids": [f"never-sent-{n}"]})
    assert await client.close_code() == 4429


async def test_acks_owed_from_another_connection_cost_no_rate_budget(nodes, use_redis, database):
    # 100 acks, one frame each, of messages sent to alice's connection that is gone: far past
    # BURST (60) if they were charged. They are hers to acknowledge, from any connection.
    name, token = topic(), database[1]["alice"]["token"]
    protocols = ["realtime.v1", f"realtime.token.{token}"]
    first = await Client.connect(nodes[0], origin=False, subprotocols=protocols)
    await first.subscribe(name)
    ids = await asyncio.gather(*(publish(name, "n", n, ack=True) for n in range(100)))
    seen: set[str] = set()
    while len(seen) < len(ids):
        seen.add((await first.receive())["id"])
    await first.close()
    second = await Client.connect(nodes[1], origin=False, subprotocols=protocols)
    for message_id in ids:
        await second.send({"type": "ack", "ids": [message_id]})
    assert [(await second.receive())["ids"] for _ in ids] == [[m] for m in ids]
    assert (await second.subscribe(topic()))["type"] == "subscribed", "still open"
    await second.close()


async def test_retried_client_send_runs_once_across_nodes(nodes, database):
    token = database[1]["alice"]["token"]
    frame = {"type": "send", "id": f"m-{uuid.uuid4().hex[:8]}", "event": "stamp"}
    answers = []
    for node in nodes:
        client = await Client.connect(
            node, origin=False, subprotocols=["realtime.v1", f"realtime.token.{token}"]
        )
        await client.send(frame)
        answers.append(await client.receive())
        await client.close()
    assert answers[0]["type"] == "ack"
    assert answers[1] == answers[0], "the retry on node B must not run the handler again"


async def test_many_clients_on_two_nodes_receive_everything_once_in_order(nodes, use_redis):
    name = topic()
    clients = await asyncio.gather(*(Client.connect(nodes[i % 2]) for i in range(100)))
    await asyncio.gather(*(client.subscribe(name) for client in clients))
    ids = [await publish(name, "n", n) for n in range(20)]

    async def collect(client: Client) -> list[str]:
        return [(await client.receive())["id"] for _ in range(20)]

    received = await asyncio.gather(*(collect(client) for client in clients))
    assert all(got == ids for got in received)
    await asyncio.gather(*(client.close() for client in clients))


async def test_silent_client_is_closed_4408_over_a_real_socket(database):
    server = Daphne(database[0], {"RT_HEARTBEAT_INTERVAL": "0.2", "RT_HEARTBEAT_TIMEOUT": "0.1"})
    try:
        client = await Client.connect(server)
        assert (await client.receive(skip_pings=False))["type"] == "ping"
        assert await client.close_code() == 4408
    finally:
        server.stop()
