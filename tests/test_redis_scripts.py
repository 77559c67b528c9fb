"""Lua scripts go by their digest (realtime._redis.Script): the log and the stores send
``EVALSHA``, never the script's text, and a server that lost its scripts (``SCRIPT FLUSH``,
a restart, a promoted replica, a Cluster master that never ran them) gets them loaded again
without the caller seeing an error. The Sentinel case is in tests/test_redis_sentinel.py."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from realtime.log.redis import RedisLog
from realtime.stores.base import Pending
from realtime.stores.redis import RedisDedup, RedisPendingAcks
from realtime.testing import aclose_redis
from tests.redis_topologies import LocalCluster, delete_prefix, topics_on_every_master

PREFIX = "rt-scripts"


def calls(ports: list[int], *names: str) -> int:
    """How many of the commands ``names`` the servers on ``ports`` ran (INFO commandstats)."""
    total = 0
    for port in ports:
        with redis.Redis(port=port) as client:
            stats = client.info("commandstats")
        total += sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in names)
    return total


def flush_scripts(ports: list[int]) -> None:
    for port in ports:
        with redis.Redis(port=port) as client:
            client.script_flush()


async def test_the_log_and_the_stores_run_their_scripts_by_digest_across_a_script_flush(
    private_redis: Any,
):
    """On a private Redis (every command counted is ours): no ``EVAL``; after each
    ``SCRIPT FLUSH`` a script is loaded once, on its first use, and every call answers as if
    nothing happened."""
    ports = [private_redis.port]
    log = RedisLog(private_redis.url, PREFIX, 100, 3600.0)
    dedup = RedisDedup(private_redis.url, PREFIX, 60.0, 5.0)
    acks = RedisPendingAcks(private_redis.url, PREFIX, 60.0)
    pending = Pending("m1", "public.t", "ep", 1, "{}", time.time(), time.time() + 5)
    try:
        epoch, _ = await log.append("public.t", "m1", "e", "1", False, time.time())
        flush_scripts(ports)
        loads = calls(ports, "script|load")
        assert await log.append("public.t", "m2", "e", "2", False, time.time()) == (epoch, 2)
        assert await log.append("public.t", "m2", "e", "2", False, time.time()) == (epoch, 2)
        assert calls(ports, "script|load") == loads + 1, "the append script loaded once"
        replay = await log.read_after("public.t", epoch, 0)
        assert [e.message_id for e in replay.entries] == ["m1", "m2"]
        assert await dedup.begin("k", "owner") == ("new", None)
        flush_scripts(ports)
        assert await dedup.begin("k", "other") == ("pending", None)
        assert await dedup.finish("k", "owner", "answer") == "answer"
        await acks.put("scope", [pending])
        flush_scripts(ports)
        assert await acks.acknowledge("scope", ["m1"]) == ["m1"]
        assert calls(ports, "eval") == 0
        assert calls(ports, "evalsha") >= 9
    finally:
        await aclose_redis()


@pytest.mark.server
async def test_a_cluster_whose_masters_lost_their_scripts_still_appends_on_every_master(
    redis_cluster: LocalCluster,
):
    """``SCRIPT FLUSH`` on every master between two appends to a topic on each master: the
    second append of each loads the script again and continues the topic's offsets."""
    client = redis_cluster.client()
    topics = topics_on_every_master(client, PREFIX, "public.scripts-")
    log = RedisLog(redis_cluster.url, PREFIX, 100, 3600.0)
    try:
        first = [await log.append(t, "m1", "e", "1", False, time.time()) for t in topics]
        flush_scripts(redis_cluster.ports)
        evals = calls(redis_cluster.ports, "eval")
        second = [await log.append(t, "m2", "e", "2", False, time.time()) for t in topics]
        assert second == [(epoch, offset + 1) for epoch, offset in first]
        assert calls(redis_cluster.ports, "eval") == evals
    finally:
        await aclose_redis()
        delete_prefix(client, PREFIX)
        client.close()
