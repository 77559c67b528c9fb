"""The in-process broker, for an in-memory channel layer or none."""

from __future__ import annotations

import contextlib
import threading
import weakref
from typing import Any

from realtime.broker.base import Endpoint


class LocalBroker:
    """Delivers to every hub of this process, thread-safely (publish() may run in any thread)."""

    #: Nothing reaches other processes (a revocation saved by another process included).
    cluster_wide = False

    def __init__(self) -> None:
        self._hubs: weakref.WeakSet[Endpoint] = weakref.WeakSet()
        self._lock = threading.Lock()

    async def join(self, hub: Endpoint, topic: str) -> None:
        with self._lock:
            self._hubs.add(hub)

    async def leave(self, hub: Endpoint, topic: str) -> None:
        return None

    async def broadcast(self, topic: str, message: dict[str, Any]) -> None:
        with self._lock:
            hubs = list(self._hubs)
        for hub in hubs:
            if topic in hub.subscribers:
                with contextlib.suppress(RuntimeError):  # that hub's loop is closed
                    hub.loop.call_soon_threadsafe(hub.dispatch, message)

    async def address(self, hub: Endpoint) -> str:
        with self._lock:
            self._hubs.add(hub)
        return f"local.{id(hub)}"

    async def send_control(self, address: str, message: dict[str, Any]) -> None:
        with self._lock:
            hubs = [hub for hub in self._hubs if f"local.{id(hub)}" == address]
        for hub in hubs:
            with contextlib.suppress(RuntimeError):
                hub.loop.call_soon_threadsafe(hub.control, message)

    async def reconnect(self) -> None:
        return None

    async def aclose(self) -> None:
        return None
