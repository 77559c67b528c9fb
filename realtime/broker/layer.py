"""The channel-layer broker, e.g. channels_redis' pub/sub layer, for several processes and
hosts: one layer group per topic, one layer channel per hub."""

from __future__ import annotations

import contextlib
from typing import Any

from channels.layers import get_channel_layer

from realtime.broker.base import Endpoint
from realtime.topics import group_name


class LayerBroker:
    """Carries messages through a channel layer: one group per topic, one channel per hub."""

    #: Messages reach hubs in other processes (so they may rely on hearing revocations).
    cluster_wide = True

    def __init__(self, alias: str) -> None:
        self.alias = alias

    @property
    def layer(self) -> Any:
        return get_channel_layer(self.alias)

    async def join(self, hub: Endpoint, topic: str) -> None:
        await self.layer.group_add(group_name(topic), await hub.channel())

    async def leave(self, hub: Endpoint, topic: str) -> None:
        await self.layer.group_discard(group_name(topic), await hub.channel())

    async def broadcast(self, topic: str, message: dict[str, Any]) -> None:
        await self.layer.group_send(group_name(topic), message)

    async def address(self, hub: Endpoint) -> str:
        return await hub.channel()

    async def send_control(self, address: str, message: dict[str, Any]) -> None:
        await self.layer.send(address, message)

    async def reconnect(self) -> None:
        """Make the layer's next publish open a fresh Redis connection.

        channels_redis' pub/sub layer publishes through a connection pool per shard that keeps
        idle connections: after a Redis restart they are dead, and the first publish on one
        fails. Disconnecting the idle ones (never the pub/sub connection in use, which
        reconnects and resubscribes by itself) makes the retry connect afresh. Other layers
        are left alone: the retry just runs again."""
        get_loop_layer = getattr(self.layer, "_get_layer", None)
        if get_loop_layer is None:
            return
        for shard in getattr(get_loop_layer(), "_shards", ()):
            client = getattr(shard, "_redis", None)
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.connection_pool.disconnect(inuse_connections=False)

    async def aclose(self) -> None:
        return None
