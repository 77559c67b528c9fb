"""Test-only views for the browser tests: log in without a form, a page that loads the JS
client (optionally with the configuration rendered by ``{% realtime_client %}``), and the
client file served straight from the package."""

from __future__ import annotations

import json
from pathlib import Path

from django.contrib.auth import get_user_model, login
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import get_object_or_404, render
from django.template import engines
from django.views.decorators.cache import never_cache

import realtime

CLIENT_JS = Path(realtime.__file__).resolve().parent / "static" / "realtime" / "realtime.js"


@never_cache
def login_as(request: HttpRequest, username: str) -> HttpResponse:
    """Log the browser in as ``username`` (session cookie) and give it a CSRF cookie."""
    user = get_object_or_404(get_user_model(), username=username)
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    get_token(request)
    return HttpResponse(f"logged in as {username}", content_type="text/plain")


@never_cache
def page(request: HttpRequest) -> HttpResponse:
    """A page for the JS client. ``?topic=…`` (repeated) names its topics; ``?config=1``
    renders ``{% realtime_client %}`` for them, capturing their positions now."""
    topics = request.GET.getlist("topic")
    config = ""
    if request.GET.get("config") == "1":
        # through the template engine, as a page would use the tag
        arguments = " ".join(json.dumps(topic) for topic in topics)
        tag = engines["django"].from_string(
            "{% load realtime %}{% realtime_client " + arguments + " %}"
        )
        config = tag.render({}, request)
    context = {"topics": topics, "config": config}
    return render(request, "browser/client.html", context)


def client_js(request: HttpRequest) -> HttpResponse:
    """realtime/static/realtime/realtime.js, read on every request (no staticfiles here)."""
    response = HttpResponse(CLIENT_JS.read_bytes(), content_type="text/javascript")
    response["Cache-Control"] = "no-store"
    return response
