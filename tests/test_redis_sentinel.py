"""Redis Sentinel: the ``redis+sentinel://`` URL, the lost-writes guard of the topic log, and a
real failover (master SIGKILLed while publishing) under two daphne nodes with live clients."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import websockets
from asgiref.sync import sync_to_async

import realtime
from realtime._redis import get_client
from realtime.log.redis import RedisLog
from realtime.management.errors import backend_failed
from realtime.redis_sentinel import parse_sentinel_url
from realtime.testing import aclose_redis
from tests.conftest import realtime_on_redis
from tests.redis_sentinel_setup import SentinelSetup
from tests.servers import Client, Daphne, make_database, running_nodes

PREFIX = "rt-sentinel"


def test_a_sentinel_url_names_the_sentinels_the_service_and_the_master_connection():
    target = parse_sentinel_url(
        "rediss+sentinel://app:s%40cret@10.0.0.1:26379,10.0.0.2,[::1]:26380/orders/3"
        "?sentinel_password=watch&ssl_cert_reqs=none"
    )
    assert target.sentinels == [("10.0.0.1", 26379), ("10.0.0.2", 26379), ("::1", 26380)]
    assert target.service == "orders"
    assert target.master == {
        "db": 3,
        "username": "app",
        "password": "s@cret",
        "ssl": True,
        "ssl_cert_reqs": "none",
    }
    assert target.sentinel["password"] == "watch"
    assert "ssl" not in target.sentinel


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+sentinel://h1:26379", "it names no service"),
        ("redis+sentinel:///svc/0", "it names no sentinel"),
        ("redis+sentinel://h1:port/svc", "sentinel address 'h1:port' has no valid port"),
        ("redis+sentinel://h1/svc/zero", "its database 'zero' is not a number"),
        ("redis+sentinel://h1/svc?password=x", "unknown query parameter 'password'"),
    ],
)
def test_a_malformed_sentinel_url_says_what_is_wrong(url, problem):
    with pytest.raises(ValueError, match=problem):
        parse_sentinel_url(url)


def test_an_operator_command_names_the_sentinels_not_a_password(realtime_settings):
    realtime_settings(REDIS_URL="redis+sentinel://:pw@10.0.0.1:26379,10.0.0.2/orders/0")
    error = backend_failed("the connection registry could not be read", ConnectionError("no"))
    assert str(error) == (
        "The connection registry could not be read (Redis at service 'orders' of Sentinel "
        "10.0.0.1:26379,10.0.0.2:26379): ConnectionError: no. Is Redis running, and is "
        "REALTIME['REDIS_URL'] right?"
    )


async def test_a_master_that_checks_a_topic_again_keeps_its_epoch(use_redis):
    """The replication check (once a second per topic) on a master that was never promoted
    keeps the epoch and the offsets, even when the topic was written under another
    replication id: a restart (with persistence) changes it."""
    log = RedisLog(use_redis["url"], use_redis["prefix"], 100, 3600)
    epoch, first = await log.append("t", "m1", "e", "1", False, time.time())
    # the stamp is a second old, and the id is not this server's (as after a restart)
    await get_client(use_redis["url"]).hset(
        f"{use_redis['prefix']}:meta:{{t}}", mapping={"seen": 0, "rid": "f" * 40}
    )
    assert await log.append("t", "m2", "e", "1", False, time.time()) == (epoch, first + 1)
    assert (await log.read_after("t", epoch, first + 1)).reset is None


@pytest.fixture
def deployment() -> Iterator[SentinelSetup]:
    setup = SentinelSetup()
    yield setup
    setup.stop()


@pytest.mark.server
async def test_a_failover_that_lost_appends_starts_a_new_epoch(deployment):
    log = RedisLog(deployment.url, PREFIX, 100, 3600)
    try:
        kept = await log.append("kept", "k1", "e", "1", False, time.time())
        for n in range(3):
            await log.append("lost", f"m{n}", "e", "1", False, time.time())
        assert await get_client(deployment.url).execute_command("WAIT", 1, 5000) == 1
        # the replica has the replication id that wrote the topic, never the master's stamp
        replicated = deployment.replica.client.hgetall(f"{PREFIX}:meta:{{lost}}")
        assert replicated.keys() == {"epoch", "top", "rid"}
        deployment.detach_replica()
        # appended on the master only: the failover loses them
        seen = await log.append("lost", "m3", "e", "1", False, time.time())
        # the promoted replica holds no script: the log's calls load them again (NOSCRIPT)
        deployment.replica.client.script_flush()
        deployment.kill_master()
        await asyncio.to_thread(deployment.wait_for_failover)

        # the promoted replica ends at offset 3: without a new epoch, offset 4 would go to
        # another message than the one clients saw there
        replay = await log.read_after("lost", *seen)
        assert replay.reset == "epoch_changed" and replay.epoch != seen[0]
        epoch, offset = await log.append("lost", "m4", "e", "1", False, time.time())
        assert (epoch, offset) == (replay.epoch, 1)
        # a failover cannot tell which topics lost writes: every topic written before it
        # starts a new epoch
        assert (await log.read_after("kept", *kept)).reset == "epoch_changed"
    finally:
        await aclose_redis()


@pytest.fixture
def sentinel_nodes(deployment: SentinelSetup) -> Iterator[list[Daphne]]:
    path, _ = make_database()
    env = {"RT_REDIS_URL": deployment.url, "RT_PREFIX": PREFIX}
    with running_nodes(
        path, env, node=lambda db, env: Daphne(db, env, settings="tests.settings_sentinel")
    ) as servers:
        yield servers
    os.unlink(path)


async def publish(topic: str, message_id: str, within: float = 20) -> None:
    """Publish until the log takes it (a publish during the failover fails loudly); the same
    message id makes a retry safe."""
    deadline = time.monotonic() + within
    while True:
        try:
            await sync_to_async(realtime.publish)(topic, "n", message_id, message_id=message_id)
            return
        except (realtime.PublishError, realtime.PublishTimeout):
            assert time.monotonic() < deadline, "publishing never recovered"
            await asyncio.sleep(0.1)


async def publish_paced(topic: str, ids: list[str]) -> None:
    """At 20 messages a second (each waits for the previous one)."""
    for message_id in ids:
        began = time.monotonic()
        await publish(topic, message_id)
        await asyncio.sleep(max(0.0, 0.05 - (time.monotonic() - began)))


class Reader:
    """A client whose frames are read as they come."""

    def __init__(self, client: Client, subscribed: dict[str, Any]) -> None:
        self.client = client
        self.frames: list[dict[str, Any]] = [subscribed]
        self.closed: int | None = None
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            while True:
                self.frames.append(await self.client.receive(timeout=60))
        except websockets.ConnectionClosed as closed:
            self.closed = closed.rcvd.code if closed.rcvd else -1

    def ids(self) -> set[str]:
        return {f["id"] for f in self.frames if f["type"] == "message"}


async def until(condition: Any, within: float, what: Any) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, what()
        await asyncio.sleep(0.05)


def assert_no_silent_gap(frames: list[dict[str, Any]]) -> None:
    """Within an epoch the offsets go up by one; a new epoch only after a ``reset`` to it."""
    position: tuple[str, int] | None = None
    for frame in frames:
        if frame["type"] in ("subscribed", "reset"):
            position = (frame["epoch"], frame["offset"])
        elif frame["type"] == "message":
            assert position is not None
            assert (frame["epoch"], frame["offset"]) == (position[0], position[1] + 1), (
                f"after {position}: {frame}"
            )
            position = (frame["epoch"], frame["offset"])


@pytest.mark.e2e
async def test_clients_on_two_nodes_get_every_message_or_a_reset_across_a_failover(
    deployment, sentinel_nodes
):
    topic = f"public.failover-{uuid.uuid4().hex[:6]}"
    readers = []
    for node in sentinel_nodes:
        for _ in range(2):
            client = await Client.connect(node)
            readers.append(Reader(client, await client.subscribe(topic)))
    marks = [node.mark() for node in sentinel_nodes]

    def everyone_has(ids: list[str]) -> bool:
        return all(set(ids) <= reader.ids() for reader in readers)

    def missing(ids: list[str]) -> Any:
        return lambda: [sorted(set(ids) - reader.ids()) for reader in readers]

    with realtime_on_redis(deployment.url, PREFIX, deployment.layer_host()):
        replicated = [f"a{n}" for n in range(10)]
        await publish_paced(topic, replicated)
        await until(lambda: everyone_has(replicated), 10, missing(replicated))

        # written and delivered, never replicated: the promoted replica will not have them
        deployment.detach_replica()
        lost = [f"b{n}" for n in range(6)]
        await publish_paced(topic, lost)
        await until(lambda: everyone_has(lost), 10, missing(lost))

        deployment.kill_master()
        during = [f"c{n}" for n in range(20)]
        publishing = asyncio.create_task(publish_paced(topic, during))
        await asyncio.to_thread(deployment.wait_for_failover)
        await publishing
        after = [f"d{n}" for n in range(20)]
        await publish_paced(topic, after)
        await until(lambda: everyone_has(during + after), 20, missing(during + after))

    for reader in readers:
        reader.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader.task
        assert reader.closed is None, "a failover costs a client a reset, not a disconnect"
        resets = [f for f in reader.frames if f["type"] == "reset"]
        assert [(r["reason"], r["topic"]) for r in resets] == [("epoch_changed", topic)]
        assert_no_silent_gap(reader.frames)
        await reader.client.close()
    for node, mark in zip(sentinel_nodes, marks, strict=True):
        node.assert_no_tracebacks(since=mark)
