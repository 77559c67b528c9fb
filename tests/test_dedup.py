"""The dedup store's claims, leases and answers (realtime/dedup.py): the in-memory store on a
fake clock, the Redis store on the real Redis, and ``answer_once`` over both."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from realtime._redis import get_client
from realtime.dedup import answer_once
from realtime.stores.base import Dedup
from realtime.stores.memory import MemoryDedup
from realtime.stores.redis import RedisDedup
from realtime.testing import aclose_redis

ANSWER = '{"type":"ack","id":"m","result":1}'
OTHER = '{"type":"ack","id":"m","result":2}'


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ---- MemoryDedup: the lease logic on a clock the test moves --------------------------------


async def test_memory_first_attempt_claims_others_see_pending_then_the_answer():
    store = MemoryDedup(ttl=300, lease=5, clock=Clock())
    assert await store.begin("k", "a") == ("new", None)
    assert await store.begin("k", "b") == ("pending", None)
    assert await store.finish("k", "a", ANSWER) == ANSWER
    assert await store.begin("k", "b") == ("done", ANSWER)


async def test_memory_claim_expires_after_the_lease_and_the_next_attempt_claims():
    clock = Clock()
    store = MemoryDedup(ttl=300, lease=5, clock=clock)
    await store.begin("k", "dead")
    clock.now += 4.9
    assert await store.begin("k", "b") == ("pending", None)
    clock.now += 0.2
    assert await store.begin("k", "b") == ("new", None)
    assert await store.renew("k", "dead") is False, "the dead owner's claim is gone"


async def test_memory_renewal_by_the_owner_only_extends_the_claim():
    clock = Clock()
    store = MemoryDedup(ttl=300, lease=5, clock=clock)
    await store.begin("k", "a")
    clock.now += 4
    assert await store.renew("k", "b") is False
    assert await store.renew("k", "a") is True
    clock.now += 4  # 8 s after the claim, 4 s after the renewal
    assert await store.begin("k", "b") == ("pending", None)


async def test_memory_answer_is_kept_for_the_ttl_not_the_lease():
    clock = Clock()
    store = MemoryDedup(ttl=300, lease=5, clock=clock)
    await store.begin("k", "a")
    await store.finish("k", "a", ANSWER)
    assert await store.renew("k", "a") is False, "an answered claim is not renewed"
    clock.now += 299
    assert await store.begin("k", "b") == ("done", ANSWER)
    clock.now += 2
    assert await store.begin("k", "b") == ("new", None)


async def test_memory_first_answer_wins_when_a_lapsed_claim_ran_twice():
    clock = Clock()
    store = MemoryDedup(ttl=300, lease=5, clock=clock)
    await store.begin("k", "slow")
    clock.now += 6
    await store.begin("k", "fast")
    assert await store.finish("k", "fast", ANSWER) == ANSWER
    assert await store.finish("k", "slow", OTHER) == ANSWER


async def test_memory_store_is_bounded():
    store = MemoryDedup(ttl=300, lease=5, limit=3, clock=Clock())
    for n in range(5):
        await store.begin(f"k{n}", "a")
    assert len(store) <= 3


# ---- RedisDedup: the same rules, atomically, on the real Redis -----------------------------


@pytest.fixture(params=["redis", pytest.param("cluster", marks=pytest.mark.server)])
async def redis_store(
    request: Any, redis_url: str, prefix: str
) -> AsyncIterator[tuple[RedisDedup, Any]]:
    """The store on the one Redis, then on the Redis Cluster; and a client of the same."""
    url = redis_url if request.param == "redis" else request.getfixturevalue("redis_cluster").url
    client = get_client(url)
    yield RedisDedup(url, prefix, ttl=300, lease=60), client
    keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
    for key in keys:
        await client.delete(key)
    await aclose_redis()


async def test_redis_claim_pending_answer(redis_store):
    store, client = redis_store
    assert await store.begin("k", "a") == ("new", None)
    assert await store.begin("k", "b") == ("pending", None)
    assert 0 < await client.pttl(f"{store.prefix}:dedup:k") <= 60_000, "a claim has the lease"
    assert await store.finish("k", "a", ANSWER) == ANSWER
    assert await store.begin("k", "b") == ("done", ANSWER)
    assert await client.pttl(f"{store.prefix}:dedup:k") > 60_000, "an answer has DEDUP_TTL"


async def test_redis_renewal_by_the_owner_only_resets_the_lease(redis_store):
    store, client = redis_store
    name = f"{store.prefix}:dedup:k"
    await store.begin("k", "a")
    await client.pexpire(name, 1000)  # as if most of the lease had passed
    assert await store.renew("k", "b") is False
    assert await client.pttl(name) <= 1000
    assert await store.renew("k", "a") is True
    assert await client.pttl(name) > 50_000


async def test_redis_expired_claim_is_taken_by_the_next_attempt(prefix, redis_store):
    store = RedisDedup(redis_store[0].url, prefix, ttl=300, lease=0.2)
    await store.begin("k", "dead")
    assert await store.begin("k", "b") == ("pending", None)
    deadline = time.monotonic() + 10
    while (state := await store.begin("k", "b")) == ("pending", None):
        assert time.monotonic() < deadline, "the claim never expired"
        await asyncio.sleep(0.05)
    assert state == ("new", None)
    assert await store.renew("k", "dead") is False
    assert await store.renew("k", "b") is True


async def test_redis_first_answer_wins_and_no_claim_overwrites_it(redis_store):
    store, client = redis_store
    await store.begin("k", "slow")
    await client.delete(f"{store.prefix}:dedup:k")  # its lease lapsed
    await store.begin("k", "fast")
    assert await store.finish("k", "fast", ANSWER) == ANSWER
    assert await store.finish("k", "slow", OTHER) == ANSWER
    assert await store.renew("k", "fast") is False
    assert await store.begin("k", "c") == ("done", ANSWER)


# ---- answer_once: wait, in progress, take over, renew, survive cancellation ----------------


class Handler:
    """A handler run the test releases; counts its runs."""

    def __init__(self) -> None:
        self.runs = 0
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self) -> str:
        self.runs += 1
        self.started.set()
        await self.release.wait()
        return f'{{"type":"ack","id":"m","result":{self.runs}}}'


@pytest.fixture(params=["memory", "redis"])
async def store(request, redis_url: str, prefix: str) -> AsyncIterator[Callable[[float], Dedup]]:
    """A factory of stores (one shared key space) with a given lease."""

    def make(lease: float) -> Dedup:
        if request.param == "memory":
            return shared.setdefault(lease, MemoryDedup(ttl=300, lease=lease))
        return RedisDedup(redis_url, prefix, ttl=300, lease=lease)

    shared: dict[float, Dedup] = {}
    yield make
    if request.param == "redis":
        client = aioredis.Redis.from_url(redis_url)
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
        await aclose_redis()


def attempt(dedup: Dedup, run: Callable[[], Awaitable[str]], wait: float = 10, lease: float = 5):
    return asyncio.ensure_future(answer_once(dedup, "k", run, wait=wait, lease=lease))


async def test_overlapping_attempt_waits_for_the_answer_and_the_handler_runs_once(store):
    dedup, handler = store(5), Handler()
    first = attempt(dedup, handler)
    await handler.started.wait()
    second = attempt(dedup, handler)
    await asyncio.sleep(0.1)  # let the second attempt find the claim and start waiting
    assert not second.done()
    handler.release.set()
    assert await first == await second == '{"type":"ack","id":"m","result":1}'
    assert handler.runs == 1


async def test_overlapping_attempt_gets_none_after_its_wait(store):
    dedup, handler = store(5), Handler()
    first = attempt(dedup, handler)
    await handler.started.wait()
    started = time.monotonic()
    assert await answer_once(dedup, "k", handler, wait=0.2, lease=5) is None
    assert time.monotonic() - started >= 0.2
    handler.release.set()
    await first
    assert await answer_once(dedup, "k", handler, wait=0, lease=5) == await first
    assert handler.runs == 1


async def test_waiting_attempt_takes_over_a_claim_whose_owner_died(store):
    dedup, handler = store(0.3), Handler()
    assert (await dedup.begin("k", "dead node"))[0] == "new"
    handler.release.set()
    answer = await answer_once(dedup, "k", handler, wait=10, lease=0.3)
    assert answer == '{"type":"ack","id":"m","result":1}'
    assert handler.runs == 1


async def test_running_handler_keeps_its_claim_past_the_lease(store):
    dedup, handler = store(0.6), Handler()
    first = attempt(dedup, handler, lease=0.6)
    await handler.started.wait()
    await asyncio.sleep(1.5)  # longer than the lease: only the renewals keep the claim
    assert await dedup.begin("k", "other") == ("pending", None)
    handler.release.set()
    await first
    assert handler.runs == 1


async def test_cancelled_attempt_still_stores_its_handlers_answer(store):
    dedup, handler = store(5), Handler()
    first = attempt(dedup, handler)
    await handler.started.wait()
    first.cancel()  # e.g. the POST's client went away
    handler.release.set()
    retry = await answer_once(dedup, "k", handler, wait=10, lease=5)
    assert retry == '{"type":"ack","id":"m","result":1}'
    assert handler.runs == 1


async def test_keys_are_independent(store):
    dedup = store(5)
    answers = [
        await answer_once(dedup, key, _answer(key), wait=1, lease=5)
        for key in (f"a-{uuid.uuid4().hex}", f"b-{uuid.uuid4().hex}")
    ]
    assert answers[0] != answers[1]


def _answer(key: str) -> Callable[[], Awaitable[str]]:
    async def run() -> str:
        return f'{{"type":"ack","id":"{key}","result":null}}'

    return run
