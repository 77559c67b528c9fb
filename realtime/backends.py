"""The one place where the process's shared-state components are chosen from the settings:
in memory by default, in Redis when ``REALTIME["REDIS_URL"]`` is set; the broker after the
channel layer. Each component is an interface with its implementations side by side:

- the topic log: :mod:`realtime.log` (``memory.py``, ``redis.py``), and its reads shared
  among subscriptions (``shared.py``);
- the registry of live connections: :mod:`realtime.registry` (``memory.py``, ``redis.py``);
- the broker between hubs: :mod:`realtime.broker` (``local.py``, ``layer.py``, and
  ``redis.py`` when ``REALTIME["BROKER"]`` is ``"redis"``);
- the client-message dedup store, the EventSource tickets, the announced presence and the
  pending ACKs: :mod:`realtime.stores` (``memory.py``, ``redis.py``).

Each is built once and cached until the settings change (``override_settings`` in tests)."""

from __future__ import annotations

import functools
from typing import Any

from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.core.signals import setting_changed
from django.dispatch import receiver

from realtime.broker.base import Broker
from realtime.broker.layer import LayerBroker
from realtime.broker.local import LocalBroker
from realtime.broker.redis import RedisBroker
from realtime.conf import WATCHED_SETTINGS, get_config
from realtime.log.base import Log
from realtime.log.memory import MemoryLog
from realtime.log.redis import RedisLog
from realtime.log.shared import SharedReads
from realtime.registry.base import Registry
from realtime.registry.memory import MemoryRegistry
from realtime.registry.redis import RedisRegistry
from realtime.stores.base import Dedup, PendingAcks, Presence, Tickets
from realtime.stores.memory import (
    MemoryDedup,
    MemoryPendingAcks,
    MemoryPresence,
    MemoryTickets,
)
from realtime.stores.redis import (
    RedisDedup,
    RedisPendingAcks,
    RedisPresence,
    RedisTickets,
)


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
def get_shared_reads() -> SharedReads:
    """The topic log of this process with its reads shared among concurrent readers of one
    topic (:mod:`realtime.log.shared`): what subscriptions replay and fill gaps from."""
    return SharedReads(get_log())


@functools.cache
def get_registry() -> Registry:
    """The registry of live connections of this process."""
    config = get_config()
    if config.redis_url:
        return RedisRegistry(config.redis_url, config.key_prefix, config.heartbeat_timeout)
    return MemoryRegistry()


@functools.cache
def get_dedup() -> Dedup:
    """The client-message dedup store of this process."""
    config = get_config()
    if config.redis_url:
        return RedisDedup(config.redis_url, config.key_prefix, config.dedup_ttl, config.send_lease)
    return MemoryDedup(config.dedup_ttl, config.send_lease)


@functools.cache
def get_tickets() -> Tickets:
    """The EventSource ticket store of this process."""
    config = get_config()
    if config.redis_url:
        return RedisTickets(config.redis_url, config.key_prefix, config.ticket_ttl)
    return MemoryTickets(config.ticket_ttl)


@functools.cache
def get_presence() -> Presence:
    """The store of announced presence of this process."""
    config = get_config()
    if config.redis_url:
        return RedisPresence(config.redis_url, config.key_prefix)
    return MemoryPresence()


@functools.cache
def get_pending_acks() -> PendingAcks:
    """The store of pending ACKs of this process: acknowledged ids are remembered as long as
    an ACK may still come (``Config.ack_window``)."""
    config = get_config()
    if config.redis_url:
        return RedisPendingAcks(config.redis_url, config.key_prefix, config.ack_window)
    return MemoryPendingAcks(config.ack_window)


# One for the process: every hub of it joins this one.
_local_broker = LocalBroker()


@functools.cache
def _redis_broker(url: str, prefix: str) -> RedisBroker:
    return RedisBroker(url, prefix)


def get_broker() -> Broker:
    """The Redis broker when ``BROKER`` is ``"redis"`` (and ``REDIS_URL`` is set); else the
    broker for the configured channel layer: in-process delivery when that layer is Channels'
    in-memory layer or missing. The layer's is not cached: the layer it looks at is Channels'
    own (``channels.layers.channel_layers``), which may be replaced at any time."""
    config = get_config()
    if config.broker == "redis" and config.redis_url:
        return _redis_broker(config.redis_url, config.key_prefix)
    alias = config.channel_layer
    layer = get_channel_layer(alias)
    if layer is None or isinstance(layer, InMemoryChannelLayer):
        return _local_broker
    return LayerBroker(alias)


def reset() -> None:
    """Forget the backends built so far: the next use builds them from the settings again
    (in-memory ones start empty). Runs when settings change in tests."""
    for cached in (
        get_log,
        get_shared_reads,
        get_registry,
        get_dedup,
        get_tickets,
        get_presence,
        get_pending_acks,
        _redis_broker,
    ):
        cached.cache_clear()


@receiver(setting_changed)
def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in WATCHED_SETTINGS:
        reset()
