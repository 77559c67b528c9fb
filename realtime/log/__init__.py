"""Topic logs: :class:`~realtime.log.memory.MemoryLog` and :class:`~realtime.log.redis.RedisLog`
behind the :class:`~realtime.log.base.Log` interface."""

from realtime.log.base import Entry, Log, Replay

__all__ = ["Entry", "Log", "Replay"]
