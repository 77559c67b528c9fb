"""Single-flight log reads (realtime/log/shared.py): many resumes of one topic at once share
log reads, and each still gets exactly what a read of its own would have given."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import redis

from realtime.log.base import Replay
from realtime.log.memory import MemoryLog
from realtime.log.redis import RedisLog
from realtime.log.shared import SharedReads
from realtime.subscription import Subscription
from realtime.testing import aclose_redis


class CountingLog:
    """A log that counts its reads; a read waits for ``gate`` when one is given."""

    def __init__(self, log: Any) -> None:
        self.log = log
        self.reads: list[tuple[str, str | None, int]] = []
        self.gate: asyncio.Event | None = None
        self.reading = asyncio.Event()

    async def append(self, *args: Any) -> tuple[str, int]:
        return await self.log.append(*args)

    async def read_after(self, topic: str, epoch: str | None, offset: int) -> Replay:
        self.reads.append((topic, epoch, offset))
        self.reading.set()
        if self.gate is not None:
            await self.gate.wait()
        return await self.log.read_after(topic, epoch, offset)


async def fill(log: Any, topic: str, count: int) -> str:
    for n in range(1, count + 1):
        epoch, _ = await log.append(topic, f"m{n}", "e", str(n), False, time.time())
    return epoch


def commands(url: str, *names: str) -> int:
    """How many of the commands ``names`` this Redis has run (INFO commandstats)."""
    client = redis.Redis.from_url(url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in names)


class Client:
    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []

    def send(self, text: str) -> None:
        self.frames.append(json.loads(text))

    def sent(self, *args: Any) -> None:
        pass


async def test_a_storm_of_resumes_of_one_topic_costs_a_few_redis_reads(private_redis):
    """500 subscriptions of one process resume one topic at once from 5 different cursors
    (on a private Redis, so every command counted is ours): a handful of log reads, and each
    subscription replays exactly the messages after its own cursor."""
    log = RedisLog(private_redis.url, "rt-shared", 100, 3600.0)
    epoch = await fill(log, "public.storm", 30)
    shared = SharedReads(log)
    clients = [Client() for _ in range(500)]
    subscriptions = [Subscription("public.storm", shared, c.send, c.sent) for c in clients]
    before = commands(private_redis.url, "eval", "evalsha")
    try:
        started = await asyncio.gather(
            *(s.start({"epoch": epoch, "offset": 20 + n % 5}) for n, s in enumerate(subscriptions))
        )
    finally:
        await aclose_redis()
    reads = commands(private_redis.url, "eval", "evalsha") - before
    assert all(started)
    assert reads <= 3, f"{reads} log reads for 500 resumes of one topic"
    for n, client in enumerate(clients):
        cursor = 20 + n % 5
        subscribed = client.frames[0]
        assert (subscribed["type"], subscribed["recovered"], subscribed["offset"]) == (
            "subscribed",
            True,
            cursor,
        )
        assert [f["offset"] for f in client.frames[1:]] == list(range(cursor + 1, 31))


async def test_a_read_asked_for_while_one_runs_waits_for_the_next_one():
    """The running read may have seen the log before the second caller asked: the second gets
    a read started after it asked, so it sees a message appended in between."""
    log = CountingLog(MemoryLog(100, 3600.0))
    epoch = await fill(log, "t", 3)
    shared = SharedReads(log)
    log.gate = asyncio.Event()
    first = asyncio.create_task(shared.read_after("t", epoch, 1))
    await log.reading.wait()  # the first read runs (and has read nothing yet)
    second = asyncio.create_task(shared.read_after("t", epoch, 2))
    third = asyncio.create_task(shared.read_after("t", epoch, 3))
    await asyncio.sleep(0)
    await log.append("t", "m4", "e", "4", False, time.time())
    log.gate.set()
    answers = await asyncio.gather(first, second, third)
    assert [[e.offset for e in a.entries] for a in answers] == [[2, 3, 4], [3, 4], [4]]
    assert [a.offset for a in answers] == [1, 2, 3]
    assert log.reads == [("t", epoch, 1), ("t", epoch, 2)], "the 2nd and 3rd shared a read"


async def test_each_caller_gets_the_answer_for_its_own_cursor():
    log = CountingLog(MemoryLog(5, 3600.0))  # keeps offsets 6 to 10
    epoch = await fill(log, "t", 10)
    shared = SharedReads(log)
    log.gate = asyncio.Event()
    blocker = asyncio.create_task(shared.read_after("t", None, 0))
    await log.reading.wait()
    calls = [
        shared.read_after("t", epoch, 2),  # trimmed: too_old
        shared.read_after("t", epoch, 7),  # cut from the shared answer's too_old: own read
        shared.read_after("t", epoch, 10),  # up to date
        shared.read_after("t", epoch, 12),  # ahead of the log
        shared.read_after("t", "other", 3),  # another epoch: another read
    ]
    tasks = [asyncio.create_task(c) for c in calls]
    await asyncio.sleep(0)
    log.gate.set()
    await blocker
    answers = await asyncio.gather(*tasks)
    expected = [await log.log.read_after("t", e, o) for e, o in [(epoch, 2), (epoch, 7)]]
    expected += [await log.log.read_after("t", e, o) for e, o in [(epoch, 10), (epoch, 12)]]
    expected.append(await log.log.read_after("t", "other", 3))
    assert answers == expected
    assert [a.reset for a in answers] == ["too_old", None, None, "cursor_ahead", "epoch_changed"]


async def test_a_caller_that_goes_away_does_not_cancel_the_others():
    log = CountingLog(MemoryLog(100, 3600.0))
    epoch = await fill(log, "t", 3)
    shared = SharedReads(log)
    log.gate = asyncio.Event()
    leaving = asyncio.create_task(shared.read_after("t", epoch, 1))
    staying = asyncio.create_task(shared.read_after("t", epoch, 1))
    await log.reading.wait()
    leaving.cancel()
    log.gate.set()
    assert [e.offset for e in (await staying).entries] == [2, 3]
    assert len(log.reads) == 1


async def test_a_failed_read_fails_every_caller_that_shared_it():
    class Down:
        async def read_after(self, *args: Any) -> Replay:
            await asyncio.sleep(0)
            raise ConnectionError("log down")

    shared = SharedReads(Down())  # type: ignore[arg-type]
    answers = await asyncio.gather(
        *(shared.read_after("t", "e", n) for n in range(3)), return_exceptions=True
    )
    assert [type(a) for a in answers] == [ConnectionError] * 3
