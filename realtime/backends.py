"""The process's shared-state backends (log, dedup store), chosen from the settings: in
memory by default, in Redis when ``REALTIME["REDIS_URL"]`` is set."""

from __future__ import annotations

import functools

from realtime.conf import get_config
from realtime.dedup import Dedup, MemoryDedup, RedisDedup
from realtime.log.base import Log
from realtime.log.memory import MemoryLog
from realtime.log.redis import RedisLog


@functools.cache
def get_log() -> Log:
    """The topic log of this process."""
    config = get_config()
    if config.redis_url:
        return RedisLog(
            config.redis_url, config.key_prefix, config.history_size, config.history_ttl
        )
    return MemoryLog(config.history_size, config.history_ttl)


@functools.cache
def get_dedup() -> Dedup:
    """The client-message dedup store of this process."""
    config = get_config()
    if config.redis_url:
        return RedisDedup(config.redis_url, config.key_prefix, config.dedup_ttl, config.send_lease)
    return MemoryDedup(config.dedup_ttl, config.send_lease)


def reset() -> None:
    """Forget the backends (called when settings change in tests)."""
    from realtime.registry import get_registry

    get_registry.cache_clear()
    get_log.cache_clear()
    get_dedup.cache_clear()
