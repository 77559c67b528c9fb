"""The topic log contract, run against both backends (Redis: the real server)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis

from realtime.log.memory import MemoryLog
from realtime.log.redis import RedisLog
from realtime.testing import aclose_redis


@pytest.fixture(params=["memory", "redis", pytest.param("cluster", marks=pytest.mark.server)])
async def make_log(request: Any, prefix: str) -> AsyncIterator[Any]:
    created: list[Any] = []

    def factory(size: int = 100, ttl: float = 3600.0) -> Any:
        if request.param == "memory":
            log: Any = MemoryLog(size, ttl)
        elif request.param == "redis":
            log = RedisLog(request.getfixturevalue("redis_url"), prefix, size, ttl)
        else:
            log = RedisLog(request.getfixturevalue("redis_cluster").url, prefix, size, ttl)
        created.append(log)
        return log

    yield factory
    for log in created:
        await log.clear()
    await aclose_redis()


async def append(log: Any, topic: str, n: int, when: float | None = None) -> tuple[str, int]:
    return await log.append(topic, f"id-{n}", "ev", str(n), n % 2 == 0, when or time.time())


async def test_offsets_increase_by_one_within_an_epoch(make_log):
    log = make_log()
    positions = [await append(log, "t.a", n) for n in range(5)]
    assert [offset for _, offset in positions] == [1, 2, 3, 4, 5]
    assert len({epoch for epoch, _ in positions}) == 1


async def test_topics_have_independent_offsets(make_log):
    log = make_log()
    await append(log, "t.a", 1)
    assert (await append(log, "t.b", 1))[1] == 1


async def test_read_after_returns_the_entries_after_the_cursor(make_log):
    log = make_log()
    for n in range(1, 6):
        epoch, _ = await append(log, "t.a", n)
    replay = await log.read_after("t.a", epoch, 2)
    assert replay.reset is None
    assert (replay.epoch, replay.offset) == (epoch, 2)
    assert [(e.offset, e.message_id, e.data, e.ack) for e in replay.entries] == [
        (3, "id-3", "3", False),
        (4, "id-4", "4", True),
        (5, "id-5", "5", False),
    ]


async def test_fresh_read_gives_the_current_position(make_log):
    log = make_log()
    empty = await log.read_after("t.new", None, 0)
    assert (empty.offset, empty.entries, empty.reset) == (0, [], None)
    epoch, _ = await append(log, "t.new", 1)
    assert epoch == empty.epoch, "a subscriber's epoch must survive the first publish"
    assert (await log.read_after("t.new", None, 0)).offset == 1


async def test_read_at_the_head_is_empty(make_log):
    log = make_log()
    epoch, offset = await append(log, "t.a", 1)
    replay = await log.read_after("t.a", epoch, offset)
    assert (replay.entries, replay.reset, replay.offset) == ([], None, 1)


async def test_bounded_by_count_and_too_old_cursor_is_reset(make_log):
    log = make_log(size=3)
    for n in range(1, 8):
        epoch, _ = await append(log, "t.a", n)
    ok = await log.read_after("t.a", epoch, 4)
    assert [e.offset for e in ok.entries] == [5, 6, 7]
    stale = await log.read_after("t.a", epoch, 3)
    assert (stale.reset, stale.entries, stale.offset) == ("too_old", [], 7)


async def test_bounded_by_age(make_log):
    log = make_log(ttl=60)
    epoch, _ = await append(log, "t.a", 1, when=time.time() - 120)
    await append(log, "t.a", 2)
    assert (await log.read_after("t.a", epoch, 0)).reset == "too_old"
    assert [e.offset for e in (await log.read_after("t.a", epoch, 1)).entries] == [2]


async def test_unknown_epoch_is_reset(make_log):
    log = make_log()
    await append(log, "t.a", 1)
    replay = await log.read_after("t.a", "other", 1)
    assert (replay.reset, replay.offset) == ("epoch_changed", 1)


async def test_cursor_ahead_of_the_log_is_reset(make_log):
    log = make_log()
    epoch, _ = await append(log, "t.a", 1)
    replay = await log.read_after("t.a", epoch, 9)
    assert (replay.reset, replay.epoch, replay.offset) == ("cursor_ahead", epoch, 1)


async def test_clear_starts_a_new_epoch(make_log):
    log = make_log()
    epoch, _ = await append(log, "t.a", 1)
    await log.clear()
    new_epoch, offset = await append(log, "t.a", 1)
    assert (new_epoch != epoch, offset) == (True, 1)
    assert (await log.read_after("t.a", epoch, 1)).reset == "epoch_changed"


async def test_redis_flush_is_detected_as_a_new_epoch(redis_url, prefix):
    """A Redis that lost our keys (FLUSHDB, restart without persistence) starts a new epoch,
    so every old cursor is answered with reset, never trusted."""
    log = RedisLog(redis_url, prefix, 100, 3600)
    epoch, _ = await append(log, "t.flush", 1)
    await append(log, "t.flush", 2)
    client = redis.Redis.from_url(redis_url)
    client.delete(*client.keys(f"{prefix}:*"))
    replay = await log.read_after("t.flush", epoch, 1)
    assert replay.reset == "epoch_changed"
    assert replay.epoch != epoch
    assert (await append(log, "t.flush", 3)) == (replay.epoch, 1)
    await log.clear()
    await aclose_redis()


async def test_redis_stream_is_trimmed_to_the_history_size(redis_url, prefix):
    log = RedisLog(redis_url, prefix, 5, 3600)
    for n in range(20):
        await append(log, "t.trim", n)
    assert redis.Redis.from_url(redis_url).xlen(f"{prefix}:log:{{t.trim}}") == 5
    await log.clear()
    await aclose_redis()


async def test_append_many_appends_in_order_and_once_per_message_id(make_log):
    log = make_log()
    await log.append("t", "a", "e", "1", False, time.time())
    now = time.time()
    positions = await log.append_many(
        "t", [("b", "e", "2", True, now), ("a", "e", "x", False, now), ("c", "e", "3", False, now)]
    )
    epoch = positions[0][0]
    assert positions == [(epoch, 2), (epoch, 1), (epoch, 3)]
    replay = await log.read_after("t", epoch, 0)
    assert [(e.offset, e.message_id, e.data, e.ack) for e in replay.entries] == [
        (1, "a", "1", False),
        (2, "b", "2", True),
        (3, "c", "3", False),
    ]
    assert await log.append_many("t", [("c", "e", "3", False, now)]) == [(epoch, 3)]
