"""The stores of :mod:`realtime.stores.base` in this process's memory (no ``REDIS_URL``)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from realtime.stores.base import CLAIM, Pending, State, claim


class MemoryDedup:
    """Bounded in-process store (expired keys, then the oldest past ``limit``, evicted).
    ``clock`` is for tests."""

    def __init__(
        self,
        ttl: float,
        lease: float,
        limit: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.lease = lease
        self.limit = limit
        self.clock = clock
        self._items: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._lock = threading.Lock()  # publish() and daphne may run on different threads

    def __len__(self) -> int:
        """How many ids it holds (running claims and remembered answers), at most ``limit``."""
        return len(self._items)

    def _live(self, key: str, now: float) -> str | None:
        found = self._items.get(key)
        if found is None:
            return None
        if found[0] <= now:
            del self._items[key]
            return None
        return found[1]

    def _evict(self, now: float) -> None:
        # Insertion order is roughly expiry order (claims are short, answers long): drop
        # expired keys from the old end, and the oldest past the limit.
        while self._items:
            oldest = next(iter(self._items.values()))
            if oldest[0] > now and len(self._items) < self.limit:
                break
            self._items.popitem(last=False)

    async def begin(self, key: str, owner: str) -> tuple[State, str | None]:
        now = self.clock()
        with self._lock:
            self._evict(now)
            value = self._live(key, now)
            if value is None:
                self._items[key] = (now + self.lease, claim(owner))
                return "new", None
            return ("pending", None) if value.startswith(CLAIM) else ("done", value)

    async def renew(self, key: str, owner: str) -> bool:
        now = self.clock()
        with self._lock:
            if self._live(key, now) != claim(owner):
                return False
            self._items[key] = (now + self.lease, claim(owner))
            return True

    async def finish(self, key: str, owner: str, answer: str) -> str:
        now = self.clock()
        with self._lock:
            value = self._live(key, now)
            if value is not None and not value.startswith(CLAIM):
                return value
            self._items.pop(key, None)
            self._items[key] = (now + self.ttl, answer)
            return answer


class MemoryTickets:
    """Tickets in a dict; expired ones are dropped when the next one is issued."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._items: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    async def put(self, ticket: str, user_pk: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in [k for k, (expiry, _) in self._items.items() if expiry < now]:
                del self._items[key]
            self._items[ticket] = (now + self.ttl, user_pk)

    async def take(self, ticket: str) -> str | None:
        with self._lock:
            found = self._items.pop(ticket, None)
        if found is None or found[0] < time.monotonic():
            return None
        return found[1]


class MemoryPresence:
    """The announced sets in a dict: this process is the only node."""

    def __init__(self) -> None:
        self._announced: dict[str, dict[str, str]] = {}  # topic -> {user_id: username}
        self._lock = threading.Lock()

    async def swap(
        self, topic: str, node: str, now: dict[str, str], interval: float
    ) -> dict[str, str] | None:
        with self._lock:
            previous = self._announced.get(topic, {})
            self._announced[topic] = now
        return previous


class MemoryPendingAcks:
    """Pending ACKs in dicts: this process is the only node. Acknowledged ids are remembered
    for ``window`` seconds; ``clock`` (wall-clock seconds) is for tests."""

    def __init__(self, window: float, clock: Callable[[], float] = time.time) -> None:
        self.window = window
        self.clock = clock
        self._pending: dict[str, dict[str, Pending]] = {}  # scope -> id -> entry
        self._acked: dict[str, dict[str, float]] = {}  # scope -> id -> when acknowledged
        self._lock = threading.Lock()

    def _trim(self, scope: str, now: float) -> dict[str, float]:
        acked = self._acked.setdefault(scope, {})
        for message_id in [m for m, at in acked.items() if at < now - self.window]:
            del acked[message_id]
        return acked

    def _take(self, scope: str, ids: list[str]) -> list[str]:
        kept = self._pending.get(scope, {})
        taken = [m for m in dict.fromkeys(ids) if kept.pop(m, None) is not None]
        if not kept:
            self._pending.pop(scope, None)
        return taken

    async def put(self, scope: str, entries: list[Pending]) -> None:
        with self._lock:
            acked = self._trim(scope, self.clock())
            kept = self._pending.setdefault(scope, {})
            for entry in entries:
                if entry.message_id not in acked:
                    kept.setdefault(entry.message_id, entry)

    async def pending(self, scope: str, ids: list[str]) -> set[str]:
        with self._lock:
            kept = self._pending.get(scope, {})
            return {m for m in ids if m in kept}

    async def acknowledge(self, scope: str, ids: list[str]) -> list[str]:
        with self._lock:
            now = self.clock()
            taken = self._take(scope, ids)
            acked = self._trim(scope, now)
            acked.update(dict.fromkeys(taken, now))
            if not acked:
                del self._acked[scope]
            return taken

    async def give_up(self, scope: str, ids: list[str]) -> list[str]:
        with self._lock:
            return self._take(scope, ids)

    async def of_topic(self, scope: str, topic: str) -> list[Pending]:
        with self._lock:
            return [e for e in self._pending.get(scope, {}).values() if e.topic == topic]

    async def overdue(self, before: float, limit: int) -> list[tuple[str, Pending]]:
        with self._lock:
            found = [
                (scope, entry)
                for scope, kept in self._pending.items()
                for entry in kept.values()
                if entry.deadline < before
            ]
        return found[:limit]
