"""The Redis broker (realtime/broker/redis.py) on one Redis and on a three-master Redis
Cluster (sharded pub/sub): what hubs of two processes need of it. Each broker instance here
holds its own pub/sub connections, as a process of its own would."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from realtime import health
from realtime._redis import aclose_clients
from realtime.broker.base import CONTROL_TYPE, MESSAGE_TYPE
from realtime.broker.redis import RedisBroker
from realtime.redis_cluster import ClusterAddress, is_cluster_url, parse_cluster_url
from tests.conftest import RedisServer
from tests.redis_topologies import LocalCluster


class Hub:
    """What the broker sees of a hub (realtime.broker.base.Endpoint): it records what it is
    handed."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.subscribers: dict[str, object] = {}
        self.received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.resyncs = 0
        self.resynced = asyncio.Event()

    def dispatch(self, message: dict[str, Any]) -> None:
        self.received.put_nowait(message)

    def control(self, message: dict[str, Any]) -> None:
        self.received.put_nowait(message)

    async def channel(self) -> str:
        return ""

    def resync(self) -> None:
        self.resyncs += 1
        self.resynced.set()

    async def next(self, timeout: float = 5) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            return await self.received.get()


def message(topic: str, n: int) -> dict[str, Any]:
    return {"type": MESSAGE_TYPE, "topic": topic, "n": n}


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[LocalCluster]:
    """A cluster of this module's own, for the test that moves a slot: the session's
    ``redis_cluster`` is shared with other modules, whose keys may sit in that slot (a slot
    holding keys cannot be given away so) and which would see the moved slot if the test
    failed before moving it back."""
    local = LocalCluster()
    yield local
    local.stop()


@pytest.fixture(params=["one", "cluster"])
def target(request: pytest.FixtureRequest, redis_url: str) -> str:
    """The URL brokers use: the test Redis, or the session's three-master cluster."""
    if request.param == "cluster":
        request.applymarker(pytest.mark.server)
        return str(request.getfixturevalue("redis_cluster").url)
    return redis_url


@pytest.fixture
async def brokers(target: str) -> AsyncIterator[list[RedisBroker]]:
    """Two brokers (two processes) on ``target`` under a fresh prefix."""
    prefix = f"rt-broker-{uuid.uuid4().hex[:8]}"
    made = [RedisBroker(target, prefix), RedisBroker(target, prefix)]
    yield made
    for broker in made:
        await broker.aclose()
    await aclose_clients()  # the loop's shared client, which publishes on a cluster


def test_a_broker_reads_a_cluster_url_with_the_one_parser():
    # realtime.redis_cluster's own test has the forms and the errors; here what the broker
    # takes from it: credentials percent-decoded, TLS from the scheme, None on one Redis
    broker = RedisBroker("rediss+cluster://u:p%40ss@a,10.0.0.2:7001/", "p")
    assert broker.cluster == ClusterAddress((("a", 6379), ("10.0.0.2", 7001)), "u", "p@ss", True)
    assert RedisBroker("redis://a:6379/0", "p").cluster is None
    with pytest.raises(ValueError, match="no node is given"):
        RedisBroker("redis+cluster:///", "p")


def subscriptions(url: str, channel: str) -> int:
    """How many pub/sub connections Redis (or the owning master) has on ``channel``."""
    if not is_cluster_url(url):
        return int(redis.Redis.from_url(url).pubsub_numsub(channel)[0][1])
    total = 0
    for host, port in parse_cluster_url(url).nodes:
        total += int(redis.Redis(host=host, port=port).pubsub_shardnumsub(channel)[0][1])
    return total


async def test_hubs_of_two_processes_get_what_either_broadcasts_until_they_leave(brokers, target):
    first, second = brokers
    one, two = Hub(), Hub()
    await first.join(one, "room.1")
    await second.join(two, "room.1")
    await second.join(two, "room.2")
    for n in range(3):
        await first.broadcast("room.1", message("room.1", n))
    await second.broadcast("room.2", message("room.2", 9))
    assert [(await one.next())["n"] for _ in range(3)] == [0, 1, 2]
    assert [(await two.next())["n"] for _ in range(4)] == [0, 1, 2, 9]
    channel = first.topic_channel("room.1")
    assert subscriptions(target, channel) == 2

    await second.leave(two, "room.1")
    await second.leave(two, "room.2")
    await first.broadcast("room.1", message("room.1", 3))
    assert (await one.next())["n"] == 3
    await first.leave(one, "room.1")
    await first.address(one)  # a round trip on its connection: the leave went before it
    await second.address(two)
    assert subscriptions(target, channel) == 0
    assert subscriptions(target, first.topic_channel("room.2")) == 0
    assert two.received.empty()


async def test_a_control_message_reaches_the_hub_at_its_address(brokers):
    first, second = brokers
    one, two = Hub(), Hub()
    address = await second.address(two)
    assert await second.address(two) == address
    await first.address(one)
    await first.send_control(address, {"type": CONTROL_TYPE, "op": "probe", "probe": "x"})
    assert await two.next() == {"type": CONTROL_TYPE, "op": "probe", "probe": "x"}
    assert one.received.empty()


@pytest.mark.server
async def test_topic_channels_land_on_every_master_and_reach_hubs_from_each(redis_cluster):
    prefix = f"rt-broker-{uuid.uuid4().hex[:8]}"
    first, second = RedisBroker(redis_cluster.url, prefix), RedisBroker(redis_cluster.url, prefix)
    try:
        topics: dict[int, str] = {}
        for n in range(200):
            topic = f"spread.{n}"
            owner = redis_cluster.owner(key_slot(first.topic_channel(topic).encode()))
            topics.setdefault(owner, topic)
        assert sorted(topics) == sorted(redis_cluster.ports)
        one, two = Hub(), Hub()
        for topic in topics.values():
            await second.join(two, topic)
        for port, topic in topics.items():
            [(_, count)] = redis.Redis(port=port).pubsub_shardnumsub(first.topic_channel(topic))
            assert count == 1, f"{topic} is not subscribed on its master {port}"
            await first.broadcast(topic, message(topic, port))
        got = {(m["topic"], m["n"]) for m in [await two.next() for _ in topics]}
        assert got == {(topic, port) for port, topic in topics.items()}
        assert len(second.listener().shards) == 3  # one pub/sub connection per master
        del one
    finally:
        await first.aclose()
        await second.aclose()
        await aclose_clients()


async def test_after_a_redis_restart_the_broker_subscribes_again_and_resyncs_its_hubs(
    private_redis: RedisServer,
):
    prefix = f"rt-broker-{uuid.uuid4().hex[:8]}"
    broker, publisher = (
        RedisBroker(private_redis.url, prefix),
        RedisBroker(private_redis.url, prefix),
    )
    try:
        hub = Hub()
        await broker.join(hub, "after")
        address = await broker.address(hub)
        health.reset()  # what an earlier test left: "layer" is up until this broker says
        with private_redis.down():
            for _ in range(100):  # until the broker noticed (no event to await), at most 5 s
                if not health.is_up("layer"):
                    break
                await asyncio.sleep(0.05)
            assert not health.is_up("layer")
            # a connection opening meanwhile still gets its hub's address
            assert await broker.address(hub) == address
        async with asyncio.timeout(10):
            await hub.resynced.wait()
        await publisher.broadcast("after", message("after", 1))
        await publisher.send_control(address, {"type": CONTROL_TYPE, "op": "x"})
        assert (await hub.next())["n"] == 1
        assert (await hub.next())["op"] == "x"
        assert subscriptions(private_redis.url, broker.topic_channel("after")) == 1
    finally:
        await broker.aclose()
        await publisher.aclose()
        await aclose_clients()


def move_slot(cluster: LocalCluster, slot: int, to_port: int) -> None:
    """Give ``slot`` (holding no key) to the master on ``to_port``, as a resharding does."""
    target = redis.Redis(port=to_port).execute_command("CLUSTER MYID")
    target = target.decode() if isinstance(target, bytes) else target
    source = cluster.owner(slot)
    for port in [to_port, source, *(p for p in cluster.ports if p not in (to_port, source))]:
        redis.Redis(port=port).execute_command("CLUSTER SETSLOT", slot, "NODE", target)
    process = cluster.processes[cluster.ports.index(to_port)]
    LocalCluster._wait(to_port, process, lambda _: cluster.owner(slot) == to_port)


@pytest.mark.server
async def test_a_channel_whose_slot_moves_is_subscribed_on_its_new_master(own_cluster):
    prefix = f"rt-broker-{uuid.uuid4().hex[:8]}"
    broker, publisher = RedisBroker(own_cluster.url, prefix), RedisBroker(own_cluster.url, prefix)
    try:
        hub = Hub()
        await broker.join(hub, "moving")
        slot = key_slot(broker.topic_channel("moving").encode())
        source = own_cluster.owner(slot)
        target_port = next(p for p in own_cluster.ports if p != source)
        move_slot(own_cluster, slot, target_port)
        async with asyncio.timeout(10):
            await hub.resynced.wait()
        channel = broker.topic_channel("moving")
        [(_, count)] = redis.Redis(port=target_port).pubsub_shardnumsub(channel)
        assert count == 1
        await publisher.broadcast("moving", message("moving", 1))
        assert (await hub.next())["n"] == 1
    finally:
        await broker.aclose()
        await publisher.aclose()
        await aclose_clients()
