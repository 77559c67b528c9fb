"""Which Redis pub/sub channel carries a topic between the nodes, for either broker
(``REALTIME["BROKER"]``), so that a test can ask Redis whether some node listens to it."""

from __future__ import annotations

import redis

from realtime.broker.redis import RedisBroker
from realtime.topics import group_name


def topic_channel(redis_url: str, prefix: str, broker: str, topic: str) -> str:
    """The channel the nodes under ``prefix`` subscribe for ``topic``: the Redis broker's
    topic channel, or the channels_redis pub/sub layer's group channel (its
    ``{prefix}__group__{group}``)."""
    if broker == "redis":
        return RedisBroker(redis_url, prefix).topic_channel(topic)
    return f"{prefix}__group__{group_name(topic)}"


def topic_subscriptions(redis_url: str, prefix: str, broker: str, topic: str) -> int:
    """How many pub/sub connections (one per node) Redis has subscribed to ``topic``'s
    channel (``PUBSUB NUMSUB``)."""
    channel = topic_channel(redis_url, prefix, broker, topic)
    plain = redis.Redis.from_url(redis_url)
    try:
        [(_, count)] = plain.pubsub_numsub(channel)
        return int(count)
    finally:
        plain.close()
