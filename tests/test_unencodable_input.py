"""Input no UTF-8 encoder accepts (issue 7, item 3): a JSON escape of a lone surrogate
(``"\\ud800"``) is valid JSON, but a frame holding one, or an answer echoing it, could never
be sent. Every such frame is answered ``invalid_frame``; every server frame stays encodable;
a frame the socket cannot send is dropped alone; ``publish()`` refuses such data with a
``TypeError``. Plus what daphne does with a text frame that is not UTF-8 at all."""

from __future__ import annotations

import asyncio
import json
import types
from collections.abc import Iterator
from typing import Any

import pytest
import websockets

import realtime
from realtime import protocol
from realtime.conf import get_config
from realtime.exceptions import InvalidFrame
from realtime.testing import RealtimeCommunicator
from realtime.transports.websocket import WebSocketTransport
from tests.asgi import application
from tests.servers import Client, Daphne

# raw frames as a client would send them: the JSON text holds the escape, not the character
SURROGATE_FRAMES = [
    r'{"type":"subscribe","topic":"\ud800"}',
    r'{"type":"subscribe","topic":"public.x","cursor":{"epoch":"\udfff","offset":1}}',
    r'{"type":"unsubscribe","topic":"a\uDBFFb"}',
    r'{"type":"send","id":"s-1","event":"echo","data":{"text":"\ud800"}}',
    r'{"type":"send","id":"s-2","event":"echo","data":{"\udc00":1}}',
    r'{"type":"ack","ids":["\ud800"]}',
    r'{"type":"\ud800"}',
    r'{"type":"auth","token":"\ud800"}',
]


@pytest.mark.parametrize("text", SURROGATE_FRAMES)
def test_a_frame_with_a_lone_surrogate_is_an_invalid_frame(text):
    with pytest.raises(InvalidFrame) as refused:
        protocol.parse_client_frame(text)
    assert refused.value.code == "invalid_frame"
    protocol.error_frame(refused.value.code, refused.value.reason, refused.value.ref).encode()


def test_a_surrogate_pair_and_an_escaped_backslash_are_fine():
    frame = protocol.parse_client_frame(
        r'{"type":"send","id":"s","event":"echo","data":["\ud83d\ude00","\\ud800"]}'
    )
    assert frame["data"] == ["\N{GRINNING FACE}", "\\ud800"]  # type: ignore[typeddict-item]


def test_error_frames_are_encodable_whatever_they_echo():
    text = protocol.error_frame("invalid_topic", "Invalid topic '\ud800'.", "\ud800x")
    assert json.loads(text.encode())["ref"] == "\\ud800x"


def test_encode_refuses_a_lone_surrogate_with_value_error():
    with pytest.raises(ValueError, match="lone surrogate"):
        protocol.encode({"type": "notice", "text": "\udc00"})


def test_publish_refuses_data_with_a_lone_surrogate_with_type_error():
    with pytest.raises(TypeError, match="lone surrogate"):
        realtime.publish("public.x", "n", {"text": "bad \ud800"})


@pytest.mark.django_db(transaction=True)
async def test_each_surrogate_frame_is_answered_and_the_connection_goes_on():
    client = RealtimeCommunicator(application)
    connected, _ = await client.connect()
    assert connected
    assert (await client.receive_frame())["type"] == "welcome"
    for text in SURROGATE_FRAMES:
        await client.send_to(text_data=json.loads(json.dumps(text)))
        answer = await client.receive_frame()
        assert (answer["type"], answer["code"]) == ("error", "invalid_frame"), text
    assert (await client.subscribe("public.after"))["type"] == "subscribed"
    await client.disconnect()


# ---- the outbound queue --------------------------------------------------------------------


class BlockingSend:
    """An ASGI send whose first call blocks until released, and which refuses (as daphne
    does) a text that UTF-8 cannot encode."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.release = asyncio.Event()
        self.changed = asyncio.Event()

    async def __call__(self, message: dict[str, Any]) -> None:
        if not self.sent and not self.release.is_set():
            await self.release.wait()
        if "text" in message:
            message["text"].encode()
        self.sent.append(message)
        self.changed.set()


def waiting_transport(send: BlockingSend) -> WebSocketTransport:
    """A WebSocket transport as its handshake leaves it, writing to ``send``."""
    transport = WebSocketTransport(send)
    transport.connection = types.SimpleNamespace(config=get_config())  # type: ignore[assignment]
    return transport


async def test_a_frame_that_cannot_be_sent_does_not_take_the_queued_frames_with_it():
    send = BlockingSend()
    transport = waiting_transport(send)
    transport.send_text('{"type":"notice","text":"first"}')  # blocks the socket
    transport.send_text('{"type":"notice","text":"\ud800"}')  # cannot be encoded
    transport.send_text('{"type":"notice","text":"third"}')
    send.release.set()
    async with asyncio.timeout(5):
        while len(send.sent) < 2:
            send.changed.clear()
            await send.changed.wait()
    assert [m["text"] for m in send.sent] == [
        '{"type":"notice","text":"first"}',
        '{"type":"notice","text":"third"}',
    ]
    assert not transport.closing


class BrokenSend:
    """An ASGI send on a socket that broke after its first frame."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def __call__(self, message: dict[str, Any]) -> None:
        if self.sent:
            raise OSError("the socket is gone")
        self.sent.append(message)


async def test_a_broken_socket_drops_the_queue_and_releases_the_connection_4011():
    send = BrokenSend()
    transport = waiting_transport(send)  # type: ignore[arg-type]
    released: list[int] = []
    done = asyncio.Event()

    async def closed(code: int) -> None:
        released.append(code)
        done.set()

    transport.connection.closed = closed  # type: ignore[method-assign]
    transport.send_text('{"type":"notice","text":"first"}')
    transport.send_text('{"type":"notice","text":"second"}')
    transport.send_text('{"type":"notice","text":"third"}')
    async with asyncio.timeout(5):
        await done.wait()
    assert released == [4011]
    assert [m["text"] for m in send.sent] == ['{"type":"notice","text":"first"}']
    assert transport.backlog == 0 and transport.closing


# ---- over a real daphne ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def node(database) -> Iterator[Daphne]:
    server = Daphne(database[0])
    yield server
    server.stop()


@pytest.mark.e2e
async def test_surrogate_frames_over_a_real_socket_are_answered_without_traceback(node):
    client = await Client.connect(node)
    for text in SURROGATE_FRAMES:
        await client.ws.send(text)
        answer = await client.receive()
        assert (answer["type"], answer["code"]) == ("error", "invalid_frame"), text
    assert (await client.subscribe("public.after"))["type"] == "subscribed"
    await client.close()
    log = "".join(node.log)
    assert "Traceback" not in log and "UnicodeEncodeError" not in log, log[-2000:]


@pytest.mark.e2e
async def test_a_text_frame_that_is_not_utf8_drops_the_connection_without_a_close_frame(node):
    # autobahn (under daphne) fails the connection itself: the application never sees the
    # frame, and the TCP connection is dropped without a close frame (1006 on the client)
    client = await Client.connect(node)
    await client.ws.send(b'{"type":"pong","x":"\xff\xfe"}', text=True)
    with pytest.raises(websockets.ConnectionClosed) as closed:
        async with asyncio.timeout(5):
            while True:
                await client.ws.recv()
    assert closed.value.rcvd is None
    assert "Traceback" not in "".join(node.log)
