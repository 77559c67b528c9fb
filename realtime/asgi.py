"""The ASGI application: HTTP to Django, WebSocket to the realtime consumer.

In your project's ``asgi.py``::

    import os
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
    from realtime.asgi import get_asgi_application
    application = get_asgi_application()
"""

from __future__ import annotations

from typing import Any

from django.core.asgi import get_asgi_application as get_django_asgi_application
from django.utils.module_loading import import_string

WEBSOCKET_PATH = "realtime/ws/"


def get_asgi_application(
    consumer: type[Any] | str | None = None,
    *,
    path: str = WEBSOCKET_PATH,
    http: Any = None,
    websocket_routes: list[Any] | None = None,
) -> Any:
    """Build the project's ASGI application.

    ``consumer`` is a :class:`realtime.RealtimeConsumer` subclass (or its dotted path) served
    at ``path``; by default ``REALTIME["CONSUMER"]``, which the SSE and long-poll views use
    too (set that instead, to keep every transport on the same hooks). ``http`` replaces
    Django's ASGI handler (SSE events then pass through its response loop one by one, at
    more CPU per event, instead of going straight to the server); ``websocket_routes`` adds
    your own Channels routes. WebSocket connections get the session and user as with
    Channels' ``AuthMiddlewareStack``; Origin checks are done by the WebSocket transport
    (docs/security.md); a connection without a session cookie costs no database round trip
    for that (:mod:`realtime.session_user`)."""
    django_app = get_django_asgi_application()  # sets Django up before models are imported

    from channels.routing import ProtocolTypeRouter, URLRouter
    from django.urls import path as route

    from realtime.conf import get_config
    from realtime.session_user import SessionUserMiddlewareStack
    from realtime.transports.sse import ExposeSend

    consumer_class: Any = import_string(consumer) if isinstance(consumer, str) else consumer
    consumer_class = consumer_class or import_string(get_config().consumer)
    routes = [route(path, consumer_class.as_asgi()), *(websocket_routes or [])]
    application = ProtocolTypeRouter(
        {
            # Django's handler sends what its views return unchanged: the SSE view may write
            # its events straight to the server (realtime.transports.sse). Not so through an
            # `http` application of the project's, which may rework responses.
            "http": http or ExposeSend(django_app),
            "websocket": SessionUserMiddlewareStack(URLRouter(routes)),
        }
    )
    # every server process relays the outbox (docs/publishing.md)
    return RelayStarter(application) if get_config().durable else application


class RelayStarter:
    """Starts the process's outbox relay on the application's first call: in a server
    process, and never in a management command that only imports the application (the
    system checks do), where a relay without Redis would move messages into that command's
    own memory. ``inner`` is the wrapped application, as in Channels' middleware."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.started = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if not self.started:
            self.started = True
            # the publishing module imports the models: loaded once Django is set up
            from realtime.publishing import start_relay

            start_relay()
        await self.inner(scope, receive, send)
