"""Settings: one ``REALTIME`` dict merged over :data:`DEFAULTS`, read only through this module.

Each setting is declared once, as a field of :class:`Config`: its name (the lower-cased
``REALTIME`` key), its type (which the validation accepts), its default and its one-line
doc, the "meaning" column of the README's configuration table (a test keeps the two equal).
:data:`DEFAULTS` and :func:`problems` are derived from those fields.

``get_config()`` is cached and cleared when a test changes ``REALTIME`` with
``override_settings``. Validation errors raise ``ImproperlyConfigured``; the system checks
in :mod:`realtime.checks` report the same problems with ids and hints at start-up.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import types
import typing
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver


def setting(default: Any, doc: str, *, convert: Callable[[Any], Any] | None = None) -> Any:
    """Declare one setting: a :class:`Config` field with its default and its doc (the
    README's wording); ``convert`` normalizes a value the user gave, and raises
    :class:`ValueError` (whose message is reported) for a value of the right type that is
    still wrong."""
    return dataclasses.field(default=default, metadata={"doc": doc, "convert": convert})


def _networks(value: Any) -> tuple[str, ...]:
    """``TRUSTED_PROXIES``: each entry an IP address or network (``10.0.0.0/8``)."""
    for entry in value:
        try:
            ipaddress.ip_network(entry, strict=False)
        except (TypeError, ValueError):
            raise ValueError(f"{entry!r} is not an IP address or network.") from None
    return tuple(value)


def _broker(value: Any) -> str:
    """``BROKER``: ``"layer"`` or ``"redis"``."""
    if value not in BROKERS:
        raise ValueError(f"{value!r} is not one of {', '.join(map(repr, BROKERS))}.")
    return str(value)


# What may carry messages between processes (``BROKER``).
BROKERS = ("layer", "redis")


@dataclasses.dataclass(frozen=True)
class Config:
    """The effective settings, typed: one field per ``REALTIME`` key, lower-cased. A value
    must be of the field's type (a ``bool`` is not a number here), except that an ``int`` is
    accepted for a ``float`` and a list for a tuple. Fields declared with ``convert`` hold the
    converted value; the others hold what the user gave (an ``int`` stays one)."""

    redis_url: str | None = setting(
        None,
        "Redis for the topic log and the dedup store (`redis+sentinel://` for Sentinel: "
        "docs/scaling.md); `None` keeps them in process memory",
    )
    key_prefix: str = setting("realtime", "prefix of every Redis key")
    channel_layer: str = setting(
        "default",
        "channel-layer alias used between processes; no layer, or the in-memory one, means "
        "in-process delivery",
    )
    broker: str = setting(
        "layer",
        'what carries messages between processes: `"layer"`, the channel layer of '
        '`CHANNEL_LAYER`; `"redis"`, Redis pub/sub on `REDIS_URL` through redis-py (sharded '
        "pub/sub on a Redis Cluster, where it is required; docs/scaling.md)",
        convert=_broker,
    )
    history_size: int = setting(1000, "messages kept per topic for resume")
    history_ttl: float = setting(3600.0, "maximum age of kept messages", convert=float)
    heartbeat_interval: float = setting(25.0, "server `ping` interval", convert=float)
    heartbeat_timeout: float = setting(
        10.0, "silence after a ping before closing with 4408", convert=float
    )
    auth_timeout: float = setting(
        10.0, "time a token-only client has to send `auth` (4401 after)", convert=float
    )
    token_max_age: float = setting(
        900.0, "lifetime of tokens from `make_token()` without `expires_in`"
    )
    token_expiry_warning: float = setting(60.0, "how long before expiry `token-expiring` is sent")
    token_cache_ttl: float = setting(
        30.0,
        "how long a server process reuses the user of a verified token without asking the "
        "database again (revocations clear it at once); `0` turns the cache off",
        convert=float,
    )
    token_cache_size: int = setting(10000, "users a server process keeps for verified tokens")
    ack_timeout: float = setting(
        5.0, "first redelivery of an unacknowledged `ack=True` message; doubles each time"
    )
    ack_max_retries: int = setting(5, "redeliveries before the `message_undelivered` signal")
    dedup_ttl: float = setting(
        300.0, "how long client message ids (and their answers) are remembered"
    )
    send_lease: float = setting(
        5.0,
        "how long a client message being handled holds its id (renewed while its handler "
        "runs): after a node dies mid-handler, a retry runs the handler after at most this "
        "long. Must be above 0",
    )
    send_wait: float = setting(
        5.0,
        "how long an attempt that overlaps a running one waits for its answer before "
        "answering `in_progress` (POST: 409)",
    )
    max_frame_bytes: int = setting(65536, "largest client frame (close 4009 beyond)")
    max_message_bytes: int = setting(
        65536, "largest published `data`, JSON-encoded (`MessageTooLarge`)"
    )
    max_topics: int = setting(128, "topics per connection")
    rate: float = setting(
        20.0,
        "client frames per second, sustained (close 4429 beyond); for SSE, long-poll and "
        "POST, requests per second per user, else per session, else per client address "
        "(429 beyond; POSTed `ack`s have a bucket of their own)",
    )
    burst: int = setting(60, "client frames (HTTP: requests) allowed in a burst")
    outbound_queue_size: int = setting(
        1000, "frames waiting for a congested socket before the client is closed with 4503"
    )
    allowed_origins: tuple[str, ...] | None = setting(
        None,
        "browser origins allowed to connect; `None` derives them from `ALLOWED_HOSTS`",
        convert=tuple,
    )
    trusted_proxies: tuple[str, ...] = setting(
        (),
        "addresses or networks (`10.0.0.0/8`) of the reverse proxies whose `X-Forwarded-For` "
        "gives the client address (registry, rate limits); empty: the header is never read",
        convert=_networks,
    )
    publish_timeout: float = setting(
        5.0, "how long `publish()` waits for the log before `PublishTimeout`"
    )
    durable: bool = setting(
        False,
        "`publish()` writes messages to the outbox table in the caller's transaction, and "
        "server processes run a relay (`durable=` per call overrides it; docs/publishing.md)",
    )
    relay_interval: float = setting(
        2.0,
        "how often a relay sweeps the outbox for rows no relay was woken for (a publisher "
        "that died, Redis down); also its longest retry wait",
        convert=float,
    )
    outbox_retention: float = setting(
        0.0,
        "how long delivered outbox rows are kept (marked delivered); `0` deletes them once "
        "in the log",
        convert=float,
    )
    backend_grace: float = setting(
        30.0,
        "how long a connection keeps retrying an unreachable topic log (to fill a gap) "
        "before it is closed with 4011",
    )
    consumer: str = setting(
        "realtime.consumers.RealtimeConsumer",
        "the consumer class whose hooks every transport (WebSocket, SSE, long-poll, POST) uses",
    )
    sse_keepalive: float = setting(15.0, "interval of SSE keep-alive comments")
    poll_timeout: float = setting(25.0, "how long a long-poll request waits before answering 204")
    ticket_ttl: float = setting(10.0, "lifetime of single-use EventSource tickets")
    admission_rate: float = setting(
        0.0,
        "new connections a server process takes per second (WebSocket handshakes, SSE "
        "streams, first long-polls), in bursts of as many; beyond, it answers try again later "
        "(HTTP 503 or close 4013, with a hint; docs/protocol.md, Admission); `0`: no limit",
        convert=float,
    )
    drain_window: float = setting(
        0.0,
        "on SIGTERM, the seconds over which a server process closes its connections with 4012 "
        "(reconnect elsewhere) before it stops; `0`: no drain, the server stops at once "
        "(docs/deployment.md)",
        convert=float,
    )
    metrics: bool = setting(False, "serve Prometheus metrics at `realtime/metrics/`")
    metrics_token: str | None = setting(
        None, "bearer token the metrics endpoint wants; `None` means staff sessions only"
    )

    @property
    def ack_window(self) -> float:
        """How long after its first send an ``ack=True`` message is given up on:
        ``ACK_TIMEOUT * (2**(ACK_MAX_RETRIES + 1) - 1)`` (315 s by default), the resends
        coming ``ACK_TIMEOUT``, ``2 * ACK_TIMEOUT``, ``4 * ACK_TIMEOUT``, … apart."""
        return float(self.ack_timeout * (2 ** (self.ack_max_retries + 1) - 1))


def _accepted(annotation: Any) -> tuple[type, ...]:
    """The types a value of a field annotated ``annotation`` may have in ``REALTIME``."""
    accepted: list[type] = []
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    for member in typing.get_args(annotation) if union else (annotation,):
        if member is float:
            accepted += [int, float]
        elif typing.get_origin(member) is tuple:
            accepted += [list, tuple]
        else:
            accepted.append(typing.get_origin(member) or member)
    return tuple(accepted)


SETTINGS: tuple[dataclasses.Field[Any], ...] = dataclasses.fields(Config)
DEFAULTS: dict[str, Any] = {field.name.upper(): field.default for field in SETTINGS}
DOCS: dict[str, str] = {field.name.upper(): field.metadata["doc"] for field in SETTINGS}
TYPES: dict[str, tuple[type, ...]] = {
    name.upper(): _accepted(annotation)
    for name, annotation in typing.get_type_hints(Config).items()
}
_CONVERT = {
    field.name.upper(): field.metadata["convert"]
    for field in SETTINGS
    if field.metadata["convert"] is not None
}
_NUMBER = (int, float)


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
        elif key in _CONVERT and value is not None:
            try:
                _CONVERT[key](value)
            except ValueError as wrong:
                found.append((key, f"REALTIME[{key!r}]: {wrong}"))
    return found


@functools.cache
def get_config() -> Config:
    """Return the merged, validated settings. Raises ``ImproperlyConfigured`` on bad values."""
    values = user_settings()
    bad = problems(values)
    if bad:
        raise ImproperlyConfigured(" ".join(message for _, message in bad))
    merged = {**DEFAULTS, **values}
    for key, convert in _CONVERT.items():
        if merged[key] is not None:
            merged[key] = convert(merged[key])
    return Config(**{key.lower(): value for key, value in merged.items()})


# The Django settings whose change (``override_settings`` in tests) makes the cached config
# stale, and with it what was built from the config (realtime.backends listens too).
WATCHED_SETTINGS = frozenset({"REALTIME", "ALLOWED_HOSTS", "CHANNEL_LAYERS"})


@receiver(setting_changed)
def _clear_cache(*, setting: str, **kwargs: Any) -> None:
    if setting in WATCHED_SETTINGS:
        get_config.cache_clear()
