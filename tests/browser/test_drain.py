"""The JS client in Chromium when its node drains (docs/deployment.md, "Graceful drain"): two
daphne nodes on one Redis behind docs/deployment.md's nginx configuration; the node holding
the page's WebSocket gets SIGTERM, closes it with 4012, and the page reconnects through nginx
to the other node at once, missing nothing and repeating nothing of a steady stream of
messages."""

from __future__ import annotations

import shutil
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.nginx import Nginx, site_config
from tests.browser.conftest import CLIENT_OPTIONS, Server, wait_until
from tests.conftest import free_port
from tests.proxy import self_signed_certificate
from tests.servers import delete_prefix
from tests.test_nginx import HOST, documented_settings

WINDOW = 2.0
MESSAGES = 40


@pytest.fixture
def site(
    database: tuple[str, dict[str, Any]], redis_url: str
) -> Iterator[tuple[str, list[Server]]]:
    """Two browser-test nodes on Redis, draining over WINDOW, behind the documented nginx
    (its static location unused); yields the site's https origin and the nodes."""
    prefix = f"rt-drain-{uuid.uuid4().hex[:8]}"
    settings = documented_settings()
    env = {
        "RT_REDIS_URL": redis_url,
        "RT_PREFIX": prefix,
        "RT_DRAIN_WINDOW": str(WINDOW),
        "RT_TRUSTED_PROXIES": ",".join(settings["REALTIME"]["TRUSTED_PROXIES"]),
        "RT_SECURE_PROXY_SSL_HEADER": ",".join(settings["SECURE_PROXY_SSL_HEADER"]),
    }
    directory = Path(tempfile.mkdtemp(prefix="rt-nginx-"))
    directory.chmod(0o755)
    nodes: list[Server] = []
    nginx = None
    try:
        nodes = [Server(database[0], env) for _ in range(2)]
        cert, key = self_signed_certificate(directory, HOST)
        https, http = free_port(), free_port()
        config = site_config([node.port for node in nodes], http, https, HOST, (cert, key))
        nginx = Nginx(directory, config)
        nginx.wait_listening(https)
        yield f"https://{HOST}:{https}", nodes
    finally:
        if nginx is not None:
            nginx.stop()
        for node in nodes:
            node.stop()
        shutil.rmtree(directory, ignore_errors=True)
        delete_prefix(redis_url, prefix)


def test_a_page_on_a_draining_node_moves_to_the_other_node_and_loses_nothing(
    chromium: Any, site: tuple[str, list[Server]]
) -> None:
    origin, nodes = site
    context = chromium.new_context(base_url=origin, ignore_https_errors=True)
    context.set_default_timeout(15_000)
    try:
        page = context.new_page()
        console: list[str] = []
        page.on("console", lambda message: console.append(message.text))
        assert page.goto("/_test/login/alice/").ok
        topic = f"public.drain-{uuid.uuid4().hex[:8]}"
        page.goto(f"/_test/page/?topic={topic}")
        page.wait_for_function("window.ready === true")
        options = {**CLIENT_OPTIONS, "transports": ["websocket"], "debug": True}
        page.evaluate("options => start(options)", options)
        page.wait_for_function(
            "t => window.events.some(e => e.type === 'subscribed' && e.topic === t)", arg=topic
        )
        # the node nginx sent the page's WebSocket to drains; the other one publishes
        draining, other = sorted(nodes, key=lambda node: -node.stats()["ws_opened"])
        assert (draining.stats()["ws_opened"], other.stats()["ws_opened"]) == (1, 0)

        def publish_steadily() -> None:
            for n in range(MESSAGES):
                other.publish(topic, n)
                time.sleep(WINDOW * 2 / MESSAGES)  # through the whole window and after

        publisher = threading.Thread(target=publish_steadily)
        publisher.start()
        wait_until(lambda: page.evaluate("t => window.messages(t).length", topic) >= 3)
        draining.process.send_signal(signal.SIGTERM)
        publisher.join(30)
        other.publish(topic, "end")
        page.wait_for_function("t => window.messages(t).includes('end')", arg=topic)
        assert page.evaluate("t => window.messages(t)", topic) == [*range(MESSAGES), "end"]
        # closed with 4012, it reconnected at once (no backoff), through `reconnecting` back
        # to `open`, on the other node, over WebSocket
        assert [line for line in console if "service restart: reconnecting" in line]
        states = [entry[1] for entry in page.evaluate("window.log") if entry[0] == "state"]
        assert states[-2:] == ["reconnecting", "open"]
        assert other.stats()["ws_opened"] == 1
        assert draining.process.wait(WINDOW + 15) is not None  # it stopped once empty
        other.assert_no_tracebacks()
    finally:
        context.close()
