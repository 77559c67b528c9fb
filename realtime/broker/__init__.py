"""Brokers carry published messages and control messages between hubs:
:class:`~realtime.broker.layer.LayerBroker` through the configured channel layer (several
processes and hosts), :class:`~realtime.broker.redis.RedisBroker` over Redis pub/sub directly
(``REALTIME["BROKER"] = "redis"``; sharded pub/sub on a Redis Cluster),
:class:`~realtime.broker.local.LocalBroker` within this process (when the channel layer is
Channels' in-memory layer or missing). :func:`realtime.backends.get_broker` chooses."""

from realtime.broker.base import CONTROL_TYPE, MESSAGE_TYPE, Broker

__all__ = ["CONTROL_TYPE", "MESSAGE_TYPE", "Broker"]
