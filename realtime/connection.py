"""The transport-independent state of one client: user, subscriptions with cursors, pending
ACKs, the inbound rate limit, heartbeat and token timers, and counters.

A transport (the WebSocket consumer now; SSE and long-poll later) owns one
:class:`Connection`, feeds it inbound frames with :meth:`Connection.handle_text`, and gives it a
:class:`Transport` to write frames and close. The hub hands it published messages through
:meth:`Connection.deliver`, synchronously, on the event loop.

Ordering: each subscription tracks ``(epoch, offset)``. A live message whose offset is not the
next one (a message lost between nodes, or an epoch change) switches the subscription to
*recovering*: live messages are buffered while the gap is read from the topic log, then the
buffer is drained with duplicates dropped. The same path serves a resume with a cursor, so
replay-then-live never loses or repeats a message.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from realtime import health, protocol
from realtime.backends import get_dedup, get_log
from realtime.conf import Config, get_config
from realtime.dedup import answer_once
from realtime.exceptions import (
    AuthRequired,
    CloseCode,
    Forbidden,
    HookFailed,
    InProgress,
    NotSubscribed,
    RateLimited,
    RealtimeError,
    TokenInvalid,
    TooManyTopics,
    close_code_for,
)
from realtime.hub import get_hub
from realtime.log.base import Entry as LogEntry
from realtime.log.base import Replay
from realtime.metrics import ACKED, RETRIED, UNDELIVERED
from realtime.registry.base import Entry
from realtime.signals import connection_closed, connection_opened, message_undelivered
from realtime.topics import validate_topic

logger = logging.getLogger("realtime.connection")

# How many log reads one gap may take before the subscription gives up with a reset.
MAX_RECOVERY_ROUNDS = 5
# Backoff between log reads that failed while filling a gap (within BACKEND_GRACE).
RECOVERY_RETRY_FIRST = 0.25
RECOVERY_RETRY_MAX = 4.0


class State(enum.Enum):
    AWAITING_AUTH = "awaiting_auth"
    OPEN = "open"
    CLOSED = "closed"


class Transport(Protocol):
    """What a transport gives its connection."""

    def send_text(self, text: str) -> None:
        """Queue one frame for the client; never blocks."""

    def close(self, code: CloseCode, reason: str = "") -> None:
        """Close the connection with ``code``; the transport then calls
        :meth:`Connection.closed`."""


class Hooks(Protocol):
    """The consumer hooks a connection calls (see :class:`realtime.RealtimeConsumer`)."""

    async def authenticate(self, user: Any) -> Any: ...
    async def can_subscribe(self, topic: str) -> None: ...
    async def on_message(self, event: str, data: Any) -> Any: ...
    async def on_ack(self, message_id: str) -> None: ...
    async def on_connect(self) -> None: ...
    async def on_disconnect(self, code: int) -> None: ...


# User code (the consumer's hooks, the topic permissions) is guarded where it is called, so that
# its bugs answer one request and never take a connection down; see docs/security.md.


async def check_subscribe(hooks: Hooks, topic: str) -> None:
    """Run the ``can_subscribe`` hook for ``topic``. Raises what it raises if that is a
    :class:`RealtimeError` (:class:`Forbidden`, ``Rejected``, …); any other exception is a bug
    in the hook: logged with its traceback, and the topic refused with :class:`Forbidden`."""
    try:
        await hooks.can_subscribe(topic)
    except RealtimeError:
        raise
    except Exception:
        logger.exception(
            "The can_subscribe hook of %s raised for topic %r; the subscribe is refused "
            "(forbidden)",
            type(hooks).__name__,
            topic,
        )
        raise Forbidden(
            f"Not allowed to subscribe to {topic!r}: the permission check failed.", ref=topic
        ) from None


async def notify(hooks: Hooks, hook: str, *args: Any) -> None:
    """Run the notification hook ``hook`` (``on_connect``, ``on_ack``, ``on_disconnect``)
    with ``args``. Nothing answers a notification, so an exception it raises is logged with
    its traceback and goes no further: the connection carries on."""
    try:
        await getattr(hooks, hook)(*args)
    except Exception:
        logger.exception(
            "The %s hook of %s raised%s; ignored",
            hook,
            type(hooks).__name__,
            f" (called with {', '.join(map(repr, args))})" if args else "",
        )


@dataclass
class Subscription:
    epoch: str = ""
    offset: int = 0
    recovering: bool = True
    # live messages held while recovering: (epoch, offset, message_id, ack, frame)
    buffer: list[tuple[str, int, str, bool, str]] = field(default_factory=list)


@dataclass
class PendingAck:
    topic: str
    frame: str
    attempts: int
    due: float


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; one token per inbound frame."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class Connection:
    """One client on any transport. Created by the transport, which then calls
    :meth:`authenticated` (or lets the client send ``auth``) and :meth:`handle_text`."""

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
        self.config: Config = get_config()
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
        self.pending: dict[str, PendingAck] = {}
        self.connected_at = time.time()
        self.last_seen = time.monotonic()
        self.messages_in = 0
        self.messages_out = 0
        self.token_expires_at: float | None = None
        self._ping_sent = 0.0
        self._bucket = TokenBucket(self.config.rate, self.config.burst)
        self._loop = asyncio.get_running_loop()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    # ---- lifecycle -------------------------------------------------------------------------

    def _timer(self, name: str, delay: float, callback: Any, *args: Any) -> None:
        self._cancel(name)
        self._timers[name] = self._loop.call_later(max(0.0, delay), callback, *args)

    def _cancel(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()

    def _spawn(self, coro: Any) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def wait_for_token(self) -> None:
        """Give the client ``AUTH_TIMEOUT`` seconds to send an ``auth`` frame."""
        self._timer("auth", self.config.auth_timeout, self._auth_timed_out)

    def _auth_timed_out(self) -> None:
        if self.state is State.AWAITING_AUTH:
            self.close(AuthRequired("No token arrived in time."))

    async def authenticated(
        self, user: Any, token_expires_at: float | None = None, *, welcome: bool = True
    ) -> None:
        """Open the connection for ``user``: run the ``authenticate`` hook, send ``welcome``
        (unless told not to: a long-poll request), start the heartbeat and the token expiry
        timers. Raises what the hook raises: :class:`TokenInvalid` to refuse the user, or
        :class:`HookFailed` for a bug in it (see :meth:`_authenticate`)."""
        self.user = await self._authenticate(user)
        self.state = State.OPEN
        self._cancel("auth")
        hub = get_hub()
        self.address = await hub.address()
        self.id = f"{self.id}@{self.address}"
        if self.register:
            await hub.register(self)
        self._set_token_expiry(token_expires_at)
        if welcome:
            self._welcome()
        if self.heartbeat:
            self._schedule_ping()
        connection_opened.send(sender=type(self), connection=self)
        await notify(self.hooks, "on_connect")

    async def _authenticate(self, user: Any) -> Any:
        """The ``authenticate`` hook's answer for ``user``. A :class:`RealtimeError` it raises
        (``TokenInvalid``: the documented refusal) goes on; any other exception is a bug in
        the hook: logged with its traceback, then raised as :class:`HookFailed`, which the
        transports answer as a server error (close 4011, HTTP 503) without logging it again."""
        try:
            return await self.hooks.authenticate(user)
        except RealtimeError:
            raise
        except Exception as error:
            logger.exception(
                "The authenticate hook of %s raised; the connection is refused as a server error",
                type(self.hooks).__name__,
            )
            raise HookFailed("authenticate") from error

    def positions(self) -> dict[str, tuple[str, int]]:
        """Each subscribed topic's position: what SSE ids and long-poll cursors carry."""
        return {t: (s.epoch, s.offset) for t, s in self.subscriptions.items() if s.epoch}

    def entry(self) -> Entry:
        """This connection as the registry shows it."""
        return Entry(
            id=self.id,
            node=get_hub().node,
            address=self.address,
            transport=self.transport_name,
            user_id=_user_id(self.user),
            username=self.user.get_username() if _user_id(self.user) is not None else "",
            topics=sorted(self.subscriptions),
            client=self.client,
            user_agent=self.user_agent,
            connected_at=self.connected_at,
            last_seen=time.time() - (time.monotonic() - self.last_seen),
            messages_in=self.messages_in,
            messages_out=self.messages_out,
            pending_acks=len(self.pending),
        )

    def on_control(self, message: dict[str, Any]) -> None:
        """A control message sent to this connection from elsewhere in the cluster: ACKs
        posted to realtime/send/ (SSE), an operator's disconnect order or notice."""
        operation = message.get("op")
        if operation == "ack":
            if message.get("user") != _user_id(self.user):
                return  # only the connection's own user may acknowledge its messages
            for message_id in message.get("ids", ()):
                if self.pending.pop(message_id, None) is not None:
                    ACKED.inc()
                    self._spawn(notify(self.hooks, "on_ack", message_id))
        elif operation == "disconnect":
            self.transport.close(CloseCode.DISCONNECTED, str(message.get("reason", ""))[:100])
        elif operation == "notice":
            self.send(protocol.encode({"type": "notice", "text": str(message.get("text"))}))

    def _welcome(self) -> None:
        self.send(
            protocol.encode(
                {
                    "type": "welcome",
                    "v": protocol.VERSION,
                    "connection_id": self.id,
                    "user": _user_id(self.user),
                    # SSE has no pings, only keep-alive comments: announce their interval,
                    # which is what a client's silence deadline must follow
                    "heartbeat_interval_ms": int(
                        (
                            self.config.heartbeat_interval
                            if self.heartbeat
                            else self.config.sse_keepalive
                        )
                        * 1000
                    ),
                    "heartbeat_timeout_ms": int(self.config.heartbeat_timeout * 1000),
                    "limits": {
                        "max_frame_bytes": self.config.max_frame_bytes,
                        "max_topics": self.config.max_topics,
                        "rate": self.config.rate,
                        "burst": self.config.burst,
                    },
                }
            )
        )

    def _set_token_expiry(self, expires_at: float | None) -> None:
        self.token_expires_at = expires_at
        self._cancel("token-warning")
        self._cancel("token-expiry")
        if expires_at is None:
            return
        remaining = expires_at - time.time()
        self._timer(
            "token-warning", remaining - self.config.token_expiry_warning, self._token_warning
        )
        self._timer("token-expiry", remaining, self._token_expired)

    def _token_warning(self) -> None:
        if self.token_expires_at is not None:
            remaining = max(0, int((self.token_expires_at - time.time()) * 1000))
            self.send(protocol.encode({"type": "token-expiring", "expires_in_ms": remaining}))

    def _token_expired(self) -> None:
        self.transport.close(CloseCode.TOKEN_EXPIRED, "token expired")

    def close(self, error: RealtimeError) -> None:
        """Close the connection for ``error`` with its documented close code."""
        self.transport.close(close_code_for(error), error.reason)

    def refuse(self, error: RealtimeError) -> None:
        """Say why in an ``error`` frame, then close with the error's close code: a refused
        token (4401; 4419 when expired) before the connection was authenticated."""
        self.send(protocol.error_frame(error.code, error.reason, error.ref))
        self.close(error)

    async def closed(self, code: int) -> None:
        """Called by the transport once the connection is gone: release everything."""
        if self.state is State.CLOSED:
            return
        was_open = self.state is State.OPEN
        self.state = State.CLOSED
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in list(self._tasks):
            task.cancel()
        hub = get_hub()
        for topic in self.subscriptions:
            hub.unsubscribe(topic, self)
        await hub.unregister(self)
        self.subscriptions.clear()
        self.pending.clear()
        if was_open:
            connection_closed.send(sender=type(self), connection=self, code=code)
            await notify(self.hooks, "on_disconnect", code)

    # ---- heartbeat -------------------------------------------------------------------------

    def _schedule_ping(self) -> None:
        self._timer("ping", self.config.heartbeat_interval, self._ping)

    def _ping(self) -> None:
        self._ping_sent = time.monotonic()
        self.send('{"type":"ping"}')
        self._timer("pong", self.config.heartbeat_timeout, self._check_pong)

    def _check_pong(self) -> None:
        if self.last_seen < self._ping_sent:
            self.transport.close(CloseCode.HEARTBEAT_TIMEOUT, "heartbeat timeout")
        else:
            self._timer(
                "ping",
                self._ping_sent + self.config.heartbeat_interval - time.monotonic(),
                self._ping,
            )

    # ---- outbound --------------------------------------------------------------------------

    def send(self, text: str) -> None:
        if self.state is not State.CLOSED:
            self.transport.send_text(text)

    def deliver(
        self, topic: str, epoch: str, offset: int, message_id: str, ack: bool, frame: str
    ) -> None:
        """Called by the hub with each live message of a subscribed topic."""
        sub = self.subscriptions.get(topic)
        if sub is None or self.state is State.CLOSED:
            return
        if sub.recovering:
            sub.buffer.append((epoch, offset, message_id, ack, frame))
        elif epoch == sub.epoch and offset <= sub.offset:
            return  # already delivered (replayed, or a duplicate from the layer)
        elif epoch == sub.epoch and offset == sub.offset + 1:
            self._send_message(topic, sub, offset, message_id, ack, frame)
        else:  # a gap, or the log's epoch changed under us: recover from the log
            sub.recovering = True
            sub.buffer.append((epoch, offset, message_id, ack, frame))
            self._spawn(self._recover_or_close(topic, sub))

    def catch_up(self, topic: str, epoch: str, offset: int) -> None:
        """Called by the hub with a topic's log position learnt out of band (after its
        channel layer was down): read the gap if this subscription is not there."""
        sub = self.subscriptions.get(topic)
        if sub is None or self.state is State.CLOSED or sub.recovering:
            return
        if sub.epoch == epoch and sub.offset >= offset:
            return
        sub.recovering = True
        self._spawn(self._recover_or_close(topic, sub))

    def _send_message(
        self, topic: str, sub: Subscription, offset: int, message_id: str, ack: bool, frame: str
    ) -> None:
        sub.offset = offset
        self.messages_out += 1
        self.send(frame)
        if ack:
            self._track_ack(topic, message_id, frame)

    def _send_entry(self, topic: str, sub: Subscription, entry: LogEntry) -> None:
        frame = protocol.message_frame(
            topic, entry.event, entry.data, entry.message_id, sub.epoch, entry.offset, entry.ack
        )
        self._send_message(topic, sub, entry.offset, entry.message_id, entry.ack, frame)

    async def _read(self, topic: str, epoch: str | None, offset: int) -> Replay:
        """Read the log after a position. When the epoch changed, the reader jumps to the
        start of the new epoch if the log still holds all of it, so that messages published
        since the loss are not lost too."""
        log = get_log()
        replay = await log.read_after(topic, epoch, offset)
        if replay.reset == "epoch_changed" and replay.offset > 0:
            fresh = await log.read_after(topic, replay.epoch, 0)
            if fresh.reset is None:
                return Replay(fresh.epoch, 0, fresh.entries, "epoch_changed")
        return replay

    def _send_reset(self, topic: str, replay: Replay) -> None:
        self.send(
            protocol.encode(
                {
                    "type": "reset",
                    "topic": topic,
                    "reason": replay.reset,
                    "epoch": replay.epoch,
                    "offset": replay.offset,
                }
            )
        )

    async def _recover_or_close(self, topic: str, sub: Subscription) -> None:
        """Fill a gap from the log. While the log is unreachable, retry with backoff for
        ``BACKEND_GRACE`` seconds (live messages wait in the subscription's buffer), then
        close with 4011: the client reconnects and resumes from its cursor."""
        deadline = time.monotonic() + self.config.backend_grace
        delay = RECOVERY_RETRY_FIRST
        while True:
            try:
                await self._recover(topic, sub)
            except Exception as error:
                # an outage is one quiet state change; a bug keeps its traceback
                health.request_failed("log", error, logger, "Filling a gap from the log failed")
                if self.state is State.CLOSED or self.subscriptions.get(topic) is not sub:
                    return
                if time.monotonic() + delay > deadline:
                    self.transport.close(CloseCode.SERVER_ERROR, "server error")
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECOVERY_RETRY_MAX)
            else:
                health.ok("log")
                return

    async def _recover(self, topic: str, sub: Subscription) -> None:
        """Fill the gap after ``sub``'s position from the log, then go live."""
        for _ in range(MAX_RECOVERY_ROUNDS):
            replay = await self._read(topic, sub.epoch, sub.offset)
            if self.subscriptions.get(topic) is not sub:
                return
            if replay.reset:
                sub.epoch, sub.offset = replay.epoch, replay.offset
                self._send_reset(topic, replay)
            for entry in replay.entries:
                self._send_entry(topic, sub, entry)
            if self._drain(topic, sub):
                return
        logger.warning("Topic %r: gap not filled after %d reads", topic, MAX_RECOVERY_ROUNDS)
        replay = await get_log().read_after(topic, None, 0)
        sub.epoch, sub.offset, sub.buffer, sub.recovering = replay.epoch, replay.offset, [], False
        self._send_reset(topic, Replay(replay.epoch, replay.offset, [], "too_old"))

    def _drain(self, topic: str, sub: Subscription) -> bool:
        """Send buffered live messages that follow on; False if a gap remains."""
        buffered, sub.buffer = sorted(sub.buffer, key=lambda m: m[1]), []
        for index, (epoch, offset, message_id, ack, frame) in enumerate(buffered):
            if epoch != sub.epoch:
                continue  # from before a reset; the log read decided the current epoch
            if offset <= sub.offset:
                continue
            if offset != sub.offset + 1:
                sub.buffer = buffered[index:]
                return False
            self._send_message(topic, sub, offset, message_id, ack, frame)
        sub.recovering = False
        return True

    # ---- ACKs (server -> client) -------------------------------------------------------------

    def _track_ack(self, topic: str, message_id: str, frame: str) -> None:
        if message_id in self.pending:
            return
        due = time.monotonic() + self.config.ack_timeout
        self.pending[message_id] = PendingAck(topic, frame, 0, due)
        if "ack" not in self._timers:
            self._timer("ack", self.config.ack_timeout, self._retry_acks)

    def _retry_acks(self) -> None:
        self._timers.pop("ack", None)
        now = time.monotonic()
        for message_id, pending in list(self.pending.items()):
            if pending.due > now:
                continue
            if pending.attempts >= self.config.ack_max_retries:
                del self.pending[message_id]
                UNDELIVERED.inc()
                message_undelivered.send(
                    sender=type(self), connection=self, topic=pending.topic, message_id=message_id
                )
                continue
            RETRIED.inc()
            pending.attempts += 1
            pending.due = now + self.config.ack_timeout * 2**pending.attempts
            self.send(pending.frame)
        if self.pending:
            next_due = min(p.due for p in self.pending.values())
            self._timer("ack", next_due - now, self._retry_acks)

    # ---- inbound ---------------------------------------------------------------------------

    async def handle_text(self, text: str) -> None:
        """Handle one client frame. Errors that end the connection close it; the others are
        answered with an ``error`` frame. A consumer hook that raises answers this frame only
        (see :func:`check_subscribe`, :func:`notify`), except ``authenticate`` (4011)."""
        self.last_seen = time.monotonic()
        self.messages_in += 1
        kind = ""
        try:
            if not self._bucket.take():
                raise RateLimited("Too many frames; slow down and reconnect.")
            frame = protocol.parse_client_frame(text)
            kind = frame["type"]
            await self._dispatch(frame)
        except RateLimited as error:
            self.close(error)
        except TokenInvalid as error:
            if self.state is State.OPEN:
                self.send(protocol.error_frame(error.code, error.reason, error.ref))
            else:
                self.refuse(error)
        except RealtimeError as error:
            self.send(protocol.error_frame(error.code, error.reason, error.ref))
        except Exception as error:
            # e.g. Redis unreachable: close, so the client reconnects and resumes. (Also the
            # authenticate hook's HookFailed, logged already where it was raised.)
            component = "dedup" if kind == "send" else "log"
            health.request_failed(component, error, logger, "Handling a frame failed")
            self.transport.close(CloseCode.SERVER_ERROR, "server error")

    async def _dispatch(self, frame: protocol.ClientFrame) -> None:
        kind = frame["type"]
        if kind == "auth":
            await self._on_auth(frame["token"])  # type: ignore[typeddict-item]
            return
        if self.state is not State.OPEN:
            # answered, not closed: the client learns what is missing; AUTH_TIMEOUT and the
            # rate limit bound how long and how often it may try (docs/protocol.md)
            raise AuthRequired("Authenticate with an 'auth' frame first.")
        if kind == "pong":
            return
        if kind == "subscribe":
            cursor: protocol.Cursor | None = frame.get("cursor")  # type: ignore[assignment]
            await self.subscribe(frame["topic"], cursor)  # type: ignore[typeddict-item]
        elif kind == "unsubscribe":
            self.unsubscribe(frame["topic"])  # type: ignore[typeddict-item]
        elif kind == "ack":
            for message_id in frame["ids"]:  # type: ignore[typeddict-item]
                if self.pending.pop(message_id, None) is not None:
                    ACKED.inc()
                    await notify(self.hooks, "on_ack", message_id)
        elif kind == "send":
            await self._on_send(frame)  # type: ignore[arg-type]

    async def _on_auth(self, token: str) -> None:
        from realtime.auth import aauthenticate_token

        user, expires_at = await aauthenticate_token(token)
        if self.state is State.AWAITING_AUTH:
            await self.authenticated(user, expires_at)
        elif _user_id(self.user) is None:
            # an anonymous connection logs in: the user can only gain permissions
            self.user = await self._authenticate(user)
            self._set_token_expiry(expires_at)
            self._welcome()
        elif _user_id(user) != _user_id(self.user):
            raise TokenInvalid("A refreshed token must be for the same user.")
        else:
            self._set_token_expiry(expires_at)

    async def subscribe(self, topic: str, cursor: protocol.Cursor | None = None) -> None:
        """Subscribe, replaying after ``cursor`` when given. Raises :class:`InvalidTopic`,
        :class:`Forbidden` or :class:`TooManyTopics`; the permission is checked on every
        subscribe, resumes included."""
        validate_topic(topic)
        if topic not in self.subscriptions and len(self.subscriptions) >= self.config.max_topics:
            raise TooManyTopics(f"At most {self.config.max_topics} topics.", ref=topic)
        await check_subscribe(self.hooks, topic)
        if self.state is State.CLOSED:
            return
        old = self.subscriptions.get(topic)
        sub = self.subscriptions[topic] = Subscription()
        if old is None:
            await get_hub().subscribe(topic, self)
        replay = await self._read(
            topic, cursor["epoch"] if cursor else None, cursor["offset"] if cursor else 0
        )
        if self.subscriptions.get(topic) is not sub:
            return
        sub.epoch, sub.offset = replay.epoch, replay.offset
        if replay.reset:
            self._send_reset(topic, replay)
        self.send(
            protocol.encode(
                {
                    "type": "subscribed",
                    "topic": topic,
                    "epoch": sub.epoch,
                    "offset": sub.offset,
                    "recovered": cursor is not None and replay.reset is None,
                }
            )
        )
        for entry in replay.entries:
            self._send_entry(topic, sub, entry)
        if not self._drain(topic, sub):
            sub.recovering = True
            await self._recover(topic, sub)
        if old is None:
            await get_hub().update(self)

    def unsubscribe(self, topic: str) -> None:
        """Stop delivering ``topic``. Raises :class:`NotSubscribed`."""
        if self.subscriptions.pop(topic, None) is None:
            raise NotSubscribed(f"Not subscribed to {topic[:200]!r}.", ref=topic[:200])
        get_hub().unsubscribe(topic, self)
        for message_id in [m for m, p in self.pending.items() if p.topic == topic]:
            del self.pending[message_id]
        self.send(protocol.encode({"type": "unsubscribed", "topic": topic}))

    @property
    def dedup_scope(self) -> str:
        """Whose client message ids a ``send`` id is unique among: the user's, else the
        session's (or this connection's, without a session)."""
        user_id = _user_id(self.user)
        return self.anonymous_scope if user_id is None else f"u:{user_id}"

    async def _on_send(self, frame: protocol.SendFrame) -> None:
        answer = await self.answer_send(frame, wait=0.0)
        if answer is not None:
            self.send(answer)
        else:
            # Another attempt runs the handler: wait for its answer in a task, so that this
            # connection's other frames (pongs included) are handled meanwhile.
            self._spawn(self._send_when_answered(frame))

    async def _send_when_answered(self, frame: protocol.SendFrame) -> None:
        try:
            answer = await self.answer_send(frame)
        except Exception as failure:
            health.request_failed(
                "dedup", failure, logger, "Waiting for the answer of a client message failed"
            )
            self.transport.close(CloseCode.SERVER_ERROR, "server error")
            return
        if answer is None:
            error = InProgress()
            answer = _error_ack(frame["id"], error.code, error.reason)
        self.send(answer)

    async def answer_send(self, frame: protocol.SendFrame, wait: float | None = None) -> str | None:
        """The encoded ``ack`` for a client ``send``: the handler's, run once per id across
        the cluster (see :mod:`realtime.dedup`), or the answer stored for the id. None when
        another attempt with the id still runs the handler after ``wait`` seconds (default
        ``SEND_WAIT``): the client is to send it again (``in_progress``). Raises what the
        dedup store raises."""
        key = f"{self.dedup_scope}:{frame['id']}"
        answer = await answer_once(
            get_dedup(),
            key,
            lambda: self._run_handler(frame),
            wait=self.config.send_wait if wait is None else wait,
            lease=self.config.send_lease,
        )
        health.ok("dedup")
        return answer

    async def _run_handler(self, frame: protocol.SendFrame) -> str:
        """Run the consumer's handler; its result or error, encoded as the ``ack`` frame."""
        message_id = frame["id"]
        reply: dict[str, Any] = {"type": "ack", "id": message_id}
        try:
            reply["result"] = await self.hooks.on_message(frame["event"], frame.get("data"))
        except RealtimeError as error:
            reply["error"] = {"code": error.code, "reason": error.reason}
        except Exception:
            logger.exception("Handler for event %r failed", frame["event"])
            reply["error"] = {"code": "handler_error", "reason": "The handler failed."}
        try:
            return protocol.encode(reply)
        except (TypeError, ValueError):
            logger.exception("Handler for event %r returned a non-JSON result", frame["event"])
            return _error_ack(
                message_id, "handler_error", "The handler's result is not JSON serializable."
            )


def _error_ack(message_id: str, code: str, reason: str) -> str:
    """The encoded ``ack`` frame of a ``send`` that failed with ``code`` (a fixed ``reason``:
    one from a consumer's error goes through :meth:`Connection._run_handler`'s check)."""
    return protocol.encode(
        {"type": "ack", "id": message_id, "error": {"code": code, "reason": reason}}
    )


def _user_id(user: Any) -> Any:
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return user.pk
