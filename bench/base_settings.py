"""Settings shared by the Django targets (imported with ``*`` by their settings modules)."""

from __future__ import annotations

import os
import tempfile

from bench._common import raise_fd_limit, redis_url_from_env, require_loopback_redis

raise_fd_limit()

REDIS_URL = require_loopback_redis(redis_url_from_env())
SECRET_KEY = "bench-only-not-secret"  # loopback benchmark, never deployed
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "channels",
]
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


def database(prefix: str) -> dict[str, dict[str, str]]:
    """A throw-away database: the PostgreSQL database ``BENCH_PG`` on 127.0.0.1:5432 (user
    ``postgres``, trust auth) when set, else the SQLite file ``BENCH_DB``, or one named after
    the run's prefix."""
    if pg := os.environ.get("BENCH_PG"):
        return {
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": pg,
                "USER": "postgres",
                "HOST": "127.0.0.1",
                "PORT": "5432",
            }
        }
    name = os.environ.get("BENCH_DB") or os.path.join(tempfile.gettempdir(), f"{prefix}.sqlite3")
    return {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": name}}
