"""Redis clients: one connection pool per process and event loop, created on first use.

redis-py's asyncio pools are bound to the loop that created them, so a client is cached per
running loop (daphne's loop, the publisher thread's loop, a test's loop). Timeouts are set on
purpose: a short connect timeout so a dead Redis fails fast, and a socket timeout well above any
blocking command we issue, so idle connections are not killed by their own read timeout."""

from __future__ import annotations

import asyncio
import weakref

import redis.asyncio as aioredis

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, aioredis.Redis]] = (
    weakref.WeakKeyDictionary()
)


def get_client(url: str) -> aioredis.Redis:
    """The shared client for ``url`` on the running event loop."""
    loop = asyncio.get_running_loop()
    per_loop = _clients.setdefault(loop, {})
    client = per_loop.get(url)
    if client is None:
        # A blocking pool: a burst of requests waits up to 5 s for a free connection
        # instead of failing at once with MaxConnectionsError.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=256,
            timeout=5,
            socket_connect_timeout=5,
            socket_timeout=15,
            health_check_interval=30,
        )
        client = per_loop[url] = aioredis.Redis.from_pool(pool)
    return client


async def aclose_clients() -> None:
    """Close the clients of the running loop (before the loop itself closes)."""
    per_loop = _clients.pop(asyncio.get_running_loop(), {})
    for client in per_loop.values():
        await client.aclose()
