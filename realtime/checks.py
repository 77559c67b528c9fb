"""System checks that catch misconfiguration at start-up. Ids are stable; tests assert the
exact messages."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

from realtime import conf

MIN_DAPHNE = (4, 2, 2)


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def _layer_backend() -> str | None:
    layers = getattr(settings, "CHANNEL_LAYERS", None) or {}
    alias = {**conf.DEFAULTS, **conf.user_settings()}.get("CHANNEL_LAYER", "default")
    entry = layers.get(alias)
    return None if entry is None else str(entry.get("BACKEND", ""))


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    messages: list[Any] = []
    try:
        values = conf.user_settings()
    except Exception as exc:
        return [Error(str(exc), id="realtime.E001", hint="Set REALTIME to a dict.")]
    for key, problem in conf.problems(values):
        if key not in conf.DEFAULTS:
            messages.append(
                Error(
                    problem,
                    hint=f"Known keys: {', '.join(sorted(conf.DEFAULTS))}.",
                    id="realtime.E001",
                )
            )
        else:
            messages.append(
                Error(problem, hint="See the configuration table in README.md.", id="realtime.E002")
            )
    if messages:
        return messages
    config = conf.get_config()
    if not 0 < config.heartbeat_timeout < config.heartbeat_interval:
        messages.append(
            Error(
                "REALTIME['HEARTBEAT_TIMEOUT'] must be above 0 and below "
                "REALTIME['HEARTBEAT_INTERVAL'].",
                hint="The defaults are an interval of 25.0 s and a timeout of 10.0 s.",
                id="realtime.E003",
            )
        )
    if config.send_lease <= 0:
        messages.append(
            Error(
                "REALTIME['SEND_LEASE'] must be above 0.",
                hint="It is how long a client message's claim outlives a node that died "
                "while running its handler; the default is 5.0 s.",
                id="realtime.E007",
            )
        )
    backend = _layer_backend()
    layers = getattr(settings, "CHANNEL_LAYERS", None)
    if layers and backend is None:
        messages.append(
            Error(
                f"CHANNEL_LAYERS has no alias {config.channel_layer!r}.",
                hint="Add it to CHANNEL_LAYERS or set REALTIME['CHANNEL_LAYER'] to an alias "
                "that exists.",
                id="realtime.E004",
            )
        )
    elif backend is None or backend.endswith("InMemoryChannelLayer"):
        if not settings.DEBUG:
            messages.append(
                Warning(
                    "No channel layer, or the in-memory one, with DEBUG off: messages reach "
                    "only connections of the process that published them.",
                    hint="Use channels_redis.pubsub.RedisPubSubChannelLayer and set "
                    "REALTIME['REDIS_URL'] when you run more than one process.",
                    id="realtime.W001",
                )
            )
    elif config.redis_url is None:
        messages.append(
            Error(
                "A cross-process channel layer is configured but REALTIME['REDIS_URL'] is "
                "not: each process would keep its own topic log and offsets would disagree.",
                hint="Set REALTIME['REDIS_URL'] to the Redis the channel layer uses.",
                id="realtime.E005",
            )
        )
    try:
        daphne_version = version("daphne")
    except PackageNotFoundError:
        daphne_version = None
    if daphne_version is not None and _version_tuple(daphne_version) < MIN_DAPHNE:
        messages.append(
            Error(
                f"daphne {daphne_version} is installed; realtime needs 4.2.2 or later.",
                hint="pip install 'daphne>=4.2.3' (older releases have known security issues).",
                id="realtime.E006",
            )
        )
    middleware = list(getattr(settings, "MIDDLEWARE", []))
    if "django.contrib.auth.middleware.AuthenticationMiddleware" not in middleware:
        messages.append(
            Warning(
                "AuthenticationMiddleware is not in MIDDLEWARE: SSE and long-poll requests "
                "can only authenticate with a bearer token or a ticket.",
                hint="Add django.contrib.sessions' and django.contrib.auth's middleware.",
                id="realtime.W003",
            )
        )
    if not getattr(settings, "ASGI_APPLICATION", None):
        messages.append(
            Warning(
                "ASGI_APPLICATION is not set.",
                hint="Set ASGI_APPLICATION = 'yourproject.asgi.application', where "
                "application = realtime.asgi.get_asgi_application().",
                id="realtime.W002",
            )
        )
    return messages
