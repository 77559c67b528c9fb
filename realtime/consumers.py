"""``RealtimeConsumer``: the WebSocket transport and the base class users subclass.

Subclass it to change who may connect, what they may subscribe to, and what client messages
do; route it with :func:`realtime.asgi.get_asgi_application` or your own ``URLRouter``::

    class ShopConsumer(realtime.RealtimeConsumer):
        async def handle_cart_add(self, data):          # a client `send` with event "cart.add"
            ...
            return {"ok": True}                         # becomes the `ack` frame's result

Unlike a plain Channels consumer it does not get a channel-layer channel per socket: the
per-process hub receives each topic's messages once and hands them to the connection on the
event loop, so fan-out never goes through per-consumer layer dispatch.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import logging
import uuid
from typing import Any

from channels.consumer import AsyncConsumer
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from django.contrib.auth.models import AnonymousUser

from realtime import _eager, protocol
from realtime.auth import aauthenticate_token, origin_allowed
from realtime.connection import Connection
from realtime.exceptions import (
    CloseCode,
    HookFailed,
    TokenInvalid,
    UnknownEvent,
)
from realtime.topics import registry

logger = logging.getLogger("realtime.consumers")

# What a send raises for a frame the wire cannot carry (e.g. a string UTF-8 cannot encode), as
# opposed to a socket that can carry nothing any more.
_FRAME_ERRORS = (UnicodeError, TypeError, ValueError)


class RealtimeConsumer(AsyncConsumer):  # type: ignore[misc]
    """A realtime WebSocket connection. Override the hooks below; each says when it runs.

    The hooks also run for the SSE, long-poll and POST transports (on an instance of the
    class named by ``REALTIME["CONSUMER"]``). Each says what happens when it raises something
    it is not documented to raise (a bug): its traceback is logged once and only the request
    that ran it is answered (never the whole connection, except for ``authenticate``)."""

    #: Name of this transport in the registry and the admin.
    transport_name = "websocket"

    connection: Connection

    # ---- hooks -----------------------------------------------------------------------------

    async def authenticate(self, user: Any) -> Any:
        """Runs once per connection, when its user is known (from the session cookie, or the
        token in the subprotocol or the first ``auth`` frame). Return the user this connection
        acts as; raise :class:`realtime.TokenInvalid` to refuse it (closed with 4401; HTTP
        401). ``user`` may be ``AnonymousUser``. Any other exception is a bug: logged with its
        traceback, and the connection is refused as a server error (closed with 4011; HTTP 503
        ``unavailable`` with ``Retry-After``), so the client retries with backoff."""
        return user

    async def can_subscribe(self, topic: str) -> None:
        """Runs on every ``subscribe``, resumes included (and for every topic of an SSE or
        long-poll request). Raise :class:`realtime.Forbidden` to refuse. The default asks the
        topic registry (``realtime.register_topic``). Any other exception (here, or in a
        topic's permission callable) refuses the topic as well: the client gets ``forbidden``
        for it (HTTP: 403, or 401 ``auth_required`` without credentials), the traceback is
        logged, and the connection and its other topics carry on."""
        await registry.acheck(self.user, topic)

    async def on_message(self, event: str, data: Any) -> Any:
        """Runs for each client ``send`` (once per message id, however often it is retried).
        The default calls ``handle_<event>`` (dots and dashes become underscores) with
        ``data``; sync handlers run in a thread. The return value is the ``ack`` result; raise
        :class:`realtime.Rejected` to answer with an error instead. Any other exception is
        answered ``handler_error`` (the traceback is logged, not sent); the connection
        carries on."""
        handler = getattr(self, "handle_" + event.replace(".", "_").replace("-", "_"), None)
        if handler is None:
            raise UnknownEvent(f"No handler for event {event!r}.", ref=event)
        if inspect.iscoroutinefunction(handler):
            return await handler(data)
        return await database_sync_to_async(handler)(data)

    async def on_ack(self, message_id: str) -> None:
        """Runs when the client acknowledges a message published with ``ack=True`` (WebSocket
        ``ack`` frames; ``ack`` frames POSTed for an SSE stream run it on the stream's node,
        those POSTed without one on the node that answers the POST). A notification: an
        exception it raises is logged with its traceback and ignored (the connection carries
        on, the POST still gets 204)."""

    async def on_connect(self) -> None:
        """Runs after ``welcome`` was sent: the connection is open and authenticated (for a
        long-poll or a POSTed ``send``: once per request). An exception it raises is logged
        with its traceback and ignored."""

    async def on_disconnect(self, code: int) -> None:
        """Runs once when an open connection ends, with the close code. An exception it
        raises is logged with its traceback and ignored."""

    @property
    def user(self) -> Any:
        """The connection's user (``AnonymousUser`` when not logged in)."""
        return self.connection.user

    # ---- ASGI plumbing ---------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scope = scope
        self.base_send = send
        self.channel_layer = None
        self._queue: collections.deque[dict[str, Any]] = collections.deque()
        self._writer: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._closing = False
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Unlike AsyncConsumer.dispatch, no aclose_old_connections() hop per frame: ORM work
        # goes through database_sync_to_async, which closes stale connections itself.
        kind = message["type"]
        if kind == "websocket.receive":
            await self.websocket_receive(message)
        elif kind == "websocket.connect":
            await self.websocket_connect(message)
        elif kind == "websocket.disconnect":
            await self.websocket_disconnect(message)

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        headers = dict(self.scope.get("headers", ()))
        origin = headers.get(b"origin", b"").decode("latin-1") or None
        offered = list(self.scope.get("subprotocols", ()))
        versions = [p for p in offered if p.startswith(protocol.SUBPROTOCOL_PREFIX)]
        if (origin is not None and not origin_allowed(origin)) or (
            versions and protocol.SUBPROTOCOL not in versions
        ):
            await self.base_send({"type": "websocket.close"})  # refused: HTTP 403
            raise StopConsumer
        tokens = [p for p in offered if p.startswith(protocol.TOKEN_SUBPROTOCOL_PREFIX)]
        user = self.scope.get("user") or AnonymousUser()
        self.connection = Connection(
            self,
            self,
            user=user,
            transport_name=self.transport_name,
            anonymous_scope=_anonymous_scope(self.scope.get("session")),
            client=":".join(str(part) for part in self.scope.get("client") or ()),
            user_agent=headers.get(b"user-agent", b"").decode("latin-1"),
        )
        accept: dict[str, Any] = {"type": "websocket.accept"}
        if protocol.SUBPROTOCOL in offered:
            accept["subprotocol"] = protocol.SUBPROTOCOL
        await self.base_send(accept)
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
            self.close(CloseCode.SERVER_ERROR, "server error")

    async def websocket_receive(self, message: dict[str, Any]) -> None:
        text = message.get("text")
        if text is None:
            self.close(CloseCode.PROTOCOL_ERROR, "binary frames are not supported")
            return
        limit = self.connection.config.max_frame_bytes
        if len(text) > limit or (len(text) * 4 > limit and len(text.encode()) > limit):
            self.close(CloseCode.TOO_LARGE, f"frame larger than {limit} bytes")
            return
        await self.connection.handle_text(text)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        self._closing = True
        if self._writer is not None:
            self._writer.cancel()
        connection = getattr(self, "connection", None)
        if connection is not None:
            await connection.closed(message.get("code", 1006))
        raise StopConsumer

    # ---- Transport: what the Connection writes through -------------------------------------

    def send_text(self, text: str) -> None:
        """Queue a frame. Sent at once unless an earlier send is blocked on a congested
        socket; past ``OUTBOUND_QUEUE_SIZE`` waiting frames the client is too slow and is
        closed with 4503 (it resumes from its cursors, so nothing is lost)."""
        if self._closing:
            return
        if len(self._queue) >= self.connection.config.outbound_queue_size:
            # The socket is not draining: drop the backlog and close past it. The client
            # recovers everything from the log when it resumes with its cursors.
            self._queue.clear()
            self._closing = True
            if self._writer is not None:
                self._writer.cancel()
            close = {
                "type": "websocket.close",
                "code": int(CloseCode.SLOW_CONSUMER),
                "reason": "slow",
            }
            self._queue.append(close)
            self._pump()
            self._release(CloseCode.SLOW_CONSUMER)
            return
        self._queue.append({"type": "websocket.send", "text": text})
        if self._writer is None:
            self._pump()

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
        while self._queue:
            message = self._queue.popleft()
            try:
                task = _eager.start(self.base_send(message))
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

    def _broken(self, error: BaseException | None) -> None:
        """The socket refused a send: nothing queued can go out any more. Close (if the
        server can still say so) and release the connection; the client resumes from its
        cursors."""
        # a client that went away mid-send: a network event, not a fault of the server
        logger.info("Sending on a WebSocket failed (%r); closing it", error)
        self._queue.clear()
        self._writer = None
        if self._closing:
            return
        self._closing = True
        code = CloseCode.SERVER_ERROR
        close = {"type": "websocket.close", "code": int(code), "reason": code.reason}
        with contextlib.suppress(Exception):
            task = _eager.start(self.base_send(close))
            if task is not None:  # retrieve its outcome: the socket may refuse this too
                task.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._release(CloseCode.SERVER_ERROR)

    def close(self, code: CloseCode, reason: str = "") -> None:
        """Close with ``code``. Frames queued before still go out first; a 4403 is preceded by
        a ``close`` frame with the reason (docs/protocol.md). The connection is released at
        once, without waiting for the client's side of the closing handshake."""
        if self._closing:
            return
        if code == CloseCode.DISCONNECTED:
            # daphne sends no close reason, and this one is for the user ("disconnected by an
            # operator"): say it in a last `close` frame, as an SSE stream's last event does.
            frame = {"type": "close", "code": code, "reason": reason[:120]}
            self._queue.append({"type": "websocket.send", "text": protocol.encode(frame)})
        # int(): autobahn refuses a close code that is not exactly an int
        self._queue.append({"type": "websocket.close", "code": int(code), "reason": reason[:120]})
        self._closing = True
        if self._writer is None:
            self._pump()
        self._release(code)

    def _release(self, code: int) -> None:
        connection = getattr(self, "connection", None)
        if connection is not None:
            task = asyncio.get_running_loop().create_task(connection.closed(code))
            self._background.add(task)
            task.add_done_callback(self._background.discard)


def _anonymous_scope(session: Any) -> str:
    key = getattr(session, "session_key", None)
    return f"s:{key}" if key else f"c:{uuid.uuid4().hex}"
