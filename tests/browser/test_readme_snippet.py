"""The README's client snippet (step 6 of "Adding it to your project"), as written, in
headless Chromium: it logs each message, and nothing for the other events its handler gets."""

from __future__ import annotations

import uuid
from typing import Any

from tests.browser.conftest import Server


def test_the_readme_snippet_logs_each_message_and_nothing_else(
    context: Any, server: Server
) -> None:
    topic = f"public.readme-{uuid.uuid4().hex[:8]}"
    logged: list[str] = []
    page = context.new_page()
    page.on("console", lambda message: message.type == "log" and logged.append(message.text))
    assert page.goto("/_test/login/alice/").ok
    with page.expect_console_message(lambda message: message.text == "status [1]"):
        assert page.goto(f"/_test/readme/?topic={topic}").ok
        # published after the render: the render-time position brings it to the page
        server.publish(topic, [1], event="status")
    # before the fix the 'subscribed' event was logged first, as "undefined undefined"
    assert logged == ["status [1]"]
