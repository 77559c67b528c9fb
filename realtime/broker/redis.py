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
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot

from realtime._redis import get_client
from realtime.broker.base import Endpoint
from realtime.broker.subscriber import Subscriber, resync_when_confirmed

# The URL scheme of a Redis Cluster: ``redis+cluster://host1:port1,host2:port2/``.
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


@dataclass(frozen=True)
class ClusterURL:
    """A parsed ``redis+cluster://`` URL: the startup nodes and the credentials."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None
    ssl: bool = False


def parse_cluster_url(url: str) -> ClusterURL | None:
    """The startup nodes of ``redis+cluster://[user:password@]host1:port1,host2:port2/``
    (port 6379 when left out), or None for any other URL (one Redis). Raises ``ValueError``
    for a cluster URL without a node or with a port that is not a number."""
    parts = urlsplit(url)
    if parts.scheme not in CLUSTER_SCHEMES:
        return None
    credentials, _, hosts = parts.netloc.rpartition("@")
    user, _, password = credentials.partition(":")
    nodes = []
    for item in filter(None, hosts.split(",")):
        host, colon, port = item.rpartition(":")
        if not colon:
            host, port = item, "6379"
        if not port.isdigit():
            raise ValueError(f"{item!r} in {url!r} is not host:port.")
        nodes.append((host.strip("[]"), int(port)))
    if not nodes:
        raise ValueError(f"{url!r} names no node: redis+cluster://host1:port1,host2:port2/")
    return ClusterURL(
        tuple(nodes),
        unquote(user) or None,
        unquote(password) or None,
        parts.scheme.startswith("rediss"),
    )


class RedisBroker:
    """Carries messages over Redis pub/sub (sharded on a cluster): one channel per topic and
    one per hub, one pub/sub connection per event loop (per master on a cluster)."""

    cluster_wide = True

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = prefix
        self.cluster = parse_cluster_url(url)
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
        """Close the running loop's pub/sub connections and cluster client (tests)."""
        listener = self._listeners.pop(asyncio.get_running_loop(), None)
        if listener is not None:
            await listener.aclose()


class _Listener:
    """One event loop's side of the broker: its pub/sub connections (one per shard), the
    hubs of each channel, and on a cluster the client that publishes and knows the slots."""

    def __init__(self, broker: RedisBroker) -> None:
        self.broker = broker
        self.shards: dict[tuple[str, int], Subscriber] = {}
        self._client: RedisCluster | None = None

    @property
    def sharded(self) -> bool:
        return self.broker.cluster is not None

    async def client(self) -> RedisCluster:
        """The cluster client of this loop, with the slot map read."""
        if self._client is None:
            cluster = self.broker.cluster
            if cluster is None:
                raise RuntimeError("The cluster client of a broker on one Redis")
            self._client = RedisCluster(
                startup_nodes=[ClusterNode(host, port) for host, port in cluster.nodes],
                username=cluster.username,
                password=cluster.password,
                ssl=cluster.ssl,
                socket_connect_timeout=5,
                socket_timeout=15,
            )
        await self._client.initialize()
        return self._client

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
        if self._client is not None:
            await self._client.aclose()
