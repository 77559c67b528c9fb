"""The realtime HTTP transports (SSE ``realtime/sse/``, long-poll ``realtime/poll/``, POST
``realtime/send/``) for the ``realtime-sse`` and ``realtime-longpoll`` targets; the WebSocket
endpoint is routed by ``realtime.asgi``, not here."""

from __future__ import annotations

from django.urls import include, path

urlpatterns = [path("realtime/", include("realtime.urls"))]
