"""The SSE stream's write path without a server (realtime/transports/sse.py): what a publish
costs per stream (one shared encoding), how queued events leave (one chunk per burst), the
keep-alive comment's deadline, and events sent straight to the server's ``send``. The wire
format itself is tested end to end in tests/test_http_transports.py and
tests/test_conformance.py."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from django.http import StreamingHttpResponse

from realtime.exceptions import CloseCode
from realtime.transports.sse import HTTP_SEND_KEY, KEEPALIVE, OPENING, ExposeSend, SSEStream

FRAME = '{"type":"message","topic":"t","event":"e","data":1,"id":"m1","epoch":"E","offset":8}'


class Positions:
    """What the stream asks its connection: the position of each subscribed topic."""

    def __init__(self, positions: dict[str, tuple[str, int]]) -> None:
        self.now = positions
        self.closed_with: int | None = None

    def positions(self) -> dict[str, tuple[str, int]]:
        return dict(self.now)

    async def closed(self, code: int) -> None:
        self.closed_with = code


def started(positions: dict[str, tuple[str, int]]) -> tuple[SSEStream, Positions]:
    stream, connection = SSEStream(), Positions(positions)
    stream.connection = connection  # type: ignore[assignment]
    stream.start()
    return stream, connection


def test_streams_at_the_same_position_share_one_encoded_event():
    streams = [started({"t": ("E", 8)})[0] for _ in range(3)]
    for stream in streams:  # one publish hands the same frame to every stream in turn
        stream.send_text(FRAME)
    first, *others = (stream.pending[0] for stream in streams)
    assert first == f"event: message\nid: t~E~8\ndata: {FRAME}\n\n".encode()
    assert all(event is first for event in others)


def test_a_stream_at_another_position_gets_its_own_id():
    one, _ = started({"t": ("E", 8)})
    two, _ = started({"t": ("E", 8), "u": ("F", 3)})
    one.send_text(FRAME)
    two.send_text(FRAME)
    assert one.pending[0].split(b"\n")[1] == b"id: t~E~8"
    assert two.pending[0].split(b"\n")[1] == b"id: t~E~8,u~F~3"


async def test_events_queued_before_the_writer_runs_leave_as_one_chunk():
    stream, connection = started({"t": ("E", 8)})
    body = stream.events(connection)  # type: ignore[arg-type]
    assert await anext(body) == OPENING
    for n in range(3):
        stream.send_text(json.dumps({"type": "notice", "n": n}, separators=(",", ":")))
    chunk = await asyncio.wait_for(anext(body), 5)
    assert chunk.count(b"event: notice\n") == 3
    stream.close(CloseCode.DISCONNECTED, "bye")
    last = await asyncio.wait_for(anext(body), 5)
    assert last.startswith(b"event: close\n") and b'"code":4403' in last
    assert await anext(body, None) is None
    assert connection.closed_with == CloseCode.DISCONNECTED


async def test_a_keepalive_comes_after_sse_keepalive_seconds_without_a_write(realtime_settings):
    realtime_settings(SSE_KEEPALIVE=0.4)
    stream, connection = started({"t": ("E", 8)})
    body = stream.events(connection)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    await anext(body)
    opened = loop.time()
    assert await asyncio.wait_for(anext(body), 5) == KEEPALIVE
    assert loop.time() - opened >= 0.39
    # an event is a write: the next keep-alive is due a whole interval after it
    await asyncio.sleep(0.2)
    stream.send_text(FRAME)
    assert (await asyncio.wait_for(anext(body), 5)).startswith(b"event: message\n")
    written = loop.time()
    assert await asyncio.wait_for(anext(body), 5) == KEEPALIVE
    assert loop.time() - written >= 0.39
    await body.aclose()
    assert connection.closed_with == CloseCode.NORMAL


# ---- events written straight to the server's `send` (realtime.asgi.ExposeSend) -----------------


def body_message(event: bytes) -> dict[str, object]:
    return {"type": "http.response.body", "body": event, "more_body": True}


def streamed(stream: SSEStream, connection: Positions, send: Any) -> tuple[Any, Any]:
    body = stream.events(connection)  # type: ignore[arg-type]
    response = StreamingHttpResponse(body, content_type="text/event-stream")
    stream.offer_send(send, response, body)
    return body, response


async def test_with_the_servers_send_a_turns_events_go_out_together_on_the_next_turn():
    stream, connection = started({"t": ("E", 8)})
    sent: list[dict[str, object]] = []
    arrived = asyncio.Queue[None]()

    async def send(message: dict[str, object]) -> None:
        sent.append(message)
        arrived.put_nowait(None)

    body, _ = streamed(stream, connection, send)
    assert await anext(body) == OPENING  # through Django: the response has started then
    stream.send_text(FRAME)
    rest = asyncio.ensure_future(anext(body))
    await asyncio.wait_for(arrived.get(), 5)
    assert sent == [body_message(f"event: message\nid: t~E~8\ndata: {FRAME}\n\n".encode())]
    notices = ['{"type":"notice","n":1}', '{"type":"notice","n":2}']
    for notice in notices:  # one turn of the loop, as the hub hands out a backlog
        stream.send_text(notice)
    assert len(sent) == 1
    await asyncio.wait_for(arrived.get(), 5)
    assert sent[1:] == [
        body_message(b"".join(f"event: notice\ndata: {n}\n\n".encode() for n in notices))
    ]
    assert not rest.done()  # the response's task was not woken for them
    stream.close(CloseCode.DISCONNECTED, "bye")
    with pytest.raises(StopAsyncIteration):  # Django ends the body
        await asyncio.wait_for(rest, 5)
    assert b'"code":4403' in sent[-1]["body"]  # type: ignore[operator]
    assert connection.closed_with == CloseCode.DISCONNECTED


async def test_a_send_that_waits_for_the_socket_holds_the_next_events_for_one_chunk():
    stream, connection = started({"t": ("E", 8)})
    sent: list[dict[str, object]] = []
    blocked, writable = asyncio.Event(), asyncio.Event()

    async def send(message: dict[str, object]) -> None:
        sent.append(message)
        if len(sent) == 1:
            blocked.set()
            await writable.wait()  # the socket's buffer is full

    body, _ = streamed(stream, connection, send)
    await anext(body)
    stream.send_text('{"type":"notice","n":1}')
    rest = asyncio.ensure_future(anext(body))
    await asyncio.wait_for(blocked.wait(), 5)
    for n in (2, 3):
        stream.send_text(f'{{"type":"notice","n":{n}}}')
    stream.close(CloseCode.NORMAL)
    assert len(sent) == 1 and len(stream.pending) == 3
    writable.set()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(rest, 5)
    assert len(sent) == 2  # the three waiting events, the close event last, in one chunk
    chunk = sent[1]["body"]
    assert isinstance(chunk, bytes)
    assert chunk.startswith(
        b'event: notice\ndata: {"type":"notice","n":2}\n\n'
        b'event: notice\ndata: {"type":"notice","n":3}\n\n'
        b"event: close\n"
    )


async def test_a_send_that_fails_ends_the_body_and_releases_the_connection():
    stream, connection = started({"t": ("E", 8)})

    async def send(message: dict[str, object]) -> None:
        raise OSError("the client is gone")

    body, _ = streamed(stream, connection, send)
    await anext(body)
    stream.send_text(FRAME)
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(body), 5)
    assert connection.closed_with == CloseCode.NORMAL


@pytest.mark.parametrize("rework", ["wrapped", "compressed"])
async def test_a_response_a_middleware_reworks_is_streamed_through_django(rework):
    stream, connection = started({"t": ("E", 8)})
    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    body, response = streamed(stream, connection, send)

    async def wrapped(content: Any) -> Any:  # as a middleware would, e.g. GZip
        async for chunk in content:
            yield chunk

    if rework == "wrapped":
        response.streaming_content = wrapped(response.streaming_content)
    else:
        response["Content-Encoding"] = "identity"
    chunks = aiter(response)
    assert await anext(chunks) == OPENING
    stream.send_text(FRAME)
    assert (await asyncio.wait_for(anext(chunks), 5)).startswith(b"event: message\n")
    assert sent == []
    await chunks.aclose()  # type: ignore[attr-defined]
    await body.aclose()


async def test_django_s_handler_gets_the_servers_send_in_every_http_scope():
    seen: list[dict[str, Any]] = []

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope)

    async def send(message: dict[str, object]) -> None:
        pass

    application = ExposeSend(inner)
    http = {"type": "http", "path": "/"}
    await application(http, None, send)
    await application({"type": "websocket", "path": "/"}, None, send)
    assert seen[0][HTTP_SEND_KEY] is send and HTTP_SEND_KEY not in http
    assert HTTP_SEND_KEY not in seen[1]


def test_realtimes_asgi_application_wraps_djangos_handler_in_expose_send():
    from django.core.handlers.asgi import ASGIHandler

    from tests.asgi import application

    http = application.application_mapping["http"]
    assert isinstance(http, ExposeSend) and isinstance(http.inner, ASGIHandler)
