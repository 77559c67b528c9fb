"""The WebSocket transport (docs/protocol.md): one :class:`WebSocketTransport` per socket,
driving a :class:`~realtime.connection.Connection` with the hooks of a consumer class.

``RealtimeConsumer.as_asgi()`` (and :func:`realtime.asgi.get_asgi_application`) route a socket
here through :func:`application`. Unlike a plain Channels consumer, a socket does not get a
channel-layer channel of its own: the per-process hub receives each topic's messages once and
hands them to the connection on the event loop, so fan-out never goes through per-consumer
layer dispatch."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from django.contrib.auth.models import AnonymousUser

from realtime import _eager, protocol
from realtime.acks import CONNECTION_SCOPE_PREFIX
from realtime.auth import aauthenticate_token, origin_allowed
from realtime.connection import Connection
from realtime.exceptions import CloseCode, HookFailed, TokenInvalid
from realtime.proxies import forwarded_client
from realtime.transports.base import new_connection, new_hooks
from realtime.transports.batching import Flushes, flushes_of, gather
from realtime.transports.refusal import refuse_handshake, turned_away

# The name these records had while the transport lived in realtime/consumers.py: a logging
# configuration may name it.
logger = logging.getLogger("realtime.consumers")

Message = dict[str, Any]
Send = Callable[[Message], Coroutine[Any, Any, None]]
Receive = Callable[[], Awaitable[Message]]
ASGIApp = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]

# What a send raises for a frame the wire cannot carry (e.g. a string UTF-8 cannot encode), as
# opposed to a socket that can carry nothing any more.
_FRAME_ERRORS = (UnicodeError, TypeError, ValueError)


def application(consumer_class: type[Any], initkwargs: dict[str, Any]) -> ASGIApp:
    """The ASGI application serving WebSockets with the hooks of ``consumer_class``: each
    socket gets an instance made with ``initkwargs`` (what ``RealtimeConsumer.as_asgi()``
    returns, shaped as Channels' ``as_asgi()``)."""

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        hooks = new_hooks(consumer_class, scope, **initkwargs)
        await WebSocketTransport(send).serve(hooks, scope, receive)

    app.consumer_class = consumer_class  # type: ignore[attr-defined]
    app.consumer_initkwargs = initkwargs  # type: ignore[attr-defined]
    functools.update_wrapper(app, consumer_class, updated=())
    return app


class WebSocketTransport:
    """One WebSocket: the handshake, the client's frames, and the frames the connection sends
    (in order, through a queue while a send is blocked on a congested socket).

    A client that offered the ``realtime.batch`` subprotocol gets its frames at the end of the
    event loop's turn instead of at once, and the frames queued by then go out as one ``batch``
    frame (docs/protocol.md, "Batch frames"): a burst of messages costs the server one send,
    not one per message."""

    #: Name of this transport in the registry and the admin.
    name = "websocket"

    connection: Connection  # set by the handshake

    __slots__ = (
        "_background",
        "_batching",
        "_closing",
        "_flush",
        "_flushes",
        "_queue",
        "_send",
        "_writer",
        "connection",
    )

    def __init__(self, send: Send) -> None:
        self._send = send
        # frames waiting behind a blocked send or for the end of a batching turn; made when
        # one waits (most sockets never have one: a send that does not block goes out at once)
        self._queue: collections.deque[Message] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] | None = None  # made by the first release
        self._closing = False
        self._batching = False
        self._flush = False  # a batching client's frames wait for the end of the loop's turn
        self._flushes: Flushes | None = None  # the loop's, looked up once

    @property
    def batching(self) -> bool:
        """Whether the client unpacks ``batch`` frames (it offered ``realtime.batch``)."""
        return self._batching

    @property
    def closing(self) -> bool:
        """Whether the socket is closing or gone: frames sent from now on are dropped."""
        return self._closing

    @property
    def backlog(self) -> int:
        """How many messages wait for the socket (behind a send it has not finished)."""
        return len(self._queue) if self._queue else 0

    # ---- the client's side -----------------------------------------------------------------

    async def serve(self, hooks: Any, scope: dict[str, Any], receive: Receive) -> None:
        """Run the socket until it is refused or closed: the handshake, then each frame."""
        # Unlike Channels' AsyncConsumer.dispatch, no aclose_old_connections() hop per frame:
        # ORM work goes through database_sync_to_async, which closes stale connections itself.
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.receive":
                await self._receive(message)
            elif kind == "websocket.connect":
                if not await self._connect(hooks, scope):
                    return
            elif kind == "websocket.disconnect":
                await self._disconnect(message)
                return

    async def _connect(self, hooks: Any, scope: dict[str, Any]) -> bool:
        refusal = turned_away()  # draining, or over the admission budget: try again later
        if refusal is not None:
            await refuse_handshake(scope, self._send, refusal)
            return False
        headers = dict(scope.get("headers", ()))
        origin = headers.get(b"origin", b"").decode("latin-1") or None
        offered = list(scope.get("subprotocols", ()))
        versions = [p for p in offered if p.startswith(protocol.SUBPROTOCOL_PREFIX)]
        if (origin is not None and not origin_allowed(origin)) or (
            versions and protocol.SUBPROTOCOL not in versions
        ):
            await self._send({"type": "websocket.close"})  # refused: HTTP 403
            return False
        tokens = [p for p in offered if p.startswith(protocol.TOKEN_SUBPROTOCOL_PREFIX)]
        self._batching = protocol.BATCH_SUBPROTOCOL in offered
        user = scope.get("user") or AnonymousUser()
        self.connection = new_connection(
            self,
            hooks,
            user=user,
            transport_name=self.name,
            anonymous_scope=_anonymous_scope(scope.get("session")),
            client=_client_address(scope),
            user_agent=headers.get(b"user-agent", b"").decode("latin-1"),
        )
        accept: Message = {"type": "websocket.accept"}
        if protocol.SUBPROTOCOL in offered:
            accept["subprotocol"] = protocol.SUBPROTOCOL
        await self._send(accept)
        try:
            if tokens:
                token_user, expires_at = await aauthenticate_token(
                    tokens[0][len(protocol.TOKEN_SUBPROTOCOL_PREFIX) :]
                )
                await self.connection.authenticated(token_user, expires_at)
            elif origin is None:
                self.connection.wait_for_token()
            else:
                await self.connection.authenticated(user)
        except TokenInvalid as error:
            self.connection.refuse(error)
        except HookFailed:
            # a bug in the authenticate hook, logged where it raised: a server error
            code = CloseCode.SERVER_ERROR
            self.close(code, code.reason)
        return True

    async def _receive(self, message: Message) -> None:
        text = message.get("text")
        if text is None:
            self.close(CloseCode.PROTOCOL_ERROR, "binary frames are not supported")
            return
        limit = self.connection.config.max_frame_bytes
        if len(text) > limit or (len(text) * 4 > limit and len(text.encode()) > limit):
            self.close(CloseCode.TOO_LARGE, f"frame larger than {limit} bytes")
            return
        await self.connection.handle_text(text)

    async def _disconnect(self, message: Message) -> None:
        self._closing = True
        if self._writer is not None:
            self._writer.cancel()
        self._flush = False
        connection = getattr(self, "connection", None)
        if connection is not None:
            await connection.closed(message.get("code", 1006))

    # ---- Transport: what the Connection writes through -------------------------------------

    def send_text(self, text: str) -> None:
        """Queue a frame. Sent at once unless an earlier send is blocked on a congested
        socket; past ``OUTBOUND_QUEUE_SIZE`` waiting frames the client is too slow and is
        closed with 4503 (it resumes from its cursors, so nothing is lost)."""
        if self._closing:
            return
        queue = self._queue
        if queue is not None and len(queue) >= self.connection.config.outbound_queue_size:
            # The socket is not draining: drop the backlog and close past it. The client
            # recovers everything from the log when it resumes with its cursors.
            queue.clear()
            self._closing = True
            if self._writer is not None:
                self._writer.cancel()
            close = {
                "type": "websocket.close",
                "code": int(CloseCode.SLOW_CONSUMER),
                "reason": "slow",
            }
            queue.append(close)
            self._pump()
            self._release(CloseCode.SLOW_CONSUMER)
            return
        queue = self._push({"type": "websocket.send", "text": text})
        if self._writer is not None:
            return  # sent (batched, for a batching client) once the blocked send finishes
        if not self._batching or len(queue) >= protocol.MAX_BATCH_FRAMES:
            self._pump()
        elif not self._flush:
            # at the end of this turn of the loop: a fan-out of several messages (a hub that
            # had a backlog, a replay) has queued them all by then
            self._flush = True
            loop = asyncio.get_running_loop()
            if self._flushes is None:
                self._flushes = flushes_of(loop)
            self._flushes.add(loop, self)

    def close(self, code: CloseCode, reason: str = "") -> None:
        """Close with ``code``. Frames queued before still go out first; a 4403 is preceded by
        a ``close`` frame with the reason (docs/protocol.md). The connection is released at
        once, without waiting for the client's side of the closing handshake."""
        if self._closing:
            return
        if code == CloseCode.DISCONNECTED:
            # daphne sends no close reason, and this one is for the user ("disconnected by an
            # operator"): say it in a last `close` frame, as an SSE stream's last event does.
            frame = protocol.close_frame(code, reason)
            self._push({"type": "websocket.send", "text": frame})
        # int(): autobahn refuses a close code that is not exactly an int
        reason = protocol.close_reason(reason)
        self._push({"type": "websocket.close", "code": int(code), "reason": reason})
        self._closing = True
        if self._writer is None:
            self._pump()
        self._release(code)

    def _pump(self, finished: asyncio.Task[None] | None = None) -> None:
        if finished is not None:
            if finished is not self._writer or finished.cancelled():
                return  # cancelled: the socket is gone, or closed past a slow reader
            error = finished.exception()
            if isinstance(error, _FRAME_ERRORS):
                logger.error("A frame could not be sent and was dropped", exc_info=error)
            elif error is not None:
                self._broken(error)
                return
        self._writer = None
        self._flush = False  # sending now: whatever the flush would have sent goes too
        queue = self._queue
        while queue:
            message = queue.popleft()
            if self._batching and len(queue) and message["type"] == "websocket.send":
                message = gather(message, queue)
            try:
                task = _eager.start(self._send(message))
            except _FRAME_ERRORS:
                # This one frame cannot be sent (it holds what the wire cannot carry): drop
                # it alone; the frames queued behind it are fine.
                logger.exception("A frame could not be sent and was dropped")
                continue
            except Exception as error:
                self._broken(error)
                return
            if task is not None:
                self._writer = task
                task.add_done_callback(self._pump)
                return
        self._queue = None

    def _push(self, message: Message) -> collections.deque[Message]:
        queue = self._queue
        if queue is None:
            queue = self._queue = collections.deque()
        queue.append(message)
        return queue

    def flush_due(self) -> None:
        """The end of the turn this batching client's frames waited for: send them."""
        if self._flush:
            self._pump()

    def _broken(self, error: BaseException | None) -> None:
        """The socket refused a send: nothing queued can go out any more. Close (if the
        server can still say so) and release the connection; the client resumes from its
        cursors."""
        # a client that went away mid-send: a network event, not a fault of the server
        logger.info("Sending on a WebSocket failed (%r); closing it", error)
        self._queue = None
        self._writer = None
        if self._closing:
            return
        self._closing = True
        code = CloseCode.SERVER_ERROR
        close = {"type": "websocket.close", "code": int(code), "reason": code.reason}
        with contextlib.suppress(Exception):
            task = _eager.start(self._send(close))
            if task is not None:  # retrieve its outcome: the socket may refuse this too
                task.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._release(code)

    def _release(self, code: int) -> None:
        connection = getattr(self, "connection", None)
        if connection is not None:
            task = asyncio.get_running_loop().create_task(connection.closed(code))
            if self._background is None:
                self._background = set()
            self._background.add(task)
            task.add_done_callback(self._background.discard)


def _anonymous_scope(session: Any) -> str:
    key = getattr(session, "session_key", None)
    return f"s:{key}" if key else f"{CONNECTION_SCOPE_PREFIX}{uuid.uuid4().hex}"


def _client_address(scope: dict[str, Any]) -> str:
    """``host:port`` of the connection as the ASGI server reports it (``host`` without a
    port), or, when that host is a proxy of ``TRUSTED_PROXIES``, the client's address from
    ``X-Forwarded-For``."""
    peer = scope.get("client") or ()
    forwarded = ",".join(
        value.decode("latin-1")
        for name, value in scope.get("headers", ())
        if name == b"x-forwarded-for"
    )
    found = forwarded_client(str(peer[0]) if peer else None, forwarded or None)
    if found or not peer:
        return found or ""
    # No port when the server does not know it: uvicorn gives 0 for an address it took from
    # X-Forwarded-For itself (its --forwarded-allow-ips).
    return f"{peer[0]}:{peer[1]}" if peer[1] else str(peer[0])
