"""The system checks of the broker setting (``REALTIME["BROKER"]``), run by
:mod:`realtime.checks`."""

from __future__ import annotations

from django.core.checks import CheckMessage, Error

from realtime.conf import Config
from realtime.redis_cluster import is_cluster_url


def check_broker(config: Config) -> list[CheckMessage]:
    """The Redis broker needs ``REDIS_URL``; a Redis Cluster needs the Redis broker."""
    if config.broker == "redis" and config.redis_url is None:
        return [
            Error(
                "REALTIME['BROKER'] is 'redis' but REALTIME['REDIS_URL'] is not set.",
                hint="Set REALTIME['REDIS_URL'], or leave BROKER at 'layer'.",
                id="realtime.E012",
            )
        ]
    url = config.redis_url
    if config.broker != "redis" and url is not None and is_cluster_url(url):
        return [
            Error(
                "REALTIME['REDIS_URL'] is a Redis Cluster, where the channel layer "
                "(REALTIME['BROKER'] = 'layer') cannot carry messages between processes.",
                hint="Set REALTIME['BROKER'] = 'redis': sharded pub/sub on the cluster "
                "(docs/scaling.md).",
                id="realtime.E013",
            )
        ]
    return []
