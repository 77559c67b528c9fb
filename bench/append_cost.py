"""What the topic log's replication check (docs/scaling.md, "Redis Sentinel") costs Redis.

Runs the append script in three forms, interleaved round by round on one Redis: as it was
before the check (HEAD's script without its replication check, rebuilt here), as it is (the
check at most once a second per topic), and with the check forced on every call; reports
Redis's own time per call (``INFO commandstats``), the minimum and the median over the
rounds, so that other work on the machine weighs on every form alike::

    .venv/bin/python -m bench.append_cost [--rounds 9] [--calls 10000] [--topics 100]

It needs a Redis on 127.0.0.1 (``BENCH_REDIS_URL`` or ``REDIS_URL``, loopback only); it writes
under a key prefix of its own and deletes it. ``INFO commandstats`` counts every client's
calls: give it a Redis nothing else uses (``redis-server --port 16400 --save ''``)."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

import redis.asyncio as aioredis

from bench._common import redis_url_from_env, require_loopback_redis
from realtime.log import redis as log

# The epoch part of the scripts before the check: the meta hash's epoch, or a new one.
UNCHECKED = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'top', 0)
  redis.call('DEL', KEYS[2], KEYS[3])
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""
FORMS = {
    "without the check": UNCHECKED + log.APPEND[len(log._ENSURE_EPOCH) :],
    "with the check (once a second per topic)": log.APPEND,
    "with the check on every call": log.APPEND.replace(
        f"now - seen >= {log.REPLICATION_CHECK_MS}", "now - seen >= 0"
    ),
}


PREFIX = f"bench-append-{uuid.uuid4().hex[:8]}"


async def _clear(client: aioredis.Redis) -> None:
    keys = [key async for key in client.scan_iter(match=f"{PREFIX}:*", count=1000)]
    if keys:
        await client.delete(*keys)


async def _round(client: aioredis.Redis, script: str, calls: int, topics: int) -> float:
    await _clear(client)
    await client.config_resetstat()
    sha = await client.script_load(script)
    for start in range(0, calls, 200):
        pipe = client.pipeline(transaction=False)
        for n in range(start, min(start + 200, calls)):
            topic = f"t{n % topics}"
            pipe.evalsha(
                sha,
                3,
                f"{PREFIX}:meta:{{{topic}}}",
                f"{PREFIX}:log:{{{topic}}}",
                f"{PREFIX}:ids:{{{topic}}}",
                "epoch",
                86400000,
                1000,
                3600000,
                uuid.uuid4().hex,
                "event",
                '{"n": 1}',
                "0",
                repr(time.time()),
            )
        await pipe.execute()
    stats = await client.info("commandstats")
    return float(stats["cmdstat_evalsha"]["usec_per_call"])


async def main(rounds: int, calls: int, topics: int) -> None:
    url = redis_url_from_env()
    require_loopback_redis(url)
    client = aioredis.Redis.from_url(url)
    spent: dict[str, list[float]] = {name: [] for name in FORMS}
    try:
        for _ in range(rounds):
            for name, script in FORMS.items():
                spent[name].append(await _round(client, script, calls, topics))
    finally:
        await _clear(client)
        await client.aclose()
    for name, values in spent.items():
        print(
            f"{name:42} min {min(values):6.1f} us/call   median "
            f"{statistics.median(values):6.1f} us/call"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=10000)
    parser.add_argument("--topics", type=int, default=100)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.rounds, arguments.calls, arguments.topics))
