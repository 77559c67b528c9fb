"""System checks that catch misconfiguration at start-up. Ids are stable; tests assert the
exact messages."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any
from urllib.parse import urlsplit

import redis
from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.urls import NoReverseMatch, Resolver404, resolve, reverse
from django.utils.module_loading import import_string

from realtime import conf
from realtime.asgi import WEBSOCKET_PATH
from realtime.asgi_structure import routes_to_realtime, starts_relay
from realtime.broker.checks import check_broker
from realtime.consumers import RealtimeConsumer
from realtime.redis_cluster import CLUSTER_HINT, cluster_problem, is_cluster_url
from realtime.redis_cluster import ping as ping_cluster
from realtime.redis_sentinel import is_sentinel_url, parse_sentinel_url, ping_master
from realtime.redis_urls import REDIS_SCHEMES, without_password

MIN_DAPHNE = (4, 2, 3)  # what pyproject.toml requires


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
    url = config.redis_url
    if url is not None and is_sentinel_url(url):
        try:
            parse_sentinel_url(url)
        except ValueError as problem:
            messages.append(
                Error(
                    f"REALTIME['REDIS_URL'] {without_password(url)!r} is not a "
                    f"valid Sentinel URL: {problem}.",
                    hint="Use redis+sentinel://[user:password@]host1:port1,host2:port2/"
                    "<service_name>/<db> (rediss+sentinel:// for TLS to the master; "
                    "docs/scaling.md, 'Redis Sentinel').",
                    id="realtime.E011",
                )
            )
    elif url is not None and is_cluster_url(url):
        if wrong := cluster_problem(url, config.key_prefix, without_password(url)):
            messages.append(Error(wrong, hint=CLUSTER_HINT, id="realtime.E014"))
    elif url is not None and urlsplit(url).scheme not in REDIS_SCHEMES:
        messages.append(
            Error(
                f"REALTIME['REDIS_URL'] {without_password(url)!r} is not a Redis URL.",
                hint="Use redis://host:port/db, rediss://host:port/db (TLS), "
                "unix:///path/to/redis.sock, redis+sentinel://host1:port1,host2:port2/"
                "<service_name>/<db> (Sentinel) or redis+cluster://host1:port1,host2:port2/ "
                "(Cluster).",
                id="realtime.E008",
            )
        )
    messages += _check_consumer(config.consumer)
    messages += check_broker(config)
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
        if not settings.DEBUG and not (config.broker == "redis" and config.redis_url):
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
                f"daphne {daphne_version} is installed; realtime needs 4.2.3 or later.",
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


def _check_consumer(path: str) -> list[Any]:
    try:
        consumer = import_string(path)
    except ImportError as exc:
        return [
            Error(
                f"REALTIME['CONSUMER'] {path!r} cannot be imported: {exc}",
                hint="Give the dotted path of your RealtimeConsumer subclass, e.g. "
                "'shop.consumers.ShopConsumer'.",
                id="realtime.E009",
            )
        ]
    if not (isinstance(consumer, type) and issubclass(consumer, RealtimeConsumer)):
        return [
            Error(
                f"REALTIME['CONSUMER'] {path!r} is not a subclass of realtime.RealtimeConsumer.",
                hint="Every transport runs its hooks: subclass realtime.RealtimeConsumer.",
                id="realtime.E009",
            )
        ]
    return []


def _websocket_path() -> str:
    """The path the JS client opens: the prefix of realtime.urls (what
    ``{% realtime_client %}`` tells it), then ``ws/``."""
    try:
        return reverse("realtime:token").removesuffix("token/").lstrip("/") + "ws/"
    except NoReverseMatch:
        return WEBSOCKET_PATH  # W004 reports the missing include


@register(Tags.compatibility)
def check_asgi(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """``ASGI_APPLICATION`` imports, and routes the client's WebSocket path to a
    RealtimeConsumer (as far as its routers and middleware can be followed)."""
    name = getattr(settings, "ASGI_APPLICATION", None)
    if not name:
        return []  # check_settings reports it (W002)
    try:
        application = import_string(name)
    except Exception as exc:
        return [
            Error(
                f"ASGI_APPLICATION {name!r} cannot be imported: {type(exc).__name__}: {exc}",
                hint="Point it at the application in your project's asgi.py, made by "
                "realtime.asgi.get_asgi_application().",
                id="realtime.E010",
            )
        ]
    messages = []
    path = _websocket_path()
    if routes_to_realtime(application, path) is False:
        messages.append(
            Warning(
                f"ASGI_APPLICATION {name!r} does not route WebSocket connections for /{path} "
                "to a RealtimeConsumer: browsers fall back to SSE or long-poll.",
                hint="Make it with realtime.asgi.get_asgi_application(), or route "
                f'path("{path}", YourConsumer.as_asgi()) in its "websocket" URLRouter.',
                id="realtime.W008",
            )
        )
    try:
        config = conf.get_config()
    except Exception:
        return messages  # check_settings reports it
    if config.durable and starts_relay(application) is False:
        messages.append(_no_server_relay(name, config.redis_url is not None))
    return messages


def _no_server_relay(name: str, redis: bool) -> Any:
    """W011: ``DURABLE`` is on and the server processes start no relay."""
    if redis:
        waits = (
            "messages a publisher left in the outbox (it stopped before its relay ran, or "
            "Redis was down) wait there until a process that publishes durably runs"
        )
        hint = (
            "Make it with realtime.asgi.get_asgi_application() (your own middleware may wrap "
            "it), or run manage.py realtime_relay beside the servers and silence this check."
        )
    else:
        waits = (
            "without REDIS_URL, durable messages of a shell or a worker wait in the outbox "
            "until a server process publishes durably itself"
        )
        hint = (
            "Make it with realtime.asgi.get_asgi_application() (your own middleware may wrap "
            "it): without Redis only a server process can relay."
        )
    return Warning(
        f"REALTIME['DURABLE'] is on but ASGI_APPLICATION {name!r} starts no outbox relay in "
        f"the server processes: {waits}.",
        hint=hint,
        id="realtime.W011",
    )


@register(Tags.urls)
def check_urls(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    try:
        reverse("realtime:token")
    except NoReverseMatch:
        return [
            Warning(
                "realtime.urls is not included in the URLconf: the SSE, long-poll, POST and "
                "token views answer 404, and {% realtime_client %} fails to render.",
                hint='Add path("realtime/", include("realtime.urls")) to your urlpatterns.',
                id="realtime.W004",
            )
        ]
    return []


@register(Tags.security, deploy=True)
def check_deploy(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """``manage.py check --deploy``: settings that are fine in development only, and a
    Redis that does not answer."""
    messages: list[Any] = []
    try:
        config = conf.get_config()
    except Exception:
        return []  # check_settings reports it
    if config.allowed_origins is not None and "*" in config.allowed_origins:
        messages.append(
            Warning(
                "REALTIME['ALLOWED_ORIGINS'] contains '*': any web site may open realtime "
                "connections with its visitors' session cookies.",
                hint="List your sites' origins, or set None to derive them from ALLOWED_HOSTS.",
                id="realtime.W005",
            )
        )
    if config.metrics and not config.metrics_token:
        messages.append(
            Warning(
                "REALTIME['METRICS'] is on without REALTIME['METRICS_TOKEN']: only logged-in "
                "staff can read the metrics, so a Prometheus server cannot scrape them.",
                hint="Set METRICS_TOKEN and give the scraper 'Authorization: Bearer <token>'.",
                id="realtime.W006",
            )
        )
    backend = _layer_backend()
    if config.redis_url is None and (backend is None or backend.endswith("InMemoryChannelLayer")):
        messages.append(
            Warning(
                "realtime keeps its topic logs and channel layer in one process's memory: a "
                "publish() from a management command, a Celery worker or another server "
                "process reaches no connection of this one.",
                hint="Set REALTIME['REDIS_URL'] and a Redis channel layer in every process "
                "(README, 'Adding it to your project', step 1).",
                id="realtime.W009",
            )
        )
    if (url := _static_served_in_development_only()) is not None:
        messages.append(
            Warning(
                f"Nothing serves static files such as the JS client ({url}) outside "
                "development: under daphne, pages using it get a 404 and no live updates.",
                hint="Run collectstatic into STATIC_ROOT and let your web server serve it, or "
                "add WhiteNoise's middleware (docs/deployment.md).",
                id="realtime.W010",
            )
        )
    url = config.redis_url
    if url is not None and is_cluster_url(url) and cluster_problem(url, config.key_prefix, url):
        url = None  # check_settings reports it (E014)
    if url is not None and (
        is_sentinel_url(url) or is_cluster_url(url) or urlsplit(url).scheme in REDIS_SCHEMES
    ):
        try:
            if is_sentinel_url(url):
                ping_master(url, timeout=2)
            elif is_cluster_url(url):
                ping_cluster(url, timeout=2)
            else:
                redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2).ping()
        except ValueError:
            pass  # a malformed Sentinel URL: E011 says so
        except (redis.RedisError, redis.exceptions.RedisClusterException, OSError) as exc:
            messages.append(
                Warning(
                    f"Redis at {without_password(url)!r} does not answer: "
                    f"{type(exc).__name__}: {exc}",
                    hint="Start Redis, or correct REALTIME['REDIS_URL']: publish() and every "
                    "connection need it.",
                    id="realtime.W007",
                )
            )
    return messages


def _static_served_in_development_only() -> str | None:
    """The JS client's URL when nothing but development serving (runserver with DEBUG, or
    ``staticfiles_urlpatterns()``, which serve only with DEBUG on) would serve it: no
    STATIC_ROOT for collectstatic and a web server, no WhiteNoise, no view of the project's
    own. None when it is served, or when STATIC_URL points at another host."""
    static_url = getattr(settings, "STATIC_URL", None)
    if not static_url or urlsplit(static_url).netloc or getattr(settings, "STATIC_ROOT", None):
        return None
    if any("whitenoise" in str(name).lower() for name in getattr(settings, "MIDDLEWARE", [])):
        return None
    # staticfiles only here: a project may leave django.contrib.staticfiles out
    from django.contrib.staticfiles.views import serve as debug_serve

    url = f"{static_url}realtime/realtime.js"
    try:
        match = resolve(urlsplit(url).path)
    except Resolver404:
        return url
    return url if match.func is debug_serve else None
