"""The demo on the built-ins (headless Chromium, the real demo site): an order's status saved
in the admin reaches the customer's page through ``realtime.publish_model``, and a
notification reaches her through ``realtime.publish_to_user`` on her topic ``user:<pk>``."""

from __future__ import annotations

from typing import Any

from tests.browser_demo.conftest import log_in, wait_open


def test_the_demo_publishes_order_saves_and_notifications_with_the_built_ins(browser: Any) -> None:
    alice = browser()
    log_in(alice, "alice")
    alice.goto("/orders/")
    alice.click("text=A-1001")
    wait_open(alice, "websocket")
    topics = alice.evaluate("() => window.realtimeClient.topics")
    assert any(name.startswith("user:") for name in topics), topics
    order_id = alice.url.rstrip("/").rsplit("/", 1)[-1]

    staff = browser()
    log_in(staff, "staff")
    staff.goto(f"/admin/orders/order/{order_id}/change/")
    staff.fill("input[name=total]", "12.34")  # a save that leaves the status alone
    staff.click("input[name=_continue]")
    staff.select_option("#id_status", "packed")
    staff.click("input[name=_save]")
    alice.wait_for_function(
        "() => document.querySelector('[data-status-badge]').textContent.trim() === 'Packed'"
    )
    log = alice.inner_text("[data-log]")
    assert log.count("Status changed to") == 1, log  # the first save published nothing

    staff.goto("/notifications/staff/")
    staff.select_option("#id_user", "alice")
    staff.fill("#id_title", "Your parcel is on its way")
    staff.click("form.form button[type=submit]")
    alice.locator(".toast", has_text="Your parcel is on its way").wait_for()
    staff.wait_for_selector("[data-delivered-cell] .badge--delivered")  # alice's ACK
