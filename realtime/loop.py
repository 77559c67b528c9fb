"""The publisher loop: one event loop in a daemon thread per process, on which sync code runs
coroutines (:func:`run_sync`): ``publish()``, registry reads, operator actions, cursor capture.

A view, signal handler, management command or Celery task then pays one thread hop and reuses
one Redis connection pool, instead of a new event loop and a new connection per call as
``async_to_sync`` does. The loop is started on first use, and again after a fork."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from channels.layers import InMemoryChannelLayer, get_channel_layer

from realtime._redis import aclose_clients
from realtime.conf import get_config
from realtime.redis_sentinel import aclose_layer_sentinels

T = TypeVar("T")


async def _close_connections() -> None:
    await aclose_clients()
    layer = get_channel_layer(get_config().channel_layer)
    if (
        layer is not None
        and hasattr(layer, "flush")
        and not isinstance(layer, InMemoryChannelLayer)
    ):
        await aclose_layer_sentinels(layer)
        await layer.flush()


def _run_forever(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        loop.close()


class _PublisherLoop:
    """One event loop in a daemon thread per process, created on first use (and again
    after a fork)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=_run_forever, args=(loop,), name="realtime-publisher", daemon=True
                )
                thread.start()
                self._loop, self._pid = loop, os.getpid()
            return self._loop

    def close(self) -> None:
        """Close the loop's Redis and channel-layer connections and stop it; the next
        publish() starts a new one. For tests and orderly shutdowns."""
        with self._lock:
            loop, self._loop = self._loop, None
        if loop is None or self._pid != os.getpid():
            return
        asyncio.run_coroutine_threadsafe(_close_connections(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float) -> Any:
        """Run ``coro`` on the loop and return its result; raises what it raises, or
        ``TimeoutError`` (after cancelling it) when it takes longer than ``timeout``."""
        future = asyncio.run_coroutine_threadsafe(coro, self._ensure())
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"No result within {timeout} s; is Redis reachable?") from None


_publisher = _PublisherLoop()
close_publisher = _publisher.close


def run_sync(coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run a coroutine on the process's publisher loop from sync code and return its result:
    one loop and one Redis pool per process, whatever thread calls. Raises what the coroutine
    raises, or ``TimeoutError`` (after cancelling it) when it takes longer than ``timeout``
    seconds (by default ``PUBLISH_TIMEOUT``)."""
    result: T = _publisher.run(
        coroutine, get_config().publish_timeout if timeout is None else timeout
    )
    return result
