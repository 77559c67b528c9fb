"""Test-only views for the browser tests: log in without a form, a page that loads the JS
client (optionally with the configuration rendered by ``{% realtime_client %}``), and the
client file served straight from the package."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

from django.contrib.auth import get_user_model, login
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import get_object_or_404, render
from django.template import engines
from django.views.decorators.cache import never_cache

import realtime

CLIENT_JS = Path(realtime.__file__).resolve().parent / "static" / "realtime" / "realtime.js"
README = Path(__file__).resolve().parents[2] / "README.md"


def readme_snippet() -> str:
    """The README's template snippet for the browser (step 6 of "Adding it to your project"):
    its html code block that loads the client."""
    blocks = re.findall(r"^ *```html\n(.*?)^ *```", README.read_text(), re.M | re.S)
    [snippet] = [block for block in blocks if "Realtime.fromPage()" in block]
    return textwrap.dedent(snippet)


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


@never_cache
def readme_page(request: HttpRequest) -> HttpResponse:
    """A page made of the README's client snippet, as written, on topic ``?topic=…`` instead
    of ``order.42``."""
    snippet = readme_snippet().replace('"order.42"', json.dumps(request.GET["topic"]))
    body = engines["django"].from_string(snippet).render({}, request)
    return HttpResponse(f"<!doctype html><html><body>{body}</body></html>")


def client_js(request: HttpRequest) -> HttpResponse:
    """realtime/static/realtime/realtime.js, read on every request (no staticfiles here)."""
    response = HttpResponse(CLIENT_JS.read_bytes(), content_type="text/javascript")
    response["Cache-Control"] = "no-store"
    return response
