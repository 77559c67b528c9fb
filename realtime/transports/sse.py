"""``GET realtime/sse/``: Server-Sent Events on the shared delivery model (docs/protocol.md).

Written as an async Django view streaming from an async generator: a Channels HTTP consumer
cannot receive layer messages while it streams, and the hub hands messages to the connection
directly anyway. The client's position travels in every event's ``id:``, so a reconnect to any
node resumes with ``Last-Event-ID``.

Every topic of a request is subscribed (hub joined, log read) before the response starts: a
backend failure is still answered with a status (503), and every ``id:`` can carry the position
of every topic of the stream."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from django.http import HttpRequest, HttpResponseBase, StreamingHttpResponse
from django.views.decorators.http import require_GET

from realtime import health, protocol
from realtime.conf import get_config
from realtime.connection import Connection
from realtime.exceptions import (
    CloseCode,
    RealtimeError,
)
from realtime.transports.http import failure_response, frame_type, open_topics
from realtime.transports.refusal import refuse_request, turned_away

# Old proxies and some browsers hold the first bytes of a response back: 2 KiB of comment
# pushes them through at once.
PADDING = ":" + " " * 2048 + "\n"
RETRY_MS = 1000
POSITION_TYPES = frozenset({"message", "subscribed", "reset"})
_CLOSE = object()

Positions = dict[str, tuple[str, int]]


class SSEStream:
    """The transport of one SSE response: frames become events in a bounded queue that the
    response generator drains.

    Until :meth:`start`, frames are held back with a snapshot of the connection's positions:
    the request's topics are still being subscribed one by one, and an ``id:`` written then
    must already name the topics subscribed after it (see :meth:`start`)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.limit = get_config().outbound_queue_size
        self.connection: Connection | None = None
        self.code = CloseCode.NORMAL
        self.closing = False
        # the position of each topic as of the last event queued; from the request's cursors
        self.positions: Positions = {}
        self._held: list[tuple[str, str, Positions | None]] | None = []
        self._close_reason = ""

    def send_text(self, text: str) -> None:
        if self.closing:
            return
        if self.queue.qsize() + len(self._held or ()) >= self.limit:
            self.close(CloseCode.SLOW_CONSUMER, CloseCode.SLOW_CONSUMER.reason)
            return
        kind = frame_type(text)
        moves = kind in POSITION_TYPES and self.connection is not None
        if self._held is not None:
            snapshot = self.connection.positions() if moves and self.connection else None
            self._held.append((kind, text, snapshot))
            return
        if moves and self.connection is not None:
            # the position after this very event, taken now, not when it is written
            self.positions.update(self.connection.positions())
        self._put(kind, text, moves)

    def _put(self, kind: str, text: str, moves: bool) -> None:
        event = f"event: {kind}\n"
        if moves:
            event += f"id: {protocol.encode_cursors(self.positions)}\n"
        self.queue.put_nowait(f"{event}data: {text}\n\n")

    def start(self, cursors: dict[str, protocol.Cursor] | None = None) -> None:
        """Every topic is subscribed: queue the held frames with their ids. A topic not yet
        subscribed when a frame was sent is named by the request's cursor (``cursors``) or,
        without one, by the position its subscription started at (nothing of it was sent
        before that)."""
        self.positions = {t: (c["epoch"], c["offset"]) for t, c in (cursors or {}).items()}
        held, self._held = self._held or [], None
        for _, _, snapshot in held:
            for topic, position in (snapshot or {}).items():
                self.positions.setdefault(topic, position)
        for kind, text, snapshot in held:
            if snapshot is not None:
                self.positions.update(snapshot)
            self._put(kind, text, snapshot is not None)
        if self.closing:
            self._end()

    def close(self, code: CloseCode, reason: str = "") -> None:
        """End the stream with a final ``close`` event naming ``code`` (docs/protocol.md)."""
        if self.closing:
            return
        self.closing = True
        self.code = code
        self._close_reason = reason
        if self._held is None:
            self._end()

    def _end(self) -> None:
        frame = protocol.close_frame(self.code, self._close_reason)
        self.queue.put_nowait(f"event: close\ndata: {frame}\n\n")
        self.queue.put_nowait(_CLOSE)

    async def events(self, connection: Connection) -> AsyncIterator[str]:
        keepalive = get_config().sse_keepalive
        try:
            yield f"{PADDING}retry: {RETRY_MS}\n\n"
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
    refusal = turned_away()  # draining, or over the admission budget: try again later
    if refusal is not None:
        return refuse_request(refusal)
    try:
        stream = SSEStream()
        opened = await open_topics(request, stream, "sse")  # 401/403 before streaming
    except Exception as error:
        return failure_response(error, "log", "Opening an SSE stream failed")
    connection = stream.connection = opened.connection
    topics, cursors = opened.topics, opened.cursors
    try:
        await connection.authenticated(opened.caller.user, opened.caller.token_expires_at)
        for topic in topics:
            try:
                await connection.subscribe(topic, cursors.get(topic), checked=True)
            except RealtimeError as error:
                connection.send(protocol.error_frame(error.code, error.reason, topic))
        health.ok("log")
    except Exception as error:
        # The consumer's authenticate hook refused the user (a RealtimeError), or a backend
        # (Redis) failed: answer with a status, never with 200 and then silence.
        failure = failure_response(error, "log", "Opening an SSE stream failed")
        refused = isinstance(error, RealtimeError)
        await _discard(connection, CloseCode.NORMAL if refused else CloseCode.SERVER_ERROR)
        return failure
    stream.start({t: c for t, c in cursors.items() if t in topics})
    response = StreamingHttpResponse(
        _guarded(stream.events(connection), connection, stream),
        content_type="text/event-stream; charset=utf-8",
    )
    response["Cache-Control"] = "no-cache, no-store"
    response["X-Accel-Buffering"] = "no"
    return response


async def _discard(connection: Connection, code: CloseCode) -> None:
    with contextlib.suppress(Exception):
        await connection.closed(code)


async def _guarded(
    events: AsyncIterator[str], connection: Connection, stream: SSEStream
) -> AsyncIterator[str]:
    # Django cancels the response when the client disconnects; make sure the generator's
    # cleanup runs even then (and the connection is released even if it never started).
    try:
        async for event in events:
            yield event
    finally:
        with contextlib.suppress(Exception):
            await events.aclose()  # type: ignore[attr-defined]
        await _discard(connection, stream.code)
