"""Redis clients: one connection pool per process and event loop, created on first use; for a
``redis+cluster://`` URL a Redis Cluster client instead (:mod:`realtime.redis_cluster`).

redis-py's asyncio pools are bound to the loop that created them, so a client is cached per
running loop (daphne's loop, the publisher thread's loop, a test's loop). Timeouts are set on
purpose: a short connect timeout so a dead Redis fails fast, and a socket timeout well above any
blocking command we issue, so idle connections are not killed by their own read timeout.

Commands are retried on a connection or timeout error, on a fresh connection, with a short
exponential backoff (:data:`RETRIES` times): a Redis restart then costs a command a reconnect,
not an error. A command whose reply was lost after Redis ran it runs twice: harmless for the
log's append (idempotent by message id, see :mod:`realtime.log.redis`) and for the registry,
presence and dedup answers (they set or delete keys); a dedup claim (its claim script) or a
ticket redemption (``GETDEL``) retried that way reads as already taken, as after a reconnect.
A hung Redis (paused, not down) makes a command wait ``socket_timeout`` per attempt: callers
that must answer sooner bound their own wait (``publish()`` by ``PUBLISH_TIMEOUT``, the
readiness checks by 2 s).

A ``redis+sentinel://`` URL gets a client of the Sentinel service's master with the same pool
options (:mod:`realtime.redis_sentinel`).

Lua scripts (:class:`Script`) go by their SHA1 digest (``EVALSHA``), not by their text: a
server that does not hold the script (restarted, flushed with ``SCRIPT FLUSH``, a promoted
replica, a Cluster node that never ran it) answers ``NOSCRIPT``, and the script is then loaded
(``SCRIPT LOAD``, on every master of a Cluster) and run again by its digest."""

from __future__ import annotations

import asyncio
import hashlib
import weakref
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from realtime.redis_cluster import cluster_client, is_cluster_url
from realtime.redis_sentinel import aclose_sentinels, is_sentinel_url, sentinel_client

# Retries of one command after a connection or timeout error, with backoff 0.1 s, 0.2 s,
# 0.4 s: a command fails after about 0.7 s while Redis refuses connections.
RETRIES = 3

# One Redis (redis://) or a Cluster (redis+cluster://): the commands realtime sends, and
# pipelines of them, are the same on both.
Client = aioredis.Redis | RedisCluster

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Client]] = (
    weakref.WeakKeyDictionary()
)


def get_client(url: str) -> Client:
    """The shared client for ``url`` on the running event loop."""
    loop = asyncio.get_running_loop()
    per_loop = _clients.setdefault(loop, {})
    client = per_loop.get(url)
    if client is None and is_cluster_url(url):  # redis+cluster:// (realtime.redis_cluster)
        client = per_loop[url] = cluster_client(url, RETRIES)
    if client is None:
        # A blocking pool: a burst of requests waits up to 5 s for a free connection
        # instead of failing at once with MaxConnectionsError.
        options = {
            "max_connections": 256,
            "timeout": 5,
            "socket_connect_timeout": 5,
            "socket_timeout": 15,
            "health_check_interval": 30,
            "retry": Retry(ExponentialBackoff(cap=1.0, base=0.05), RETRIES),
            "retry_on_error": [RedisConnectionError, RedisTimeoutError],
        }
        if is_sentinel_url(url):
            client = per_loop[url] = sentinel_client(url, **options)
        else:
            pool = aioredis.BlockingConnectionPool.from_url(url, **options)
            client = per_loop[url] = aioredis.Redis.from_pool(pool)
    return client


async def aclose_clients() -> None:
    """Close the clients of the running loop (before the loop itself closes)."""
    per_loop = _clients.pop(asyncio.get_running_loop(), {})
    for client in per_loop.values():
        await client.aclose()
        await aclose_sentinels(client)


class Script:
    """A Lua script run by its SHA1 digest, so that a call sends 40 characters instead of the
    script's text. Redis scripts are cached per server, never per client, so one object serves
    every client and event loop."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()

    async def __call__(self, client: Client, keys: Sequence[str], *args: str | int | float) -> Any:
        """Run the script on ``keys`` (on a Cluster, all in one slot) with ``args``: its reply.

        A ``NOSCRIPT`` answer loads the script and runs it once more. Raises what redis-py
        raises for the command (``ResponseError`` for a script error, ``ConnectionError`` or
        ``TimeoutError`` once the client's retries are spent)."""
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await client.script_load(self.text)
            return await client.evalsha(self.sha, len(keys), *keys, *args)
