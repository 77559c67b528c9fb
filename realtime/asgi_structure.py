"""Following a project's ASGI application through Channels' routers and middleware, for the
system checks (realtime.checks): where it routes the client's WebSocket, and whether it
starts the outbox relay."""

from __future__ import annotations

from typing import Any

from channels.routing import ProtocolTypeRouter, URLRouter
from django.core.handlers.asgi import ASGIHandler
from django.urls import Resolver404

from realtime.asgi import RelayStarter
from realtime.consumers import RealtimeConsumer


def routes_to_realtime(application: Any, path: str) -> bool | None:
    """Whether ``application`` hands a WebSocket for ``path`` to a RealtimeConsumer: True or
    False when the structure says so, None when it cannot be followed (a callable of the
    project's own), since a guess would be a false alarm."""
    for _ in range(50):  # a bound: a wrapper could point at itself
        if isinstance(application, ASGIHandler):
            return False  # Django's handler answers HTTP only
        if isinstance(application, ProtocolTypeRouter):
            application = application.application_mapping.get("websocket")
            if application is None:
                return False
        elif isinstance(application, URLRouter):
            for route in application.routes:
                try:
                    match = route.pattern.match(path)
                except Resolver404:
                    continue
                if match:
                    path, application = match[0], route.callback
                    break
            else:
                return False
        elif (consumer := getattr(application, "consumer_class", None)) is not None:
            return isinstance(consumer, type) and issubclass(consumer, RealtimeConsumer)
        else:
            # Channels' middleware keeps the wrapped application as ``inner``, its
            # OriginValidator as ``application``.
            inner = getattr(application, "inner", None) or getattr(application, "application", None)
            if inner is None:
                return None
            application = inner
    return None


def starts_relay(application: Any, depth: int = 0) -> bool | None:
    """Whether ``application`` contains the :class:`realtime.asgi.RelayStarter` that
    ``get_asgi_application()`` puts around its router when ``DURABLE`` is on: True or False
    when its routers and middleware say so, None when a callable of the project's own hides
    the rest (a guess would be a false alarm)."""
    if depth > 50:  # a bound: a wrapper could point at itself
        return None
    if isinstance(application, RelayStarter):
        return True
    if isinstance(application, ASGIHandler) or hasattr(application, "consumer_class"):
        return False
    if isinstance(application, ProtocolTypeRouter):
        parts = list(application.application_mapping.values())
    elif isinstance(application, URLRouter):
        parts = [route.callback for route in application.routes]
    else:
        inner = getattr(application, "inner", None) or getattr(application, "application", None)
        if inner is None:
            return None
        parts = [inner]
    found = [starts_relay(part, depth + 1) for part in parts]
    return True if True in found else None if None in found else False
