"""The demo shows an operator's actions to the user (headless Chromium, the real demo site):
staff sends alice's page a test message from the admin console and it appears as a toast;
staff disconnects her page and its status bar says why, with a Reconnect button that
connects again. While a page loads, the status bar says `connecting`, never `closed`."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser_demo.conftest import log_in, wait_open

CONSOLE = "/admin/realtime/liveconnection/"


def select_alice(console: Any) -> None:
    """On the console, select alice's (only) live connection."""
    console.goto(CONSOLE)
    console.wait_for_selector("#rt-console[data-ready=true]")
    row = console.locator("#rt-rows tr", has_text="alice")
    row.wait_for()  # listed a moment after it opened; the list refreshes by itself
    assert row.count() == 1
    row.locator("input.action-select").check()


@pytest.mark.parametrize("transport", ["websocket", "sse"])
def test_the_demo_shows_a_notice_and_a_disconnect_with_a_reconnect_button(
    browser: Any, transport: str
) -> None:
    alice = browser()
    log_in(alice, "alice")
    alice.goto(f"/orders/?transport={transport}")
    wait_open(alice, transport)
    assert alice.is_hidden("[data-rt-reconnect]")

    staff = browser()
    log_in(staff, "staff")
    select_alice(staff)
    staff.fill("#rt-text", "maintenance in 5 minutes")
    staff.click("#rt-notify")
    assert "Test message sent to 1 connection." in staff.inner_text("ul.messagelist")
    # one look, as the toast leaves after 5 s
    alice.locator(".toast", has_text="Message from the operators").filter(
        has_text="maintenance in 5 minutes"
    ).wait_for()

    select_alice(staff)
    staff.click("#rt-disconnect")
    assert "Disconnect sent to 1 connection." in staff.inner_text("ul.messagelist")
    alice.wait_for_selector("[data-rt-reconnect]", state="visible")
    assert alice.inner_text("[data-rt-state]") == "closed"
    assert "disconnected by an operator" in alice.inner_text("[data-rt-closed]")

    alice.click("[data-rt-reconnect]")
    wait_open(alice, transport)
    assert alice.is_hidden("[data-rt-closed]")
    assert alice.inner_text("[data-rt-state]") == "open"


# Every text the status bar's state shows, from the page's first byte on.
WATCH_STATE = """
window.stateTexts = [];
new MutationObserver((records) => {
  for (const record of records) {
    if (!(record.target instanceof Element) || !record.target.matches("[data-rt-state]")) continue;
    for (const node of record.addedNodes) window.stateTexts.push(node.textContent.trim());
  }
}).observe(document, { childList: true, subtree: true });
"""


def test_the_status_bar_says_connecting_then_open_on_page_load(browser: Any) -> None:
    alice = browser()
    log_in(alice, "alice")
    alice.add_init_script(WATCH_STATE)
    alice.goto("/orders/")
    wait_open(alice, "websocket")
    texts = alice.evaluate("window.stateTexts")
    assert "closed" not in texts, texts  # the client is `connecting` from construction
    assert texts[-1] == "open", texts
