"""The built-in per-user topic ``user:<pk>`` and ``publish_to_user()``: in process, and on
real daphne nodes sharing the real Redis with this process."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import AnonymousUser, User
from django.db import transaction

import realtime
from realtime.exceptions import Forbidden
from realtime.testing import capture_published
from realtime.topics import registry
from tests.servers import Client, Daphne, running_nodes


class _Pk:
    """A user-like object whose primary key is a UUID, as with a custom user model."""

    is_authenticated = True

    def __init__(self, pk: Any) -> None:
        self.pk = pk


def test_user_topic_of_a_user_a_pk_or_a_uuid_pk() -> None:
    key = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert realtime.user_topic(User(pk=42)) == "user:42"
    assert realtime.user_topic(42) == "user:42"
    assert realtime.user_topic("7") == "user:7"
    assert realtime.user_topic(_Pk(key)) == f"user:{key}"


@pytest.mark.parametrize("user", [AnonymousUser(), User(), None, True, "a b", "x.y", ""])
def test_no_topic_for_an_anonymous_or_unsaved_user_or_a_key_unfit_for_a_topic(user: Any) -> None:
    with pytest.raises(ValueError):
        realtime.user_topic(user)


async def test_only_the_user_may_subscribe_to_their_topic() -> None:
    alice, bob = User(pk=1, username="alice"), User(pk=2, username="bob")
    staff = User(pk=3, username="staff", is_staff=True, is_superuser=True)
    await registry.acheck(alice, "user:1")
    for someone in (bob, staff, AnonymousUser()):
        with pytest.raises(Forbidden):
            await registry.acheck(someone, "user:1")
    await registry.acheck(_Pk(uuid.UUID(int=5)), f"user:{uuid.UUID(int=5)}")


async def test_a_project_replaces_the_permission_by_registering_the_same_pattern() -> None:
    realtime.register_topic("user:{pk}", realtime.allow_staff)
    staff = User(pk=3, username="staff", is_staff=True, is_active=True)
    await registry.acheck(staff, "user:1")
    with pytest.raises(Forbidden):
        await registry.acheck(User(pk=1, username="alice"), "user:1")


def test_a_user_dot_topic_of_the_project_keeps_its_own_pattern() -> None:
    # tests/testapp registers user.{user_id:int} (the user and staff), as projects do
    assert registry.resolve("user.1")[0].pattern == "user.{user_id:int}"
    assert registry.resolve("user:1")[0].pattern == "user:{pk}"


def test_publish_to_user_takes_publishes_options_and_waits_for_the_commit(db: Any) -> None:
    alice = User.objects.create_user("alice")
    with capture_published() as published:
        with transaction.atomic():
            message_id = realtime.publish_to_user(
                alice, "notification", {"n": 1}, ack=True, message_id="note-1"
            )
        assert message_id == "note-1"
        with transaction.atomic():
            realtime.publish_to_user(alice.pk, "dropped", None)
            transaction.set_rollback(True)
    assert [(m["topic"], m["event"], m["data"], m["ack"], m["id"]) for m in published] == [
        (f"user:{alice.pk}", "notification", {"n": 1}, True, "note-1")
    ]


async def test_apublish_to_user_is_the_async_twin() -> None:
    with capture_published() as published:
        message_id = await realtime.apublish_to_user(7, "hello", [1], message_id="m-7")
    assert [(m["topic"], m["event"], m["id"]) for m in published] == [("user:7", "hello", "m-7")]
    assert message_id == "m-7"


# ---- real daphne nodes on the real Redis -----------------------------------------------------


@pytest.fixture(scope="module")
def nodes(database, redis_url, cluster_prefix) -> Iterator[list[Daphne]]:
    env = {"RT_REDIS_URL": redis_url, "RT_PREFIX": cluster_prefix, "RT_ACK_TIMEOUT": "0.3"}
    with running_nodes(database[0], env) as servers:
        yield servers


@pytest.fixture
def prefix(cluster_prefix: str) -> str:
    return cluster_prefix  # this process publishes into the nodes' Redis namespace


@pytest.mark.e2e
async def test_publish_to_user_reaches_that_users_connections_and_no_one_elses(
    nodes, database, use_redis
) -> None:
    users = database[1]

    async def connect(node: Daphne, name: str) -> Client:
        token = users[name]["token"]
        return await Client.connect(
            node, origin=False, subprotocols=["realtime.v1", f"realtime.token.{token}"]
        )

    alice, alice_too = await connect(nodes[0], "alice"), await connect(nodes[1], "alice")
    bob, staff = await connect(nodes[1], "bob"), await connect(nodes[0], "staff")
    topic = f"user:{users['alice']['pk']}"
    for client in (alice, alice_too):
        assert (await client.subscribe(topic))["type"] == "subscribed"
    for client in (bob, staff):
        assert (await client.subscribe(topic))["code"] == "forbidden"

    message_id = await sync_to_async(realtime.publish_to_user)(
        users["alice"]["pk"], "notification", {"title": "Shipped"}, ack=True
    )
    for client in (alice, alice_too):
        message = await client.receive()
        assert (message["topic"], message["event"], message["id"], message["ack"]) == (
            topic,
            "notification",
            message_id,
            True,
        )
        assert message["data"] == {"title": "Shipped"}
        await client.send({"type": "ack", "ids": [message_id]})
        assert await client.receive() == {"type": "acked", "ids": [message_id]}
    await realtime.apublish_to_user(users["alice"]["pk"], "second")
    assert (await alice.receive())["event"] == "second"
    for client in (alice, alice_too, bob, staff):
        await client.close()


@pytest.mark.e2e
async def test_the_user_topic_over_long_poll_with_its_cursor(nodes, database, use_redis) -> None:
    users = database[1]
    topic = f"user:{users['alice']['pk']}"

    def bearer(name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {users[name]['token']}"}

    async with httpx.AsyncClient(base_url=nodes[0].http, timeout=30) as http:
        refused = await http.get("/realtime/poll/", params={"topic": topic}, headers=bearer("bob"))
        assert (refused.status_code, refused.json()["error"]["code"]) == (403, "forbidden")

        first = await http.get("/realtime/poll/", params={"topic": topic}, headers=bearer("alice"))
        assert first.status_code == 200
        cursor = first.json()["cursor"]
        assert cursor.startswith(f"{topic}~")
        message_id = await realtime.apublish_to_user(users["alice"]["pk"], "hello", {"n": 1})
        answer = await http.get(
            "/realtime/poll/", params={"topic": topic, "cursor": cursor}, headers=bearer("alice")
        )
        assert answer.status_code == 200
        [frame] = answer.json()["frames"]
        assert (frame["type"], frame["topic"], frame["id"], frame["data"]) == (
            "message",
            topic,
            message_id,
            {"n": 1},
        )
