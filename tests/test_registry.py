"""The registry of live connections, operator actions, revocation and the commands, in
process (communicator) on both backends."""

from __future__ import annotations

import asyncio
import io
import json
import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from realtime import control
from realtime.backends import get_registry
from realtime.hub import get_hub
from realtime.registry import Entry, Query
from realtime.registry.memory import MemoryRegistry
from realtime.registry.redis import RedisRegistry
from realtime.testing import RealtimeCommunicator
from tests.asgi import application
from tests.conftest import BACKENDS, use_backend

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True, params=BACKENDS)
def backend(request: Any) -> Any:
    return use_backend(request, request.param)


def entry(n: int, node: str = "n1", **fields: Any) -> Entry:
    values: dict[str, Any] = {
        "id": f"c{n:05d}",
        "node": node,
        "address": "local.1",
        "transport": "websocket",
        "user_id": n % 7,
        "username": f"user{n % 7}",
        "topics": [f"t.{n % 3}"],
        "client": f"10.0.0.{n % 250}:5000",
        "user_agent": "ua",
        "connected_at": 1000.0 + n,
        "last_seen": 2000.0 + n,
    }
    return Entry(**{**values, **fields})


def make_registry(backend: Any) -> Any:
    if backend is None:
        return MemoryRegistry()
    return RedisRegistry(backend["url"], backend["prefix"], 10.0)


# ---- the registry itself -----------------------------------------------------------------


async def test_query_filters_sorts_and_paginates(backend):
    registry = make_registry(backend)
    await registry.refresh("n1", [entry(n) for n in range(30)], 10)
    await registry.refresh("n2", [entry(n, node="n2") for n in range(30, 50)], 10)
    page = await registry.query(Query(limit=10))
    assert page.total == 50
    assert page.nodes == {"n1": 30, "n2": 20}
    assert [e.id for e in page.entries] == [f"c{n:05d}" for n in range(49, 39, -1)]
    second = await registry.query(Query(limit=10, offset=10, sort="connected_at"))
    assert [e.id for e in second.entries] == [f"c{n:05d}" for n in range(10, 20)]
    assert (await registry.query(Query(node="n2"))).total == 20
    assert (await registry.query(Query(topic="t.1"))).total == len(
        [n for n in range(50) if n % 3 == 1]
    )
    assert {e.username for e in (await registry.query(Query(search="USER3"))).entries} == {"user3"}
    assert (await registry.query(Query(transport="sse"))).total == 0


async def test_removed_and_expired_nodes_disappear(backend):
    registry = make_registry(backend)
    await registry.add("n1", entry(1))
    await registry.add("n1", entry(2))
    await registry.remove("n1", "c00001")
    assert [e.id for e in await registry.all()] == ["c00002"]
    await registry.refresh("dying", [entry(3, node="dying")], 0.2)
    assert len(await registry.all()) == 2
    deadline = time.monotonic() + 3
    while len(await registry.all()) != 1:
        assert time.monotonic() < deadline, "a node that stops refreshing must expire"
        await asyncio.sleep(0.05)


async def test_touch_renews_a_record_and_says_when_it_was_gone(backend):
    registry = make_registry(backend)
    assert not await registry.touch("n1", [], 10), "no record yet"
    await registry.refresh("n1", [entry(1), entry(2)], 10)
    assert await registry.touch("n1", [entry(2, messages_in=7)], 10)
    held = {e.id: e for e in await registry.all()}
    assert sorted(held) == ["c00001", "c00002"] and held["c00002"].messages_in == 7
    await registry.forget_node("n1")
    assert not await registry.touch("n1", [], 10)


async def test_one_write_adds_replaces_and_removes_entries(backend):
    registry = make_registry(backend)
    await registry.write("n1", [entry(1), entry(2), entry(3)], [])
    await registry.write("n1", [entry(2, topics=["t"])], ["c00001", "c00009"])
    held = {e.id: e for e in await registry.all()}
    assert sorted(held) == ["c00002", "c00003"]
    assert held["c00002"].topics == ["t"]


async def test_a_connection_storm_costs_the_registry_a_few_writes(monkeypatch):
    """100 connections open (and 10 of them close) at once: their entries reach the registry
    in a few batched writes, not one per socket; the last state of each connection wins."""
    from realtime import node

    writes: list[tuple[int, int]] = []

    class Counting(MemoryRegistry):
        async def write(self, node: str, entries: list[Entry], removed: list[str]) -> None:
            writes.append((len(entries), len(removed)))
            await asyncio.sleep(0.01)  # a round trip: what is queued meanwhile waits for it
            await super().write(node, entries, removed)

    class Member:
        def __init__(self, n: int) -> None:
            self.id = entry(n).id
            self.n = n

        def entry(self) -> Entry:
            return entry(self.n)

    registry = Counting()
    monkeypatch.setattr(node, "get_registry", lambda: registry)
    connections: dict[str, Any] = {}
    record = node.NodeRecord(asyncio.get_running_loop(), "n1", connections, list)
    members = [Member(n) for n in range(100)]
    for member in members:
        connections[member.id] = member
        record.opened(member)
        if member.n % 10 == 0:  # opens and closes before its entry was ever written
            del connections[member.id]
            record.closed(member.id)
        await asyncio.sleep(0)  # connections arrive one loop step apart
    await record.written()
    record.stop()
    assert 1 <= len(writes) <= 5, writes
    assert sorted(e.id for e in await registry.all()) == sorted(connections)


async def test_a_renewal_rewrites_only_the_entries_that_changed(monkeypatch):
    """10,000 idle connections must not cost 10,000 entries written every few seconds: a
    renewal writes the entries whose counters moved, and the whole record only when it was
    gone (expired, Redis restarted) or a write failed."""
    from realtime import node

    calls: list[tuple[str, int]] = []

    class Counting(MemoryRegistry):
        async def refresh(self, node: str, entries: list[Entry], ttl: float) -> None:
            calls.append(("refresh", len(entries)))
            await super().refresh(node, entries, ttl)

        async def touch(self, node: str, entries: list[Entry], ttl: float) -> bool:
            calls.append(("touch", len(entries)))
            return await super().touch(node, entries, ttl)

    class Member:
        def __init__(self, n: int) -> None:
            self.id = entry(n).id
            self.n = n
            self.messages_in = self.messages_out = self.pongs = 0
            self.pending: dict[str, Any] = {}

        def entry(self) -> Entry:
            return entry(self.n, messages_in=self.messages_in)

    registry = Counting()
    monkeypatch.setattr(node, "get_registry", lambda: registry)
    members = [Member(n) for n in range(100)]
    connections: dict[str, Any] = {m.id: m for m in members}
    record = node.NodeRecord(asyncio.get_running_loop(), "n1", connections, list)
    await record._renew(10)
    await record._renew(10)
    members[5].messages_in += 1  # a frame arrived (a subscribe, an ack, ...)
    await record._renew(10)
    assert calls == [("refresh", 100), ("touch", 0), ("touch", 1)]
    held = {e.id: e for e in await registry.all()}
    assert len(held) == 100 and held[members[5].id].messages_in == 1
    await registry.forget_node("n1")  # the record expired (or Redis lost it)
    await record._renew(10)
    assert calls[3:] == [("touch", 0), ("refresh", 100)]
    assert len(await registry.all()) == 100

    # every connection answers a ping: those entries are rewritten once each, spread over
    # the renewals of IDLE_REWRITE_S, not all at the next renewal
    del calls[:]
    for member in members:
        member.messages_in += 1
        member.pongs += 1
    turns = node.idle_turns(10)
    assert turns * 10 / 3 == node.IDLE_REWRITE_S  # 18 renewals of 3.33 s: a minute
    for _ in range(turns):
        await record._renew(10)
    written = [count for kind, count in calls if kind == "touch"]
    assert len(written) == turns and sum(written) == 100, written
    assert max(written) <= 30, written
    held = {e.id: e for e in await registry.all()}
    assert all(held[m.id].messages_in == m.messages_in for m in members)


# ---- connections in the registry, operator actions ------------------------------------------


async def connect(headers: Any = None) -> Any:
    client = RealtimeCommunicator(application, headers=headers)
    assert (await client.connect())[0]
    welcome = await client.receive_frame()
    client.connection_id = welcome["connection_id"]
    await get_hub().registry_written()  # the registry is written in the background
    return client


async def disconnected_reason(client: Any) -> str:
    """The client was disconnected (4403): a last ``close`` frame says why, then the close."""
    frame = await client.receive_frame(2)
    assert (frame["type"], frame["code"]) == ("close", 4403), frame
    output = await client.receive_output(2)
    assert (output["type"], output["code"]) == ("websocket.close", 4403)
    return str(frame["reason"])


@sync_to_async
def logged_in(name: str) -> tuple[Any, Client, list[tuple[bytes, bytes]]]:
    user = get_user_model().objects.create_user(name, password="pw")
    browser = Client()
    browser.force_login(user)
    return user, browser, [(b"cookie", f"sessionid={browser.cookies['sessionid'].value}".encode())]


async def test_open_connections_are_listed_with_user_and_topics():
    user, _, cookie = await logged_in("pia")
    client = await connect(cookie)
    await client.subscribe("public.listed")
    await get_hub().registry_written()
    [listed] = (await get_registry().query(Query(user_id=user.pk))).entries
    assert (listed.id, listed.username, listed.transport, listed.topics) == (
        client.connection_id,
        "pia",
        "websocket",
        ["public.listed"],
    )
    await client.disconnect()
    await get_hub().registry_written()
    assert (await get_registry().query(Query(user_id=user.pk))).total == 0


async def test_operator_disconnect_closes_with_4403():
    client = await connect()
    assert await control.adisconnect([client.connection_id], "bye") == 1
    assert await disconnected_reason(client) == "bye"


async def test_operator_notice_reaches_the_connection():
    client = await connect()
    assert await control.anotify([client.connection_id], "hello from the admin") == 1
    assert await client.receive_frame() == {"type": "notice", "text": "hello from the admin"}
    await client.disconnect()


async def test_logout_disconnects_the_users_connections():
    _, browser, cookie = await logged_in("quin")
    client = await connect(cookie)
    other = await connect()
    await sync_to_async(browser.logout)()
    assert await disconnected_reason(client) == "logged out"
    assert await other.receive_nothing(0.2), "other users' connections stay"
    await other.disconnect()


@pytest.mark.parametrize("change", ["password", "deactivate"])
async def test_password_change_or_deactivation_disconnects(change):
    user, _, cookie = await logged_in(f"rue-{change}")
    client = await connect(cookie)
    if change == "password":
        user.set_password("new-password")
    else:
        user.is_active = False
    await sync_to_async(user.save)()
    reason = await disconnected_reason(client)
    assert reason == ("password changed" if change == "password" else "deactivated")


async def test_saving_a_user_without_credential_changes_keeps_connections():
    user, _, cookie = await logged_in("sam")
    client = await connect(cookie)
    user.first_name = "Sam"
    await sync_to_async(user.save)()
    assert await client.receive_nothing(0.2)
    await client.disconnect()


# ---- commands -----------------------------------------------------------------------------


async def test_status_and_disconnect_commands():
    _, _, cookie = await logged_in("tess")
    client = await connect(cookie)
    await client.subscribe("public.busy")
    await get_hub().registry_written()
    out = io.StringIO()
    await sync_to_async(call_command)("realtime_status", "--json", stdout=out)
    status = json.loads(out.getvalue())
    assert status["connections"] == 1
    assert status["transports"] == {"websocket": 1}
    assert status["topics"] == {"public.busy": 1}
    out = io.StringIO()
    await sync_to_async(call_command)("realtime_disconnect", "--user", "tess", stdout=out)
    assert out.getvalue().strip() == "Disconnect sent to 1 connection(s)."
    assert await disconnected_reason(client) == "disconnected by an operator"


async def test_publish_command_prints_the_message_id():
    client = await connect()
    await client.subscribe("public.cron")
    out = io.StringIO()
    await sync_to_async(call_command)(
        "realtime_publish", "public.cron", "tick", '{"n": 1}', "--ack", stdout=out
    )
    message = await client.receive_frame()
    assert (message["id"], message["data"], message["ack"]) == (
        out.getvalue().strip(),
        {"n": 1},
        True,
    )
    await client.disconnect()


def test_an_entry_as_a_dict_is_what_asdict_gives_without_sharing_its_topics():
    import dataclasses

    one = entry(1, topics=["a", "b"])
    data = one.to_dict()
    assert data == dataclasses.asdict(one)
    data["topics"].append("c")
    assert one.topics == ["a", "b"]
