"""Idempotency for client messages: a retried ``send`` with an id already seen is answered with
the stored result and its handler is not run again.

Keys are scoped per user (or session, or connection for anonymous clients without a session)
and remembered for ``DEDUP_TTL`` seconds, in memory or in Redis so that a retry after a
reconnect to another node is recognised too."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Literal, Protocol

from realtime._redis import get_client

State = Literal["new", "pending", "done"]

_PENDING = "\x00pending"


class Dedup(Protocol):
    async def begin(self, key: str) -> tuple[State, str | None]:
        """Claim ``key``. ``("new", None)``: run the handler, then :meth:`finish`.
        ``("pending", None)``: another attempt is running it. ``("done", answer)``: answered."""
        ...

    async def finish(self, key: str, answer: str) -> None:
        """Store the encoded answer of a handled message."""
        ...


class MemoryDedup:
    """Bounded in-process store (oldest keys evicted past ``limit``)."""

    def __init__(self, ttl: float, limit: int = 100_000) -> None:
        self.ttl = ttl
        self.limit = limit
        self._items: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._lock = threading.Lock()

    async def begin(self, key: str) -> tuple[State, str | None]:
        now = time.monotonic()
        with self._lock:
            while self._items:
                oldest = next(iter(self._items.values()))
                if oldest[0] > now and len(self._items) < self.limit:
                    break
                self._items.popitem(last=False)
            found = self._items.get(key)
            if found is None:
                self._items[key] = (now + self.ttl, _PENDING)
                return "new", None
            return ("pending", None) if found[1] == _PENDING else ("done", found[1])

    async def finish(self, key: str, answer: str) -> None:
        with self._lock:
            self._items[key] = (time.monotonic() + self.ttl, answer)


class RedisDedup:
    """``SET NX`` claims in Redis, shared by every node."""

    def __init__(self, url: str, prefix: str, ttl: float) -> None:
        self.url = url
        self.prefix = prefix
        self.ttl_ms = max(1, int(ttl * 1000))

    async def begin(self, key: str) -> tuple[State, str | None]:
        client = get_client(self.url)
        name = f"{self.prefix}:dedup:{key}"
        if await client.set(name, _PENDING, nx=True, px=self.ttl_ms):
            return "new", None
        found = await client.get(name)
        if found is None:  # expired between the two calls: claim again
            return await self.begin(key)
        answer = found.decode() if isinstance(found, bytes) else str(found)
        return ("pending", None) if answer == _PENDING else ("done", answer)

    async def finish(self, key: str, answer: str) -> None:
        await get_client(self.url).set(f"{self.prefix}:dedup:{key}", answer, px=self.ttl_ms)
