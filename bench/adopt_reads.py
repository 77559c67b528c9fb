"""What a reconnect storm's pending-ACK reads cost a node: N reads at once of N scopes' pending
ACKs (as N resumed subscriptions make, ``acks.adopt``), through the store (one pipeline,
realtime/stores/batched.py) and as one ``HGETALL`` each (before it), on a fresh connection
pool and then on the warm one; prints the time and the pool's connections for each, and
deletes its keys::

    .venv/bin/python -m bench.adopt_reads [--reads 500]

It needs a Redis on 127.0.0.1 (``BENCH_REDIS_URL`` or ``REDIS_URL``, loopback only)."""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from bench._common import redis_url_from_env, require_loopback_redis
from realtime._redis import aclose_clients, get_client
from realtime.stores.base import Pending
from realtime.stores.redis import RedisPendingAcks


async def main(url: str, count: int) -> None:
    prefix = f"bench-adopt-{uuid.uuid4().hex[:8]}"
    store = RedisPendingAcks(url, prefix, 60.0)
    scopes = [f"u:{n}" for n in range(count)]
    try:
        for n, scope in enumerate(scopes[:50]):  # a few users owe an ACK; most owe none
            await store.put(scope, [Pending(f"m{n}", "t", "e", n, "frame", 1.0, 31.0)])
        client = get_client(url)
        pool: Any = client.connection_pool

        def connections() -> int:
            return len(pool._in_use_connections) + len(pool._available_connections)

        async def batched() -> None:
            await asyncio.gather(*(store.of_topic(scope, "t") for scope in scopes))

        async def one_each() -> None:
            keys = [f"{prefix}:acks:{{{scope}}}" for scope in scopes]
            await asyncio.gather(*(client.hgetall(key) for key in keys))

        cases: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("one pipeline (fresh pool)", batched),
            ("one HGETALL each", one_each),
            ("one pipeline (warm pool)", batched),
            ("one HGETALL each (warm pool)", one_each),
        ]
        for name, reads in cases:
            before, started = connections(), time.perf_counter()
            await reads()
            elapsed = (time.perf_counter() - started) * 1000
            print(f"{name:<30} {count} reads: {elapsed:8.1f} ms, pool {before} -> {connections()}")
    finally:
        client = get_client(url)
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
        await aclose_clients()


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reads", type=int, default=500)
    parser.add_argument("--redis-url", default=redis_url_from_env())
    options = parser.parse_args()
    asyncio.run(main(require_loopback_redis(options.redis_url), options.reads))


if __name__ == "__main__":
    run()
