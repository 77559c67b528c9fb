"""Pure logic: topics, the protocol parser and encoder, Origin rules, tokens, settings."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from realtime import auth, conf, protocol, topics
from realtime.exceptions import (
    CloseCode,
    Forbidden,
    InvalidFrame,
    InvalidJSON,
    InvalidTopic,
    TokenExpired,
    TokenInvalid,
    UnknownType,
    close_code_for,
    http_status_for,
)


@pytest.mark.parametrize("name", ["a", "order.42", "user:7", "chat.room-1", "x@y", "A_b.C"])
def test_valid_topics(name):
    assert topics.validate_topic(name) == name


@pytest.mark.parametrize("name", ["", ".x", "has space", "x" * 201, "ü", None, 42, "a/b"])
def test_invalid_topics_raise_with_help(name):
    with pytest.raises(InvalidTopic, match="A topic is 1 to 200 characters"):
        topics.validate_topic(name)


def test_group_names_are_valid_and_distinct():
    names = {topics.group_name(t) for t in ["a.b", "a:b", "a-b", "a_b", "A.b"]}
    assert len(names) == 5
    assert all(len(n) < 100 and n.startswith("realtime.t.") for n in names)


def test_patterns_match_and_cast():
    registry = topics.TopicRegistry()
    registry.register("order.{order_id:int}", topics.allow_any)
    registry.register("room.{name}", topics.allow_any)
    assert registry.resolve("order.42")[1] == {"order_id": 42}
    assert registry.resolve("room.lobby-1")[1] == {"name": "lobby-1"}
    with pytest.raises(Forbidden, match="No topic pattern matches"):
        registry.resolve("order.abc")
    with pytest.raises(Forbidden):
        registry.resolve("order.42.extra")


def test_bad_patterns_are_refused():
    with pytest.raises(ValueError, match="Unknown converter"):
        topics.compile_pattern("x.{id:uuid}", topics.allow_any)
    with pytest.raises(ValueError, match="can never match"):
        topics.compile_pattern("bad pattern", topics.allow_any)


@pytest.mark.django_db
async def test_registry_runs_sync_and_async_permissions():
    registry = topics.TopicRegistry()
    registry.register("sync.{n:int}", lambda user, n: n == 1)
    registry.register("async.{n:int}", topics.allow_staff)
    await registry.acheck(None, "sync.1")
    with pytest.raises(Forbidden):
        await registry.acheck(None, "sync.2")

    class Staff:
        is_active = is_staff = True

    await registry.acheck(Staff(), "async.1")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("nope", InvalidJSON),
        ("[]", InvalidJSON),
        ("{}", InvalidFrame),
        ('{"type": 1}', InvalidFrame),
        ('{"type": "x"}', UnknownType),
        ('{"type": "auth", "token": ""}', InvalidFrame),
        ('{"type": "ack", "ids": ["a b"]}', InvalidFrame),
        ('{"type": "ack", "ids": ' + json.dumps(["a"] * 101) + "}", InvalidFrame),
        ('{"type": "send", "id": "1", "event": "9bad"}', InvalidFrame),
        (
            '{"type": "subscribe", "topic": "t", "cursor": {"epoch": "e", "offset": -1}}',
            InvalidFrame,
        ),
        (
            '{"type": "subscribe", "topic": "t", "cursor": {"epoch": "e", "offset": true}}',
            InvalidFrame,
        ),
        ("[" * 100000 + "]" * 100000, InvalidJSON),
    ],
)
def test_parser_rejects(text, error):
    with pytest.raises(error):
        protocol.parse_client_frame(text)


def test_parser_accepts_a_subscribe_with_cursor():
    frame = protocol.parse_client_frame(
        '{"type":"subscribe","topic":"t","cursor":{"epoch":"e","offset":3}}'
    )
    assert frame == {"type": "subscribe", "topic": "t", "cursor": {"epoch": "e", "offset": 3}}


def test_message_frame_is_valid_json_with_the_payload_embedded():
    text = protocol.message_frame("t.1", "ev", '{"a":[1,"é"]}', "id1", "ep", 7, True)
    assert json.loads(text) == {
        "type": "message",
        "topic": "t.1",
        "event": "ev",
        "id": "id1",
        "epoch": "ep",
        "offset": 7,
        "ack": True,
        "data": {"a": [1, "é"]},
    }


def test_errors_map_to_close_codes_and_statuses():
    assert close_code_for(TokenInvalid()) == CloseCode.UNAUTHORIZED
    assert close_code_for(TokenExpired()) == 4419
    assert http_status_for(Forbidden()) == 403
    assert http_status_for(InvalidJSON()) == 400


@override_settings(ALLOWED_HOSTS=["example.com", ".example.org"], REALTIME={})
@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://example.com", True),
        ("http://example.com:8000", True),
        ("https://shop.example.org", True),
        ("https://example.com.evil.net", False),
        ("https://evil.net", False),
        ("null", False),
        ("file://example.com", False),
    ],
)
def test_origins_derive_from_allowed_hosts(origin, allowed):
    assert auth.origin_allowed(origin) is allowed


@override_settings(REALTIME={"ALLOWED_ORIGINS": ["https://app.example.net"]})
def test_explicit_origin_list():
    assert auth.origin_allowed("https://app.example.net")
    assert not auth.origin_allowed("https://example.com")


class FakeUser:
    pk = 7
    is_authenticated = True

    def get_session_auth_hash(self) -> str:
        return "h" * 40


def test_tokens_round_trip_and_fit_in_a_subprotocol():
    token = auth.make_token(FakeUser())
    assert all(c.isalnum() or c in "-_." for c in token)
    claims = auth.read_token(token)
    assert (claims.user_pk, claims.auth_hash) == ("7", "h" * 16)


def test_expired_and_tampered_tokens():
    with pytest.raises(TokenExpired):
        auth.read_token(auth.make_token(FakeUser(), expires_in=-1))
    token = auth.make_token(FakeUser())
    with pytest.raises(TokenInvalid):
        auth.read_token(token.replace(".", "x", 1))
    with pytest.raises(ValueError, match="authenticated"):
        auth.make_token(None)


def test_config_is_cached_and_cleared_on_change():
    with override_settings(REALTIME={"HISTORY_SIZE": 5}):
        assert conf.get_config().history_size == 5
    assert conf.get_config().history_size == 1000


def test_bad_config_raises_improperly_configured():
    with override_settings(REALTIME={"HISTORY_SIZE": "x"}), pytest.raises(ImproperlyConfigured):
        conf.get_config()
    with override_settings(REALTIME=[1]), pytest.raises(ImproperlyConfigured):
        conf.get_config()


async def test_a_close_reason_is_cut_to_100_characters_wherever_a_close_is_built():
    from realtime.exceptions import CloseCode
    from realtime.transports.sse import SSEStream
    from realtime.transports.websocket import WebSocketTransport

    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    WebSocketTransport(send).close(CloseCode.DISCONNECTED, "x" * 300)
    stream = SSEStream()
    stream.start()
    stream.close(CloseCode.DISCONNECTED, "y" * 300)
    frame = json.loads(str(sent[0]["text"]))
    event = stream.pending.popleft().decode()
    assert (frame["reason"], sent[1]["reason"]) == ("x" * 100, "x" * 100)
    assert json.loads(event.split("data: ", 1)[1])["reason"] == "y" * 100
    # a WebSocket close frame carries at most 123 bytes of reason: fewer characters then
    assert protocol.close_reason("é" * 100) == "é" * 61
