"""Fixtures of the browser tests: one daphne serving tests.browser.asgi (the test suite's app
behind a switchboard of network faults), and Debian's headless Chromium driven by Playwright.

Chromium is /usr/bin/chromium (``tests/browser/ensure_chromium.sh`` installs it); Playwright's
own browser downloads are never used."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import Daphne

ROOT = Path(__file__).resolve().parents[2]
# Short server timings, so that silence and fallbacks happen within a test's patience.
SERVER_ENV = {
    "RT_HEARTBEAT_INTERVAL": "1.5",
    "RT_HEARTBEAT_TIMEOUT": "1.5",
    "RT_SSE_KEEPALIVE": "1.0",
    "RT_POLL_TIMEOUT": "3.0",
    "RT_ACK_TIMEOUT": "1.0",
}
# What each test's client is told (ms): a transport that says nothing for this long is
# abandoned; long-polls are abandoned well after the server's POLL_TIMEOUT.
CLIENT_OPTIONS = {"connectTimeoutMs": 2000, "pollTimeoutMs": 8000, "backoffMaxMs": 2000}
TRANSPORTS = ["websocket", "sse", "longpoll"]


class Server(Daphne):
    """A daphne process serving tests.browser.asgi, with its fault switches."""

    def __init__(self, database: str, env: dict[str, str] | None = None) -> None:
        super().__init__(
            database,
            {**SERVER_ENV, **(env or {})},
            application="tests.browser.asgi:application",
            settings="tests.browser.settings",
        )
        self.url = self.http  # the pages' base URL
        self.api = httpx.Client(base_url=self.http, timeout=10)

    def faults(self, **faults: bool) -> None:
        """Switch network faults on (the others off); see tests/browser/asgi.py."""
        response = self.api.post("/_test/faults", content=json.dumps(faults))
        assert response.status_code == 204, response.text

    def drop(self) -> dict[str, int]:
        """Cut every live realtime connection from the server side."""
        response = self.api.post("/_test/drop")
        response.raise_for_status()
        return dict(response.json())

    def disconnect(self) -> int:
        """Disconnect every open realtime connection as an operator does (4403)."""
        response = self.api.post("/_test/disconnect")
        response.raise_for_status()
        return int(response.json())

    def notice(self, text: str, poll: bool = False) -> int:
        """Send an operator's notice to every registered connection (``poll``: and to the
        next long-poll answer that carries frames); returns how many were found."""
        body = {"text": text, "poll": poll}
        response = self.api.post("/_test/notice", content=json.dumps(body))
        response.raise_for_status()
        return int(response.json())

    def stats(self) -> dict[str, Any]:
        response = self.api.get("/_test/stats")
        response.raise_for_status()
        return dict(response.json())

    def publish(self, topic: str, data: Any, *, event: str = "n", ack: bool = False) -> str:
        """Publish through the server's own process (the in-memory log lives there)."""
        body = {"topic": topic, "event": event, "data": data, "ack": ack}
        response = self.api.post("/test/publish/", content=json.dumps(body))
        response.raise_for_status()
        return str(response.json()["id"])

    def stop(self) -> None:
        self.api.close()
        super().stop()


@pytest.fixture(scope="module")
def server(database: tuple[str, dict[str, Any]]) -> Iterator[Server]:
    instance = Server(database[0])
    yield instance
    instance.stop()


@pytest.fixture(autouse=True)
def _no_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    if "server" not in request.fixturenames:
        yield
        return
    server: Server = request.getfixturevalue("server")
    server.faults(reset_stats=True)
    yield
    server.faults()


@pytest.fixture
def context(chromium: Any, server: Server) -> Iterator[Any]:
    """A fresh browser profile (cookies, sessionStorage) per test."""
    context = chromium.new_context(base_url=server.url)
    context.set_default_timeout(15_000)
    yield context
    context.close()


@pytest.fixture
def open_page(context: Any, server: Server) -> Iterator[Callable[..., Any]]:
    """``open_page(topics, user="alice", config=False)``: log in, open the test page."""
    console: list[str] = []

    def open_(topics: list[str], user: str | None = "alice", config: bool = False) -> Any:
        page = context.new_page()
        page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
        if user:
            response = page.goto(f"/_test/login/{user}/")
            assert response is not None and response.ok
        query = "&".join(f"topic={topic}" for topic in topics)
        page.goto(f"/_test/page/?{query}{'&config=1' if config else ''}")
        page.wait_for_function("window.ready === true")
        return page

    yield open_
    # Failed loads during a deliberate fault are expected; uncaught script errors are not.
    assert not [line for line in console if line.startswith("pageerror")], "\n".join(console)


def wait_until(predicate: Callable[[], Any], timeout: float = 10, what: str = "") -> Any:
    """Poll ``predicate`` (a server-side fact) until it is truthy; bounded."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.05)
