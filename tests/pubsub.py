"""Which Redis pub/sub channel carries a topic between the nodes, for either broker
(``REALTIME["BROKER"]``), so that a test can ask Redis whether some node listens to it."""

from __future__ import annotations

import asyncio
import time

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


async def subscribed_on_redis(
    redis_url: str, prefix: str, broker: str, name: str, present: bool = True
) -> None:
    """Wait until a node has (or no longer has) the topic's pub/sub subscription, on either
    broker (Redis' own state, no event to await: polled, at most 5 s)."""
    deadline = time.monotonic() + 5
    while bool(topic_subscriptions(redis_url, prefix, broker, name)) != present:
        assert time.monotonic() < deadline, f"subscription present={not present} after 5 s"
        await asyncio.sleep(0.02)
