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
from collections import deque
from collections.abc import AsyncIterator

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
OPENING = f"{PADDING}retry: {RETRY_MS}\n\n".encode()
KEEPALIVE = b": keep-alive\n\n"
POSITION_TYPES = frozenset({"message", "subscribed", "reset"})

Positions = dict[str, tuple[str, int]]

# The hub hands one frame to every stream of a topic in turn, and streams with the same
# positions write the same event: the last event built is kept, so a publish costs one
# cursor string and one encoding for all of them, not one per stream.
_last_event: tuple[str, str, Positions | None, bytes] = ("", "", None, b"")


def encode_event(kind: str, text: str, positions: Positions | None) -> bytes:
    """The bytes of one event: ``event: <kind>``, ``id:`` naming ``positions`` if given (see
    :func:`realtime.protocol.encode_cursors`), and the frame ``text`` as its ``data:``."""
    global _last_event
    last = _last_event
    if last[1] == text and last[2] == positions and last[0] == kind:
        return last[3]
    event = f"event: {kind}\n"
    if positions is not None:
        event += f"id: {protocol.encode_cursors(positions)}\n"
        positions = dict(positions)  # the stream's own dict moves on
    encoded = f"{event}data: {text}\n\n".encode()
    _last_event = (kind, text, positions, encoded)
    return encoded


class SSEStream:
    """The transport of one SSE response: frames become events in a bounded buffer that the
    response generator (:meth:`events`) writes out.

    Until :meth:`start`, frames are held back with a snapshot of the connection's positions:
    the request's topics are still being subscribed one by one, and an ``id:`` written then
    must already name the topics subscribed after it (see :meth:`start`)."""

    def __init__(self) -> None:
        # events not yet handed to the response, oldest first; `ended` once the last is in
        self.pending: deque[bytes] = deque()
        self.ended = False
        self.limit = get_config().outbound_queue_size
        self.connection: Connection | None = None
        self.code = CloseCode.NORMAL
        self.closing = False
        # the position of each topic as of the last event queued; from the request's cursors
        self.positions: Positions = {}
        self._held: list[tuple[str, str, Positions | None]] | None = []
        self._close_reason = ""
        self._waiter: asyncio.Future[None] | None = None
        self._keepalive_due = False
        self._timer: asyncio.TimerHandle | None = None
        self.written_at = 0.0  # the event loop's time of the last write (keep-alive)

    def send_text(self, text: str) -> None:
        if self.closing:
            return
        if len(self.pending) + len(self._held or ()) >= self.limit:
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
        self.pending.append(encode_event(kind, text, self.positions if moves else None))
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

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
        self.pending.append(f"event: close\ndata: {frame}\n\n".encode())
        self.ended = True
        self._wake()

    async def events(self, connection: Connection) -> AsyncIterator[bytes]:
        """The response body: the opening padding, then the events as they come, and a
        keep-alive comment after every ``SSE_KEEPALIVE`` seconds without one. Releases
        ``connection`` when it ends, however it ends (Django cancels it when the client
        disconnects)."""
        loop = asyncio.get_running_loop()
        keepalive = get_config().sse_keepalive
        # One timer per stream, moved on only when it fires: none is set per event.
        self.written_at = loop.time()
        self._timer = loop.call_at(self.written_at + keepalive, self._keepalive, loop, keepalive)
        try:
            yield OPENING
            while True:
                if not self.pending and not self._keepalive_due:
                    self._waiter = loop.create_future()
                    await self._waiter
                    self._waiter = None
                pending = self.pending
                if pending:
                    # Everything already queued goes out as one chunk: one ASGI message and
                    # one socket write for a burst, instead of one per event.
                    chunk = pending.popleft() if len(pending) == 1 else b"".join(pending)
                    pending.clear()
                elif self._keepalive_due:
                    chunk = KEEPALIVE
                else:
                    continue
                self._keepalive_due = False
                self.written_at = loop.time()
                yield chunk
                if self.ended and not self.pending:
                    return
        finally:
            if self._timer is not None:
                self._timer.cancel()
            self._waiter = None
            await _discard(connection, self.code)

    def _keepalive(self, loop: asyncio.AbstractEventLoop, keepalive: float) -> None:
        # Due when nothing was written for `keepalive` seconds; else look again then.
        due = self.written_at + keepalive
        if loop.time() >= due:
            self._keepalive_due = True
            self._wake()
            due = loop.time() + keepalive
        self._timer = loop.call_at(due, self._keepalive, loop, keepalive)


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
                await connection.subscribe(topic, cursors.get(topic))
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
        stream.events(connection),
        content_type="text/event-stream; charset=utf-8",
    )
    response["Cache-Control"] = "no-cache, no-store"
    response["X-Accel-Buffering"] = "no"
    return response


async def _discard(connection: Connection, code: CloseCode) -> None:
    with contextlib.suppress(Exception):
        await connection.closed(code)
