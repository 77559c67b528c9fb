"""``publish()`` for sync code and ``apublish()`` for async code.

A message is first appended to its topic's log, which gives it its ``(epoch, offset)``, then
broadcast to every node's hub. ``publish()`` runs that on one long-lived event loop per process
(a daemon thread), so a view, signal handler, management command or Celery task pays one
thread hop and reuses one Redis connection pool, instead of a new event loop and a new
connection per call as ``async_to_sync(group_send)`` does."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import threading
import time
import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar

from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import transaction

from realtime import protocol
from realtime._redis import aclose_clients
from realtime.backends import get_log
from realtime.conf import get_config
from realtime.exceptions import MessageTooLarge, PublishError, PublishTimeout
from realtime.hub import MESSAGE_TYPE, get_broker
from realtime.metrics import PUBLISHED
from realtime.protocol import EVENT_RE
from realtime.topics import validate_topic

T = TypeVar("T")

# Lists that capture published messages instead of sending them (realtime.testing).
captures: list[list[dict[str, Any]]] = []


def _prepare(topic: str, event: str, data: Any, ack: bool) -> dict[str, Any]:
    validate_topic(topic)
    if not isinstance(event, str) or not EVENT_RE.fullmatch(event):
        raise ValueError(f"Invalid event {event!r}: use 1-64 letters, digits, '_', '.', '-'.")
    try:
        data_json = protocol.encode(data)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"publish() data is not JSON serializable: {exc}") from exc
    limit = get_config().max_message_bytes
    if len(data_json.encode()) > limit:
        raise MessageTooLarge(
            f"Message data is {len(data_json.encode())} bytes once encoded; the limit is "
            f"{limit} (REALTIME['MAX_MESSAGE_BYTES']). Publish an id and let clients fetch."
        )
    return {
        "type": MESSAGE_TYPE,
        "topic": topic,
        "event": event,
        "id": uuid.uuid4().hex,
        "ack": bool(ack),
        "data": data_json,
    }


async def _deliver(message: dict[str, Any]) -> None:
    if captures:
        for capture in captures:
            capture.append({**message, "data": json.loads(message["data"])})
        return
    message["epoch"], message["offset"] = await get_log().append(
        message["topic"],
        message["id"],
        message["event"],
        message["data"],
        message["ack"],
        time.time(),
    )
    message["time"] = time.time()
    await get_broker().broadcast(message["topic"], message)
    PUBLISHED.inc()


async def _close_connections() -> None:
    await aclose_clients()
    layer = get_channel_layer(get_config().channel_layer)
    if (
        layer is not None
        and hasattr(layer, "flush")
        and not isinstance(layer, InMemoryChannelLayer)
    ):
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


def _deliver_sync(message: dict[str, Any], timeout: float) -> None:
    try:
        _publisher.run(_deliver(message), timeout)
    except TimeoutError:
        raise PublishTimeout(
            f"The topic log did not confirm the message within {timeout} s "
            "(REALTIME['PUBLISH_TIMEOUT']); is Redis reachable?"
        ) from None
    except PublishError:
        raise
    except Exception as exc:
        raise PublishError(f"Publishing failed: {exc!r}") from exc


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on the process's publisher loop from sync code and return its result
    (registry reads, operator actions, cursor capture): one loop and one Redis pool per
    process, whatever thread calls. Raises what the coroutine raises, or ``TimeoutError``
    after ``PUBLISH_TIMEOUT``."""
    result: T = _publisher.run(coroutine, get_config().publish_timeout)
    return result


def publish(
    topic: str, event: str, data: Any = None, *, ack: bool = False, using: str | None = None
) -> str:
    """Publish ``data`` (anything DjangoJSONEncoder encodes) as ``event`` on ``topic`` and
    return the message id.

    Inside ``transaction.atomic`` (of database ``using``) the message is sent when the
    transaction commits, and never if it rolls back. With ``ack=True`` clients must
    acknowledge it and are sent it again until they do. Blocks until the topic log has the
    message. Raises ``InvalidTopic``, ``ValueError`` (bad event name), ``TypeError`` (data
    not JSON serializable), ``MessageTooLarge``, ``PublishTimeout`` or ``PublishError``;
    ``RuntimeError`` when called from a running event loop (use :func:`apublish` there)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(
            "realtime.publish() was called from async code, where it would block the event "
            "loop; use `await realtime.apublish(...)` instead."
        )
    message = _prepare(topic, event, data, ack)
    timeout = get_config().publish_timeout
    if transaction.get_connection(using).in_atomic_block:
        transaction.on_commit(lambda: _deliver_sync(message, timeout), using=using)
    else:
        _deliver_sync(message, timeout)
    return str(message["id"])


async def aget_cursors(topics: list[str]) -> dict[str, dict[str, Any]]:
    """The current position of each topic, as ``{"topic": {"epoch": …, "offset": …}}``."""
    log = get_log()
    cursors = {}
    for topic in topics:
        replay = await log.read_after(validate_topic(topic), None, 0)
        cursors[topic] = {"epoch": replay.epoch, "offset": replay.offset}
    return cursors


def get_cursors(topics: list[str]) -> dict[str, dict[str, Any]]:
    """Sync twin of :func:`aget_cursors`: capture positions while rendering a page, so that a
    client subscribing with them later gets everything published in between."""
    return run_sync(aget_cursors(topics))


async def apublish(topic: str, event: str, data: Any = None, *, ack: bool = False) -> str:
    """The async twin of :func:`publish`, for consumers and async views. It does not wait
    for a transaction (async code has none); raises as :func:`publish` does."""
    message = _prepare(topic, event, data, ack)
    try:
        await asyncio.wait_for(_deliver(message), get_config().publish_timeout)
    except TimeoutError:
        raise PublishTimeout("The topic log did not confirm the message in time.") from None
    except (PublishError, asyncio.CancelledError):
        raise
    except Exception as exc:
        raise PublishError(f"Publishing failed: {exc!r}") from exc
    return str(message["id"])
