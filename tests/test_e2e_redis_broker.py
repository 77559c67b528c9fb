"""The two-node tests that go through the broker, again with the Redis broker
(``REALTIME["BROKER"] = "redis"``) in the daphne nodes and in the test process: broadcasts,
resume across nodes, ACKs relayed to another node, a disconnect order (control messages)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis

from realtime.broker.redis import RedisBroker
from tests.servers import Client
from tests.test_cluster import test_disconnect_order_reaches_the_node_that_holds_the_socket
from tests.test_e2e import (
    test_acks_owed_from_another_connection_cost_no_rate_budget,
    test_many_clients_on_two_nodes_receive_everything_once_in_order,
    test_published_once_received_on_both_nodes,
    test_resume_on_the_other_node_gets_exactly_the_missed_messages,
)

pytestmark = pytest.mark.e2e

__all__ = [
    "test_acks_owed_from_another_connection_cost_no_rate_budget",
    "test_disconnect_order_reaches_the_node_that_holds_the_socket",
    "test_many_clients_on_two_nodes_receive_everything_once_in_order",
    "test_published_once_received_on_both_nodes",
    "test_resume_on_the_other_node_gets_exactly_the_missed_messages",
]


@pytest.fixture(scope="module")
def broker() -> str:
    return "redis"


@pytest.fixture(scope="module")
def node_settings() -> dict[str, str]:
    return {"RT_BROKER": "redis", "RT_ACK_TIMEOUT": "0.3"}


@pytest.fixture
def cluster(use_redis) -> None:
    """The test process on the nodes' Redis and broker (tests/test_cluster.py's fixture of
    that name also sets its own heartbeat)."""


async def test_a_node_subscribes_a_topics_channel_while_it_has_subscribers(
    nodes, use_redis, redis_url, cluster_prefix
):
    name = f"public.broker-{uuid.uuid4().hex[:8]}"
    channel = RedisBroker(redis_url, cluster_prefix).topic_channel(name)
    numsub = redis.Redis.from_url(redis_url).pubsub_numsub
    clients = [await Client.connect(nodes[0]) for _ in range(2)]
    for client in clients:
        await client.subscribe(name)
    assert numsub(channel) == [(channel.encode(), 1)], "one subscription per node"
    for client in clients:
        await client.close()
    for _ in range(100):  # Redis' own state, no event to await: polled, at most 5 s
        if not numsub(channel)[0][1]:
            break
        await asyncio.sleep(0.05)
    assert numsub(channel) == [(channel.encode(), 0)], "left with the last subscriber"
