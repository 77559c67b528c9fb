"""A page without a login and without a way to get a token (no ``tokenUrl``), in headless
Chromium: a topic that needs a logged-in user is refused (WebSocket ``forbidden``, SSE and
long-poll HTTP 401 ``auth_required``) and dropped, the others keep working, and the refusal
is not retried in a loop."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.browser.conftest import TRANSPORTS, Server
from tests.browser.test_client import all_messages, new_topic, start, wait_open, wait_subscribed


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_anonymous_page_drops_a_topic_that_needs_a_login_and_keeps_the_others(
    open_page: Any, server: Server, transport: str
) -> None:
    public, private = new_topic(), f"room.b-{uuid.uuid4().hex[:8]}"
    page = open_page([public, private], user=None)
    start(page, [transport])
    page.wait_for_function(
        "t => window.events.some(e => e.type === 'error' && e.topic === t)", arg=private
    )
    error = page.evaluate(
        "t => window.events.find(e => e.type === 'error' && e.topic === t)", private
    )
    # The same outcome for the page; the code says why on each transport (docs/protocol.md).
    assert error["code"] == ("forbidden" if transport == "websocket" else "auth_required")
    wait_open(page, transport)
    wait_subscribed(page, public)
    server.publish(public, "end")
    assert all_messages(page, public, "end") == ["end"]
    stats = server.stats()
    requests = {
        "websocket": stats["ws_attempts"],
        "sse": len(stats["streams"]),
        "longpoll": len(stats["polls"]),
    }[transport]
    # the refused request, one without the topic, and (long-poll) the polls after a message
    assert requests <= 5, stats
