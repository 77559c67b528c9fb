"""Settings of the browser tests' daphne: the test suite's settings, plus the test pages of
tests/browser (a login view, a page for the JS client, the client file itself)."""

from __future__ import annotations

from pathlib import Path

from tests.settings import *  # noqa: F403
from tests.settings import REALTIME

# tests.asgi serves EchoConsumer on the WebSocket; the HTTP transports take the consumer from
# this setting, so that client messages find the same handlers over SSE and long-poll.
REALTIME["CONSUMER"] = "tests.testapp.consumers.EchoConsumer"

ROOT_URLCONF = "tests.browser.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [Path(__file__).resolve().parent / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]
