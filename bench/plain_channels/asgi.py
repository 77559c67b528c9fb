"""ASGI entry point of the plain-Channels baseline: ``bench.plain_channels.asgi:application``.

The usual tutorial stack: origin check against ALLOWED_HOSTS, session/auth middleware, a URL
router with one consumer at ``/ws/``.
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.plain_channels.settings")
django_asgi_app = get_asgi_application()  # sets Django up before the consumer imports

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import path  # noqa: E402

from bench.plain_channels.consumers import BroadcastConsumer  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter([path("ws/", BroadcastConsumer.as_asgi())]))
        ),
    }
)
