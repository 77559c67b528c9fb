"""The per-process, per-event-loop hub: topic -> local connections.

The hub joins a topic's channel-layer group while it has at least one local subscriber and
leaves when the last one goes, so a publish costs one layer message per node, not one per
connection. Each incoming message is encoded into its ``message`` frame once and handed to every
local subscriber on the event loop directly, never through per-consumer layer dispatch.

A broker (:mod:`realtime.broker`) carries the messages between hubs; the hub's record in the
cluster-wide registry is kept by :mod:`realtime.node`."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from channels.layers import get_channel_layer

from realtime import acks, drain, health, hubs, protocol
from realtime._tasks import stop_if_cancelled
from realtime._turns import Turns
from realtime.backends import get_broker, get_log
from realtime.broker.base import CONTROL_TYPE, EVERY_HUB, MESSAGE_TYPE, Broker
from realtime.conf import get_config
from realtime.hubs import Served
from realtime.metrics import DELIVERED, LATENCY
from realtime.node import Member, NodeRecord
from realtime.user_cache import users

logger = logging.getLogger("realtime.hub")

# How often a hub probes a channel layer reported down.
WATCH_INTERVAL = 2.0

_hub_numbers = itertools.count(1)


class LocalConnection(Member, Served, Protocol):
    """What the hub, its registry record and the metrics need of a local connection
    (:class:`realtime.connection.Connection`)."""

    def deliver(
        self, topic: str, epoch: str, offset: int, message_id: str, ack: bool, frame: str
    ) -> None:
        """Take a live message of a subscribed topic (its frame encoded once by the hub)."""
        ...

    def catch_up(self, topic: str, epoch: str, offset: int) -> None:
        """Take a topic's log position learnt out of band (after a layer outage)."""
        ...

    def on_control(self, message: dict[str, Any]) -> None:
        """Take a control message sent to this connection from elsewhere in the cluster."""
        ...


class Hub:
    """Local subscriptions of one event loop. Use :func:`get_hub`, not the constructor.

    The hub is also a registry *node* (named :attr:`node`): its :class:`NodeRecord` keeps the
    registry's record of the hub's connections."""

    def __init__(self, loop: asyncio.AbstractEventLoop, broker: Broker) -> None:
        self.loop = loop
        self.broker = broker
        self.node = f"{socket.gethostname()}:{os.getpid()}:{next(_hub_numbers)}"
        self.subscribers: dict[str, set[LocalConnection]] = {}
        # open connections by id: control messages (ACKs posted elsewhere, disconnect orders,
        # operator notices) find them here, and the registry lists them
        self.connections: dict[str, LocalConnection] = {}
        self.record = NodeRecord(loop, self.node, self.connections, lambda: list(self.subscribers))
        self._membership: dict[str, asyncio.Task[None]] = {}
        self._channel: asyncio.Task[str] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._resync: asyncio.Task[None] | None = None
        self._probes: dict[str, asyncio.Future[None]] = {}
        # the layer outages (health.outages) after which this hub caught up
        self._caught_up_outages = health.outages("layer")
        # topics with local subscribers whose last join failed
        self._unjoined: set[str] = set()
        # the layer outages (health.outages) when this hub last joined EVERY_HUB, or None
        self._hears_since: int | None = None

    async def channel(self) -> str:
        """This hub's channel-layer channel, created (with its reader task) on first use.

        Raises what the layer raises while it cannot create one (Redis unreachable); a failed
        creation is not kept, so the next call tries again."""
        task = self._channel
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            task = self._channel = self.loop.create_task(self._open_channel())
        try:
            name = await asyncio.shield(task)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            health.failed("layer", error)
            raise
        if self._reader is None or self._reader.done():
            # the reader never ends by itself; this heals it should it ever die
            self._reader = self.loop.create_task(self._read(name))
        if self._watcher is None or self._watcher.done():
            self._watcher = self.loop.create_task(self._watch())
        return name

    async def _open_channel(self) -> str:
        layer = get_channel_layer(get_config().channel_layer)
        name: str = await layer.new_channel(prefix="realtime.hub.")
        return name

    async def _read(self, name: str) -> None:
        layer = get_channel_layer(get_config().channel_layer)
        turns = Turns(self.loop)  # a backlog comes without suspending: bounded turns
        while True:
            try:
                message = await layer.receive(name)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                stop_if_cancelled(error)
                health.failed("layer", error)
                await asyncio.sleep(1)
                continue
            if message.get("type") == MESSAGE_TYPE:
                self.dispatch(message)
            elif message.get("type") == CONTROL_TYPE:
                self.control(message)
            await turns.handed()

    async def probe(self, timeout: float = 2.0) -> None:
        """Send a message to this hub through the broker and wait until its reader hands it
        back: proof that the layer, the hub's subscription and its reader work. Raises
        ``TimeoutError`` when it does not come back within ``timeout``, or what the layer
        raises when it cannot send."""
        token = uuid.uuid4().hex
        arrived = self.loop.create_future()
        self._probes[token] = arrived
        try:
            async with asyncio.timeout(timeout):
                address = await self.address()
                await self.broker.send_control(
                    address, {"type": CONTROL_TYPE, "op": "probe", "probe": token}
                )
                await arrived
        finally:
            self._probes.pop(token, None)

    async def _watch(self) -> None:
        """After the layer was reported down (by this hub, the layer's receive task or a
        publish in this process), probe it every few seconds until it works, so that its
        return is noticed (and logged once) even on a node that publishes nothing; then
        catch up."""
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            outages = health.outages("layer")
            if outages == self._caught_up_outages:
                continue
            try:
                await self.probe()
            except Exception as error:
                stop_if_cancelled(error)
                health.failed("layer", error)
                continue
            health.ok("layer")
            self._caught_up_outages = outages
            await self._catch_up()

    async def _catch_up(self) -> None:
        """Messages published while this hub's subscriptions were down (Redis came back
        before the layer resubscribed) never reached it, and a topic that goes quiet would
        not reveal the gap. So once the layer works again, join the topics whose join failed,
        and compare every local subscription with its topic's log position; connections
        behind it read the gap."""
        joins = []
        for topic in list(self._unjoined):
            if topic in self.subscribers:  # a join that failed: its subscribers are still here
                self._unjoined.discard(topic)
                joins.append(self._change_membership(topic, self.broker.join))
        # joined before the log is read, so nothing falls between the two
        await asyncio.gather(*joins, return_exceptions=True)
        log = get_log()
        for topic, subscribers in list(self.subscribers.items()):
            try:
                position = await log.read_after(topic, None, 0)
            except Exception as error:
                health.failed("log", error)
                return
            for connection in tuple(subscribers):
                connection.catch_up(topic, position.epoch, position.offset)

    def resync(self) -> None:
        """Called by a broker whose connection broke and is back (it may have lost messages
        meanwhile): catch up in the background, as after a layer outage."""
        previous = self._resync

        async def run() -> None:
            if previous is not None:  # one after the other: this one reads the log afresh
                with contextlib.suppress(Exception):
                    await previous
            await self._catch_up()

        self._resync = self.loop.create_task(run())

    def _change_membership(
        self, topic: str, change: Callable[[Hub, str], Coroutine[Any, Any, None]]
    ) -> asyncio.Task[None]:
        # Joins and leaves of one topic run in order, each after the previous one finished.
        previous = self._membership.get(topic)

        async def run() -> None:
            if previous is not None:
                with contextlib.suppress(Exception):
                    await previous
            await change(self, topic)

        task = self.loop.create_task(run())
        self._membership[topic] = task
        task.add_done_callback(lambda t: self._forget_membership(topic, t))
        return task

    def _forget_membership(self, topic: str, task: asyncio.Task[None]) -> None:
        if self._membership.get(topic) is task:
            del self._membership[topic]
        error = None if task.cancelled() else task.exception()
        if error is not None:
            health.failed("layer", error)
            if topic in self.subscribers:
                self._unjoined.add(topic)  # the next subscriber to it joins again

    async def subscribe(self, topic: str, connection: LocalConnection) -> None:
        """Add a local subscriber; returns once the hub receives the topic's messages. Raises
        what the broker raises when joining the topic fails (Redis unreachable)."""
        subscribers = self.subscribers.get(topic)
        if subscribers is None or topic in self._unjoined:
            if subscribers is None:
                subscribers = self.subscribers[topic] = set()
            self._unjoined.discard(topic)
            self._change_membership(topic, self.broker.join)
        subscribers.add(connection)
        pending = self._membership.get(topic)
        if pending is not None:
            await asyncio.shield(pending)

    def unsubscribe(self, topic: str, connection: LocalConnection) -> None:
        """Remove a local subscriber; the hub leaves the topic with its last one."""
        subscribers = self.subscribers.get(topic)
        if subscribers is None:
            return
        subscribers.discard(connection)
        if not subscribers:
            del self.subscribers[topic]
            self._unjoined.discard(topic)
            self._change_membership(topic, self.broker.leave)

    def stop(self) -> None:
        """Cancel the hub's background tasks (thread-safe)."""
        self.record.stop()
        for task in (self._reader, self._watcher, self._sweeper, self._resync):
            if task is not None and not self.loop.is_closed():
                self.loop.call_soon_threadsafe(task.cancel)
        self._reader = self._watcher = self._sweeper = self._resync = None

    async def address(self) -> str:
        """Where control messages for this hub's connections are sent."""
        return await self.broker.address(self)

    async def register(self, connection: LocalConnection) -> None:
        """Track an open connection here, and in the cluster-wide registry in the background
        (:class:`~realtime.node.NodeRecord`: never held up by the registry)."""
        self.connections[connection.id] = connection
        self.record.opened(connection)

    def sweep_acks(self, sender: type) -> None:
        """Start this hub's sweeper of pending ACKs, if it is not running: called once its
        connections (of class ``sender``) sent an ``ack=True`` message."""
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = self.loop.create_task(self._sweep(sender))

    async def _sweep(self, sender: type) -> None:
        """Give up on the pending ACKs no connection is left to give up on (see
        :func:`realtime.acks.sweep`), every ``ACK_TIMEOUT`` (at most every 5 s)."""
        while True:
            await asyncio.sleep(min(max(get_config().ack_timeout, 0.05), 5.0))
            try:
                while await acks.sweep(sender) > 0:
                    pass  # more may be waiting
            except Exception as error:
                stop_if_cancelled(error)
                health.request_failed("acks", error, logger, "Sweeping pending ACKs failed")
            else:
                health.ok("acks")

    async def update(self, connection: LocalConnection) -> None:
        """Rewrite a connection's registry entry (its topics changed), in the background."""
        if connection.id in self.connections:
            self.record.write(connection)

    async def unregister(self, connection: LocalConnection) -> None:
        """Forget a closed connection here, and in the registry in the background."""
        if self.connections.pop(connection.id, None) is not None:
            self.record.closed(connection.id)

    async def registry_written(self) -> None:
        """Wait until the registry writes started so far have finished (or timed out): for
        tests, and for code that reads the registry right after a connection opened."""
        await self.record.written()

    async def hears_revocations(self) -> bool:
        """Join :data:`EVERY_HUB` (once, and again after a layer outage, emptying the user
        cache, which may have missed an order meanwhile); whether this hub hears the
        cluster's revocations, so that the process may cache users (:mod:`realtime.auth`).
        Never with an in-process broker (no channel layer between processes)."""
        if not getattr(self.broker, "cluster_wide", False):  # a broker that does not say
            # no channel layer between processes: a revocation saved by another process (a
            # web worker, a management command) would never reach this one
            return False
        outages = health.outages("layer")
        if self._hears_since == outages:
            return True
        try:
            await self.broker.join(self, EVERY_HUB)
        except Exception as error:
            stop_if_cancelled(error)
            return False
        if self._hears_since is not None:
            users.clear()
        self._hears_since = outages
        return True

    def control(self, message: dict[str, Any]) -> None:
        """Hand a control message to the local connection it names, if it is still here;
        orders for every hub (:data:`EVERY_HUB`) are carried out here."""
        if message.get("op") == "forget_user":
            users.forget(message.get("user"))
            return
        if message.get("op") == "probe":
            arrived = self._probes.get(str(message.get("probe")))
            if arrived is not None and not arrived.done():
                arrived.set_result(None)
            return
        connection = self.connections.get(message.get("connection", ""))
        if connection is not None:
            connection.on_control(message)

    def dispatch(self, message: dict[str, Any]) -> None:
        """Encode a published message once and hand it to every local subscriber."""
        topic = message["topic"]
        subscribers = self.subscribers.get(topic)
        if not subscribers:
            return
        frame = protocol.message_frame(
            topic,
            message["event"],
            message["data"],
            message["id"],
            message["epoch"],
            message["offset"],
            message["ack"],
        )
        for connection in tuple(subscribers):
            connection.deliver(
                topic, message["epoch"], message["offset"], message["id"], message["ack"], frame
            )
        DELIVERED.inc(len(subscribers))
        if "time" in message:
            LATENCY.observe(max(0.0, time.time() - message["time"]))


def get_hub() -> Hub:
    """The hub of the running event loop, created on first use."""
    loop = asyncio.get_running_loop()
    return hubs.hub_of(loop, lambda: _new_hub(loop))


def _new_hub(loop: asyncio.AbstractEventLoop) -> Hub:
    # the first hub of a server process drains it on SIGTERM (when DRAIN_WINDOW is set): by
    # now the server has installed its own handler, which the drain runs once done
    drain.install(loop)
    return Hub(loop, get_broker())
