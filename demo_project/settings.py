"""Settings for the demo site.

Everything that differs between machines comes from the environment through django-environ
(a ``.env`` file next to ``manage.py`` is read if present). With nothing set, the demo runs on
one machine with embedded defaults: SQLite, ``DEBUG`` on, and the in-memory channel layer, topic
log and connection registry. Set ``REDIS_URL`` and the channel layer, the log and the registry
all move to Redis, with no other change.

    SECRET_KEY       required when DEBUG is off
    DEBUG            default: on
    ALLOWED_HOSTS    comma-separated; default: 127.0.0.1,localhost
    DATABASE_URL     default: sqlite:///<project dir>/db.sqlite3
    REDIS_URL        e.g. redis://127.0.0.1:6379/0, or a redis+sentinel:// or redis+cluster://
                     URL (then REALTIME["BROKER"] = "redis"); default: unset (in memory, one
                     process)
    LOG_LEVEL        level of the realtime and demo loggers; default: INFO
"""

from __future__ import annotations

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env")  # only fills variables that are not set already

DEBUG = env.bool("DEBUG", default=True)

_DEV_SECRET_KEY = "django-insecure-realtime-demo-only-never-use-in-production"
SECRET_KEY = env.str("SECRET_KEY", default=_DEV_SECRET_KEY)
if not DEBUG and SECRET_KEY == _DEV_SECRET_KEY:
    raise ImproperlyConfigured("Set the SECRET_KEY environment variable when DEBUG is off.")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

REDIS_URL: str | None = env.str("REDIS_URL", default="") or None

INSTALLED_APPS = [
    "daphne",  # first, so that `runserver` serves ASGI (HTTP and WebSocket)
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "realtime",
    "demo_project.orders",
    "demo_project.notifications",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "demo_project.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "demo_project.notifications.context_processors.notifications",
            ],
        },
    },
]

ASGI_APPLICATION = "demo_project.asgi.application"

DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# channels_redis takes redis:// and rediss:// URLs only: with a Sentinel or Cluster URL
# (redis+sentinel://, redis+cluster://, and their rediss+ forms) the messages between
# processes go through realtime's own Redis broker, which understands both, and the channel
# layer stays in memory (nothing else of the demo uses it).
REDIS_BROKER = (REDIS_URL or "").partition("://")[0].lower().endswith(("+sentinel", "+cluster"))
if REDIS_URL and not REDIS_BROKER:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        },
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# The topic log and the connection registry follow REDIS_URL: in memory when it is unset.
# CONSUMER: the hooks of every transport (ACKs mark notifications delivered).
REALTIME = {
    "REDIS_URL": REDIS_URL,
    "BROKER": "redis" if REDIS_BROKER else "layer",
    "CONSUMER": "demo_project.notifications.consumers.DemoConsumer",
    # Order status changes and notifications are published through the outbox, in the
    # transaction of the change: a crash or a Redis outage at the commit loses none.
    "DURABLE": True,
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "orders:list"
LOGOUT_REDIRECT_URL = "home"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "{asctime} {levelname} {name}: {message}", "style": "{"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "realtime": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "demo_project": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
    },
}
