"""``{% load realtime %}{% realtime_client "order.42" "user.7" %}``

Renders the JS client's configuration as a JSON script element (``id="realtime-config"``,
read by ``Realtime.fromPage()``): the endpoint URL, a short-lived token for the logged-in user,
and each topic's position captured now, at render time. A client that subscribes with those
positions receives every message published between this render and its subscribe.

Realtime is an enhancement of the page, so the page renders even when the topic log (Redis)
fails: the positions are read within :data:`CURSOR_TIMEOUT` seconds, and when that fails the
configuration has no cursors (docs/client.md says what the client does then) and one warning
is logged. For :data:`RETRY_AFTER` seconds after a failure, renders of this process do not
try again, so a hung Redis costs one page at most ``CURSOR_TIMEOUT`` per pause, not every
page."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from django import template
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.urls import reverse
from django.utils.crypto import salted_hmac
from django.utils.html import format_html, json_script
from django.utils.safestring import SafeString

from realtime.auth import make_token
from realtime.loop import run_sync
from realtime.protocol import encode_cursors
from realtime.publishing import aget_cursors
from realtime.topics import validate_topic

register = template.Library()
logger = logging.getLogger("realtime.templatetags")

# A healthy local Redis answers in milliseconds; a page should not wait longer than this for
# an enhancement (seconds).
CURSOR_TIMEOUT = 0.5
# After a failed read, renders skip Redis for this long (seconds).
RETRY_AFTER = 5.0

_lock = threading.Lock()
_failed_at: float | None = None


def reset() -> None:
    """Forget a recent failure: the next render reads the cursors again (for tests; also
    when ``REALTIME`` changes, since it may point at another Redis)."""
    global _failed_at
    with _lock:
        _failed_at = None


@receiver(setting_changed)
def _realtime_changed(setting: str, **kwargs: Any) -> None:
    if setting == "REALTIME":
        reset()


def _cursors(topics: list[str]) -> dict[str, dict[str, Any]]:
    """Each topic's position, or ``{}`` when the log did not answer in time."""
    global _failed_at
    with _lock:
        if _failed_at is not None and time.monotonic() - _failed_at < RETRY_AFTER:
            return {}
    try:
        cursors = run_sync(asyncio.wait_for(aget_cursors(topics), CURSOR_TIMEOUT))
    except Exception as exc:  # the log (Redis) is down or hung: render without positions
        with _lock:
            _failed_at = time.monotonic()
        timed_out = isinstance(exc, TimeoutError)
        reason = f"no answer within {CURSOR_TIMEOUT} s" if timed_out else repr(exc)
        logger.warning(
            "The topic log could not be read (%s): pages are rendered without cursors for "
            "the next %s s",
            reason,
            RETRY_AFTER,
        )
        return {}
    with _lock:
        _failed_at = None
    return cursors


def _share_key(user: Any) -> str:
    """The identity that tabs sharing one connection must have in common: a keyed hash of the
    user's id (not the id itself), or ``"anonymous"``."""
    if user is None or not user.is_authenticated:
        return "anonymous"
    return salted_hmac("realtime.share", str(user.pk)).hexdigest()[:20]


@register.simple_tag(takes_context=True)
def realtime_client(
    context: dict[str, Any], *topics: str, element_id: str = "realtime-config"
) -> SafeString:
    request = context.get("request")
    user = getattr(request, "user", None)
    for topic in topics:
        validate_topic(topic)  # a template's mistake: raise, do not hide it as an outage
    cursors = _cursors(list(topics))
    config = {
        "url": reverse("realtime:token").removesuffix("token/"),
        "token": make_token(user) if user is not None and user.is_authenticated else None,
        "topics": list(topics),
        "cursors": encode_cursors({t: (c["epoch"], c["offset"]) for t, c in cursors.items()}),
        # Which tabs may share one connection (docs/client.md, "One connection per browser"):
        # those rendered for the same user, never another's.
        "share_key": _share_key(user),
    }
    return format_html("{}", json_script(config, element_id))
