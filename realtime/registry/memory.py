"""In-process registry: the embedded default (one process sees all its connections)."""

from __future__ import annotations

import threading
import time

from realtime.registry.base import Entry, Page, Query, select


class MemoryRegistry:
    def __init__(self) -> None:
        self._nodes: dict[str, tuple[float, dict[str, Entry]]] = {}
        self._lock = threading.Lock()

    async def add(self, node: str, entry: Entry) -> None:
        with self._lock:
            expiry, entries = self._nodes.get(node, (float("inf"), {}))
            entries[entry.id] = entry
            self._nodes[node] = (expiry, entries)

    async def remove(self, node: str, connection_id: str) -> None:
        with self._lock:
            if node in self._nodes:
                self._nodes[node][1].pop(connection_id, None)

    async def write(self, node: str, entries: list[Entry], removed: list[str]) -> None:
        with self._lock:
            expiry, held = self._nodes.get(node, (float("inf"), {}))
            held.update((e.id, e) for e in entries)
            for connection_id in removed:
                held.pop(connection_id, None)
            self._nodes[node] = (expiry, held)

    async def refresh(self, node: str, entries: list[Entry], ttl: float) -> None:
        with self._lock:
            self._nodes[node] = (time.monotonic() + ttl, {e.id: e for e in entries})

    async def touch(self, node: str, entries: list[Entry], ttl: float) -> bool:
        with self._lock:
            found = self._nodes.get(node)
            if found is None or found[0] < time.monotonic():
                return False
            found[1].update((e.id, e) for e in entries)
            self._nodes[node] = (time.monotonic() + ttl, found[1])
            return True

    async def forget_node(self, node: str) -> None:
        with self._lock:
            self._nodes.pop(node, None)

    async def all(self) -> list[Entry]:
        now = time.monotonic()
        with self._lock:
            for node in [n for n, (expiry, _) in self._nodes.items() if expiry < now]:
                del self._nodes[node]
            return [e for _, entries in self._nodes.values() for e in entries.values()]

    async def query(self, query: Query) -> Page:
        return select(await self.all(), query)

    async def get(self, connection_id: str) -> Entry | None:
        return next((e for e in await self.all() if e.id == connection_id), None)
