"""Conformance to docs/protocol.md, driven by the document.

First the tables: the client and server frame types (with their fields), the error codes and
the close codes the document lists must be exactly those the code accepts and can emit, and
every HTTP status the code answers must be named. Then one test per normative sentence,
named after it, over a real daphne node and `websockets` / httpx clients. Sentences proved
better elsewhere are left to those tests (tests/test_consumer.py, test_e2e.py,
test_http_transports.py)."""

from __future__ import annotations

import ast
import asyncio
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets

import realtime
from realtime import exceptions, protocol
from tests import protocol_doc
from tests.servers import Client, Daphne, SSEReader

pytestmark = [pytest.mark.e2e, pytest.mark.clean_server_log]

PACKAGE = Path(realtime.__file__).resolve().parent
CRASH = "Handler for event 'crash' failed"  # tests.testapp's handler that raises on purpose


# ---- the tables against the code ---------------------------------------------------------------


def _literals(pattern: str) -> set[str]:
    """Strings of ``realtime/`` (its Python source, parsed) that fill ``pattern``'s group:
    dict literals such as ``{"type": "welcome"}`` and ``{"code": "handler_error"}``."""
    found: set[str] = set()
    key = pattern
    for path in PACKAGE.rglob("*.py"):
        if path.name == "testing.py":  # builds client frames for users' tests
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Dict):
                for k, v in zip(node.keys, node.values, strict=True):
                    if (
                        isinstance(k, ast.Constant)
                        and k.value == key
                        and isinstance(v, ast.Constant)
                        and isinstance(v.value, str)
                    ):
                        found.add(v.value)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                # pre-encoded frames such as '{"type":"ping"}'
                found |= set(re.findall(rf'^\{{"{key}":"([a-z_-]+)"', node.value))
    return found


def _error_classes() -> set[type[exceptions.RealtimeError]]:
    seen: set[type[exceptions.RealtimeError]] = set()
    todo = [exceptions.RealtimeError]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub.__module__ == "realtime.exceptions" and sub not in seen:
                seen.add(sub)
                todo.append(sub)
    return seen


# Raised by publish() in the caller's process, never sent to a client.
PYTHON_ONLY = {"publish_failed", "publish_timeout"}


def test_client_types_table_is_what_the_parser_accepts():
    documented = protocol_doc.client_types()
    assert set(documented) == set(protocol.CLIENT_TYPES)
    for kind, (required, optional) in protocol._FIELDS.items():
        assert documented[kind] == set(required | optional), kind


def test_server_types_table_is_what_the_code_sends():
    sent = _literals("type") - set(protocol.CLIENT_TYPES - {"ack"})
    sent |= {"message"}  # protocol.message_frame builds it around the payload
    sent -= {"websocket.accept", "websocket.send", "websocket.close", "realtime.message"}
    sent -= {"http"}  # the ASGI scope type of the hooks object the HTTP transports build
    sent = {kind for kind in sent if "." not in kind}
    assert set(protocol_doc.server_types()) == sent


def test_error_code_table_is_every_code_the_code_can_send():
    codes = {cls.code for cls in _error_classes()} - PYTHON_ONLY
    codes |= _literals("code")
    assert protocol_doc.error_codes() == codes


def test_close_code_table_is_the_close_code_enum():
    # 1006 is what a client sees when no close frame came: the server never sends it
    assert protocol_doc.close_codes() - {1006} == set(exceptions.CloseCode)
    assert all(code.reason or code is exceptions.CloseCode.NORMAL for code in exceptions.CloseCode)


def test_every_http_status_the_code_answers_is_documented():
    statuses = set(exceptions.HTTP_STATUSES.values()) | {200, 201, 204, 503}
    assert statuses <= protocol_doc.http_statuses()


def test_every_error_that_ends_a_connection_has_a_documented_close_code():
    for cls in exceptions.CLOSE_CODES:
        assert exceptions.close_code_for(cls("x")) in protocol_doc.close_codes(), cls


# ---- one test per sentence, over a real daphne ------------------------------------------------


@pytest.fixture(scope="module")
def node_settings() -> dict[str, str]:
    return {"RT_SSE_KEEPALIVE": "0.5"}


@pytest.fixture(scope="module")
def node(database, node_env) -> Iterator[Daphne]:
    server = Daphne(database[0], node_env)
    yield server
    server.stop()
    server.assert_no_tracebacks(allow=(CRASH,))


def topic() -> str:
    return f"public.conf-{uuid.uuid4().hex[:8]}"


async def token_client(node: Daphne, token: str) -> Client:
    return await Client.connect(
        node, origin=False, subprotocols=["realtime.v1", f"realtime.token.{token}"]
    )


async def test_a_client_that_offers_no_subprotocol_gets_version_1(node):
    ws = await websockets.connect(node.url, origin=node.origin, open_timeout=10)  # type: ignore[arg-type]
    welcome = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert (welcome["type"], welcome["v"]) == ("welcome", 1)
    assert ws.subprotocol is None
    await ws.close()


async def test_only_other_realtime_versions_are_refused_with_http_403(node):
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(
            node.url,
            origin=node.origin,  # type: ignore[arg-type]
            subprotocols=["realtime.v2", "realtime.v9"],  # type: ignore[list-item]
        )
    assert refused.value.response.status_code == 403


async def test_welcome_carries_limits(node):
    client = await Client.connect(node)
    welcome = client.welcome
    documented = protocol_doc.server_types()["welcome"]
    timing = ("heartbeat_interval_ms", "heartbeat_timeout_ms")
    for field in ("v", "connection_id", "user", *timing):
        assert f"`{field}`" in documented and field in welcome
    limits_cell = documented.split("`limits`", 1)[1].split("`batch`", 1)[0]
    limits = set(re.findall(r"`([a-z_]+)`", limits_cell))
    assert set(welcome["limits"]) == limits == {"max_frame_bytes", "max_topics", "rate", "burst"}
    # `batch` only for a client that offered realtime.batch (see the batch tests below)
    assert set(welcome) == protocol_doc.welcome_fields() - {"batch"}
    assert protocol_doc.welcome_fields() == {
        "type",
        "v",
        "connection_id",
        "user",
        *timing,
        "limits",
        "batch",
    }
    assert welcome["user"] is None  # anonymous: "user (id or null)"
    await client.close()


async def test_binary_frame_closes_4400(node):
    client = await Client.connect(node)
    await client.ws.send(b'{"type":"pong"}')
    assert await client.close_code() == 4400


async def test_anonymous_connection_that_sends_auth_gets_a_second_welcome_with_its_user(
    node, database
):
    client = await Client.connect(node)
    assert client.welcome["user"] is None
    await client.send({"type": "auth", "token": database[1]["alice"]["token"]})
    again = await client.receive()
    assert (again["type"], again["user"]) == ("welcome", database[1]["alice"]["pk"])
    await client.close()


async def test_auth_with_a_token_for_another_user_is_answered_invalid_token(node, database):
    client = await token_client(node, database[1]["alice"]["token"])
    await client.send({"type": "auth", "token": database[1]["bob"]["token"]})
    answer = await client.receive()
    assert (answer["type"], answer["code"]) == ("error", "invalid_token")
    # "the connection stays open"
    assert (await client.subscribe(topic()))["type"] == "subscribed"
    await client.close()


async def test_without_origin_every_frame_but_auth_is_answered_auth_required(node):
    client = await Client.connect(node, origin=False)
    await client.send({"type": "subscribe", "topic": topic()})
    answer = await client.receive()
    assert (answer["type"], answer["code"]) == ("error", "auth_required")
    await client.close()


async def test_subscribed_without_cursor_is_not_recovered_and_starts_at_the_head(node, use_redis):
    name = topic()
    for n in range(3):
        await realtime.apublish(name, "n", n)
    client = await Client.connect(node)
    subscribed = await client.subscribe(name)
    assert set(subscribed) == {"type", "topic", "epoch", "offset", "recovered"}
    assert (subscribed["topic"], subscribed["offset"], subscribed["recovered"]) == (name, 3, False)
    await client.close()


async def test_subscribed_with_an_honoured_cursor_is_recovered_and_replays_the_gap(node, use_redis):
    name = topic()
    ids = [await realtime.apublish(name, "n", n) for n in range(3)]
    client = await Client.connect(node)
    first = await client.subscribe(name)
    answer = await client.subscribe(name, {"epoch": first["epoch"], "offset": 1})
    assert (answer["recovered"], answer["offset"]) == (True, 1)
    assert [(await client.receive())["id"] for _ in range(2)] == ids[1:]
    await client.close()


async def test_message_carries_the_documented_fields_and_offsets_increase_by_exactly_1(
    node, use_redis
):
    name = topic()
    client = await Client.connect(node)
    subscribed = await client.subscribe(name)
    for n in range(3):
        await realtime.apublish(name, "evt", {"n": n}, ack=n == 1)
    messages = [await client.receive() for _ in range(3)]
    documented = set(re.findall(r"`([a-z_]+)`", protocol_doc.server_types()["message"]))
    for message in messages:
        assert set(message) == documented | {"type"}
        assert message["epoch"] == subscribed["epoch"]
    assert [m["offset"] for m in messages] == [1, 2, 3]
    assert [m["ack"] for m in messages] == [False, True, False]
    await client.close()


async def test_unsubscribe_is_answered_unsubscribed_and_stops_the_topic(node, use_redis):
    name = topic()
    client = await Client.connect(node)
    await client.subscribe(name)
    await client.send({"type": "unsubscribe", "topic": name})
    assert await client.receive() == {"type": "unsubscribed", "topic": name}
    await realtime.apublish(name, "n", 1)
    with pytest.raises(TimeoutError):
        await client.receive(timeout=0.5)
    await client.close()


async def test_unsubscribe_of_a_topic_not_held_is_not_subscribed_with_the_topic_as_ref(node):
    name = topic()
    client = await Client.connect(node)
    await client.send({"type": "unsubscribe", "topic": name})
    answer = await client.receive()
    assert (answer["type"], answer["code"], answer["ref"]) == ("error", "not_subscribed", name)
    await client.close()


@pytest.mark.parametrize(
    ("ids", "valid"),
    [
        ([], False),
        (["a"], True),
        ([f"m{n}" for n in range(100)], True),
        ([f"m{n}" for n in range(101)], False),
    ],
)
async def test_ack_takes_1_to_100_message_ids(node, ids, valid):
    client = await Client.connect(node)
    await client.send({"type": "ack", "ids": ids})
    await client.send({"type": "unsubscribe", "topic": "public.ack-barrier"})
    answer = await client.receive()
    if valid:  # acknowledging unknown ids is no error: `acked`, then the barrier's answer
        assert answer == {"type": "acked", "ids": ids}
        assert (await client.receive()).get("ref") == "public.ack-barrier"
    else:
        assert (answer["type"], answer["code"]) == ("error", "invalid_frame")
        assert (await client.receive()).get("ref") == "public.ack-barrier"
    await client.close()


@pytest.mark.parametrize(("length", "valid"), [(1, True), (64, True), (65, False)])
async def test_send_id_is_a_client_chosen_string_of_1_to_64_chars(node, length, valid):
    client = await Client.connect(node)
    message_id = f"{uuid.uuid4().hex}{'x' * 64}"[:length]
    await client.send({"type": "send", "id": message_id, "event": "echo", "data": 1})
    answer = await client.receive()
    if valid:
        assert answer == {"type": "ack", "id": message_id, "result": {"echo": 1}}
    else:
        assert (answer["type"], answer["code"]) == ("error", "invalid_frame")
    await client.close()


@pytest.mark.parametrize(("event", "code"), [("nope", "unknown_event"), ("refuse", "rejected")])
async def test_ack_error_carries_code_and_reason(node, event, code):
    client = await Client.connect(node)
    message_id = f"e-{uuid.uuid4().hex[:8]}"
    await client.send({"type": "send", "id": message_id, "event": event})
    answer = await client.receive()
    assert (answer["type"], answer["id"], answer["error"]["code"]) == ("ack", message_id, code)
    assert set(answer["error"]) == {"code", "reason"}
    if code == "rejected":
        assert answer["error"]["reason"] == "not today"  # "reason is the handler's"
    await client.close()


@pytest.mark.clean_server_log(allow=(CRASH,))
async def test_handler_error_details_are_in_the_server_log_not_sent(node):
    mark = node.mark()
    client = await Client.connect(node)
    await client.send({"type": "send", "id": f"c-{uuid.uuid4().hex[:8]}", "event": "crash"})
    answer = await client.receive()
    assert answer["error"]["code"] == "handler_error"
    assert "boom" not in json.dumps(answer) and "ZeroDivision" not in json.dumps(answer)
    await client.close()
    # the node's log is read by a thread, which may not have read the traceback yet
    for _ in range(200):  # at most ~10 s
        if any("ZeroDivisionError: boom" in line for line in node.log[mark:]):
            break
        await asyncio.sleep(0.05)
    assert any("ZeroDivisionError: boom" in line for line in node.log[mark:])


async def test_error_frame_leaves_the_connection_open(node):
    client = await Client.connect(node)
    await client.send({"type": "subscribe", "topic": "no such!"})
    error = await client.receive()
    assert set(error) <= {"type", "code", "reason", "ref"}
    assert (error["type"], error["code"], error["ref"]) == ("error", "invalid_topic", "no such!")
    assert (await client.subscribe(topic()))["type"] == "subscribed"
    await client.close()


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("[1]", "invalid_json"),
        ("{oops", "invalid_json"),
        ('{"type":"subscribe","topic":"public.x","extra":1}', "invalid_frame"),
        ('{"type":"subscribe"}', "invalid_frame"),
        ('{"type":"teleport"}', "unknown_type"),
    ],
)
async def test_error_codes_of_bad_frames_over_a_real_socket(node, text, code):
    client = await Client.connect(node)
    await client.ws.send(text)
    answer = await client.receive()
    assert (answer["type"], answer["code"]) == ("error", code)
    await client.close()


async def test_forbidden_topic_is_answered_forbidden_with_the_topic_as_ref(node):
    client = await Client.connect(node)
    await client.send({"type": "subscribe", "topic": "staff.board"})
    answer = await client.receive()
    assert (answer["type"], answer["code"], answer["ref"]) == ("error", "forbidden", "staff.board")
    await client.close()


# ---- SSE and long-poll ----------------------------------------------------------------------


async def test_sse_id_carries_the_positions_of_all_the_streams_topics(node, use_redis, database):
    first, second = topic(), topic()
    await realtime.apublish(first, "n", 1)
    await realtime.apublish(second, "n", 1)
    headers = {"Authorization": f"Bearer {database[1]['alice']['token']}"}
    async with httpx.AsyncClient(base_url=node.http, timeout=10) as http:
        async with http.stream(
            "GET", "/realtime/sse/", params={"topic": [first, second]}, headers=headers
        ) as response:
            events = SSEReader(response)
            await events.frame()
            epochs = [(await events.frame())["epoch"] for _ in range(2)]
        cursor = f"{first}~{epochs[0]}~0,{second}~{epochs[1]}~0"
        async with http.stream(
            "GET",
            "/realtime/sse/",
            params={"topic": [first, second], "cursor": cursor},
            headers=headers,
        ) as response:
            events = SSEReader(response)
            await events.frame()  # welcome
            for _ in range(4):  # subscribed and one message per topic
                event = await events.frame()
                assert set(protocol.parse_cursors(event["_id"])) == {first, second}, event


async def test_sse_event_name_is_the_frame_type_and_only_position_events_carry_an_id(
    node, use_redis, database
):
    name = topic()
    headers = {"Authorization": f"Bearer {database[1]['alice']['token']}"}
    async with httpx.AsyncClient(base_url=node.http, timeout=10) as http:
        async with http.stream(
            "GET", "/realtime/sse/", params={"topic": [name, "no such!"]}, headers=headers
        ) as response:
            assert response.status_code == 400  # an invalid topic refuses the whole stream
        async with http.stream(
            "GET", "/realtime/sse/", params={"topic": name}, headers=headers
        ) as response:
            events = SSEReader(response)
            welcome = await events.frame()
            assert (welcome["_event"], welcome["_id"]) == ("welcome", None)
            subscribed = await events.frame()
            assert subscribed["_event"] == "subscribed" and subscribed["_id"]
            await realtime.apublish(name, "n", 1)
            message = await events.frame()
            assert message["_event"] == "message" and message["_id"]


async def test_sse_welcome_names_the_stream_for_acks(node, use_redis, database):
    name = topic()
    headers = {"Authorization": f"Bearer {database[1]['alice']['token']}"}
    async with httpx.AsyncClient(base_url=node.http, timeout=10) as http:
        async with http.stream(
            "GET", "/realtime/sse/", params={"topic": name}, headers=headers
        ) as response:
            welcome = await SSEReader(response).frame()
            stream = welcome["connection_id"]
        answer = await http.post(
            "/realtime/send/",
            json={"type": "ack", "ids": ["nothing"]},
            headers={**headers, "X-Realtime-Connection": stream},
        )
    assert answer.status_code == 204


async def test_long_poll_acks_may_be_posted_without_the_connection_header(node, database):
    headers = {"Authorization": f"Bearer {database[1]['alice']['token']}"}
    async with httpx.AsyncClient(base_url=node.http, timeout=10) as http:
        answer = await http.post(
            "/realtime/send/", json={"type": "ack", "ids": ["m-1", "m-2"]}, headers=headers
        )
    assert (answer.status_code, answer.content) == (204, b"")


async def test_post_send_answers_200_with_the_ack_frame_as_body(node, database):
    headers = {"Authorization": f"Bearer {database[1]['alice']['token']}"}
    message_id = f"p-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=node.http, timeout=10) as http:
        answer = await http.post(
            "/realtime/send/",
            json={"type": "send", "id": message_id, "event": "echo", "data": [1]},
            headers=headers,
        )
    assert answer.status_code == 200
    assert answer.json() == {"type": "ack", "id": message_id, "result": {"echo": [1]}}


@pytest.mark.parametrize("path", ["/realtime/sse/", "/realtime/poll/"])
async def test_http_request_without_authentication_is_answered_401(node, path):
    async with httpx.AsyncClient(base_url=node.http, timeout=10) as http:
        answer = await http.get(path, params={"topic": "staff.board"})
    assert answer.status_code == 401


async def test_http_callers_without_credentials_are_rate_limited_429(node):
    async with httpx.AsyncClient(base_url=node.http, timeout=10) as http:
        statuses = [(await http.get("/realtime/poll/")).status_code for _ in range(150)]
    assert 429 in statuses


async def test_poll_error_body_is_an_error_object_with_code_reason_and_ref(node, database):
    headers = {"Authorization": f"Bearer {database[1]['alice']['token']}"}
    async with httpx.AsyncClient(base_url=node.http, timeout=10) as http:
        answer = await http.get("/realtime/poll/", params={"topic": "no such!"}, headers=headers)
    assert answer.status_code == 400
    assert answer.json() == {
        "error": {
            "code": "invalid_topic",
            "reason": answer.json()["error"]["reason"],
            "ref": "no such!",
        }
    }


def test_tilde_and_comma_never_occur_in_topics_or_epochs():
    from realtime.log.base import new_epoch
    from realtime.topics import TOPIC_RE

    for name in ("a~b", "a,b", "order.42~", ",user.7"):
        assert not TOPIC_RE.fullmatch(name)
    assert not any({"~", ","} & set(new_epoch()) for _ in range(200))


async def test_tokens_never_go_in_the_url(node, database):
    token = database[1]["alice"]["token"]
    ws = await websockets.connect(f"{node.url}?token={token}", open_timeout=10)
    client = Client(ws)
    try:
        await client.send({"type": "subscribe", "topic": topic()})
        answer = await client.receive()
    finally:
        await client.close()
    # not authenticated by it: the subscribe is refused as on any connection without a token
    assert (answer["type"], answer["code"]) == ("error", "auth_required")


async def test_sse_cursor_parameter_wins_over_last_event_id(node, use_redis, database):
    name = topic()
    ids = [await realtime.apublish(name, "n", n) for n in range(3)]
    headers = {"Authorization": f"Bearer {database[1]['alice']['token']}"}
    epoch = (await realtime_position(name))[0]
    async with (
        httpx.AsyncClient(base_url=node.http, timeout=10) as http,
        http.stream(
            "GET",
            "/realtime/sse/",
            params={"topic": name, "cursor": f"{name}~{epoch}~1"},
            headers={**headers, "Last-Event-ID": f"{name}~{epoch}~2"},
        ) as response,
    ):
        events = SSEReader(response)
        await events.frame()  # welcome
        subscribed = await events.frame()
        assert (subscribed["offset"], subscribed["recovered"]) == (1, True)
        assert [(await events.frame())["id"] for _ in range(2)] == ids[1:]


async def realtime_position(name: str) -> tuple[str, int]:
    from realtime.publishing import aget_cursors

    cursor = (await aget_cursors([name]))[name]
    return cursor["epoch"], cursor["offset"]


# ---- batch frames ------------------------------------------------------------------------------


async def batching_client(node: Daphne) -> Client:
    return await Client.connect(node, subprotocols=["realtime.v1", protocol.BATCH_SUBPROTOCOL])


async def raw_frames(client: Client, count: int) -> list[dict]:
    """The next frames as sent (a ``batch`` frame not unpacked), until they hold ``count``."""
    got: list[dict] = []
    while sum(len(f["frames"]) if f["type"] == "batch" else 1 for f in got) < count:
        async with asyncio.timeout(5):
            got.append(json.loads(await client.ws.recv()))
    return got


async def resume_from_start(client: Client, name: str) -> None:
    """Subscribe ``name`` with a cursor at offset 0: every message of its log is replayed."""
    epoch = (await realtime_position(name))[0]
    cursor = {"epoch": epoch, "offset": 0}
    await client.send({"type": "subscribe", "topic": name, "cursor": cursor})


def unpacked(frames: list[dict]) -> list[dict]:
    return [inner for f in frames for inner in (f["frames"] if f["type"] == "batch" else [f])]


async def test_welcome_confirms_batch_frames_to_a_client_that_offered_realtime_batch(node):
    client = await batching_client(node)
    assert client.ws.subprotocol == "realtime.v1"  # realtime.batch is never selected
    assert client.welcome["batch"] == {"max_frames": 100, "max_bytes": 65536}
    assert set(client.welcome) == protocol_doc.welcome_fields()
    await client.close()


async def test_a_batching_client_gets_a_burst_as_batch_frames_with_acks_unchanged(node, use_redis):
    name = topic()
    ids = [await realtime.apublish(name, "n", {"n": n}, ack=n == 2) for n in range(5)]
    client = await batching_client(node)
    # a resume from offset 0: `subscribed` and the 5 replayed messages queued in one go
    await resume_from_start(client, name)
    frames = await raw_frames(client, 6)
    assert [f["type"] for f in frames] == ["batch"]
    inner = unpacked(frames)
    assert [f["type"] for f in inner] == ["subscribed"] + ["message"] * 5
    assert [m["id"] for m in inner[1:]] == ids
    assert [m["ack"] for m in inner[1:]] == [False, False, True, False, False]
    # each message keeps its id and ack flag: the ack=True one is acknowledged as ever
    await client.send({"type": "ack", "ids": [ids[2]]})
    assert await client.receive() == {"type": "acked", "ids": [ids[2]]}
    await client.close()


async def test_batch_frames_keep_to_max_frames_and_max_bytes(node, use_redis):
    name = topic()
    big = "x" * 30_000  # two fit in max_bytes with a `subscribed`, three do not
    for n in range(105):
        await realtime.apublish(name, "n", {"n": n, "pad": big if n < 4 else ""})
    client = await batching_client(node)
    await resume_from_start(client, name)
    frames = await raw_frames(client, 106)
    for frame in frames:
        if frame["type"] == "batch":
            assert 2 <= len(frame["frames"]) <= 100
            sizes = [len(json.dumps(f, separators=(",", ":"))) for f in frame["frames"]]
            assert sum(sizes) <= 65536
    assert len(frames) >= 3  # the bytes bound split the big ones, the count bound the rest
    inner = unpacked(frames)
    assert [m["data"]["n"] for m in inner[1:]] == list(range(105))
    await client.close()


async def test_a_client_that_did_not_offer_realtime_batch_never_gets_a_batch_frame(node, use_redis):
    name = topic()
    for n in range(5):
        await realtime.apublish(name, "n", n)
    client = await Client.connect(node)
    assert "batch" not in client.welcome
    await resume_from_start(client, name)
    frames = await raw_frames(client, 6)
    assert [f["type"] for f in frames] == ["subscribed"] + ["message"] * 5
    # and live, published faster than one at a time
    await asyncio.gather(*(realtime.apublish(name, "n", n) for n in range(20)))
    frames = await raw_frames(client, 20)
    assert {f["type"] for f in frames} == {"message"}
    await client.close()
