"""The WebSocket consumer through Channels' communicator (in-process, in-memory backends):
delivery, resume, reset, ACKs, client messages, auth, heartbeat, limits and every bad input."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.test import Client

import realtime
from realtime.backends import get_log
from realtime.signals import message_undelivered
from realtime.testing import RealtimeCommunicator
from tests.asgi import application
from tests.conftest import use_backend
from tests.testapp import consumers

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True, params=["memory", "redis"])
def backend(request: Any) -> Any:
    """Every behaviour holds with the embedded defaults and with Redis (log, dedup store and
    the channels_redis pub/sub layer between hub and publisher). The Redis Cluster is covered
    by the stores' own tests (``BACKENDS``) and end to end by tests/test_redis_cluster.py."""
    return use_backend(request, request.param)


async def connect(app: Any = application, welcome: bool = True, **kwargs: Any) -> Any:
    client = RealtimeCommunicator(app, **kwargs)
    connected, subprotocol = await client.connect()
    assert connected, subprotocol
    if welcome:
        frame = await client.receive_frame()
        assert frame["type"] == "welcome", frame
        client.welcome = frame
    return client


async def closed_with(client: Any, code: int) -> None:
    """Await the close frame, skipping frames sent before it."""
    while True:
        output = await client.receive_output(2)
        if output["type"] == "websocket.close":
            assert output.get("code") == code, output
            return


async def publish(*args: Any, **kwargs: Any) -> str:
    return await sync_to_async(realtime.publish)(*args, **kwargs)


@sync_to_async
def make_user(name: str, **extra: Any) -> Any:
    return get_user_model().objects.create_user(name, password="pw-" + name, **extra)


@sync_to_async
def session_cookie(user: Any) -> list[tuple[bytes, bytes]]:
    client = Client()
    client.force_login(user)
    return [(b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]


# ---- delivery, resume, reset ---------------------------------------------------------------


async def test_welcome_then_live_message_with_exact_frame():
    client = await connect()
    assert client.welcome["v"] == 1
    assert client.welcome["user"] is None
    assert client.welcome["heartbeat_interval_ms"] == 25000
    subscribed = await client.subscribe("public.news")
    assert subscribed == {
        "type": "subscribed",
        "topic": "public.news",
        "epoch": subscribed["epoch"],
        "offset": 0,
        "recovered": False,
    }
    message_id = await publish("public.news", "headline", {"n": 1})
    assert await client.receive_frame() == {
        "type": "message",
        "topic": "public.news",
        "event": "headline",
        "id": message_id,
        "epoch": subscribed["epoch"],
        "offset": 1,
        "ack": False,
        "data": {"n": 1},
    }
    await client.disconnect()


async def test_resume_replays_exactly_the_missed_messages_in_order():
    client = await connect()
    subscribed = await client.subscribe("public.feed")
    for n in range(3):
        await publish("public.feed", "n", n)
    seen = [await client.receive_frame() for _ in range(3)]
    assert [m["data"] for m in seen] == [0, 1, 2]
    await client.disconnect()
    for n in range(3, 6):
        await publish("public.feed", "n", n)

    again = await connect()
    cursor = {"epoch": subscribed["epoch"], "offset": seen[-1]["offset"]}
    answer = await again.subscribe("public.feed", cursor)
    assert answer["recovered"] is True
    assert answer["offset"] == 3
    replayed = [await again.receive_frame() for _ in range(3)]
    assert [(m["offset"], m["data"]) for m in replayed] == [(4, 3), (5, 4), (6, 5)]
    await publish("public.feed", "n", 6)
    live = await again.receive_frame()
    assert (live["offset"], live["data"]) == (7, 6)
    assert await again.receive_nothing(0.1)
    await again.disconnect()


async def test_cursor_older_than_the_log_gets_reset_too_old(realtime_settings):
    realtime_settings(HISTORY_SIZE=2)
    client = await connect()
    subscribed = await client.subscribe("public.short")
    await client.disconnect()
    for n in range(5):
        await publish("public.short", "n", n)
    again = await connect()
    await again.send_frame(
        {
            "type": "subscribe",
            "topic": "public.short",
            "cursor": {"epoch": subscribed["epoch"], "offset": 1},
        }
    )
    reset = await again.receive_frame()
    assert reset == {
        "type": "reset",
        "topic": "public.short",
        "reason": "too_old",
        "epoch": subscribed["epoch"],
        "offset": 5,
    }
    answer = await again.receive_frame()
    assert (answer["type"], answer["recovered"], answer["offset"]) == ("subscribed", False, 5)
    assert await again.receive_nothing(0.1)
    await again.disconnect()


async def test_cursor_from_a_lost_epoch_gets_reset_epoch_changed():
    client = await connect()
    await client.subscribe("public.epoch")
    await publish("public.epoch", "n", 1)
    first = await client.receive_frame()
    await client.disconnect()
    await get_log().clear()  # the log lost continuity (as a Redis flush or restart does)
    again = await connect()
    await again.send_frame(
        {
            "type": "subscribe",
            "topic": "public.epoch",
            "cursor": {"epoch": first["epoch"], "offset": first["offset"]},
        }
    )
    reset = await again.receive_frame()
    assert (reset["type"], reset["reason"]) == ("reset", "epoch_changed")
    assert reset["epoch"] != first["epoch"]
    answer = await again.receive_frame()
    assert answer["recovered"] is False
    await again.disconnect()


async def test_live_gap_is_filled_from_the_log():
    """A message that reached the log but not the hub (lost between nodes) is recovered as
    soon as the next one shows the gap."""
    client = await connect()
    subscribed = await client.subscribe("public.gap")
    await get_log().append("public.gap", "lost-1", "n", "1", False, time.time())
    await publish("public.gap", "n", 2)
    frames = [await client.receive_frame() for _ in range(2)]
    assert [(f["offset"], f["id"], f["data"]) for f in frames] == [
        (1, "lost-1", 1),
        (2, frames[1]["id"], 2),
    ]
    assert frames[0]["epoch"] == subscribed["epoch"]
    await client.disconnect()


# ---- ACKs ----------------------------------------------------------------------------------


async def test_unacked_message_is_sent_again_until_acked(realtime_settings):
    realtime_settings(ACK_TIMEOUT=0.1, ACK_MAX_RETRIES=5)
    client = await connect()
    await client.subscribe("public.acks")
    message_id = await publish("public.acks", "important", {"x": 1}, ack=True)
    first = await client.receive_frame()
    assert first["ack"] is True
    retry = await client.receive_frame()
    assert retry == first
    await client.send_frame({"type": "ack", "ids": [message_id]})
    assert await client.receive_frame() == {"type": "acked", "ids": [message_id]}
    # after the ACK no further retry comes (the next one was due 0.2 s after the first)
    assert await client.receive_nothing(0.6)
    await client.disconnect()


async def test_message_reported_undelivered_after_last_retry(realtime_settings):
    realtime_settings(ACK_TIMEOUT=0.02, ACK_MAX_RETRIES=2)
    reported = asyncio.get_running_loop().create_future()

    def receiver(sender: Any, connection: Any, topic: str, message_id: str, **kw: Any) -> None:
        if not reported.done():
            reported.set_result((topic, message_id))

    message_undelivered.connect(receiver)
    try:
        client = await connect()
        await client.subscribe("public.undelivered")
        message_id = await publish("public.undelivered", "x", None, ack=True)
        assert await asyncio.wait_for(reported, 2) == ("public.undelivered", message_id)
        copies = 0
        while not await client.receive_nothing(0.05):
            copies += 1
            await client.receive_frame()
        assert copies == 3  # the first send and two retries
    finally:
        message_undelivered.disconnect(receiver)
    await client.disconnect()


# ---- client messages -----------------------------------------------------------------------


async def test_send_runs_handler_and_acks_with_its_result():
    client = await connect()
    await client.send_frame({"type": "send", "id": "m-1", "event": "echo", "data": [1, 2]})
    assert await client.receive_frame() == {"type": "ack", "id": "m-1", "result": {"echo": [1, 2]}}
    await client.disconnect()


async def test_retried_send_runs_the_handler_once():
    consumers.CALLS.clear()
    client = await connect()
    frame = {"type": "send", "id": "dup-1", "event": "count", "data": None}
    await client.send_frame(frame)
    first = await client.receive_frame()
    await client.send_frame(frame)
    second = await client.receive_frame()
    assert first == second == {"type": "ack", "id": "dup-1", "result": {"calls": 1}}
    assert consumers.CALLS == [("count", None)]
    await client.disconnect()


async def test_retried_send_after_reconnect_runs_once_for_the_same_user():
    consumers.CALLS.clear()
    user = await make_user("dora")
    headers = await session_cookie(user)
    frame = {"type": "send", "id": "dup-2", "event": "count", "data": 1}
    first = await connect(headers=headers)
    await first.send_frame(frame)
    answer = await first.receive_frame()
    await first.disconnect()
    second = await connect(headers=headers)
    await second.send_frame(frame)
    assert await second.receive_frame() == answer
    assert consumers.CALLS == [("count", 1)]
    await second.disconnect()


@pytest.mark.parametrize(
    ("event", "code"),
    [("nope", "unknown_event"), ("refuse", "rejected"), ("crash", "handler_error")],
)
async def test_send_errors_are_acked_with_a_code(event, code):
    client = await connect()
    await client.send_frame({"type": "send", "id": "e-1", "event": event})
    answer = await client.receive_frame()
    assert answer["type"] == "ack"
    assert answer["error"]["code"] == code
    await client.disconnect()


# ---- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("{not json", "invalid_json"),
        ("[1, 2]", "invalid_json"),
        ('{"type": "shout"}', "unknown_type"),
        ('{"kind": "subscribe"}', "invalid_frame"),
        ('{"type": "subscribe"}', "invalid_frame"),
        ('{"type": "subscribe", "topic": "public.x", "extra": 1}', "invalid_frame"),
        ('{"type": "subscribe", "topic": "public.x", "cursor": {"epoch": 1}}', "invalid_frame"),
        ('{"type": "ack", "ids": []}', "invalid_frame"),
        ('{"type": "send", "id": "", "event": "echo"}', "invalid_frame"),
        ('{"type": "subscribe", "topic": "bad topic!"}', "invalid_topic"),
        ('{"type": "subscribe", "topic": "secret.thing"}', "forbidden"),
        ('{"type": "subscribe", "topic": "staff.board"}', "forbidden"),
        ('{"type": "unsubscribe", "topic": "public.never"}', "not_subscribed"),
    ],
)
async def test_bad_frames_get_an_error_frame_and_the_connection_stays(text, code):
    client = await connect()
    await client.send_to(text_data=text)
    error = await client.receive_frame()
    assert (error["type"], error["code"]) == ("error", code), error
    assert error["reason"]
    await client.send_frame({"type": "send", "id": "still-1", "event": "echo", "data": 1})
    assert (await client.receive_frame())["type"] == "ack"
    await client.disconnect()


async def test_forbidden_topic_gets_no_messages():
    client = await connect()
    await client.send_frame({"type": "subscribe", "topic": "staff.board"})
    assert (await client.receive_frame())["code"] == "forbidden"
    await publish("staff.board", "secret", {"s": 1})
    assert await client.receive_nothing(0.1)
    await client.disconnect()


async def test_object_level_permission_on_user_topic():
    alice, bob = await make_user("alice"), await make_user("bob")
    client = await connect(headers=await session_cookie(alice))
    assert client.welcome["user"] == alice.pk
    ok = await client.subscribe(f"user.{alice.pk}")
    assert ok["type"] == "subscribed"
    refused = await client.subscribe(f"user.{bob.pk}")
    assert refused["code"] == "forbidden"
    await client.disconnect()


async def test_too_many_topics(realtime_settings):
    realtime_settings(MAX_TOPICS=2)
    client = await connect()
    await client.subscribe("public.a")
    await client.subscribe("public.b")
    assert (await client.subscribe("public.c"))["code"] == "too_many_topics"
    await client.disconnect()


async def test_oversized_frame_closes_4009_and_others_are_unaffected(realtime_settings):
    realtime_settings(MAX_FRAME_BYTES=1024)
    bystander = await connect()
    await bystander.subscribe("public.calm")
    client = await connect()
    await client.send_to(
        text_data='{"type":"send","id":"big","event":"echo","data":"' + "x" * 2000 + '"}'
    )
    await closed_with(client, 4009)
    await publish("public.calm", "n", 1)
    assert (await bystander.receive_frame())["data"] == 1
    await bystander.disconnect()


async def test_binary_frame_closes_4400():
    client = await connect()
    await client.send_to(bytes_data=b"\x00\x01")
    await closed_with(client, 4400)


async def test_flood_closes_4429_and_others_are_unaffected(realtime_settings):
    realtime_settings(RATE=1.0, BURST=5)
    bystander = await connect()
    await bystander.subscribe("public.calm")
    client = await connect()
    for _ in range(10):
        await client.send_to(text_data='{"type":"pong"}')
    await closed_with(client, 4429)
    await publish("public.calm", "n", 1)
    assert (await bystander.receive_frame())["data"] == 1
    await bystander.disconnect()


async def test_wrong_origin_is_refused_at_the_handshake():
    client = RealtimeCommunicator(application, origin="https://evil.example")
    connected, _ = await client.connect()
    assert not connected  # daphne answers such a rejection with HTTP 403 (see test_e2e)


async def test_unknown_protocol_version_is_refused_at_the_handshake():
    client = RealtimeCommunicator(application, subprotocols=["realtime.v9"])
    connected, _ = await client.connect()
    assert not connected


# ---- auth ----------------------------------------------------------------------------------


async def test_session_cookie_authenticates_a_browser():
    user = await make_user("erin")
    client = await connect(headers=await session_cookie(user))
    assert client.welcome["user"] == user.pk
    await client.disconnect()


async def test_client_without_origin_must_bring_a_token(realtime_settings):
    realtime_settings(AUTH_TIMEOUT=0.3)
    client = await connect(origin=None, welcome=False)
    await client.send_frame({"type": "subscribe", "topic": "public.x"})
    assert (await client.receive_frame())["code"] == "auth_required"
    await closed_with(client, 4401)


async def test_client_without_origin_is_closed_when_no_auth_arrives_in_time(realtime_settings):
    realtime_settings(AUTH_TIMEOUT=0.05)
    client = await connect(origin=None, welcome=False)
    await closed_with(client, 4401)


async def test_token_in_first_frame_authenticates():
    user = await make_user("fay")
    client = await connect(origin=None, welcome=False)
    welcome = await client.auth(realtime.make_token(user))
    assert (welcome["type"], welcome["user"]) == ("welcome", user.pk)
    assert (await client.subscribe(f"user.{user.pk}"))["type"] == "subscribed"
    await client.disconnect()


async def test_token_in_subprotocol_authenticates():
    user = await make_user("gus")
    token = realtime.make_token(user)
    client = await connect(origin=None, subprotocols=["realtime.v1", f"realtime.token.{token}"])
    assert client.welcome["user"] == user.pk
    await client.disconnect()


@pytest.mark.parametrize("kind", ["garbage", "tampered", "expired", "password_changed"])
async def test_bad_tokens_close_the_connection(kind):
    user = await make_user("hal")
    token = {
        "garbage": "not-a-token",
        "tampered": realtime.make_token(user)[:-2] + "xx",
        "expired": realtime.make_token(user, expires_in=-1),
        "password_changed": realtime.make_token(user),
    }[kind]
    if kind == "password_changed":
        user.set_password("another")
        await sync_to_async(user.save)()
    client = await connect(origin=None, welcome=False)
    await client.send_frame({"type": "auth", "token": token})
    await closed_with(client, 4419 if kind == "expired" else 4401)


async def test_expiring_token_is_warned_then_closed(realtime_settings):
    realtime_settings(TOKEN_EXPIRY_WARNING=0.2)
    user = await make_user("ivy")
    client = await connect(origin=None, welcome=False)
    await client.auth(realtime.make_token(user, expires_in=0.4))
    warning = await client.receive_frame()
    assert warning["type"] == "token-expiring"
    assert 0 < warning["expires_in_ms"] <= 400
    await closed_with(client, 4419)


async def test_refreshed_token_keeps_the_connection_open(realtime_settings):
    realtime_settings(TOKEN_EXPIRY_WARNING=0.2)
    user = await make_user("jo")
    client = await connect(origin=None, welcome=False)
    await client.auth(realtime.make_token(user, expires_in=0.4))
    assert (await client.receive_frame())["type"] == "token-expiring"
    await client.send_frame({"type": "auth", "token": realtime.make_token(user)})
    assert await client.receive_nothing(0.5)  # past the first token's expiry
    await client.send_frame({"type": "send", "id": "alive", "event": "echo", "data": 1})
    assert (await client.receive_frame())["type"] == "ack"
    await client.disconnect()


# ---- heartbeat and back-pressure -----------------------------------------------------------


async def test_silent_client_is_closed_after_heartbeat_timeout(realtime_settings):
    realtime_settings(HEARTBEAT_INTERVAL=0.1, HEARTBEAT_TIMEOUT=0.05)
    client = await connect()
    assert (await client.receive_json_from(1)) == {"type": "ping"}
    await closed_with(client, 4408)


async def test_client_that_answers_pings_stays(realtime_settings):
    realtime_settings(HEARTBEAT_INTERVAL=0.2, HEARTBEAT_TIMEOUT=0.15)
    client = await connect()
    for _ in range(4):
        assert (await client.receive_json_from(1)) == {"type": "ping"}
        await client.send_frame({"type": "pong"})
    await client.send_frame({"type": "send", "id": "alive", "event": "echo", "data": 1})
    while (frame := await client.receive_json_from(1))["type"] == "ping":
        pass
    assert frame["type"] == "ack"
    await client.disconnect()


async def test_slow_consumer_is_closed_4503_and_recovers_everything(realtime_settings):
    realtime_settings(OUTBOUND_QUEUE_SIZE=5)
    gate = asyncio.Event()
    sent: list[str] = []

    async def stalled_socket(scope: Any, receive: Any, send: Any) -> None:
        # The ASGI server's send blocks while the socket does not drain (as uvicorn's does).
        async def slow_send(message: dict[str, Any]) -> None:
            if message["type"] == "websocket.send" and len(sent) >= 2:  # welcome, subscribed
                await gate.wait()
            if message["type"] == "websocket.send":
                sent.append(message["text"])
            await send(message)

        await application(scope, receive, slow_send)

    client = await connect(app=stalled_socket)
    subscribed = await client.subscribe("public.firehose")
    for n in range(10):
        await publish("public.firehose", "n", n)
    await closed_with(client, 4503)

    again = await connect()
    await again.subscribe("public.firehose", {"epoch": subscribed["epoch"], "offset": 0})
    replayed = [await again.receive_frame() for _ in range(10)]
    assert [m["data"] for m in replayed] == list(range(10))
    await again.disconnect()


async def test_epoch_change_while_connected_resets_and_keeps_new_messages():
    client = await connect()
    subscribed = await client.subscribe("public.flushed")
    await publish("public.flushed", "n", 1)
    assert (await client.receive_frame())["offset"] == 1
    await get_log().clear()  # the log lost continuity under a live subscriber
    await publish("public.flushed", "n", 2)
    reset = await client.receive_frame()
    assert (reset["type"], reset["reason"], reset["offset"]) == ("reset", "epoch_changed", 0)
    assert reset["epoch"] != subscribed["epoch"]
    message = await client.receive_frame()
    assert (message["epoch"], message["offset"], message["data"]) == (reset["epoch"], 1, 2)
    await client.disconnect()


async def test_anonymous_connection_logs_in_with_a_token():
    user = await make_user("kit")
    client = await connect()
    assert client.welcome["user"] is None
    assert (await client.subscribe(f"user.{user.pk}"))["code"] == "forbidden"
    welcome = await client.auth(realtime.make_token(user))
    assert (welcome["type"], welcome["user"]) == ("welcome", user.pk)
    assert (await client.subscribe(f"user.{user.pk}"))["type"] == "subscribed"
    other = await make_user("lee")
    await client.send_frame({"type": "auth", "token": realtime.make_token(other)})
    assert (await client.receive_frame())["code"] == "invalid_token"
    await client.disconnect()


async def test_unreachable_log_closes_4011_so_the_client_resumes_elsewhere(realtime_settings):
    realtime_settings(REDIS_URL="redis://127.0.0.1:1/0")
    from realtime import backends

    backends.reset()
    client = await connect()
    await client.send_frame({"type": "subscribe", "topic": "public.down"})
    await closed_with(client, 4011)
