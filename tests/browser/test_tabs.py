"""One connection per browser (docs/client.md, "One connection per browser"): the tabs of one
browser context share the connection of the tab that leads, over each transport; another tab
takes over when the leading one closes or freezes, with nothing lost or handled twice; and the
opt-out gives each tab its own."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.conftest import TRANSPORTS, Server, wait_until
from tests.browser.test_client import all_messages, new_topic, start, wait_messages, wait_open
from tests.servers import launch_chromium

TABS = 10
# A renderer process per tab: a tab frozen by pausing its script (see freeze()) must not stop
# the tabs that Chromium would otherwise put in the same process (same site).
PROCESS_PER_TAB = (
    "--disable-features=ProcessPerSiteUpToMainFrameThreshold",
    "--renderer-process-limit=64",
)
# Records, by the tab's own clock, when it starts leading (cleared before a takeover).
WATCH_ROLE = """() => setInterval(() => {
  if (window.client.role === "leader" && !window.ledAt) window.ledAt = Date.now();
}, 5)"""


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with launch_chromium(*PROCESS_PER_TAB) as browser:
        yield browser


def open_tab(open_page: Any, topic: str, transport: str, first: bool, **options: Any) -> Any:
    page = open_page([topic], user="alice" if first else None)  # one login: one session
    start(page, [transport], **options)
    page.evaluate(WATCH_ROLE)
    return page


def open_tabs(open_page: Any, topic: str, transport: str, count: int, **options: Any) -> list[Any]:
    pages = [open_tab(open_page, topic, transport, n == 0, **options) for n in range(count)]
    for page in pages:
        wait_open(page, transport)
    return pages


def roles(pages: list[Any]) -> list[str | None]:
    return [page.evaluate("window.client.role") for page in pages]


def live(server: Server, transport: str) -> int:
    return sum(1 for kind in server.stats()["live"] if kind == transport)


def leader_of(pages: list[Any]) -> Any:
    [leader] = [page for page, role in zip(pages, roles(pages), strict=True) if role == "leader"]
    return leader


def clear_leading(pages: list[Any]) -> float:
    for page in pages:
        page.evaluate("window.ledAt = null")
    return time.time()


def took_over_after(pages: list[Any], started: float) -> float:
    """Wait until one of ``pages`` leads; return how long after ``started`` (the wall clock,
    which is the tabs' ``Date.now()``) it began to."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for page in pages:
            led_at = page.evaluate("window.ledAt")
            if led_at:
                return float(led_at) / 1000 - started
        time.sleep(0.05)
    raise AssertionError("no tab took over")


def freeze(cdp: Any) -> None:
    """Freeze a tab: the page lifecycle's "frozen", and its script paused. Headless Chromium
    accepts the lifecycle command but keeps running a visible page's timers and events (a
    counter on a 50 ms interval keeps counting), so the script is also paused in the debugger:
    from the other tabs, that is what a frozen tab is (it runs nothing, keeps its lock, and
    its events wait)."""
    cdp.send("Page.setWebLifecycleState", {"state": "frozen"})
    cdp.send("Debugger.enable")
    cdp.send("Debugger.pause")


def thaw(cdp: Any) -> None:
    cdp.send("Debugger.resume")
    cdp.send("Debugger.disable")
    cdp.send("Page.setWebLifecycleState", {"state": "active"})


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_tabs_share_one_connection_and_survive_their_leader(
    open_page: Any, server: Server, transport: str
) -> None:
    topic = new_topic()
    tabs = open_tabs(open_page, topic, transport, TABS)
    assert sorted(roles(tabs), key=str) == ["follower"] * (TABS - 1) + ["leader"]
    wait_until(lambda: live(server, transport) == 1, what="one server connection")

    for n in range(5):
        server.publish(topic, n)
    # send() works from every tab, through the leader's connection
    answers = [
        page.evaluate("n => window.client.send('echo', n)", n) for n, page in enumerate(tabs)
    ]
    assert answers == [{"echo": n} for n in range(TABS)]

    # an eleventh tab loads (over SSE, no six-connection wall) and joins, subscribing fresh:
    # it has what was published after it joined
    eleventh = open_tab(open_page, topic, transport, first=False)
    wait_open(eleventh, transport)
    assert eleventh.evaluate("window.client.role") == "follower"
    tabs.append(eleventh)
    for n in range(5, 8):
        server.publish(topic, n)
    assert live(server, transport) <= 1  # a long-poll is live only while a poll is held
    expected = list(range(8))

    def check(pages: list[Any]) -> None:
        """Every tab has exactly what was published (the eleventh from 5 on) and then the
        sentinel: nothing lost, nothing twice."""
        sentinel = f"end-{len(expected)}"
        server.publish(topic, sentinel)
        for page in pages:
            want = [*expected, sentinel]
            assert all_messages(page, topic, sentinel) == (want[5:] if page is eleventh else want)
        expected.append(sentinel)

    check(tabs)

    # the leading tab closes mid-stream: another takes over within a second
    leader = leader_of(tabs)
    tabs.remove(leader)
    for n in range(8, 11):
        server.publish(topic, n)
    started = clear_leading(tabs)
    leader.close()
    for n in range(11, 14):
        server.publish(topic, n)
    assert took_over_after(tabs, started) < 1.0
    expected += range(8, 14)
    check(tabs)

    # the leading tab freezes mid-stream: another takes over within a second
    leader = leader_of(tabs)
    tabs.remove(leader)
    cdp = leader.context.new_cdp_session(leader)
    for n in range(14, 17):
        server.publish(topic, n)
    started = clear_leading(tabs)
    freeze(cdp)
    for n in range(17, 20):
        server.publish(topic, n)
    assert took_over_after(tabs, started) < 1.0
    expected += range(14, 20)
    check(tabs)

    # thawed, the old leader follows, and has had everything once
    thaw(cdp)
    leader.wait_for_function("window.client.role === 'follower'")
    assert roles([*tabs, leader]).count("leader") == 1
    check([leader])
    wait_until(lambda: live(server, transport) == 1, what="one server connection again")


def test_without_sharing_each_tab_has_its_own_connection(open_page: Any, server: Server) -> None:
    topic = new_topic()
    pages = open_tabs(open_page, topic, "websocket", 3, share=False)
    assert roles(pages) == [None, None, None]
    wait_until(lambda: live(server, "websocket") == 3, what="three connections")
    server.publish(topic, "end")
    for page in pages:
        assert all_messages(page, topic, "end") == ["end"]


def test_tabs_of_another_identity_do_not_share(open_page: Any, server: Server) -> None:
    topic = new_topic()
    pages = open_tabs(open_page, topic, "websocket", 2, shareKey="one")
    pages += open_tabs(open_page, topic, "websocket", 1, shareKey="two")
    assert roles(pages) == ["leader", "follower", "leader"]
    wait_until(lambda: live(server, "websocket") == 2, what="two connections")


def test_without_web_locks_the_tabs_elect_by_broadcast(
    context: Any, open_page: Any, server: Server
) -> None:
    context.add_init_script("Object.defineProperty(Navigator.prototype, 'locks', {value: null})")
    topic = new_topic()
    tabs = open_tabs(open_page, topic, "websocket", 3)
    assert tabs[0].evaluate("navigator.locks") is None
    assert sorted(roles(tabs), key=str) == ["follower", "follower", "leader"]
    wait_until(lambda: live(server, "websocket") == 1, what="one server connection")
    server.publish(topic, 0)
    leader = leader_of(tabs)
    tabs.remove(leader)
    started = clear_leading(tabs)
    leader.close()
    server.publish(topic, 1)
    assert took_over_after(tabs, started) < 1.0
    server.publish(topic, "end")
    for page in tabs:
        assert all_messages(page, topic, "end") == [0, 1, "end"]
    assert roles(tabs).count("leader") == 1


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_tab_rendered_behind_the_shared_connection_misses_nothing(
    open_page: Any, server: Server, transport: str
) -> None:
    topic = new_topic()
    first = open_page([topic], config=True)
    start(first, [transport], from_page=True)
    wait_open(first, transport)
    for n in range(3):
        server.publish(topic, n)
    # rendered now, with the position after 0..2 ({% realtime_client %}) …
    late = open_page([topic], user=None, config=True)
    for n in range(3, 5):
        server.publish(topic, n)  # … and these published before its client starts
    assert wait_messages(first, topic, 5) == [0, 1, 2, 3, 4]
    start(late, [transport], from_page=True)
    wait_open(late, transport)
    assert late.evaluate("window.client.role") == "follower"
    server.publish(topic, 5)
    server.publish(topic, "end")
    assert all_messages(late, topic, "end") == [3, 4, 5, "end"]
    assert all_messages(first, topic, "end") == [0, 1, 2, 3, 4, 5, "end"]
