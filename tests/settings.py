"""Settings for the test suite (never the demo's). The e2e daphne processes use them too,
with RT_TEST_DB pointing at a database file they share with the test process, and
RT_REDIS_URL / RT_PREFIX selecting Redis (RT_LAYER_URL another one for the channel layer)."""

from __future__ import annotations

import os

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "realtime",
    "tests.testapp",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "tests.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
STATIC_URL = "static/"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("RT_TEST_DB", ":memory:"),
        "TEST": {"NAME": os.environ.get("RT_TEST_DB") or None},
    }
}
if os.environ.get("RT_TEST_PG"):
    # a PostgreSQL database the test created (tests/test_outbox.py), on the local server
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ["RT_TEST_PG"],
            "HOST": "127.0.0.1",
            "PORT": "5432",
            "USER": "postgres",
        }
    }
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
ASGI_APPLICATION = "tests.asgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# every transport (WebSocket, SSE, long-poll, POST) on the test consumer's hooks
REALTIME: dict[str, object] = {"CONSUMER": "tests.testapp.consumers.EchoConsumer"}
_redis = os.environ.get("RT_REDIS_URL")
_prefix = os.environ.get("RT_PREFIX", "rt-test")
if _redis:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            # RT_LAYER_URL: the layer on one Redis while RT_REDIS_URL names a Redis Cluster
            "CONFIG": {"hosts": [os.environ.get("RT_LAYER_URL", _redis)], "prefix": _prefix},
        }
    }
    REALTIME.update(REDIS_URL=_redis, KEY_PREFIX=_prefix)
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
for _key in (
    "HEARTBEAT_INTERVAL",
    "HEARTBEAT_TIMEOUT",
    "ACK_TIMEOUT",
    "AUTH_TIMEOUT",
    "POLL_TIMEOUT",
    "SSE_KEEPALIVE",
    "SEND_LEASE",
    "SEND_WAIT",
    "RATE",
    "BACKEND_GRACE",
    "RELAY_INTERVAL",
    "PUBLISH_TIMEOUT",
    "DRAIN_WINDOW",
    "ADMISSION_RATE",
    "TOKEN_CACHE_TTL",
):
    if os.environ.get(f"RT_{_key}"):
        REALTIME[_key] = float(os.environ[f"RT_{_key}"])
if os.environ.get("RT_BROKER"):
    REALTIME["BROKER"] = os.environ["RT_BROKER"]
if os.environ.get("RT_DURABLE"):
    REALTIME["DURABLE"] = True
if os.environ.get("RT_TRUSTED_PROXIES"):
    REALTIME["TRUSTED_PROXIES"] = os.environ["RT_TRUSTED_PROXIES"].split(",")
# Behind the reverse proxy of tests/test_nginx.py: the settings docs/deployment.md gives.
if os.environ.get("RT_SECURE_PROXY_SSL_HEADER"):
    SECURE_PROXY_SSL_HEADER = tuple(os.environ["RT_SECURE_PROXY_SSL_HEADER"].split(","))
if os.environ.get("RT_STATIC_ROOT"):
    STATIC_ROOT = os.environ["RT_STATIC_ROOT"]
for _key in ("BURST", "OUTBOUND_QUEUE_SIZE", "ACK_MAX_RETRIES"):
    if os.environ.get(f"RT_{_key}"):
        REALTIME[_key] = int(os.environ[f"RT_{_key}"])
# Levels and names on stderr, so that ERROR records (and their tracebacks) can be told from the
# rest; they still propagate, for pytest's caplog. In a daphne node (below), daphne's root
# handler prints them instead, with the level, as it prints django.request's 500s.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"levels": {"format": "%(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "levels"}},
    "loggers": {
        "realtime": {"handlers": ["console"], "level": "WARNING"},
    },
}
if os.environ.get("RT_DAPHNE_NODE"):
    # In a daphne node of the tests, realtime's records go to daphne's root handler alone (its
    # lines carry the level too), so that each record is one line of the node's log.
    LOGGING["loggers"] = {"realtime": {"level": "WARNING"}}
