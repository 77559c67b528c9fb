"""The transport-independent state of one client, a state machine: awaiting auth → open →
closed. A connection holds its user, its subscriptions (:mod:`realtime.subscription`: the
position in each topic, and the recovery of gaps), the messages waiting for an ACK
(:mod:`realtime.acks`), its client messages (:mod:`realtime.client_messages`), the inbound
rate limit (:mod:`realtime.ratelimit`), its timers (:mod:`realtime.timers`) and counters.

A transport (WebSocket, SSE, long-poll, one POST request) owns one :class:`Connection`, feeds
it frames (:meth:`Connection.handle_text`) and a :class:`Transport` to write and close through.
The hub hands it messages (:meth:`Connection.deliver`); :mod:`realtime.protocol` builds frames."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from realtime import inbound, protocol
from realtime.acks import AckTracker, PendingAck
from realtime.auth import aauthenticate_token
from realtime.backends import get_shared_reads
from realtime.client_messages import ClientMessages
from realtime.conf import get_config
from realtime.connection_state import State, Transport
from realtime.connection_state import user_id as _user_id
from realtime.exceptions import (
    AuthRequired,
    CloseCode,
    NotSubscribed,
    RealtimeError,
    TokenInvalid,
    TooManyTopics,
    close_code_for,
)
from realtime.hooks import Hooks, authenticate, check_subscribe, notify
from realtime.hub import get_hub
from realtime.ratelimit import TokenBucket
from realtime.registry.base import Entry
from realtime.signals import connection_closed, connection_opened
from realtime.subscription import Subscription
from realtime.timers import Heartbeat, Timers, TokenExpiry
from realtime.topics import validate_topic

# Hooks, check_subscribe, notify and TokenBucket lived here first: still importable from here.
__all__ = ["Connection", "Hooks", "State", "TokenBucket", "Transport", "check_subscribe", "notify"]

logger = logging.getLogger("realtime.connection")


class Connection:
    """One client on any transport. Created by the transport, which then calls
    :meth:`authenticated` (or lets the client send ``auth``) and :meth:`handle_text`."""

    # Thousands of these live in a process, most of them idle: no instance dict, and what
    # only some connections use (client messages) is made on first use.
    __slots__ = (
        "_client_messages",
        "_heartbeat",
        "_named",
        "_node",
        "_timers",
        "acks",
        "address",
        "anonymous_scope",
        "bucket",
        "client",
        "config",
        "connected_at",
        "heartbeat",
        "hooks",
        "id",
        "last_seen",
        "messages_in",
        "messages_out",
        "register",
        "state",
        "subscriptions",
        "token_expiry",
        "transport",
        "transport_name",
        "user",
        "user_agent",
    )

    def __init__(
        self,
        transport: Transport,
        hooks: Hooks,
        *,
        user: Any,
        transport_name: str,
        anonymous_scope: str,
        heartbeat: bool = True,
        register: bool = True,
        client: str = "",
        user_agent: str = "",
    ) -> None:
        self.config = config = get_config()
        self.id = uuid.uuid4().hex
        self.transport = transport
        self.hooks = hooks
        self.user = user
        self.transport_name = transport_name
        self.anonymous_scope = anonymous_scope
        self.heartbeat = heartbeat
        self.register = register
        self.client = client
        self.user_agent = user_agent[:200]
        self.address = ""
        self.state = State.AWAITING_AUTH
        self.subscriptions: dict[str, Subscription] = {}
        self.connected_at = time.time()
        self.last_seen = time.monotonic()
        self.messages_in = 0
        self.messages_out = 0
        self.bucket = TokenBucket(config.rate, config.burst)
        self._timers = Timers(asyncio.get_running_loop())
        self._heartbeat = Heartbeat(self._timers, config, self.send, self.close_for)
        self.token_expiry = TokenExpiry(self._timers, config, self.send, self.close_for)
        # long-poll has no ack frames of its own: a cursor past a message acknowledges it
        longpoll = transport_name == "longpoll"
        self.acks = AckTracker(self, self.send, config, hooks=hooks, cursor_acks=longpoll)
        self._client_messages: ClientMessages | None = None
        # for entry(): the user with its id and name, the hub's node name
        self._named: tuple[Any, Any, str] | None = None
        self._node = ""

    @property
    def client_messages(self) -> ClientMessages:
        """The client messages (``send`` frames) of this connection, made by the first one."""
        if self._client_messages is None:
            self._client_messages = ClientMessages(
                self.hooks,
                self.config,
                scope=self._dedup_scope,
                send=self.send,
                spawn=self._timers.spawn,
                fail=self._server_error,
            )
        return self._client_messages

    def _dedup_scope(self) -> str:
        return self.dedup_scope

    def _server_error(self) -> None:
        self.close_for(CloseCode.SERVER_ERROR)

    def _last_seen(self) -> float:
        return self.last_seen

    @property
    def pending(self) -> dict[str, PendingAck]:
        """The messages waiting for the client's ACK, by message id."""
        return self.acks.pending

    # ---- awaiting auth -> open ---------------------------------------------------------------

    def wait_for_token(self) -> None:
        """Give the client ``AUTH_TIMEOUT`` seconds to send an ``auth`` frame."""
        self._timers.set("auth", self.config.auth_timeout, self._auth_timed_out)

    def _auth_timed_out(self) -> None:
        if self.state is State.AWAITING_AUTH:
            self.close(AuthRequired("No token arrived in time."))

    async def authenticated(
        self, user: Any, token_expires_at: float | None = None, *, welcome: bool = True
    ) -> None:
        """Open the connection for ``user``: run the ``authenticate`` hook, send ``welcome``
        (unless told not to: a long-poll request), start the heartbeat and the token expiry
        timers. Raises what the hook raises: :class:`TokenInvalid` to refuse the user, or
        :class:`HookFailed` for a bug in it (see :func:`realtime.hooks.authenticate`)."""
        self.user = await authenticate(self.hooks, user)
        self.state = State.OPEN
        self._timers.cancel("auth")
        hub = get_hub()
        self._node = hub.node
        self.address = await hub.address()
        self.id = f"{self.id}@{self.address}"
        if self.register:
            await hub.register(self)
        self.token_expiry.set(token_expires_at)
        if welcome:
            self._welcome()
        if self.heartbeat:
            self._heartbeat.start(self._last_seen)
        connection_opened.send(sender=type(self), connection=self)
        await notify(self.hooks, "on_connect")

    async def on_auth(self, token: str) -> None:
        user, expires_at = await aauthenticate_token(token)
        if self.state is State.AWAITING_AUTH:
            await self.authenticated(user, expires_at)
        elif _user_id(self.user) is None:
            # an anonymous connection logs in: the user can only gain permissions
            self.user = await authenticate(self.hooks, user)
            self.token_expiry.set(expires_at)
            self._welcome()
        elif _user_id(user) != _user_id(self.user):
            raise TokenInvalid("A refreshed token must be for the same user.")
        else:
            self.token_expiry.set(expires_at)

    def _welcome(self) -> None:
        # SSE has no pings but keep-alives: their interval is what a client's deadline follows
        interval = self.config.heartbeat_interval if self.heartbeat else self.config.sse_keepalive
        batch = getattr(self.transport, "batching", False)  # only a WebSocket may batch
        user_id = _user_id(self.user)
        self.send(protocol.welcome_frame(self.id, user_id, interval, self.config, batch))

    # ---- open: inbound -----------------------------------------------------------------------

    async def handle_text(self, text: str) -> None:
        """Handle one client frame (:func:`realtime.inbound.handle_text`)."""
        await inbound.handle_text(self, text)

    def on_control(self, message: dict[str, Any]) -> None:
        """A control message sent to this connection from elsewhere in the cluster: ACKs
        posted to realtime/send/ (SSE), an operator's disconnect order or notice."""
        operation = message.get("op")
        if operation == "ack":
            if message.get("user") != _user_id(self.user):
                return  # only the connection's own user may acknowledge its messages
            self._timers.spawn(self.acks.acknowledge_quietly(message.get("ids", ())))
        elif operation == "disconnect":
            self.transport.close(CloseCode.DISCONNECTED, str(message.get("reason", "")))
        elif operation == "notice":
            self.send(protocol.notice_frame(str(message.get("text"))))

    async def subscribe(
        self, topic: str, cursor: protocol.Cursor | None = None, checked: bool = False
    ) -> None:
        """Subscribe, replaying after ``cursor`` when given. Raises :class:`InvalidTopic`,
        :class:`Forbidden` or :class:`TooManyTopics`; the permission is checked on every
        subscribe, resumes included: here, unless the caller ran it (``checked``: HTTP)."""
        validate_topic(topic)
        if topic not in self.subscriptions and len(self.subscriptions) >= self.config.max_topics:
            raise TooManyTopics(f"At most {self.config.max_topics} topics.", ref=topic)
        if not checked:
            await check_subscribe(self.hooks, topic)
        if self.state is State.CLOSED:
            return
        old = self.subscriptions.get(topic)
        if old is not None:
            old.stop()
        sub = self.subscriptions[topic] = Subscription(
            topic, get_shared_reads(), self.send, self._sent
        )
        if old is None:
            await get_hub().subscribe(topic, self)
        if await sub.start(cursor):
            if old is None:  # queued before the next await: listed once `subscribed` is out
                await get_hub().update(self)
            # what the user owes an ACK for is sent again, even behind the cursor
            await self.acks.subscribed(topic, cursor, sub.epoch, sub.offset)

    def unsubscribe(self, topic: str) -> None:
        """Stop delivering ``topic``. Raises :class:`NotSubscribed`."""
        sub = self.subscriptions.pop(topic, None)
        if sub is None:
            raise NotSubscribed(f"Not subscribed to {topic[:200]!r}.", ref=topic[:200])
        sub.stop()
        get_hub().unsubscribe(topic, self)
        self.acks.forget_topic(topic)
        self.send(protocol.unsubscribed_frame(topic))

    @property
    def dedup_scope(self) -> str:
        """Whose client message ids a ``send`` id is unique among: the user's, else the
        session's (or this connection's, without a session)."""
        user_id = _user_id(self.user)
        return self.anonymous_scope if user_id is None else f"u:{user_id}"

    async def answer_send(self, frame: protocol.SendFrame, wait: float | None = None) -> str | None:
        """The encoded ``ack`` for a client ``send`` (see :meth:`ClientMessages.answer`)."""
        return await self.client_messages.answer(frame, wait)

    # ---- open: outbound ----------------------------------------------------------------------

    def send(self, text: str) -> None:
        if self.state is not State.CLOSED:
            self.transport.send_text(text)

    def deliver(
        self, topic: str, epoch: str, offset: int, message_id: str, ack: bool, frame: str
    ) -> None:
        """Called by the hub with each live message of a subscribed topic."""
        sub = self.subscriptions.get(topic)
        if sub is not None and sub.live(epoch, offset, message_id, ack, frame):
            self._timers.spawn(self._fill_gap(sub))

    def catch_up(self, topic: str, epoch: str, offset: int) -> None:
        """Called by the hub with a topic's log position learnt out of band (after its
        channel layer was down): read the gap if this subscription is not there."""
        sub = self.subscriptions.get(topic)
        if sub is not None and sub.behind(epoch, offset):
            self._timers.spawn(self._fill_gap(sub))

    async def _fill_gap(self, sub: Subscription) -> None:
        if not await sub.fill_gap(self.config.backend_grace):
            self.close_for(CloseCode.SERVER_ERROR)  # the client resumes from its cursor

    def _sent(
        self, topic: str, message_id: str, ack: bool, frame: str, epoch: str, offset: int
    ) -> None:
        self.messages_out += 1
        if ack:
            self.acks.track(topic, message_id, epoch, offset, frame)
            get_hub().sweep_acks(type(self))

    def positions(self) -> dict[str, tuple[str, int]]:
        """Each subscribed topic's position: what SSE ids and long-poll cursors carry."""
        return {t: (s.epoch, s.offset) for t, s in self.subscriptions.items() if s.epoch}

    def entry(self) -> Entry:
        """This connection as the registry shows it."""
        # the refresher rewrites an idle connection's entry after each pong: what only
        # changes with the user (a lazy object, a lookup per attribute) is kept meanwhile
        named = self._named
        if named is None or named[0] is not self.user:
            user_id = _user_id(self.user)
            username = self.user.get_username() if user_id is not None else ""
            named = self._named = (self.user, user_id, username)
        return Entry(
            id=self.id,
            node=self._node or get_hub().node,
            address=self.address,
            transport=self.transport_name,
            user_id=named[1],
            username=named[2],
            topics=sorted(self.subscriptions),
            client=self.client,
            user_agent=self.user_agent,
            connected_at=self.connected_at,
            last_seen=time.time() - (time.monotonic() - self.last_seen),
            messages_in=self.messages_in,
            messages_out=self.messages_out,
            pending_acks=len(self.acks),
        )

    # ---- -> closed ---------------------------------------------------------------------------

    def close(self, error: RealtimeError) -> None:
        """Close the connection for ``error`` with its documented close code."""
        self.transport.close(close_code_for(error), error.reason)

    def refuse(self, error: RealtimeError) -> None:
        """Say why in an ``error`` frame, then close with the error's close code: a refused
        token (4401; 4419 when expired) before the connection was authenticated."""
        self.send(protocol.error_frame(error.code, error.reason, error.ref))
        self.close(error)

    def close_for(self, code: CloseCode) -> None:
        self.transport.close(code, code.reason)

    async def closed(self, code: int) -> None:
        """Called by the transport once the connection is gone: release everything."""
        if self.state is State.CLOSED:
            return
        was_open = self.state is State.OPEN
        self.state = State.CLOSED
        self._timers.cancel_all()
        await self.acks.close()  # what still waits an ACK stays pending for the user
        hub = get_hub()
        for topic, sub in self.subscriptions.items():
            sub.stop()
            hub.unsubscribe(topic, self)
        self.subscriptions.clear()
        await hub.unregister(self)
        if was_open:
            connection_closed.send(sender=type(self), connection=self, code=code)
            await notify(self.hooks, "on_disconnect", code)
