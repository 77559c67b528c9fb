"""``RealtimeConsumer``: the hooks users override to customize every transport.

Subclass it to change who may connect, what they may subscribe to, and what client messages
do; route it with :func:`realtime.asgi.get_asgi_application` or your own ``URLRouter``::

    class ShopConsumer(realtime.RealtimeConsumer):
        async def handle_cart_add(self, data):          # a client `send` with event "cart.add"
            ...
            return {"ok": True}                         # becomes the `ack` frame's result

The class holds hooks only. The transports (:mod:`realtime.transports`) are separate objects
that make one instance of it per connection and call its hooks, so a subclass may name its own
methods as it likes.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from channels.db import database_sync_to_async

from realtime.exceptions import UnknownEvent
from realtime.topics import registry
from realtime.transports import websocket

if TYPE_CHECKING:
    from realtime.connection import Connection


class RealtimeConsumer:
    """The hooks of a realtime connection, on every transport. Override them; each says when
    it runs.

    Every connection gets its own instance: of the class routed with :meth:`as_asgi` for a
    WebSocket, of the class named by ``REALTIME["CONSUMER"]`` for the SSE, long-poll and POST
    transports. Each hook says what happens when it raises something it is not documented to
    raise (a bug): its traceback is logged once and only the request that ran it is answered
    (never the whole connection, except for ``authenticate``).

    Set by the transport before the hooks run: ``scope``, the ASGI scope of the socket (an
    HTTP scope with the ``user`` for the HTTP transports), and ``connection``, the
    connection's state (its ``user``, ``transport_name``, ``subscriptions``, …)."""

    scope: dict[str, Any]
    connection: Connection

    @classmethod
    def as_asgi(cls, **initkwargs: Any) -> Any:
        """The ASGI application that serves this consumer over WebSocket, for a route of a
        Channels ``URLRouter`` (as Channels' ``as_asgi()``): each socket gets an instance made
        with ``initkwargs``. :func:`realtime.asgi.get_asgi_application` routes it for you."""
        return websocket.application(cls, initkwargs)

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
        """Runs once per message and user (anonymous: per session) when the message,
        published with ``ack=True``, is first acknowledged by any connection of that user, on
        the node that took the ACK: a WebSocket ``ack`` frame, an ``ack`` POST (SSE,
        long-poll), or a long-poll cursor past it (docs/protocol.md, "ACKs"). A notification:
        an exception it raises is logged with its traceback and ignored (the connection
        carries on, the POST still gets 204)."""

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
