"""The admin console in headless Chromium against two real daphne nodes on Redis: an operator
logs in, finds the console on the admin index, sees live WebSocket connections of both
nodes, watches the list refresh by itself when another client connects, pauses it by
selecting a row, sends a test message and disconnects a connection."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.browser_admin.conftest import REFRESH, ROOT, Node

# The docs' screenshot is refreshed only on request (RT_SCREENSHOTS=1), so that a test run
# leaves the work tree as it found it.
SCREENSHOT = ROOT / "docs" / "screenshots" / "admin-console.png"
REFRESH_SCREENSHOT = os.environ.get("RT_SCREENSHOTS") == "1"
CONSOLE = "/admin/realtime/liveconnection/"
REFRESH_MS = int(REFRESH * 1000)  # the nodes' console refresh


class Socket:
    """A WebSocket client that authenticates with a token and subscribes to topics."""

    def __init__(self, node: Node, token: str, topics: list[str]) -> None:
        self._stack = contextlib.ExitStack()
        self.ws: ClientConnection = self._stack.enter_context(
            connect(
                node.ws,
                subprotocols=["realtime.v1", f"realtime.token.{token}"],  # type: ignore[list-item]
                proxy=None,
                max_queue=None,
                open_timeout=10,
            )
        )
        welcome = self.receive()
        assert welcome["type"] == "welcome", welcome
        self.id: str = welcome["connection_id"]
        for topic in topics:
            self.ws.send(json.dumps({"type": "subscribe", "topic": topic}))
            answer = self.receive_type("subscribed")
            assert answer["topic"] == topic

    def receive(self, timeout: float = 10) -> dict[str, Any]:
        frame: dict[str, Any] = json.loads(self.ws.recv(timeout))
        return frame

    def receive_type(self, kind: str, timeout: float = 10) -> dict[str, Any]:
        """The next frame of type ``kind``, skipping messages and pings."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self.receive(max(0.1, deadline - time.monotonic()))
            if frame["type"] == kind:
                return frame

    def close_code(self, timeout: float = 10) -> int | None:
        deadline = time.monotonic() + timeout
        try:
            while True:
                self.ws.recv(max(0.1, deadline - time.monotonic()))
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None

    def close(self) -> None:
        self._stack.close()


class Traffic:
    """Publishes to a topic through a node, a few messages a second, until stopped."""

    def __init__(self, node: Node, topic: str, per_second: float = 4.0) -> None:
        self.stopped = threading.Event()
        self.sent = 0

        def run() -> None:
            with httpx.Client(base_url=node.http, trust_env=False, timeout=10) as http:
                while not self.stopped.wait(1 / per_second):
                    body = {"topic": topic, "event": "tick", "data": {"n": self.sent}}
                    http.post("/test/publish/", content=json.dumps(body)).raise_for_status()
                    self.sent += 1

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(10)


@pytest.fixture
def page(chromium: Any, nodes: list[Node]) -> Iterator[Any]:
    context = chromium.new_context(base_url=nodes[0].http, viewport={"width": 1600, "height": 860})
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, errors


def log_in(page: Any, *, sidebar: bool) -> None:
    """Log in to the admin as the operator, with the admin's navigation sidebar open or not."""
    page.goto("/admin/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "operator-pw")
    page.click("input[type=submit]")
    page.evaluate(
        "open => localStorage.setItem('django.admin.navSidebarIsOpen', String(open))", sidebar
    )


def row(item: str) -> str:
    return f'#rt-rows tr[data-id="{item}"]'


def test_operator_watches_and_disconnects_live_connections(page, nodes, database):
    users = database[1]
    alice_topic = f"user.{users['alice']['pk']}"
    alice = Socket(nodes[1], users["alice"]["token"], ["room.lobby", alice_topic])
    carol = Socket(nodes[0], users["carol"]["token"], ["room.lobby", "public.news"])
    traffic = Traffic(nodes[0], "room.lobby")
    sockets = [alice, carol]
    try:
        # log in to the admin and follow the index's link to the console, the admin's
        # navigation sidebar folded, as an operator watching the console would
        log_in(page, sidebar=False)
        page.click(f'a[href="{CONSOLE}"]')
        page.wait_for_selector("#rt-console[data-ready=true]")

        # connections of both nodes are listed, with user, transport and topics
        text = page.inner_text(row(alice.id))
        assert "alice" in text and "websocket" in text and "room.lobby" in text
        assert "carol" in page.inner_text(row(carol.id))
        assert page.inner_text("#rt-nodes") == "2"

        # another client connects: the list refreshes by itself, without a reload
        page.evaluate("window.notReloaded = true")
        bob = Socket(nodes[0], users["bob"]["token"], ["room.lobby"])
        sockets.append(bob)
        page.wait_for_selector(row(bob.id), timeout=REFRESH_MS + 7000)
        assert page.evaluate("window.notReloaded") is True
        sockets.append(Socket(nodes[1], users["dave"]["token"], ["public.news"]))

        # the chart derives messages per second from the totals of successive polls
        page.wait_for_function(
            "parseFloat(document.getElementById('rt-rate').textContent) > 0",
            timeout=4 * REFRESH_MS,
        )
        page.wait_for_function(
            "Number(document.getElementById('rt-chart-rate').dataset.points) >= 3",
            timeout=4 * REFRESH_MS,
        )
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shot = page.screenshot(full_page=True)
        assert shot.startswith(b"\x89PNG")
        if REFRESH_SCREENSHOT:
            SCREENSHOT.write_bytes(shot)

        # selecting a row pauses the refresh of the rows (the chart goes on)
        page.check(f"{row(bob.id)} input.action-select")
        assert page.get_attribute("#rt-console", "data-paused") == "true"
        assert "Paused" in page.inner_text("#rt-status")
        refreshes = page.get_attribute("#rt-console", "data-refreshes")
        page.wait_for_timeout(REFRESH_MS + 1500)
        assert page.get_attribute("#rt-console", "data-refreshes") == refreshes
        assert page.is_checked(f"{row(bob.id)} input.action-select")

        # send the selected connection a test message
        page.fill("#rt-text", "maintenance in 5 minutes")
        page.click("#rt-notify")
        page.wait_for_selector("ul.messagelist")
        assert "Test message sent to 1 connection." in page.inner_text("ul.messagelist")
        assert bob.receive_type("notice") == {"type": "notice", "text": "maintenance in 5 minutes"}

        # disconnect alice (on the other node): her socket closes with 4403, her row goes
        page.check(f"{row(alice.id)} input.action-select")
        page.click("#rt-disconnect")
        page.wait_for_selector("ul.messagelist")
        assert "Disconnect sent to 1 connection." in page.inner_text("ul.messagelist")
        assert alice.close_code() == 4403
        page.wait_for_selector(row(alice.id), state="detached", timeout=REFRESH_MS + 7000)
        assert page.is_visible(row(bob.id))

        # the topic page: subscribers from the registry, offsets from the log
        published = traffic.sent
        page.click(f'{row(bob.id)} a[href="{CONSOLE}topic/room.lobby/"]')
        assert page.inner_text("#rt-subscribers") == "2"  # carol and bob
        assert int(page.inner_text("#rt-last-offset")) >= published > 0
        assert "messages/s" in page.inner_text("#rt-rate")
    finally:
        traffic.stop()
        for socket in sockets:
            socket.close()
