"""``GET realtime/sse/``: Server-Sent Events on the shared delivery model (docs/protocol.md).

Written as an async Django view streaming from an async generator: a Channels HTTP consumer
cannot receive layer messages while it streams, and the hub hands messages to the connection
directly anyway. The client's position travels in every event's ``id:``, so a reconnect to any
node resumes with ``Last-Event-ID``.

Django's middleware, headers and response start as for any view. Under
:func:`realtime.asgi.get_asgi_application`, the events after the opening padding then go
straight to the server's ``send``, one turn of the event loop after they were queued (all
events of that turn in one write): passing each through Django's response loop cost a task
wake-up and several generator steps per event and stream (docs/benchmarks.md, "SSE server
CPU per message").

Every topic of a request is subscribed (hub joined, log read) before the response starts: a
backend failure is still answered with a status (503), and every ``id:`` can carry the position
of every topic of the stream."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from django.http import HttpRequest, HttpResponseBase, StreamingHttpResponse
from django.views.decorators.http import require_GET

from realtime import _eager, health, protocol
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
#: The key of an HTTP scope under which :class:`ExposeSend` puts the server's ``send``.
HTTP_SEND_KEY = "realtime.http_send"
Send = Callable[[dict[str, Any]], Coroutine[Any, Any, None]]
logger = logging.getLogger("realtime.transports")

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
        # the server's `send`, with the response and body it may bypass (see `offer_send`)
        self._offer: tuple[Send, HttpResponseBase, AsyncIterator[bytes]] | None = None
        self._send: Send | None = None  # set while events go straight to the server
        self._writer: asyncio.Task[None] | None = None  # a write that waits for the socket
        self._flush_due = False

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
        if self._send is None:
            self._resolve()
        elif not self._flush_due:
            # Once per turn of the event loop: what the hub hands this stream meanwhile (a
            # backlog of publishes, when the process is busy) goes out in one write.
            self._flush_due = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _resolve(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _take(self) -> bytes | None:
        """What is due now as one chunk: every queued event (one ASGI message and one socket
        write for a burst, not one per event), else a due keep-alive comment."""
        pending = self.pending
        if pending:
            chunk = pending.popleft() if len(pending) == 1 else b"".join(pending)
            pending.clear()
        elif self._keepalive_due:
            chunk = KEEPALIVE
        else:
            return None
        self._keepalive_due = False
        self.written_at = asyncio.get_running_loop().time()
        return chunk

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

    def offer_send(
        self, send: Send, response: HttpResponseBase, body: AsyncIterator[bytes]
    ) -> None:
        """Let :meth:`events` write to the server's ASGI ``send`` itself, once the response
        has started, if Django then still streams ``body`` unchanged as ``response``'s
        content (no middleware wrapped or compressed it)."""
        self._offer = (send, response, body)

    def _direct_send(self) -> Send | None:
        offer, self._offer = self._offer, None
        if offer is None:
            return None
        send, response, body = offer
        # Django keeps the iterator it streams as `_iterator`: when that is not our body any
        # more, a middleware reworks the content, and every event must pass through it.
        if getattr(response, "_iterator", None) is not body or response.has_header(
            "Content-Encoding"
        ):
            return None
        return send

    async def events(self, connection: Connection) -> AsyncIterator[bytes]:
        """The response body: the opening padding, then the events as they come, and a
        keep-alive comment after every ``SSE_KEEPALIVE`` seconds without one. Releases
        ``connection`` when it ends, however it ends (Django cancels it when the client
        disconnects).

        Given the server's ``send`` (:meth:`offer_send`), only the padding goes through
        Django: then what is queued is sent on the event loop's next turn, without waking the
        response's task and passing Django's response loop, and the body ends when the
        stream does."""
        loop = asyncio.get_running_loop()
        keepalive = get_config().sse_keepalive
        # One timer per stream, moved on only when it fires: none is set per event.
        self.written_at = loop.time()
        self._timer = loop.call_at(self.written_at + keepalive, self._keepalive, loop, keepalive)
        try:
            yield OPENING
            send = self._direct_send()
            if send is not None:
                self._send = send
                self._flush()
                while self._send is not None and not (self.ended and not self.pending):
                    await self._wait()
                if self._writer is not None:  # the close event, still on its way
                    await asyncio.wait((self._writer,))
                return
            while True:
                chunk = self._take()
                if chunk is None:
                    await self._wait()
                    continue
                yield chunk
                if self.ended and not self.pending:
                    return
        finally:
            self._send = None  # Django ends the body from here on
            if self._writer is not None:
                self._writer.cancel()
            if self._timer is not None:
                self._timer.cancel()
            self._waiter = None
            await _discard(connection, self.code)

    def _flush(self, finished: asyncio.Task[None] | None = None) -> None:
        """Send what is due, one chunk at a time; a send that waits for the socket finishes
        in a task of its own, and calls this again when done."""
        self._flush_due = False
        if finished is not None:
            if finished is not self._writer:
                return
            self._writer = None
            if finished.cancelled() or finished.exception() is not None:
                self._broken(None if finished.cancelled() else finished.exception())
                return
        send = self._send
        if send is None or self._writer is not None:
            return
        while (chunk := self._take()) is not None:
            message = {"type": "http.response.body", "body": chunk, "more_body": True}
            try:
                task = _eager.start(send(message))
            except Exception as error:
                self._broken(error)
                return
            if task is not None:
                self._writer = task
                task.add_done_callback(self._flush)
                return
        if self.ended:
            self._resolve()

    def _broken(self, error: BaseException | None) -> None:
        # The server refused a write (the client is gone): nothing more can go out. The
        # response ends; the client resumes from its last id.
        if self._send is not None:
            logger.info("Sending on an SSE stream failed (%r); ending it", error)
        self._send = None
        self.pending.clear()
        self._resolve()

    def _keepalive(self, loop: asyncio.AbstractEventLoop, keepalive: float) -> None:
        # Due when nothing was written for `keepalive` seconds; else look again then.
        due = self.written_at + keepalive
        if loop.time() >= due:
            self._keepalive_due = True
            self._wake()
            due = loop.time() + keepalive
        self._timer = loop.call_at(due, self._keepalive, loop, keepalive)


class ExposeSend:
    """Puts the server's ``send`` into every HTTP scope, under :data:`HTTP_SEND_KEY`, then
    calls ``inner`` (Django's ASGI handler; :func:`realtime.asgi.get_asgi_application` wraps
    it). The SSE view writes its events with it instead of one by one through Django's
    response loop (:meth:`SSEStream.offer_send`)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope = {**scope, HTTP_SEND_KEY: send}
        await self.inner(scope, receive, send)


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
    body = stream.events(connection)
    response = StreamingHttpResponse(body, content_type="text/event-stream; charset=utf-8")
    response["Cache-Control"] = "no-cache, no-store"
    response["X-Accel-Buffering"] = "no"
    send = getattr(request, "scope", {}).get(HTTP_SEND_KEY)  # see realtime.asgi.ExposeSend
    if send is not None:
        stream.offer_send(send, response, body)
    return response


async def _discard(connection: Connection, code: CloseCode) -> None:
    with contextlib.suppress(Exception):
        await connection.closed(code)
