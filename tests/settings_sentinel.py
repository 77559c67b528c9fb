"""tests/settings.py for daphne nodes on Redis Sentinel: ``RT_REDIS_URL`` is a
``redis+sentinel://`` URL, and the channel layer's host is the same Sentinel service, as
docs/scaling.md ("Redis Sentinel") pairs them."""

from __future__ import annotations

import os

from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from realtime.redis_sentinel import parse_sentinel_url
from tests.settings import *  # noqa: F403

_target = parse_sentinel_url(os.environ["RT_REDIS_URL"])
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {
            "hosts": [
                {
                    "sentinels": _target.sentinels,
                    "master_name": _target.service,
                    "sentinel_kwargs": {**_target.sentinel, "retry": Retry(NoBackoff(), 0)},
                    **_target.master,
                }
            ],
            "prefix": os.environ.get("RT_PREFIX", "rt-test"),
        },
    }
}
