"""The Redis broker: hubs exchange messages over Redis pub/sub through redis-py directly, with
no channel layer in between.

On one Redis, a process publishes with ``PUBLISH`` and each event loop holds one pub/sub
connection, subscribed (``SUBSCRIBE``) to the channel of every topic its hub has local
subscribers of, and to one channel per hub for control messages. On Redis Cluster
(``redis+cluster://host:port,host:port/``) it uses sharded pub/sub (``SPUBLISH`` /
``SSUBSCRIBE``, Redis 7): a channel lives on the master that owns its hash slot, so each event
loop holds one pub/sub connection per master that owns a channel it wants, and adding shards
spreads the fan-out. A topic's channel carries the topic as its hash tag, so it lands in the
slot of the topic's keys.

Delivery as the hub needs it: :meth:`RedisBroker.join` returns once Redis confirmed the
subscription, so nothing published after it is missed; when a pub/sub connection breaks
(Redis restarted, a master failed over) the broker reports the ``layer`` outage, connects
again with backoff, subscribes again to what its hubs still want, and then asks each of them to
:meth:`~realtime.broker.base.Endpoint.resync` (compare their subscriptions with the log, which
fills what was published meanwhile). A slot that moved (``MOVED``, or Redis' own
``sunsubscribe`` after a resharding) makes it read the cluster's slot map again and subscribe
on the new owner. A channel is unsubscribed when the last hub of the loop leaves it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
import weakref
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from realtime._redis import get_client
from realtime.broker.base import Endpoint
from realtime.broker.subscriber import Subscriber, resync_when_confirmed
from realtime.redis_cluster import is_cluster_url, parse_cluster_url


class RedisBroker:
    """Carries messages over Redis pub/sub (sharded on a cluster): one channel per topic and
    one per hub, one pub/sub connection per event loop (per master on a cluster)."""

    cluster_wide = True

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = prefix
        # the startup nodes and credentials of a Cluster (realtime.redis_cluster); None on one Redis
        self.cluster = parse_cluster_url(url) if is_cluster_url(url) else None
        self._listeners: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Listener] = (
            weakref.WeakKeyDictionary()
        )
        self._addresses: weakref.WeakKeyDictionary[Endpoint, str] = weakref.WeakKeyDictionary()
        # the hubs whose control channel Redis confirmed once
        self._addressed: weakref.WeakSet[Endpoint] = weakref.WeakSet()

    def topic_channel(self, topic: str) -> str:
        """The pub/sub channel of ``topic`` (the topic is its hash tag)."""
        return f"{self.prefix}:broadcast:{{{topic}}}"

    def listener(self) -> _Listener:
        """The pub/sub side of the running event loop."""
        loop = asyncio.get_running_loop()
        listener = self._listeners.get(loop)
        if listener is None:
            listener = self._listeners[loop] = _Listener(self)
        return listener

    async def join(self, hub: Endpoint, topic: str) -> None:
        await self.listener().add(self.topic_channel(topic), hub)

    async def leave(self, hub: Endpoint, topic: str) -> None:
        await self.listener().remove(self.topic_channel(topic), hub)

    async def broadcast(self, topic: str, message: dict[str, Any]) -> None:
        await self.listener().publish(self.topic_channel(topic), message)

    async def address(self, hub: Endpoint) -> str:
        """The hub's control channel, subscribed (and confirmed) on the first call; later
        calls answer at once, also while Redis is away (the channel is subscribed again when
        it is back), so that a connection can open during an outage."""
        address = self._addresses.get(hub)
        if address is None:
            address = self._addresses[hub] = f"{self.prefix}:hub:{{{uuid.uuid4().hex}}}"
        if hub not in self._addressed:
            await self.listener().add(address, hub)
            self._addressed.add(hub)
        return address

    async def send_control(self, address: str, message: dict[str, Any]) -> None:
        await self.listener().publish(address, message)

    async def reconnect(self) -> None:
        """Drop the publishing pool's idle connections (one Redis): after a Redis restart
        they are dead. The cluster client reconnects by itself."""
        client = get_client(self.url)
        if isinstance(client, aioredis.Redis):
            with contextlib.suppress(Exception):
                await client.connection_pool.disconnect(inuse_connections=False)

    async def aclose(self) -> None:
        """Close the running loop's pub/sub connections (tests); the shared clients are
        :func:`realtime._redis.aclose_clients`'s to close."""
        listener = self._listeners.pop(asyncio.get_running_loop(), None)
        if listener is not None:
            await listener.aclose()


class _Listener:
    """One event loop's side of the broker: its pub/sub connections (one per shard) and the
    hubs of each channel."""

    def __init__(self, broker: RedisBroker) -> None:
        self.broker = broker
        self.shards: dict[tuple[str, int], Subscriber] = {}

    @property
    def sharded(self) -> bool:
        return self.broker.cluster is not None

    async def client(self) -> RedisCluster:
        """The loop's shared cluster client (:func:`realtime._redis.get_client`), with the slot
        map read: it publishes (``SPUBLISH``) and says which master owns a channel. Sharing it
        is safe: those are single-slot commands like the log's, redis-py serialises its slot
        map refreshes (:meth:`rehome`'s and its own on ``MOVED``) behind one lock, and the
        pub/sub connections are not its own (:meth:`connection`)."""
        client = get_client(self.broker.url)
        if not isinstance(client, RedisCluster):
            raise RuntimeError("The cluster client of a broker on one Redis")
        await client.initialize()
        return client

    async def owner(self, channel: str) -> tuple[str, int]:
        """The shard of ``channel``: the one Redis, or the master owning its slot."""
        if not self.sharded:
            return ("", 0)
        client = await self.client()
        node = client.nodes_manager.get_node_from_slot(key_slot(channel.encode()))
        return (node.host, int(node.port))

    def shard(self, key: tuple[str, int]) -> Subscriber:
        shard = self.shards.get(key)
        if shard is None or shard.task.done():
            shard = self.shards[key] = Subscriber(self, key)
        return shard

    def connection(self, key: tuple[str, int]) -> aioredis.Connection:
        """A new, unconnected connection to a shard. RESP2: its pub/sub messages are replies
        that ``read_response`` returns (RESP3 hands them to a push handler instead)."""
        cluster = self.broker.cluster
        if cluster is None:
            pool = aioredis.ConnectionPool.from_url(
                self.broker.url, socket_connect_timeout=5, socket_timeout=5, protocol=2
            )
            connection: aioredis.Connection = pool.make_connection()  # type: ignore[no-untyped-call]
            return connection
        connection_class = aioredis.SSLConnection if cluster.ssl else aioredis.Connection
        return connection_class(
            host=key[0],
            port=key[1],
            username=cluster.username,
            password=cluster.password,
            socket_connect_timeout=5,
            socket_timeout=5,
            protocol=2,
        )

    async def add(self, channel: str, hub: Endpoint) -> None:
        await self.shard(await self.owner(channel)).add(channel, {hub}, [])

    async def remove(self, channel: str, hub: Endpoint) -> None:
        for shard in list(self.shards.values()):
            await shard.remove(channel, hub)

    async def publish(self, channel: str, message: dict[str, Any]) -> None:
        data = json.dumps(message, separators=(",", ":"))
        if self.sharded:
            await (await self.client()).execute_command("SPUBLISH", channel, data)
        else:
            await get_client(self.broker.url).publish(channel, data)

    async def rehome(self) -> None:
        """Read the cluster's slot map again and move every channel whose slot has another
        owner now to that owner's shard (a resharding or a failover)."""
        client = await self.client()
        await client.nodes_manager.initialize()
        for key, shard in list(self.shards.items()):
            for channel in list(shard.channels):
                owner = await self.owner(channel)
                if owner != key:
                    hubs = await shard.drop(channel)
                    moved = resync_when_confirmed(hubs)
                    await self.shard(owner).add(channel, hubs, [moved], wait=False)

    async def aclose(self) -> None:
        for shard in self.shards.values():
            shard.task.cancel()
        await asyncio.gather(*(s.task for s in self.shards.values()), return_exceptions=True)
        self.shards.clear()
