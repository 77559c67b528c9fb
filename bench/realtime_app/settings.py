"""Django settings for the `realtime` target (served by daphne, also used by its publisher).

Environment: ``REDIS_URL`` and ``BENCH_PREFIX`` (channel-layer prefix and realtime key prefix,
unique per run so the keys can be deleted afterwards); ``BENCH_DB`` is a throw-away SQLite file,
``BENCH_PG`` a throw-away PostgreSQL database (bench/base_settings.py); ``BENCH_DURABLE`` turns
``REALTIME["DURABLE"]`` on; ``BENCH_BROKER`` sets ``REALTIME["BROKER"]`` (the `realtime-redis`
target: ``redis``).
"""

from __future__ import annotations

import os

from bench.base_settings import *  # noqa: F403
from bench.base_settings import INSTALLED_APPS, REDIS_URL, database

PREFIX = os.environ.get("BENCH_PREFIX", "bench-realtime")
INSTALLED_APPS = [*INSTALLED_APPS, "realtime", "bench.realtime_app.apps.BenchRealtimeConfig"]
DATABASES = database(PREFIX)
ROOT_URLCONF = "bench.realtime_app.urls"
ASGI_APPLICATION = "bench.realtime_app.asgi.application"
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": PREFIX},
    }
}
REALTIME: dict[str, object] = {
    "REDIS_URL": REDIS_URL,
    "KEY_PREFIX": PREFIX,
    "BROKER": os.environ.get("BENCH_BROKER", "layer"),
}
if os.environ.get("BENCH_DURABLE"):  # the realtime-durable targets: publish through the outbox
    REALTIME["DURABLE"] = True
# daphne's access log is stamped in the process's local time, which Django sets from
# TIME_ZONE: bench/rolling.py reads it as UTC.
TIME_ZONE = "UTC"
# The rolling-restart scenario (bench/rolling.py) drains nodes on SIGTERM.
if os.environ.get("BENCH_DRAIN_WINDOW"):
    REALTIME["DRAIN_WINDOW"] = float(os.environ["BENCH_DRAIN_WINDOW"])
if os.environ.get("BENCH_UNLIMITED_REQUESTS"):
    # realtime-sse, realtime-longpoll: a thousand anonymous clients on one address would share
    # one bucket of BURST requests (docs/security.md); the scenario measures delivery, not that.
    REALTIME["RATE"], REALTIME["BURST"] = 1e6, 1_000_000
if os.environ.get("BENCH_ADMISSION_RATE"):  # the storm scenario's `admission` variant
    REALTIME["ADMISSION_RATE"] = float(os.environ["BENCH_ADMISSION_RATE"])
# The HTTP transports (SSE, long-poll) authenticate a request without a bearer token by its
# session (``request.auser()``), which only AuthenticationMiddleware provides. The benchmark's
# clients are anonymous and send no cookie; signed-cookie sessions keep the database out of it.
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
