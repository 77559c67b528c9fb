"""``{% load realtime %}{% realtime_client "order.42" "user.7" %}``

Renders the JS client's configuration as a JSON script element (``id="realtime-config"``,
read by ``Realtime.fromPage()``): the endpoint URL, a short-lived token for the logged-in user,
and each topic's position captured now, at render time. A client that subscribes with those
positions receives every message published between this render and its subscribe."""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import reverse
from django.utils.html import format_html, json_script
from django.utils.safestring import SafeString

from realtime.auth import make_token
from realtime.protocol import encode_cursors
from realtime.publishing import get_cursors

register = template.Library()


@register.simple_tag(takes_context=True)
def realtime_client(
    context: dict[str, Any], *topics: str, element_id: str = "realtime-config"
) -> SafeString:
    request = context.get("request")
    user = getattr(request, "user", None)
    cursors = get_cursors(list(topics))
    config = {
        "url": reverse("realtime:token").removesuffix("token/"),
        "token": make_token(user) if user is not None and user.is_authenticated else None,
        "topics": list(topics),
        "cursors": encode_cursors({t: (c["epoch"], c["offset"]) for t, c in cursors.items()}),
    }
    return format_html("{}", json_script(config, element_id))
