"""Settings: one ``REALTIME`` dict merged over :data:`DEFAULTS`, read only through this module.

``get_config()`` is cached and cleared when a test changes ``REALTIME`` with
``override_settings``. Validation errors raise ``ImproperlyConfigured``; the system checks
in :mod:`realtime.checks` report the same problems with ids and hints at start-up.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

DEFAULTS: dict[str, Any] = {
    # Where shared state lives. None keeps the log, registry and dedup store in process memory.
    "REDIS_URL": None,
    # Prefix of every Redis key this app writes.
    "KEY_PREFIX": "realtime",
    # The channel layer alias used for cross-process fan-out; an in-memory layer (or none)
    # means in-process delivery only.
    "CHANNEL_LAYER": "default",
    # Topic log: entries kept per topic, and their maximum age in seconds.
    "HISTORY_SIZE": 1000,
    "HISTORY_TTL": 3600.0,
    # Server ping interval, and how long after a ping a silent connection is closed (4408).
    "HEARTBEAT_INTERVAL": 25.0,
    "HEARTBEAT_TIMEOUT": 10.0,
    # How long a connection that must bring a token may take to send it (4401 after).
    "AUTH_TIMEOUT": 10.0,
    # Lifetime of tokens from make_token(), and how early `token-expiring` is sent.
    "TOKEN_MAX_AGE": 900.0,
    "TOKEN_EXPIRY_WARNING": 60.0,
    # Server->client ACKs: first retry after ACK_TIMEOUT, doubling, at most ACK_MAX_RETRIES.
    "ACK_TIMEOUT": 5.0,
    "ACK_MAX_RETRIES": 5,
    # Client->server dedup: message ids remembered per user for this many seconds.
    "DEDUP_TTL": 300.0,
    # A `send` being handled holds its id for SEND_LEASE seconds, renewed while the handler
    # runs: the claim of a node that died expires after one lease. Another attempt with the
    # id waits up to SEND_WAIT seconds for the answer, else it is answered `in_progress`.
    "SEND_LEASE": 5.0,
    "SEND_WAIT": 5.0,
    # Limits.
    "MAX_FRAME_BYTES": 65536,
    "MAX_MESSAGE_BYTES": 65536,
    "MAX_TOPICS": 128,
    "RATE": 20.0,
    "BURST": 60,
    "OUTBOUND_QUEUE_SIZE": 1000,
    # Origins allowed to open a connection; None derives them from ALLOWED_HOSTS.
    "ALLOWED_ORIGINS": None,
    # How long publish() waits for the log append before raising PublishTimeout.
    "PUBLISH_TIMEOUT": 5.0,
    # How long a connection that must read the topic log (to fill a gap) keeps retrying
    # while the log is unreachable before it is closed with 4011.
    "BACKEND_GRACE": 30.0,
    # The consumer class whose hooks every transport uses (WebSocket, SSE, long-poll).
    "CONSUMER": "realtime.consumers.RealtimeConsumer",
    # SSE keep-alive comment interval; long-poll wait; lifetime of EventSource tickets.
    "SSE_KEEPALIVE": 15.0,
    "POLL_TIMEOUT": 25.0,
    "TICKET_TTL": 10.0,
    # Prometheus endpoint realtime/metrics/: off by default; with METRICS_TOKEN set it wants
    # "Authorization: Bearer <token>", else a staff session.
    "METRICS": False,
    "METRICS_TOKEN": None,
}

_NUMBER = (int, float)
TYPES: dict[str, tuple[type, ...]] = {
    "REDIS_URL": (str, type(None)),
    "KEY_PREFIX": (str,),
    "CHANNEL_LAYER": (str,),
    "HISTORY_SIZE": (int,),
    "HISTORY_TTL": _NUMBER,
    "HEARTBEAT_INTERVAL": _NUMBER,
    "HEARTBEAT_TIMEOUT": _NUMBER,
    "AUTH_TIMEOUT": _NUMBER,
    "TOKEN_MAX_AGE": _NUMBER,
    "TOKEN_EXPIRY_WARNING": _NUMBER,
    "ACK_TIMEOUT": _NUMBER,
    "ACK_MAX_RETRIES": (int,),
    "DEDUP_TTL": _NUMBER,
    "SEND_LEASE": _NUMBER,
    "SEND_WAIT": _NUMBER,
    "MAX_FRAME_BYTES": (int,),
    "MAX_MESSAGE_BYTES": (int,),
    "MAX_TOPICS": (int,),
    "RATE": _NUMBER,
    "BURST": (int,),
    "OUTBOUND_QUEUE_SIZE": (int,),
    "ALLOWED_ORIGINS": (list, tuple, type(None)),
    "PUBLISH_TIMEOUT": _NUMBER,
    "BACKEND_GRACE": _NUMBER,
    "CONSUMER": (str,),
    "SSE_KEEPALIVE": _NUMBER,
    "POLL_TIMEOUT": _NUMBER,
    "TICKET_TTL": _NUMBER,
    "METRICS": (bool,),
    "METRICS_TOKEN": (str, type(None)),
}


@dataclasses.dataclass(frozen=True)
class Config:
    """The effective settings, typed. Field names are the lower-cased ``REALTIME`` keys."""

    redis_url: str | None
    key_prefix: str
    channel_layer: str
    history_size: int
    history_ttl: float
    heartbeat_interval: float
    heartbeat_timeout: float
    auth_timeout: float
    token_max_age: float
    token_expiry_warning: float
    ack_timeout: float
    ack_max_retries: int
    dedup_ttl: float
    send_lease: float
    send_wait: float
    max_frame_bytes: int
    max_message_bytes: int
    max_topics: int
    rate: float
    burst: int
    outbound_queue_size: int
    allowed_origins: tuple[str, ...] | None
    publish_timeout: float
    backend_grace: float
    consumer: str
    sse_keepalive: float
    poll_timeout: float
    ticket_ttl: float
    metrics: bool
    metrics_token: str | None


def user_settings() -> dict[str, Any]:
    """The raw ``REALTIME`` dict from Django settings (empty if unset)."""
    value = getattr(settings, "REALTIME", {})
    if not isinstance(value, dict):
        raise ImproperlyConfigured("REALTIME must be a dict, e.g. REALTIME = {'REDIS_URL': ...}.")
    return value


def problems(values: dict[str, Any]) -> list[tuple[str, str]]:
    """Return ``(key, message)`` for each unknown key or wrongly typed value in ``values``."""
    found = []
    for key, value in values.items():
        if key not in DEFAULTS:
            found.append((key, f"Unknown REALTIME setting {key!r}."))
        elif (isinstance(value, bool) and bool not in TYPES[key]) or not isinstance(
            value, TYPES[key]
        ):
            wanted = " or ".join(t.__name__ for t in TYPES[key])
            found.append((key, f"REALTIME[{key!r}] must be {wanted}, not {type(value).__name__}."))
        elif isinstance(value, _NUMBER) and value < 0:
            found.append((key, f"REALTIME[{key!r}] must not be negative."))
    return found


@functools.cache
def get_config() -> Config:
    """Return the merged, validated settings. Raises ``ImproperlyConfigured`` on bad values."""
    values = user_settings()
    bad = problems(values)
    if bad:
        raise ImproperlyConfigured(" ".join(message for _, message in bad))
    merged = {**DEFAULTS, **values}
    origins = merged["ALLOWED_ORIGINS"]
    merged["ALLOWED_ORIGINS"] = tuple(origins) if origins is not None else None
    for key in ("HISTORY_TTL", "HEARTBEAT_INTERVAL", "HEARTBEAT_TIMEOUT", "AUTH_TIMEOUT"):
        merged[key] = float(merged[key])
    return Config(**{key.lower(): value for key, value in merged.items()})


# The Django settings whose change (``override_settings`` in tests) makes the cached config
# stale, and with it what was built from the config (realtime.backends listens too).
WATCHED_SETTINGS = frozenset({"REALTIME", "ALLOWED_HOSTS", "CHANNEL_LAYERS"})


@receiver(setting_changed)
def _clear_cache(*, setting: str, **kwargs: Any) -> None:
    if setting in WATCHED_SETTINGS:
        get_config.cache_clear()
