"""``GET realtime/sse/``: Server-Sent Events on the shared delivery model (docs/protocol.md).

Written as an async Django view streaming from an async generator: a Channels HTTP consumer
cannot receive layer messages while it streams, and the hub hands messages to the connection
directly anyway. The client's position travels in every event's ``id:``, so a reconnect to any
node resumes with ``Last-Event-ID``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from django.http import HttpRequest, HttpResponseBase, StreamingHttpResponse
from django.views.decorators.http import require_GET

from realtime import protocol
from realtime.conf import get_config
from realtime.connection import Connection
from realtime.exceptions import CLOSE_NORMAL, CLOSE_SLOW_CONSUMER, RealtimeError
from realtime.transports.http import (
    authenticate,
    buckets,
    check_topics,
    error_response,
    frame_type,
    open_connection,
    topics_and_cursors,
    unavailable,
)

logger = logging.getLogger("realtime.transports")

# Old proxies and some browsers hold the first bytes of a response back: 2 KiB of comment
# pushes them through at once.
PADDING = ":" + " " * 2048 + "\n"
RETRY_MS = 1000
POSITION_TYPES = frozenset({"message", "subscribed", "reset"})
_CLOSE = object()


class SSEStream:
    """The transport of one SSE response: frames become events in a bounded queue that the
    response generator drains."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.limit = get_config().outbound_queue_size
        self.connection: Connection | None = None
        self.code = CLOSE_NORMAL

    def send_text(self, text: str) -> None:
        if self.queue.qsize() >= self.limit:
            self.close(CLOSE_SLOW_CONSUMER, "slow consumer")
            return
        kind = frame_type(text)
        event = f"event: {kind}\n"
        if kind in POSITION_TYPES and self.connection is not None:
            # the position after this very event, taken now, not when it is written
            event += f"id: {protocol.encode_cursors(self.connection.positions())}\n"
        self.queue.put_nowait(f"{event}data: {text}\n\n")

    def close(self, code: int, reason: str = "") -> None:
        self.code = code
        self.queue.put_nowait(_CLOSE)

    async def events(
        self, connection: Connection, caller: Any, topics: list[str], cursors: dict[str, Any]
    ) -> AsyncIterator[str]:
        keepalive = get_config().sse_keepalive
        yield f"{PADDING}retry: {RETRY_MS}\n\n"
        try:
            await connection.authenticated(caller.user, caller.token_expires_at)
            for topic in topics:
                try:
                    await connection.subscribe(topic, cursors.get(topic))
                except RealtimeError as error:
                    connection.send(protocol.error_frame(error.code, error.reason, topic))
            while True:
                try:
                    item = await asyncio.wait_for(self.queue.get(), keepalive)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                # Everything already queued goes out as one chunk: one ASGI message and one
                # socket write for a burst, instead of one per event.
                chunk = []
                while item is not _CLOSE:
                    chunk.append(item)
                    if self.queue.empty():
                        break
                    item = self.queue.get_nowait()
                if chunk:
                    yield "".join(chunk)
                if item is _CLOSE:
                    return
        finally:
            await connection.closed(self.code)


@require_GET
async def sse(request: HttpRequest) -> HttpResponseBase:
    """Open an event stream for the ``topic`` parameters (see docs/protocol.md)."""
    try:
        caller = await authenticate(request)
        buckets.take(caller.rate_scope)
        topics, cursors = topics_and_cursors(request)
        stream = SSEStream()
        connection, hooks = open_connection(request, caller, stream, "sse")
        stream.connection = connection
        await check_topics(hooks, caller, topics)  # refuse with 401/403 before streaming
    except RealtimeError as error:
        return error_response(error)
    except Exception:
        logger.exception("Opening an SSE stream failed")
        return unavailable()
    response = StreamingHttpResponse(
        _guarded(stream.events(connection, caller, topics, cursors)),
        content_type="text/event-stream; charset=utf-8",
    )
    response["Cache-Control"] = "no-cache, no-store"
    response["X-Accel-Buffering"] = "no"
    return response


async def _guarded(events: AsyncIterator[str]) -> AsyncIterator[str]:
    # Django cancels the response when the client disconnects; make sure the generator's
    # cleanup runs even then.
    try:
        async for event in events:
            yield event
    finally:
        with contextlib.suppress(Exception):
            await events.aclose()  # type: ignore[attr-defined]
