"""The SSE stream's write path without a server (realtime/transports/sse.py): what a publish
costs per stream (one shared encoding), how queued events leave (one chunk per burst), and
the keep-alive comment's deadline. The wire format itself is tested end to end in
tests/test_http_transports.py and tests/test_conformance.py."""

from __future__ import annotations

import asyncio
import json

from realtime.exceptions import CloseCode
from realtime.transports.sse import KEEPALIVE, OPENING, SSEStream

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
