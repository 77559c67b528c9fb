"""The registry in Redis, shared by every node.

``<prefix>:node:<node>`` is a hash of connection id → JSON entry, expiring
``HEARTBEAT_TIMEOUT`` after the node's last refresh; ``<prefix>:nodes`` is a sorted set of
node → last refresh time, so readers find the live nodes without ``SCAN``.

On Redis Cluster the index and a node's hash are in different slots, so no transaction holds
both: each write marks the node in the index first, then writes its hash in a transaction of
its own (one key). A reader therefore never misses a hash that exists: its node was indexed
before it was written. A write that fails between the two leaves at worst an index entry
without a hash, which reads as a node with no connections until the node's next refresh
writes it (or until the index forgets silent nodes)."""

from __future__ import annotations

import json
import time

from realtime._redis import get_client
from realtime.registry.base import Entry, Page, Query, select


class RedisRegistry:
    def __init__(self, url: str, prefix: str, ttl: float) -> None:
        self.url = url
        self.prefix = prefix
        self.ttl = ttl

    def _key(self, node: str) -> str:
        return f"{self.prefix}:node:{node}"

    async def _index(self, node: str) -> None:
        """Mark ``node`` live in the index: before its hash is written (module docstring)."""
        await get_client(self.url).zadd(f"{self.prefix}:nodes", {node: time.time()})

    async def add(self, node: str, entry: Entry) -> None:
        await self._index(node)
        async with get_client(self.url).pipeline(transaction=True) as pipe:
            pipe.hset(self._key(node), entry.id, json.dumps(entry.to_dict()))
            pipe.pexpire(self._key(node), int(self.ttl * 1000))
            await pipe.execute()

    async def remove(self, node: str, connection_id: str) -> None:
        await get_client(self.url).hdel(self._key(node), connection_id)

    async def write(self, node: str, entries: list[Entry], removed: list[str]) -> None:
        key = self._key(node)
        await self._index(node)
        async with get_client(self.url).pipeline(transaction=True) as pipe:
            if entries:
                pipe.hset(key, mapping={e.id: json.dumps(e.to_dict()) for e in entries})
            if removed:
                pipe.hdel(key, *removed)
            pipe.pexpire(key, int(self.ttl * 1000))
            await pipe.execute()

    async def refresh(self, node: str, entries: list[Entry], ttl: float) -> None:
        key = self._key(node)
        await self._index(node)
        async with get_client(self.url).pipeline(transaction=True) as pipe:
            pipe.delete(key)
            if entries:
                pipe.hset(key, mapping={e.id: json.dumps(e.to_dict()) for e in entries})
            pipe.pexpire(key, int(ttl * 1000))
            await pipe.execute()

    async def touch(self, node: str, entries: list[Entry], ttl: float) -> bool:
        key = self._key(node)
        await self._index(node)
        async with get_client(self.url).pipeline(transaction=True) as pipe:
            pipe.pexpire(key, int(ttl * 1000))  # 0: the hash is gone
            if entries:
                pipe.hset(key, mapping={e.id: json.dumps(e.to_dict()) for e in entries})
                pipe.pexpire(key, int(ttl * 1000))
            results = await pipe.execute()
        return bool(results[0])

    async def forget_node(self, node: str) -> None:
        client = get_client(self.url)
        await client.delete(self._key(node))
        await client.zrem(f"{self.prefix}:nodes", node)

    async def all(self) -> list[Entry]:
        client = get_client(self.url)
        nodes_key = f"{self.prefix}:nodes"
        # nodes silent for much longer than a refresh are gone; their hashes expired already
        await client.zremrangebyscore(nodes_key, "-inf", time.time() - 10 * self.ttl)
        nodes = [
            n.decode() if isinstance(n, bytes) else str(n)
            for n in await client.zrange(nodes_key, 0, -1)
        ]
        async with client.pipeline(transaction=False) as pipe:
            for node in nodes:
                pipe.hvals(self._key(node))
            results = await pipe.execute()
        return [Entry.from_dict(json.loads(raw)) for values in results for raw in values]

    async def query(self, query: Query) -> Page:
        return select(await self.all(), query)

    async def get(self, connection_id: str) -> Entry | None:
        return next((e for e in await self.all() if e.id == connection_id), None)
