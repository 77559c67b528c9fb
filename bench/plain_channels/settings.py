"""Django settings for the plain-Channels baseline (served by daphne).

Environment: ``BENCH_LAYER`` (``core`` or ``pubsub``) picks the channels_redis layer;
``REDIS_URL`` and ``BENCH_PREFIX`` point it at Redis under a per-run prefix; ``BENCH_DB`` is a
throw-away SQLite file. Library defaults are kept on purpose (capacity 100 for the core layer):
this is the setup a Channels tutorial leads to.
"""

from __future__ import annotations

import os

from bench.base_settings import *  # noqa: F403
from bench.base_settings import REDIS_URL, database

LAYER_BACKENDS = {
    "core": "channels_redis.core.RedisChannelLayer",
    "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
}
BENCH_LAYER = os.environ.get("BENCH_LAYER", "core")
if BENCH_LAYER not in LAYER_BACKENDS:
    raise RuntimeError(f"BENCH_LAYER must be one of {sorted(LAYER_BACKENDS)}, not {BENCH_LAYER!r}")
PREFIX = os.environ.get("BENCH_PREFIX", "bench-plain")
DATABASES = database(PREFIX)
ROOT_URLCONF = "bench.plain_channels.urls"
ASGI_APPLICATION = "bench.plain_channels.asgi.application"
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": LAYER_BACKENDS[BENCH_LAYER],
        "CONFIG": {"hosts": [REDIS_URL], "prefix": PREFIX},
    }
}
