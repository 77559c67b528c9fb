"""One pub/sub connection of the Redis broker (:mod:`realtime.broker.redis`) and its reader:
to the one Redis, or to one master of a Redis Cluster (sharded pub/sub)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
from dataclasses import dataclass, field
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from realtime import health
from realtime._tasks import stop_if_cancelled
from realtime._turns import Turns
from realtime.broker.base import CONTROL_TYPE, MESSAGE_TYPE, Endpoint

# How long a join waits for the pub/sub connection and for Redis to confirm the subscription.
CONFIRM_TIMEOUT = 5.0
# Silence on a pub/sub connection after which it is pinged; no answer within as long again
# and it is taken for dead (a hung or unreachable Redis).
KEEPALIVE = 15.0
# Backoff between reconnection attempts of a pub/sub connection: doubles up to the cap.
BACKOFF, BACKOFF_CAP = 0.1, 2.0


def _future() -> asyncio.Future[None]:
    """A future for a subscription's confirmation. Whoever waited for it may have given up
    (a join that timed out): its failure is then no error of its own."""
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.add_done_callback(lambda done: done.cancelled() or done.exception())
    return future


def resync_when_confirmed(hubs: set[Endpoint]) -> asyncio.Future[None]:
    """A future for the subscription of a channel that moved to another master (or that Redis
    dropped): once it is confirmed there, the broker works again for ``hubs``, which catch up
    on what they may have missed meanwhile. Should it fail, the connection broke: its
    subscriber resyncs every hub when it is back."""
    future = _future()

    def confirmed(done: asyncio.Future[None]) -> None:
        if not done.cancelled() and done.exception() is None:
            health.ok("layer")
            for hub in hubs:
                hub.resync()

    future.add_done_callback(confirmed)
    return future


class Router(Protocol):
    """What a subscriber needs of the event loop's side of the broker, which knows which
    shard owns a channel (``redis.py``'s ``_Listener``)."""

    @property
    def sharded(self) -> bool:
        """On a Redis Cluster: sharded pub/sub, one subscriber per master."""
        ...

    def connection(self, key: tuple[str, int]) -> aioredis.Connection:
        """A new, unconnected connection to the shard ``key``."""
        ...

    async def owner(self, channel: str) -> tuple[str, int]:
        """The shard of ``channel``."""
        ...

    def shard(self, key: tuple[str, int]) -> Subscriber:
        """The subscriber of the shard ``key``, started on first use."""
        ...

    async def rehome(self) -> None:
        """Read the slot map again and move channels to their owners' subscribers."""
        ...


@dataclass
class _Pending:
    """A reply the pub/sub connection waits for: a (un)subscription of one channel."""

    subscribe: bool
    channel: str
    waiters: list[asyncio.Future[None]] = field(default_factory=list)


class Subscriber:
    """One pub/sub connection (to the one Redis, or to one master) and its reader task, which
    connects again after any failure and subscribes again to every wanted channel."""

    def __init__(self, listener: Router, key: tuple[str, int]) -> None:
        self.listener = listener
        self.key = key
        sharded = listener.sharded
        self.subscribe_command = "SSUBSCRIBE" if sharded else "SUBSCRIBE"
        self.unsubscribe_command = "SUNSUBSCRIBE" if sharded else "UNSUBSCRIBE"
        # channel -> the hubs of this loop that want its messages
        self.channels: dict[str, set[Endpoint]] = {}
        # channels Redis confirmed on the current connection
        self.subscribed: set[str] = set()
        # the (un)subscription replies due, in the order the commands were sent
        self.inflight: collections.deque[_Pending] = collections.deque()
        # joins waiting for the connection, by channel
        self.waiting: dict[str, list[asyncio.Future[None]]] = {}
        self.connection: aioredis.Connection | None = None
        self.up = asyncio.Event()
        # the connection broke and is not subscribed again yet
        self.failed = False
        self._lock = asyncio.Lock()
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def add(
        self,
        channel: str,
        hubs: set[Endpoint],
        waiters: list[asyncio.Future[None]],
        *,
        wait: bool = True,
    ) -> None:
        """Deliver ``channel`` to ``hubs``; with ``wait``, return once Redis confirmed it.
        Raises ``ConnectionError`` at once while the connection is down after a failure (it
        subscribes to the channel when it is back), ``TimeoutError`` when Redis does not
        confirm within :data:`CONFIRM_TIMEOUT`."""
        self.channels.setdefault(channel, set()).update(hubs)
        confirmed = _future()
        if not self.up.is_set():
            # subscribed with every other wanted channel once connected
            self.waiting.setdefault(channel, []).extend([confirmed, *waiters])
            if self.failed and wait:
                raise RedisConnectionError("The broker's pub/sub connection is down")
        elif not waiters and channel in self.subscribed and not self._leaving(channel):
            return
        else:
            await self._send(_Pending(True, channel, [confirmed, *waiters]))
        if wait:
            async with asyncio.timeout(CONFIRM_TIMEOUT):
                await confirmed

    def _leaving(self, channel: str) -> bool:
        return any(not p.subscribe and p.channel == channel for p in self.inflight)

    async def remove(self, channel: str, hub: Endpoint) -> None:
        """Stop delivering ``channel`` to ``hub``; unsubscribe when no hub is left."""
        hubs = self.channels.get(channel)
        if hubs is None:
            return
        hubs.discard(hub)
        if not hubs:
            await self.drop(channel)

    async def drop(self, channel: str) -> set[Endpoint]:
        """Unsubscribe ``channel`` here; return the hubs that wanted it."""
        hubs = self.channels.pop(channel, set())
        if self.up.is_set():
            with contextlib.suppress(Exception):  # a broken connection forgets it anyway
                await self._send(_Pending(False, channel))
        return hubs

    async def _send(self, pending: _Pending) -> None:
        command = self.subscribe_command if pending.subscribe else self.unsubscribe_command
        async with self._lock:
            connection = self.connection
            if connection is None or not connection.is_connected:
                raise RedisConnectionError(f"The broker's pub/sub connection is down: {command}")
            self.inflight.append(pending)
            await connection.send_command(command, pending.channel, check_health=False)

    async def _run(self) -> None:
        delay = BACKOFF
        while True:
            stop_if_cancelled()
            connection = self.listener.connection(self.key)
            reader: asyncio.Task[None] | None = None
            try:
                await connection.connect()  # type: ignore[no-untyped-call]
                self.connection = connection
                reader = asyncio.get_running_loop().create_task(self._read(connection))
                self.up.set()
                await self._resubscribe(reader)
                delay = BACKOFF
                await reader
            except Exception as error:
                stop_if_cancelled(error)
                health.failed("layer", error)
                self.failed = True
            finally:
                if reader is not None:
                    reader.cancel()
                    await asyncio.wait([reader])
                self._disconnected()
                with contextlib.suppress(Exception):
                    await connection.disconnect(nowait=True)
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_CAP)
            if self.listener.sharded:
                with contextlib.suppress(Exception):  # the slot map is read on the next try
                    await self.listener.rehome()
                if not self.channels:
                    return  # no longer a master of anything wanted here

    async def _resubscribe(self, reader: asyncio.Task[None]) -> None:
        """Once connected: subscribe to every wanted channel; after a failure, tell the hubs
        then, which compare their subscriptions with the log (what was published meanwhile)."""
        confirmations = []
        for channel in list(self.channels):
            confirmed = _future()
            confirmations.append(confirmed)
            waiters = self.waiting.pop(channel, [])
            await self._send(_Pending(True, channel, [confirmed, *waiters]))

        async def all_confirmed() -> None:
            await asyncio.gather(*confirmations)

        waiting = asyncio.get_running_loop().create_task(all_confirmed())
        done, _ = await asyncio.wait([waiting, reader], return_when=asyncio.FIRST_COMPLETED)
        if reader in done:
            waiting.cancel()
            await reader  # raises what broke the connection
        await waiting
        if self.failed:
            self.failed = False
            health.ok("layer")
            for hub in {hub for hubs in self.channels.values() for hub in hubs}:
                hub.resync()

    def _disconnected(self) -> None:
        self.up.clear()
        self.connection = None
        self.subscribed.clear()
        for pending in self.inflight:
            for waiter in pending.waiters:
                if not waiter.done():
                    waiter.set_exception(RedisConnectionError("The pub/sub connection broke"))
        self.inflight.clear()
        for waiters in self.waiting.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(RedisConnectionError("Redis is unreachable"))
        self.waiting.clear()

    async def _read(self, connection: aioredis.Connection) -> None:
        pinged = False
        turns = Turns(asyncio.get_running_loop())  # a backlog comes without suspending
        while True:
            try:
                reply = await connection.read_response(timeout=KEEPALIVE)
            except ResponseError as error:  # the reply to one (un)subscription
                await self._refused(error)
                continue
            if reply is None:
                if pinged:
                    raise TimeoutError(f"Redis did not answer PING within {KEEPALIVE} s")
                pinged = True
                async with self._lock:
                    await connection.send_command("PING", check_health=False)
                continue
            pinged = False
            kind = reply[0]
            if kind in (b"message", b"smessage"):
                self._deliver(reply[1].decode(), reply[2])
                await turns.handed()
            elif kind in (b"subscribe", b"ssubscribe"):
                self._confirmed(reply[1].decode())
            elif kind in (b"unsubscribe", b"sunsubscribe"):
                await self._unsubscribed(reply[1].decode())

    def _deliver(self, channel: str, data: bytes) -> None:
        hubs = self.channels.get(channel)
        if not hubs:
            return
        message = json.loads(data)
        kind = message.get("type")
        for hub in tuple(hubs):
            if kind == MESSAGE_TYPE:
                hub.dispatch(message)
            elif kind == CONTROL_TYPE:
                hub.control(message)

    def _confirmed(self, channel: str) -> None:
        if not self.inflight or self.inflight[0].channel != channel:
            raise RedisConnectionError(f"Unexpected subscription reply for {channel!r}")
        pending = self.inflight.popleft()
        self.subscribed.add(channel)
        for waiter in pending.waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _unsubscribed(self, channel: str) -> None:
        self.subscribed.discard(channel)
        head = self.inflight[0] if self.inflight else None
        if head is not None and not head.subscribe and head.channel == channel:
            self.inflight.popleft()
        elif channel in self.channels:
            # Redis dropped it (its slot moved to another master): messages may have gone
            # by since; the hubs catch up once it is subscribed on the new owner.
            health.failed("layer", RedisConnectionError(f"Redis unsubscribed {channel!r}"))
            await self.listener.rehome()
            hubs = self.channels.get(channel)
            if hubs is not None:  # the slot map still says it is here
                await self.add(channel, set(), [resync_when_confirmed(hubs)], wait=False)

    async def _refused(self, error: ResponseError) -> None:
        pending = self.inflight.popleft() if self.inflight else None
        if pending is None:
            raise error
        if str(error).startswith("MOVED") and pending.subscribe:
            # the slot has another owner: subscribe there, keeping the joins waiting
            hubs = self.channels.pop(pending.channel, set())
            await self.listener.rehome()
            owner = await self.listener.owner(pending.channel)
            await self.listener.shard(owner).add(pending.channel, hubs, pending.waiters, wait=False)
            return
        for waiter in pending.waiters:
            if not waiter.done():
                waiter.set_exception(error)
