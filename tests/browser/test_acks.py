"""ACKs are at-least-once end to end, in headless Chromium against a real daphne on Redis: an
``ack=True`` message ends acknowledged (the consumer's ``on_ack`` ran exactly once) and shown
once, whatever cut falls between the message and its ACK, on each transport, across
reconnects and page reloads (docs/client.md, "ACKs")."""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.browser.conftest import TRANSPORTS, Server, wait_until
from tests.browser.test_client import connected, start, wait_messages, wait_open
from tests.servers import delete_prefix

OWED = "JSON.parse(sessionStorage.getItem('realtime:/realtime/:acks') || '[]')"


@pytest.fixture(scope="module")
def server(database: tuple[str, dict[str, Any]], redis_url: str) -> Iterator[Server]:
    """This module's node keeps its log and pending ACKs in Redis."""
    prefix = f"rt-browser-acks-{uuid.uuid4().hex[:8]}"
    instance = Server(database[0], {"RT_REDIS_URL": redis_url, "RT_PREFIX": prefix})
    yield instance
    instance.stop()
    delete_prefix(redis_url, prefix)


def new_topic() -> str:
    return f"public.acks-{uuid.uuid4().hex[:8]}"


def on_ack_runs(server: Server) -> dict[str, int]:
    return dict(server.api.get("/test/acks/").json()["acked"])


def all_acknowledged_once(server: Server, ids: list[str], timeout: float = 30) -> None:
    """Every id ends with exactly one ``on_ack`` run, and stays so."""
    wait_until(lambda: all(on_ack_runs(server).get(i) for i in ids), timeout, "every on_ack to run")
    runs = on_ack_runs(server)
    assert {i: runs[i] for i in ids} == dict.fromkeys(ids, 1)


def settled(page: Any, server: Server, ids: list[str]) -> None:
    """Nothing owed any more (the server confirmed every ACK), and on_ack still ran once."""
    page.wait_for_function(f"() => {OWED}.length === 0")
    runs = on_ack_runs(server)
    assert {i: runs[i] for i in ids} == dict.fromkeys(ids, 1)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_cut_right_after_an_ack_message_ends_acknowledged_once(
    open_page: Any, server: Server, transport: str
) -> None:
    topic = new_topic()
    page = open_page([topic])
    connected(page, server, transport, topic)
    server.faults(cut_after_ack=True)
    message_id = server.publish(topic, "important", ack=True)
    assert wait_messages(page, topic, 1) == ["important"]
    all_acknowledged_once(server, [message_id])
    server.publish(topic, "end")
    assert wait_messages(page, topic, 2) == ["important", "end"], "shown once"
    settled(page, server, [message_id])


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_random_cuts_over_30_notifications_all_end_acknowledged_once(
    open_page: Any, server: Server, transport: str
) -> None:
    topic = new_topic()
    page = open_page([topic])
    connected(page, server, transport, topic)
    stop = threading.Event()

    def cut() -> None:
        rng = random.Random(7)
        with httpx.Client(base_url=server.http, timeout=10) as api:
            while not stop.wait(rng.uniform(0.35, 1.05)):  # every 0.7 s on average
                api.post("/_test/drop")

    cutter = threading.Thread(target=cut)
    cutter.start()
    try:
        ids = []
        for n in range(30):
            ids.append(server.publish(topic, n, ack=True))
            stop.wait(0.1)  # the publisher's pace, not a synchronisation
    finally:
        stop.set()
        cutter.join()
    server.publish(topic, "end")
    assert wait_messages(page, topic, 31) == [*range(30), "end"]
    all_acknowledged_once(server, ids)
    wait_open(page, transport)
    settled(page, server, ids)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_ack_owed_across_a_page_reload_is_sent_by_the_reloaded_page(
    open_page: Any, server: Server, transport: str
) -> None:
    topic = new_topic()
    page = open_page([topic])
    connected(page, server, transport, topic)
    # cut after the message, and nothing gets through to the server until the reload
    server.faults(cut_after_ack=True, hold=True)
    message_id = server.publish(topic, "important", ack=True)
    assert wait_messages(page, topic, 1) == ["important"]
    page.wait_for_function(f"id => {OWED}.includes(id)", arg=message_id)
    assert on_ack_runs(server).get(message_id) is None
    page.reload()
    page.wait_for_function("window.ready === true")
    assert page.evaluate(OWED) == [message_id], "kept in sessionStorage"
    server.faults()
    start(page, [transport])
    wait_open(page, transport)
    all_acknowledged_once(server, [message_id])
    server.publish(topic, "end")
    assert wait_messages(page, topic, 1) == ["end"], "the reloaded page does not show it again"
    settled(page, server, [message_id])
