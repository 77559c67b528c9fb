"""The JS client (realtime/static/realtime/realtime.js) in headless Chromium, against a real
daphne: live delivery, reconnects without loss or duplicates, fallbacks, the page-load gap,
ACKs and client messages, on each transport."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from tests.browser.conftest import CLIENT_OPTIONS, TRANSPORTS, Server, wait_until

STORED_TRANSPORT = "JSON.parse(sessionStorage.getItem('realtime:/realtime/:transport'))?.name"


def new_topic() -> str:
    return f"public.b-{uuid.uuid4().hex[:8]}"


def start(page: Any, transports: list[str], from_page: bool = False, **options: Any) -> None:
    """Create the page's client (nothing connects before this)."""
    page.evaluate(
        "([options, how]) => start(options, how)",
        [{**CLIENT_OPTIONS, "transports": transports, **options}, {"fromPage": from_page}],
    )


def wait_open(page: Any, transport: str) -> None:
    page.wait_for_function(
        "name => window.client.state === 'open' && window.client.transport === name",
        arg=transport,
    )


def wait_state(page: Any, state: str) -> None:
    page.wait_for_function("state => window.client.state === state", arg=state)


def wait_subscribed(page: Any, topic: str, count: int = 1) -> None:
    page.wait_for_function(
        "([topic, count]) => window.events.filter("
        "e => e.type === 'subscribed' && e.topic === topic).length >= count",
        arg=[topic, count],
    )


def wait_messages(page: Any, topic: str, count: int) -> list[Any]:
    page.wait_for_function(
        "([topic, count]) => window.messages(topic).length >= count", arg=[topic, count]
    )
    return list(page.evaluate("topic => window.messages(topic)", topic))


def all_messages(page: Any, topic: str, last: Any) -> list[Any]:
    """Publish a sentinel and wait for it: whatever came before it is all there is."""
    page.wait_for_function(
        "([topic, last]) => window.messages(topic).includes(last)", arg=[topic, last]
    )
    return list(page.evaluate("topic => window.messages(topic)", topic))


def connected(page: Any, server: Server, transport: str, topic: str) -> None:
    start(page, [transport])
    wait_open(page, transport)
    wait_subscribed(page, topic)


# ---- delivery -----------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_live_messages_arrive_in_order(open_page: Any, server: Server, transport: str) -> None:
    topic = new_topic()
    page = open_page([topic])
    connected(page, server, transport, topic)
    for n in range(5):
        server.publish(topic, n)
    assert wait_messages(page, topic, 5) == [0, 1, 2, 3, 4]
    assert page.evaluate("window.log[0]") == ["state", "connecting"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_reconnect_after_server_drop_loses_and_repeats_nothing(
    open_page: Any, server: Server, transport: str
) -> None:
    topic = new_topic()
    page = open_page([topic])
    connected(page, server, transport, topic)
    for n in range(3):
        server.publish(topic, n, ack=n % 2 == 0)
    wait_messages(page, topic, 3)

    wait_until(lambda: transport in server.stats()["live"], what="a live connection")
    server.faults(hold=True)  # the server is away: reconnects are refused for now
    server.drop()
    wait_state(page, "reconnecting")
    for n in range(3, 6):
        server.publish(topic, n, ack=n % 2 == 0)  # missed while disconnected
    server.faults()
    wait_open(page, transport)
    for n in range(6, 8):
        server.publish(topic, n, ack=True)
    server.publish(topic, "end")
    assert all_messages(page, topic, "end") == [*range(8), "end"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_duplicate_frames_reach_the_handler_once(
    open_page: Any, server: Server, transport: str
) -> None:
    topic = new_topic()
    page = open_page([topic])
    server.faults(duplicate=True)
    connected(page, server, transport, topic)
    for n in range(4):
        server.publish(topic, n, ack=n == 0)
    server.publish(topic, "end")
    assert all_messages(page, topic, "end") == [0, 1, 2, 3, "end"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_messages_that_ask_for_it_are_acknowledged(
    open_page: Any, server: Server, transport: str
) -> None:
    topic = new_topic()
    page = open_page([topic])
    connected(page, server, transport, topic)
    message_id = server.publish(topic, "important", ack=True)
    wait_messages(page, topic, 1)
    offset = page.evaluate("topic => window.events.find(e => e.type === 'message').offset", topic)
    if transport == "longpoll":
        # implicit: the next poll starts after the message
        covered = re.compile(rf"{re.escape(topic)}~[^~,]+~{offset}(,|$)")
        wait_until(lambda: any(covered.search(c) for c in server.stats()["polls"]), what="poll")
        return

    def acked() -> bool:
        frames = server.stats()["client_frames"]
        return any(f.get("type") == "ack" and message_id in f.get("ids", ()) for f in frames)

    wait_until(acked, what="an ack frame")
    if transport == "sse":
        assert any(server.stats()["post_headers"]), "the ACK named its SSE stream"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_reset_reaches_the_topic_handler(open_page: Any, server: Server, transport: str) -> None:
    topic = new_topic()
    server.publish(topic, "old")
    page = open_page([topic])
    # a position in an epoch the server never had: it cannot replay from there
    start(page, [transport], cursors=f"{topic}~not-an-epoch~3")
    page.wait_for_function(
        "topic => window.events.some(e => e.type === 'reset' && e.topic === topic)", arg=topic
    )
    reset = page.evaluate("() => window.events.find(e => e.type === 'reset')")
    assert reset["reason"] == "epoch_changed"
    server.publish(topic, "new")
    assert "new" in all_messages(page, topic, "new")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_unsubscribe_stops_one_topic(open_page: Any, server: Server, transport: str) -> None:
    kept, dropped = new_topic(), new_topic()
    page = open_page([kept, dropped])
    connected(page, server, transport, kept)
    wait_subscribed(page, dropped)
    page.evaluate("topic => window.unsubscribe[topic]()", dropped)
    if transport == "websocket":
        wait_until(
            lambda: {"type": "unsubscribe", "topic": dropped} in server.stats()["client_frames"],
            what="unsubscribe",
        )
    else:  # a new stream / poll without the topic
        wait_subscribed(page, kept, 2) if transport == "sse" else None
    server.publish(dropped, "unwanted")
    server.publish(kept, "end")
    assert all_messages(page, kept, "end")[-1] == "end"
    assert page.evaluate("topic => window.messages(topic)", dropped) == []


@pytest.mark.parametrize(
    "transport",
    ["websocket", "sse", "longpoll"],
)
def test_a_forbidden_topic_is_refused_and_the_others_work(
    open_page: Any, server: Server, transport: str
) -> None:
    allowed, forbidden = new_topic(), "staff.secret"
    page = open_page([allowed, forbidden])
    start(page, [transport])
    page.wait_for_function(
        "t => window.events.some(e => e.type === 'error' && e.topic === t)", arg=forbidden
    )
    error = page.evaluate("() => window.events.find(e => e.type === 'error')")
    assert error["code"] == "forbidden"
    wait_open(page, transport)
    wait_subscribed(page, allowed)
    server.publish(allowed, "end")
    assert all_messages(page, allowed, "end") == ["end"]
    # The server answers a connection's frames in order: once a `send` is answered, the
    # answer to anything the client sent about the refused topic before it has come too.
    answer = page.evaluate("() => window.client.send('no-such-event').catch(e => e.code)")
    assert answer == "unknown_event"
    errors = page.evaluate("() => window.log.filter(entry => entry[0] === 'error')")
    assert errors == [["error", "forbidden", forbidden]], "one refusal, one error event"


# ---- the page-load gap ------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_render_time_cursor_delivers_what_was_published_before_subscribing(
    open_page: Any, server: Server, transport: str
) -> None:
    topic = new_topic()
    server.publish(topic, "before render")
    page = open_page([topic], config=True)  # {% realtime_client %} captures the position
    server.publish(topic, "after render 1")
    server.publish(topic, "after render 2")
    start(page, [transport], from_page=True)
    wait_open(page, transport)
    server.publish(topic, "live")
    assert all_messages(page, topic, "live") == ["after render 1", "after render 2", "live"]


def test_batch_frames_are_unpacked_in_order(open_page: Any, server: Server) -> None:
    server.faults(batch=True)
    topic = new_topic()
    page = open_page([topic], config=True)
    for n in range(3):  # replayed after `subscribed`: the four frames come as one `batch`
        server.publish(topic, n)
    start(page, ["websocket"], from_page=True)
    wait_open(page, "websocket")
    server.publish(topic, "live")
    assert all_messages(page, topic, "live") == [0, 1, 2, "live"]
    assert server.stats()["batches"] >= 1


def test_without_a_render_time_cursor_the_gap_is_lost(open_page: Any, server: Server) -> None:
    # The control for the test above: the same steps with no position to resume from.
    topic = new_topic()
    page = open_page([topic])
    server.publish(topic, "after render")
    connected(page, server, "websocket", topic)
    server.publish(topic, "live")
    assert all_messages(page, topic, "live") == ["live"]


# ---- fallback and upgrade ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("faults", "expected"),
    [
        ({"block_ws": True}, "sse"),
        ({"silent_ws": True}, "sse"),
        ({"mute_ws": True}, "sse"),
        ({"block_ws": True, "block_sse": True}, "longpoll"),
        ({"silent_ws": True, "silent_sse": True}, "longpoll"),
    ],
    ids=["ws-blocked", "ws-silent", "ws-mute-after-welcome", "ws+sse-blocked", "ws+sse-silent"],
)
def test_falls_back_to_a_transport_that_delivers(
    open_page: Any, server: Server, faults: dict[str, bool], expected: str
) -> None:
    topic = new_topic()
    page = open_page([topic])
    server.faults(**faults)
    start(page, TRANSPORTS)
    wait_open(page, expected)
    wait_subscribed(page, topic)
    server.publish(topic, "end")
    assert all_messages(page, topic, "end") == ["end"]
    assert page.evaluate(STORED_TRANSPORT) == expected  # remembered for this tab


def test_transport_change_midstream_loses_and_repeats_nothing(
    open_page: Any, server: Server
) -> None:
    topic = new_topic()
    page = open_page([topic])
    start(page, TRANSPORTS)
    wait_open(page, "websocket")
    wait_subscribed(page, topic)
    for n in range(3):
        server.publish(topic, n, ack=True)
    wait_messages(page, topic, 3)
    server.faults(block_ws=True)  # a proxy starts refusing WebSockets
    server.drop()
    for n in range(3, 6):
        server.publish(topic, n, ack=True)
    wait_open(page, "sse")
    for n in range(6, 8):
        server.publish(topic, n)
    assert all_messages(page, topic, 7) == list(range(8))
    resumed = f"{topic}~"
    assert any(c.startswith(resumed) for c in server.stats()["streams"]), "SSE resumed"


def test_upgrades_back_to_websocket_when_it_works_again(open_page: Any, server: Server) -> None:
    topic = new_topic()
    page = open_page([topic])
    server.faults(block_ws=True)
    start(page, TRANSPORTS, upgradeAfterMs=1500)
    wait_open(page, "sse")
    wait_subscribed(page, topic)
    server.faults()  # WebSockets pass again
    server.publish(topic, 0)
    page.wait_for_function("() => window.client.transport === 'websocket'")
    server.publish(topic, 1)
    assert all_messages(page, topic, 1) == [0, 1]
    assert page.evaluate(STORED_TRANSPORT) is None, "the best transport needs no memory"
    assert page.evaluate("window.log.filter(e => e[0] === 'state')") == [
        ["state", "connecting"],
        ["state", "open"],
    ], "the upgrade did not interrupt the connection"


def test_a_later_client_starts_with_the_transport_that_worked(
    open_page: Any, server: Server
) -> None:
    topic = new_topic()
    page = open_page([topic])
    server.faults(block_ws=True)
    start(page, TRANSPORTS)
    wait_open(page, "sse")
    page.evaluate("() => window.client.close()")
    server.faults(reset_stats=True)
    page.reload()  # the same tab: sessionStorage survives
    page.wait_for_function("window.ready === true")
    start(page, TRANSPORTS)
    wait_open(page, "sse")
    assert server.stats()["ws_opened"] == 0, "did not try the WebSocket first again"


def test_a_pinned_client_does_not_steer_the_others(open_page: Any, server: Server) -> None:
    page = open_page([new_topic()])
    start(page, ["longpoll"])
    wait_open(page, "longpoll")
    page.wait_for_function("() => window.client.transportProven")
    page.evaluate("() => window.client.close()")
    start(page, TRANSPORTS)
    wait_open(page, "websocket")


def test_a_failed_upgrade_keeps_the_working_transport(open_page: Any, server: Server) -> None:
    topic = new_topic()
    page = open_page([topic])
    server.faults(silent_ws=True)
    start(page, TRANSPORTS, upgradeAfterMs=300)
    wait_open(page, "sse")
    wait_subscribed(page, topic)
    # the first try, then two upgrade probes that never hear `welcome`
    wait_until(lambda: server.stats()["ws_attempts"] >= 3, timeout=15, what="upgrade probes")
    server.publish(topic, "end")
    assert all_messages(page, topic, "end") == ["end"]
    assert page.evaluate("window.client.transport") == "sse"
    states = page.evaluate("window.log.filter(e => e[0] === 'state').map(e => e[1])")
    assert states == ["connecting", "open"], "the failed probes did not disturb the connection"
    assert server.stats()["sse_opened"] == 1


# ---- waking up --------------------------------------------------------------------------------


def _stuck_in_backoff(page: Any, server: Server, topic: str) -> None:
    """Connected on WebSocket, then cut off, with a 60 s backoff ahead."""
    page.evaluate("() => { Math.random = () => 0.999; }")  # the backoff's longest delay
    start(page, ["websocket"], backoffMinMs=60_000, backoffMaxMs=60_000)
    wait_open(page, "websocket")
    wait_subscribed(page, topic)
    server.faults(hold=True)
    server.drop()
    wait_state(page, "reconnecting")
    server.publish(topic, "missed")
    server.faults()


def test_reconnects_at_once_when_the_network_comes_back(
    open_page: Any, context: Any, server: Server
) -> None:
    topic = new_topic()
    page = open_page([topic])
    _stuck_in_backoff(page, server, topic)
    context.set_offline(True)
    context.set_offline(False)  # the `online` event
    page.wait_for_function("() => window.client.state === 'open'", timeout=5000)
    assert all_messages(page, topic, "missed") == ["missed"]


def test_reconnects_at_once_when_the_tab_becomes_visible(open_page: Any, server: Server) -> None:
    topic = new_topic()
    page = open_page([topic])
    _stuck_in_backoff(page, server, topic)
    page.evaluate("() => document.dispatchEvent(new Event('visibilitychange'))")
    page.wait_for_function("() => window.client.state === 'open'", timeout=5000)
    assert all_messages(page, topic, "missed") == ["missed"]


def test_a_websocket_that_goes_half_open_twice_is_left_within_the_connect_timeout(
    open_page: Any, server: Server
) -> None:
    # The first socket goes half-open after proving itself: found by the heartbeat's silence
    # limit (1.5 s + 1.5 s here). The next one passes `welcome` and then goes half-open too:
    # its subscribe is never answered, so it is left after `connectTimeoutMs`, not after
    # another silence limit, and SSE takes over.
    topic = new_topic()
    page = open_page([topic])
    start(page, ["websocket", "sse"], connectTimeoutMs=1000)
    wait_open(page, "websocket")
    wait_subscribed(page, topic)
    page.evaluate(
        "() => { window.stamps = [];"
        " window.client.on('state', (s) => window.stamps.push([s, performance.now()])); }"
    )
    server.faults(mute_ws=True)
    wait_open(page, "sse")
    stamps = page.evaluate("window.stamps")
    assert [state for state, _ in stamps] == ["reconnecting", "open", "reconnecting", "open"]
    assert server.stats()["ws_opened"] == 2
    open_on_a_mute_socket = stamps[2][1] - stamps[1][1]
    assert 900 <= open_on_a_mute_socket < 2500, stamps  # the silence limit would be 3000
    server.publish(topic, "end")
    assert all_messages(page, topic, "end") == ["end"]


def test_answers_pings(open_page: Any, server: Server) -> None:
    topic = new_topic()
    page = open_page([topic])
    connected(page, server, "websocket", topic)
    wait_until(lambda: {"type": "pong"} in server.stats()["client_frames"], what="a pong")
    assert page.evaluate("window.client.state") == "open"
    assert server.stats()["ws_opened"] == 1


@pytest.mark.parametrize("transport", ["websocket", "sse"])
def test_disconnected_by_an_operator_closes_for_good(
    open_page: Any, server: Server, transport: str
) -> None:
    # SSE learns it from the stream's final `close` event (4403), as WebSocket from its close
    topic = new_topic()
    page = open_page([topic])
    connected(page, server, transport, topic)
    assert server.disconnect() >= 1
    wait_state(page, "closed")
    opened = server.stats()["sse_opened" if transport == "sse" else "ws_opened"]
    assert opened == 1, "the client must not reconnect after 4403"


def test_sse_acks_of_a_burst_stay_under_a_small_rate_limit(chromium: Any, database: Any) -> None:
    # A server of its own, whose buckets hold 5 requests and refill 2 a second: ACK POSTs of
    # a burst of `ack=True` messages gather into few POSTs instead of one per 20 ms.
    server = Server(database[0], {"RT_RATE": "2", "RT_BURST": "5"})
    context = chromium.new_context(base_url=server.url)
    try:
        page = context.new_page()
        page.goto("/_test/login/alice/")
        topic = new_topic()
        page.goto(f"/_test/page/?topic={topic}")
        page.wait_for_function("window.ready === true")
        connected(page, server, "sse", topic)
        ids = {server.publish(topic, n, ack=True) for n in range(30)}

        def acked() -> set[str]:
            frames = server.stats()["client_frames"]
            return {i for f in frames if f.get("type") == "ack" for i in f["ids"]}

        wait_until(lambda: ids <= acked(), what="every message acknowledged")
        assert server.stats()["rate_limited"] == 0
        assert page.evaluate("window.log.filter(e => e[0] === 'state').map(e => e[1])") == [
            "connecting",
            "open",
        ]
    finally:
        context.close()
        server.stop()


# ---- tokens -----------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_refused_token_is_renewed_from_token_url(
    open_page: Any, server: Server, transport: str
) -> None:
    topic = new_topic()
    page = open_page([topic])
    start(page, [transport], token="not.a.valid-token", tokenUrl="/realtime/token/")
    wait_open(page, transport)
    wait_subscribed(page, topic)
    server.publish(topic, "end")
    assert all_messages(page, topic, "end") == ["end"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_refused_token_without_token_url_closes_for_good(
    open_page: Any, server: Server, transport: str
) -> None:
    page = open_page([new_topic()], user=None)
    start(page, [transport], token="not.a.valid-token")
    wait_state(page, "closed")
    assert page.evaluate("window.log.some(e => e[0] === 'state' && e[1] === 'open')") is False


# ---- state ------------------------------------------------------------------------------------


def test_the_state_is_connecting_from_construction(open_page: Any, server: Server) -> None:
    page = open_page([new_topic()])
    states = page.evaluate(
        """() => {
             const { Realtime } = window.realtime;
             const auto = new Realtime();
             const manual = new Realtime({ autoConnect: false });
             const seen = [auto.state, manual.state];
             auto.close();
             return seen;
           }"""
    )
    assert states == ["connecting", "closed"]
    start(page, ["websocket"])
    wait_open(page, "websocket")
    # the first state event still says `connecting`, for listeners added after construction
    assert page.evaluate("window.log.filter(e => e[0] === 'state')") == [
        ["state", "connecting"],
        ["state", "open"],
    ]


# ---- client messages --------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["sse", "longpoll"])
def test_a_hundred_sends_at_once_stay_under_the_rate_limit(
    open_page: Any, server: Server, transport: str
) -> None:
    # Polls, stream opens and send POSTs all spend the user's RATE/BURST bucket (20/s, 60):
    # a user of their own each, so that no other test has spent from it.
    topic = new_topic()
    page = open_page([topic], user={"sse": "bob", "longpoll": "staff"}[transport])
    connected(page, server, transport, topic)
    results = page.evaluate(
        "() => Promise.all([...Array(100).keys()].map(n => window.client.send('echo', n)))"
    )
    assert results == [{"echo": n} for n in range(100)]
    assert server.stats()["rate_limited"] == 0
    states = page.evaluate("window.log.filter(e => e[0] === 'state').map(e => e[1])")
    assert states == ["connecting", "open"], "the connection never broke"
    server.publish(topic, "end")
    assert all_messages(page, topic, "end") == ["end"]


@pytest.mark.parametrize("auth", ["cookie", "token"])
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_send_resolves_with_the_handler_result(
    open_page: Any, server: Server, transport: str, auth: str
) -> None:
    topic = new_topic()
    page = open_page([topic], config=auth == "token")  # the rendered config has a token
    start(page, [transport], from_page=auth == "token")
    wait_open(page, transport)
    result = page.evaluate("() => window.client.send('echo', {n: 1})")
    assert result == {"echo": {"n": 1}}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_send_rejects_with_the_server_error(open_page: Any, server: Server, transport: str) -> None:
    page = open_page([new_topic()])
    start(page, [transport])
    wait_open(page, transport)
    codes = page.evaluate(
        """async () => Promise.all(['refuse', 'no-such-event'].map(
             (event) => window.client.send(event, null).then(() => 'ok', (e) => e.code)))"""
    )
    assert codes == ["rejected", "unknown_event"]


def test_send_times_out(open_page: Any, server: Server) -> None:
    page = open_page([new_topic()])
    server.faults(hold=True)
    start(page, ["websocket"])
    code = page.evaluate(
        "() => window.client.send('echo', 1, {timeoutMs: 300}).then(() => 'ok', (e) => e.code)"
    )
    assert code == "timeout"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sends_made_offline_go_out_in_order_once_connected(
    open_page: Any, server: Server, transport: str
) -> None:
    topic = new_topic()
    page = open_page([topic])
    connected(page, server, transport, topic)
    server.faults(hold=True)
    server.drop()
    wait_state(page, "reconnecting")
    page.evaluate(
        "() => { window.results = Promise.all([0, 1, 2].map(n => window.client.send('echo', n))) }"
    )
    server.faults()
    assert page.evaluate("() => window.results") == [{"echo": 0}, {"echo": 1}, {"echo": 2}]
    sent = [f["data"] for f in server.stats()["client_frames"] if f.get("type") == "send"]
    assert sent == [0, 1, 2]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_send_answered_in_progress_is_sent_again_until_it_gets_the_answer(
    open_page: Any, server: Server, transport: str
) -> None:
    page = open_page([new_topic()])
    start(page, [transport])
    wait_open(page, transport)
    server.faults(in_progress=True)  # as while another attempt with the id runs the handler
    result = page.evaluate("() => window.client.send('stamp')")
    stats = server.stats()
    sends = [f for f in stats["client_frames"] if f.get("type") == "send"]
    assert len(sends) == 2 and len({f["id"] for f in sends}) == 1, sends
    assert [a["result"] for a in stats["answers"]] == [result], "in_progress is not the answer"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_retried_send_keeps_its_id_and_runs_once(
    open_page: Any, server: Server, transport: str
) -> None:
    page = open_page([new_topic()])
    start(page, [transport])
    wait_open(page, transport)
    server.faults(lose_ack=True)  # the first answer never reaches the browser
    result = page.evaluate("() => window.client.send('stamp')")
    stats = server.stats()
    sends = [f for f in stats["client_frames"] if f.get("type") == "send"]
    assert len(sends) >= 2 and len({f["id"] for f in sends}) == 1, sends
    stamps = {a["result"]["stamp"] for a in stats["answers"]}
    assert stamps == {result["stamp"]}, "the handler ran once; the retry got its answer"
