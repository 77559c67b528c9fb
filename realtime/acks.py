"""The server's side of ``ack=True`` messages: which of them a user still owes an ACK for,
when each is sent again, and when one is given up on.

Pending ACKs belong to the user (an anonymous client: its session), not to one connection:
they are kept in the shared store (:func:`realtime.backends.get_pending_acks`), written when a
message is first sent, so that they outlive the connection that sent them. Each connection
holds a copy of the schedule of what it sent, and resends on its own timer. A new connection
of the same user that subscribes a topic sends again the messages of that topic still pending
(same epoch, at or before its position), even if its cursor is past them. One ACK, from any
connection of the user on any node, is enough: it takes the message from the store, and only
the taker runs ``on_ack``; the others stop resending it at their next resend.

The schedule runs from the first send (``sent_at``, wall-clock): resend *k* (1 to
``ACK_MAX_RETRIES``) at ``sent_at + ACK_TIMEOUT * (2**k - 1)``, and the message is given up
on at ``sent_at + Config.ack_window`` (``ACK_TIMEOUT * (2**(ACK_MAX_RETRIES + 1) - 1)``),
whether or not a connection was there for the resends: reported undelivered once,
cluster-wide (the ``message_undelivered`` signal and the
``realtime_messages_undelivered_total`` metric), by the connection that holds it then, or, when
none is left, by a node's sweeper (:func:`sweep`). It stays in the topic log, where a resume
finds it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from realtime import health
from realtime.ack_schedule import DueQueue, schedule
from realtime.ack_schedule import PendingAck as PendingAck  # importable from here too
from realtime.backends import get_pending_acks
from realtime.conf import Config, get_config
from realtime.hooks import Hooks, notify
from realtime.metrics import ACKED, RETRIED, UNDELIVERED
from realtime.protocol import Cursor
from realtime.signals import message_undelivered
from realtime.stores.base import Pending, PendingAcks

logger = logging.getLogger("realtime.connection")

# What schedules the retry timer: ``loop.call_later`` (delay in seconds, callback).
CallLater = Callable[[float, Callable[[], None]], asyncio.TimerHandle]
# How long a closing connection waits for its pending ACKs to reach the store.
SAVE_TIMEOUT = 2.0

#: The prefix of a scope made for one connection (an anonymous client without a session): no
#: other connection writes under it, so the store holds only what that connection put there.
CONNECTION_SCOPE_PREFIX = "c:"


def report_undelivered(connection: Any, sender: type, entry: Pending) -> None:
    """``entry`` is given up on: count it, and send the ``message_undelivered`` signal."""
    UNDELIVERED.inc()
    message_undelivered.send(
        sender=sender, connection=connection, topic=entry.topic, message_id=entry.message_id
    )


class AckTracker:
    """The messages one connection sent with ``ack=True`` and waits an ACK for, and their
    retry timer.

    ``send`` writes a frame to the client again; ``scope`` gives the user's (or session's)
    scope in the store (default: the connection's ``dedup_scope``); ``connection`` is what the
    ``message_undelivered`` signal names (its ``sender`` is the connection's class);
    ``config`` gives ``ACK_TIMEOUT`` and ``ACK_MAX_RETRIES``; ``hooks`` is the consumer whose
    ``on_ack`` runs for each message acknowledged; with ``cursor_acks`` (long-poll), a
    subscription's cursor acknowledges what it is past (:meth:`subscribed`). ``store``,
    ``call_later`` and ``clock`` (wall-clock seconds) are the configured store, the event
    loop's and :func:`time.time` unless a test gives its own. One timer runs at a time, set
    for the earliest due message; writes to the store go in the background, in order, and
    :meth:`saved` waits for them."""

    __slots__ = (
        "_call_later",
        "_clock",
        "_closed",
        "_hooks",
        "_loop",
        "_queue",
        "_retrying",
        "_saving",
        "_scope",
        "_send",
        "_store",
        "_timer",
        "_tracked",
        "_unsaved",
        "config",
        "connection",
        "cursor_acks",
        "pending",
    )

    def __init__(
        self,
        connection: Any,
        send: Callable[[str], None],
        config: Config,
        call_later: CallLater | None = None,
        clock: Callable[[], float] = time.time,
        *,
        scope: Callable[[], str] | None = None,
        hooks: Hooks | None = None,
        cursor_acks: bool = False,
        store: PendingAcks | None = None,
    ) -> None:
        self.connection = connection
        self.config = config
        self.pending: dict[str, PendingAck] = {}
        self._queue = DueQueue(self.pending)
        self._send = send
        self._scope = scope  # None: the connection's dedup_scope (no closure per connection)
        self._hooks = hooks
        self.cursor_acks = cursor_acks
        self._store = store if store is not None else get_pending_acks()
        self._loop = asyncio.get_running_loop()
        self._call_later = call_later or self._loop.call_later
        self._clock = clock
        self._timer: asyncio.TimerHandle | None = None
        self._unsaved: list[Pending] = []
        self._saving: asyncio.Task[None] | None = None
        self._retrying: asyncio.Task[None] | None = None
        self._closed = False
        self._tracked = False  # whether this tracker ever had a message to put in the store

    def __len__(self) -> int:
        return len(self.pending)

    def _scope_key(self) -> str:
        """The user's (or session's) scope in the store."""
        return self._scope() if self._scope is not None else self.connection.dedup_scope

    # ---- sending -------------------------------------------------------------------------

    def track(self, topic: str, message_id: str, epoch: str, offset: int, frame: str) -> None:
        """``frame`` (message ``message_id`` of ``topic`` at ``epoch``/``offset``) was just
        sent and waits its ACK. A message already waiting keeps its schedule, here and in
        the store."""
        if message_id in self.pending or self._closed:
            return
        now = self._clock()
        entry = Pending(message_id, topic, epoch, offset, frame, now, now + self.config.ack_window)
        waiting = self.pending[message_id] = PendingAck(entry, 0, now + self.config.ack_timeout)
        self._queue.push(waiting)
        self._tracked = True
        self._unsaved.append(entry)
        if self._saving is None:
            self._saving = self._loop.create_task(self._save())
        if self._timer is None:
            self._set_timer(self.config.ack_timeout)

    async def _save(self) -> None:
        try:
            while self._unsaved:
                batch, self._unsaved = self._unsaved, []
                try:
                    await self._store.put(self._scope_key(), batch)
                except Exception as error:
                    # resent from here all the same; only another connection cannot adopt it
                    health.request_failed("acks", error, logger, "Keeping pending ACKs failed")
                else:
                    health.ok("acks")
        finally:
            self._saving = None

    async def saved(self) -> None:
        """Wait until what was tracked so far is in the store (or failed to get there)."""
        while self._saving is not None:
            await asyncio.shield(self._saving)

    async def subscribed(self, topic: str, cursor: Cursor | None, epoch: str, offset: int) -> None:
        """A subscription of ``topic`` asked with ``cursor`` is live at ``epoch``/``offset``:
        with ``cursor_acks``, acknowledge what the cursor is past; then :meth:`adopt`."""
        if cursor is not None and self.cursor_acks:
            await self.acknowledge_through(topic, cursor["epoch"], cursor["offset"])
        await self.adopt(topic, epoch, offset)

    async def adopt(self, topic: str, epoch: str, offset: int) -> None:
        """A subscription of ``topic`` starts at ``epoch``/``offset``: send again the messages
        of the topic the user still owes an ACK for (those of this epoch at or before the
        position; a later one comes from the log), and take over their schedule. Raises what
        the store raises."""
        scope = self._scope_key()
        if not self._tracked and scope.startswith(CONNECTION_SCOPE_PREFIX):
            return  # a scope of this connection alone, which put nothing: no store read
        now = self._clock()
        for entry in sorted(await self._store.of_topic(scope, topic), key=lambda e: e.offset):
            if entry.message_id in self.pending or entry.epoch != epoch or entry.offset > offset:
                continue
            waiting = self.pending[entry.message_id] = schedule(entry, now, self.config)
            if now < entry.deadline:
                RETRIED.inc()
                self._send(entry.frame)
            else:
                waiting.due = now  # given up on at once, by the timer
            self._queue.push(waiting)
        self._set_next_timer(now)

    # ---- acknowledging -------------------------------------------------------------------

    def waits_for(self, message_ids: Iterable[str]) -> bool:
        """Whether any of ``message_ids`` waits its ACK on this connection."""
        return any(message_id in self.pending for message_id in message_ids)

    async def owed(self, message_ids: list[str]) -> bool:
        """Whether any of ``message_ids`` waits its ACK, on this connection or from another
        connection of the user (in the store). Raises what the store raises."""
        if self.waits_for(message_ids):
            return True
        await self.saved()
        return bool(await self._store.pending(self._scope_key(), list(message_ids)))

    async def acknowledge(self, message_ids: Iterable[str]) -> list[str]:
        """The client acknowledged ``message_ids``: stop resending them here, and take them
        from the store. Returns those this call took, after running ``on_ack`` for each
        (counted in the ``realtime_messages_acked_total`` metric): each id is taken once,
        cluster-wide. Unknown and repeated ids are ignored. Raises what the store raises."""
        ids = list(dict.fromkeys(message_ids))
        for message_id in ids:
            self.pending.pop(message_id, None)
        await self.saved()  # so that what this connection sent is there to be taken
        taken = await acknowledge(self._scope_key(), ids, self._store)
        if self._hooks is not None:
            for message_id in taken:
                await notify(self._hooks, "on_ack", message_id)
        return taken

    async def acknowledge_quietly(self, message_ids: Iterable[str]) -> None:
        """:meth:`acknowledge` in the background (ACKs relayed from another node): a failure
        of the store is logged, not raised."""
        try:
            await self.acknowledge(message_ids)
        except Exception as error:
            health.request_failed("acks", error, logger, "Taking relayed ACKs failed")

    async def acknowledge_through(self, topic: str, epoch: str, offset: int) -> list[str]:
        """Acknowledge the pending messages of ``topic`` at or before ``epoch``/``offset``:
        a long-poll cursor past a message acknowledges it (docs/protocol.md)."""
        entries = await self._store.of_topic(self._scope_key(), topic)
        return await self.acknowledge(
            e.message_id for e in entries if e.epoch == epoch and e.offset <= offset
        )

    def forget_topic(self, topic: str) -> None:
        """Stop resending the messages of ``topic`` here (the client unsubscribed from it);
        they stay pending for the user."""
        for message_id in [m for m, p in self.pending.items() if p.topic == topic]:
            del self.pending[message_id]

    # ---- the timer -----------------------------------------------------------------------

    async def close(self) -> None:
        """The connection closed: stop the timer, and hand what it waits for to the store
        (wait for the writes under way, at most ``SAVE_TIMEOUT``)."""
        self._closed = True
        self.stop()
        if self._retrying is not None:
            self._retrying.cancel()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(SAVE_TIMEOUT):
                await self.saved()
        self.pending.clear()
        self._queue.clear()

    def stop(self) -> None:
        """Stop the retry timer; :meth:`track` starts it again."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _set_next_timer(self, now: float) -> None:
        """Set the timer for the earliest message due, if any."""
        due = self._queue.next_due()
        if due is not None and not self._closed:
            self._set_timer(due - now)

    def _set_timer(self, delay: float) -> None:
        self.stop()
        self._timer = self._call_later(max(0.0, delay), self._retry)

    def _retry(self) -> None:
        self._timer = None
        if self._retrying is None and not self._closed:
            self._retrying = self._loop.create_task(self._run_retry())

    async def _run_retry(self) -> None:
        try:
            await self._resend_due()
        except Exception as error:
            health.request_failed("acks", error, logger, "Resending unacknowledged messages failed")
            if self.pending and not self._closed:
                self._set_timer(self.config.ack_timeout)
        finally:
            self._retrying = None

    async def _resend_due(self) -> None:
        now = self._clock()
        popped = self._queue.pop_due(now)
        due = [p.entry.message_id for p in popped]
        if due:
            try:
                await self.saved()
                still = await self._store.pending(self._scope_key(), due)
            except BaseException:
                for item in popped:  # still pending: due again at the next pass
                    self._queue.push(item)
                raise
            expired = []
            for message_id in due:
                waiting = self.pending.get(message_id)
                if waiting is None:
                    continue
                if message_id not in still:
                    del self.pending[message_id]  # acknowledged elsewhere, or given up on
                elif waiting.attempts >= self.config.ack_max_retries:
                    del self.pending[message_id]
                    expired.append(waiting.entry)
                else:
                    RETRIED.inc()
                    waiting.attempts += 1
                    self._send(waiting.entry.frame)
                    waiting.due = schedule(waiting.entry, now, self.config).due
                    self._queue.push(waiting)
            if expired:
                await self._give_up(expired)
        self._set_next_timer(self._clock())

    async def _give_up(self, entries: list[Pending]) -> None:
        taken = set(await self._store.give_up(self._scope_key(), [e.message_id for e in entries]))
        for entry in entries:
            if entry.message_id in taken:
                report_undelivered(self.connection, type(self.connection), entry)


async def acknowledge(scope: str, ids: list[str], store: PendingAcks | None = None) -> list[str]:
    """Take ``ids`` from the pending ACKs of ``scope`` (a user's: ``u:<pk>``; see
    :attr:`realtime.connection.Connection.dedup_scope`): those returned are this caller's to
    run ``on_ack`` for, once cluster-wide (counted in ``realtime_messages_acked_total``).
    Raises what the store raises."""
    taken = await (store or get_pending_acks()).acknowledge(scope, ids)
    ACKED.inc(len(taken))
    return taken


async def sweep(sender: type, now: float | None = None, limit: int = 100) -> int:
    """Give up on the pending ACKs whose deadline passed ``ACK_TIMEOUT`` ago or more: no
    connection held them then (the connection that does reports them itself at the
    deadline). Each is reported undelivered once cluster-wide, with ``connection=None`` and
    ``sender``. Returns how many this call reported."""
    config = get_config()
    store = get_pending_acks()
    before = (time.time() if now is None else now) - config.ack_timeout
    reported = 0
    for scope, entry in await store.overdue(before, limit):
        if await store.give_up(scope, [entry.message_id]):
            report_undelivered(None, sender, entry)
            reported += 1
    return reported
