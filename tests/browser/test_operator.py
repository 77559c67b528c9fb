"""Operator actions reach the page (realtime.js in headless Chromium, against a real daphne):
an operator's ``notice`` is raised as the client's ``notice`` event on every transport, and an
operator's disconnect (4403) gives the ``state`` listeners its code and reason, after which
``connect()`` starts again."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import TRANSPORTS, Server, wait_until
from tests.browser.test_client import (
    all_messages,
    connected,
    new_topic,
    wait_open,
    wait_state,
    wait_subscribed,
)

LISTEN_NOTICES = """() => {
  window.notices = [];
  window.client.on("notice", (text) => window.notices.push(text));
}"""
LISTEN_CLOSES = """() => {
  window.closes = [];
  window.client.on("state", (state, detail) => {
    if (state === "closed") window.closes.push(detail);
  });
}"""


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_notice_reaches_notice_listeners(open_page: Any, server: Server, transport: str) -> None:
    topic = new_topic()
    page = open_page([topic])
    connected(page, server, transport, topic)
    page.evaluate(LISTEN_NOTICES)
    if transport == "longpoll":
        # No server can address a poll (polls are not registered): the test server puts the
        # notice in the next answer that carries frames, as it would any frame.
        server.notice("maintenance in 5 minutes", poll=True)
        server.publish(topic, "after")
    else:
        wait_until(lambda: server.notice("maintenance in 5 minutes") >= 1, what="a listed client")
    page.wait_for_function("() => window.notices.length >= 1")
    assert page.evaluate("window.notices") == ["maintenance in 5 minutes"]
    assert page.evaluate("window.client.state") == "open", "a notice changes nothing else"
    server.publish(topic, "end")
    assert all_messages(page, topic, "end")[-1] == "end"


@pytest.mark.parametrize("transport", ["websocket", "sse"])
def test_an_operator_disconnect_gives_its_reason_and_connect_starts_again(
    open_page: Any, server: Server, transport: str
) -> None:
    # Long-poll requests are not registered, so no operator can disconnect one.
    topic = new_topic()
    page = open_page([topic])
    connected(page, server, transport, topic)
    page.evaluate(LISTEN_CLOSES)
    assert server.disconnect() >= 1
    wait_state(page, "closed")
    assert page.evaluate("window.closes") == [{"code": 4403, "reason": "by the test"}]

    server.publish(topic, "missed")  # while closed: replayed from the cursor on connect()
    page.evaluate("() => window.client.connect()")
    wait_open(page, transport)
    wait_subscribed(page, topic, 2)
    server.publish(topic, "end")
    assert all_messages(page, topic, "end") == ["missed", "end"]
    opened = server.stats()["sse_opened" if transport == "sse" else "ws_opened"]
    assert opened == 2, "connect() opens one new connection"
