"""The cluster-wide registry of live connections (see :mod:`realtime.registry.base`)."""

from __future__ import annotations

import functools

from realtime.conf import get_config
from realtime.registry.base import Entry, Page, Query, Registry
from realtime.registry.memory import MemoryRegistry
from realtime.registry.redis import RedisRegistry

__all__ = ["Entry", "Page", "Query", "Registry", "get_registry"]


@functools.cache
def get_registry() -> Registry:
    """The registry of this process: Redis when ``REDIS_URL`` is set, else memory."""
    config = get_config()
    if config.redis_url:
        return RedisRegistry(config.redis_url, config.key_prefix, config.heartbeat_timeout)
    return MemoryRegistry()
