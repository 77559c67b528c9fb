"""SSE and long-poll clients for the load generator, on raw HTTP/1.1 over asyncio.

One :class:`HttpConnection` (an ``asyncio.Protocol``) per TCP connection parses the response
as bytes arrive: status line and headers, then a chunked, length-delimited or close-delimited
body, handed either whole to the caller (long-poll) or piece by piece to an event-stream
parser (SSE). No HTTP library: a thousand streams in one Python process are cheaper this way
than through a general-purpose client, and the load generator's CPU is part of every figure.

Both clients speak docs/protocol.md ("SSE and long-poll"):

* :class:`SSEClient` opens ``GET realtime/sse/?topic=bench``, waits for the ``subscribed``
  event, records ``message`` events, keeps the last ``id:`` (the cursor string), and when the
  stream ends while messages are missing it reopens with ``cursor=<last id>``, as a browser's
  ``EventSource`` does with ``Last-Event-ID``;
* :class:`LongPollClient` polls ``GET realtime/poll/?topic=bench[&cursor=...]`` in a loop,
  sending back the ``cursor`` of each 200 answer and polling again after a 204. With several
  nodes it sends each poll to the next node in turn (no sticky routing: the position travels
  in the request). It keeps one keep-alive connection per node, as a browser would.

Every loop is bounded by count and by time; only loopback URLs are used (the load generator
checks them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from bench._common import TOPIC
from bench.recording import HandshakeError, Receiver, Stats

#: Reopened streams / failed polls in a row after which a client gives up (like the WS client).
MAX_RECONNECTS = 3
#: The server answers a poll within its POLL_TIMEOUT (25 s by default); allow a margin.
POLL_WAIT_S = 40.0
#: Upper bound on polls per client in one run (40 messages need far fewer).
MAX_POLLS = 100_000
#: A response head larger than this is refused (the server's are a few hundred bytes).
MAX_HEAD_BYTES = 64 * 1024
#: A buffered event or poll body larger than this is refused.
MAX_BODY_BYTES = 16 * 1024 * 1024


class HttpProtocolError(Exception):
    """The server's bytes are not the HTTP/1.1 or event stream this client expects."""


@dataclass(frozen=True)
class Head:
    """Status and headers (lower-cased names) of one response."""

    status: int
    headers: dict[str, str]


@dataclass(frozen=True)
class Endpoint:
    """Where one node's endpoint is: host, port and the path with its query string."""

    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        """``http://127.0.0.1:8000/realtime/poll/?topic=bench`` -> its parts."""
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"expected http://host:port/path, got {url!r}")
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        return cls(parts.hostname, parts.port, path)

    def with_cursor(self, cursor: str | None) -> str:
        """The path, plus ``cursor=...`` when there is one."""
        if not cursor:
            return self.path
        sep = "&" if "?" in self.path else "?"
        return f"{self.path}{sep}cursor={quote(cursor, safe='')}"


class HttpConnection(asyncio.Protocol):
    """One HTTP/1.1 connection; one request at a time, kept alive between requests.

    :meth:`request` returns two futures: the response head, and the end of the response
    (its body, or ``b""`` when the body was streamed to ``on_data``). A connection lost
    before the end fails the second future with ``ConnectionError``.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.keep_alive = True
        self._buf = bytearray()
        self._state = "idle"  # idle, head, size, chunk, trailer, length, close
        self._remaining = 0
        self._body = bytearray()
        self._on_data: Callable[[bytes], None] | None = None
        self._head: asyncio.Future[Head] | None = None
        self._done: asyncio.Future[bytes] | None = None

    @classmethod
    async def open(cls, host: str, port: int) -> HttpConnection:
        """Connect to ``host:port`` (asyncio sets TCP_NODELAY on TCP sockets)."""
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(cls, host, port)
        return protocol

    @property
    def idle(self) -> bool:
        """Whether a new request may be sent on this connection now."""
        return not self.closed and self.keep_alive and self._state == "idle"

    def request(
        self,
        endpoint: Endpoint,
        path: str,
        headers: dict[str, str] | None = None,
        on_data: Callable[[bytes], None] | None = None,
    ) -> tuple[asyncio.Future[Head], asyncio.Future[bytes]]:
        """Send ``GET path``. With ``on_data``, a 200 body is handed over as it arrives."""
        if not self.idle or self.transport is None:
            raise ConnectionError("connection busy or closed")
        loop = asyncio.get_running_loop()
        self._head = loop.create_future()
        self._done = loop.create_future()
        self._on_data = on_data
        self._body = bytearray()
        self._state = "head"
        lines = [f"GET {path} HTTP/1.1", f"Host: {endpoint.host}:{endpoint.port}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        return self._head, self._done

    def abort(self) -> None:
        """Drop the connection at once."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    # ---- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._state == "idle":
            return  # nothing asked for: ignore (never expected from these servers)
        self._buf += data
        try:
            self._parse()
        except (HttpProtocolError, ValueError) as exc:
            self._fail(HttpProtocolError(str(exc)))
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._state == "close":  # a close-delimited body ends here
            self._finish()
            return
        self._fail(ConnectionError(f"connection lost ({self._state})"))

    # ---- parsing ---------------------------------------------------------------------------

    def _parse(self) -> None:
        buf = self._buf
        # Every round but the last consumes at least two bytes: bounded by what arrived.
        for _ in range(len(buf) + 2):
            state = self._state
            if state == "head":
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > MAX_HEAD_BYTES:
                        raise HttpProtocolError("response head too large")
                    return
                self._start_body(bytes(buf[:end]))
                del buf[: end + 4]
            elif state == "size":
                end = buf.find(b"\r\n")
                if end < 0:
                    return
                size = int(bytes(buf[:end]).split(b";", 1)[0].strip(), 16)
                del buf[: end + 2]
                if size == 0:
                    self._state = "trailer"
                else:
                    self._remaining = size
                    self._state = "chunk"
            elif state == "chunk":
                if len(buf) < self._remaining + 2:
                    return
                self._deliver(bytes(buf[: self._remaining]))
                del buf[: self._remaining + 2]
                self._state = "size"
            elif state == "trailer":
                end = buf.find(b"\r\n")
                if end < 0:
                    return
                del buf[: end + 2]
                if end == 0:
                    self._finish()
            elif state == "length":
                take = min(len(buf), self._remaining)
                if take:
                    self._deliver(bytes(buf[:take]))
                    del buf[:take]
                    self._remaining -= take
                if self._remaining == 0:
                    self._finish()
                return
            elif state == "close":
                if buf:
                    self._deliver(bytes(buf))
                    buf.clear()
                return
            else:  # idle
                return

    def _start_body(self, raw: bytes) -> None:
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise HttpProtocolError(f"bad status line {lines[0][:80]!r}")
        status = int(parts[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("connection", "").lower() == "close" or parts[0] == "HTTP/1.0":
            self.keep_alive = False
        if status != 200:
            self._on_data = None  # an error body is kept whole, for the report
        head = Head(status, headers)
        if self._head is not None and not self._head.done():
            self._head.set_result(head)
        if status in (204, 304) or 100 <= status < 200:
            self._finish()
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self._state = "size"
        elif "content-length" in headers:
            self._remaining = int(headers["content-length"])
            self._state = "length"
            if self._remaining == 0:
                self._finish()
        else:
            self.keep_alive = False
            self._state = "close"

    def _deliver(self, data: bytes) -> None:
        if self._on_data is not None:
            self._on_data(data)
            return
        self._body += data
        if len(self._body) > MAX_BODY_BYTES:
            raise HttpProtocolError("response body too large")

    def _finish(self) -> None:
        self._state = "idle"
        done, self._done = self._done, None
        if done is not None and not done.done():
            done.set_result(bytes(self._body))
        self._body = bytearray()
        if not self.keep_alive:
            self.abort()

    def _fail(self, exc: Exception) -> None:
        self._state = "idle"
        for future in (self._head, self._done):
            if future is not None and not future.done():
                future.set_exception(exc)
                future.exception()  # retrieved here: the caller may already have gone


class EventStreamParser:
    """Splits ``text/event-stream`` bytes into events: ``on_event(event, data, id)``.

    Lines end with LF (CRLF and CR are accepted too); comments (``:``) are skipped, ``retry``
    is ignored; an event without ``data`` is not dispatched, as in the HTML standard.
    """

    def __init__(self, on_event: Callable[[str, str, str | None], None]) -> None:
        self.on_event = on_event
        self._pending = b""

    def feed(self, data: bytes) -> None:
        """Take the next bytes of the stream."""
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        pending = self._pending + data
        start = 0
        for _ in range(len(pending)):  # at most one event per byte; usually one or two
            end = pending.find(b"\n\n", start)
            if end < 0:
                break
            self._dispatch(pending[start:end])
            start = end + 2
        self._pending = pending[start:]
        if len(self._pending) > MAX_BODY_BYTES:
            raise HttpProtocolError("event too large")

    def _dispatch(self, block: bytes) -> None:
        event = "message"
        data: list[str] = []
        event_id: str | None = None
        for raw in block.split(b"\n"):
            if not raw or raw[:1] == b":":
                continue
            name, _, value = raw.decode("utf-8").partition(":")
            if value.startswith(" "):
                value = value[1:]
            if name == "data":
                data.append(value)
            elif name == "event":
                event = value
            elif name == "id":
                event_id = value
        if data:
            self.on_event(event, "\n".join(data), event_id)


class SSEClient(Receiver):
    """One event stream: open, wait for ``subscribed``, record messages, resume on end."""

    def __init__(self, url: str, messages: int, stats: Stats, open_timeout: float) -> None:
        super().__init__(messages, stats)
        self.endpoint = Endpoint.parse(url)
        self.open_timeout = open_timeout
        self.cursor: str | None = None
        self.conn: HttpConnection | None = None
        self._ended: asyncio.Future[bytes] | None = None
        self._subscribed: asyncio.Future[None] | None = None

    @property
    def is_open(self) -> bool:
        """Whether the stream is (still) open."""
        return self.conn is not None and not self.conn.closed

    async def open(self) -> None:
        """Open the stream (resuming from the last ``id:`` if any) and wait until subscribed."""
        conn = await asyncio.wait_for(
            HttpConnection.open(self.endpoint.host, self.endpoint.port), self.open_timeout
        )
        self.conn = conn
        self.stats.tcp_connects += 1
        self.stats.http_requests += 1
        self._subscribed = asyncio.get_running_loop().create_future()
        parser = EventStreamParser(self._on_event)
        head_f, ended = conn.request(
            self.endpoint,
            self.endpoint.with_cursor(self.cursor),
            {"Accept": "text/event-stream", "Cache-Control": "no-cache"},
            on_data=parser.feed,
        )
        self._ended = ended
        head = await head_f
        if head.status != 200:
            body = b""
            with contextlib.suppress(Exception):
                body = await asyncio.wait_for(ended, 5.0)
            raise HandshakeError(f"HTTP {head.status}: {body[:120]!r}")
        if not head.headers.get("content-type", "").startswith("text/event-stream"):
            raise HandshakeError(f"not an event stream: {head.headers.get('content-type')!r}")
        # the stream may end before `subscribed`: then the first to finish raises
        done, _ = await asyncio.wait((self._subscribed, ended), return_when=asyncio.FIRST_COMPLETED)
        if self._subscribed not in done:
            if ended.exception() is not None:
                raise ConnectionError("stream ended before 'subscribed'") from ended.exception()
            raise HandshakeError("stream ended before 'subscribed'")
        self._subscribed.result()

    def _on_event(self, event: str, data: str, event_id: str | None) -> None:
        now = time.time()
        if event_id is not None:
            self.cursor = event_id
        if event == "message":
            frame = json.loads(data)
            if frame.get("topic") == TOPIC:
                self._record(frame.get("data"), now)
        elif event == "subscribed":
            if self._subscribed is not None and not self._subscribed.done():
                self._subscribed.set_result(None)
        elif event == "reset":
            self.stats.resets += 1
        elif event == "error":
            frame = json.loads(data)
            self.stats.errors[f"error event {frame.get('code')}"] += 1
            if self._subscribed is not None and not self._subscribed.done():
                self._subscribed.set_exception(HandshakeError(f"error event: {data[:160]}"))

    async def read(self) -> None:
        """Record until the stream ends; reopen from the cursor when messages are missing."""
        try:
            for reconnects in range(MAX_RECONNECTS + 1):
                ended = self._ended
                if ended is None:
                    return
                try:
                    await ended
                    how = "sse ended"
                except ConnectionError:
                    how = "sse dropped"
                except HttpProtocolError as exc:
                    self.stats.errors[f"HttpProtocolError: {str(exc)[:80]}"] += 1
                    how = "sse bad stream"
                self._drop()
                if not self.stats.recording:
                    return
                self.stats.closed[how] += 1
                if self.complete or reconnects >= MAX_RECONNECTS:
                    return
                self.stats.reconnects += 1
                await asyncio.sleep(random.uniform(0.1, 0.5 * 2 ** (reconnects + 1)))
                try:
                    await asyncio.wait_for(self.open(), self.open_timeout)
                except Exception as exc:
                    self.stats.errors[f"reconnect: {type(exc).__name__}"] += 1
                    self._drop()
                    return
        finally:
            if not self.complete:
                self.stats.gone_clients += 1

    def _drop(self) -> None:
        if self.conn is not None:
            self.conn.abort()
        self.conn = None
        self._ended = None

    async def abort(self) -> None:
        """Drop the connection without further ado."""
        self._drop()


class LongPollClient(Receiver):
    """One long-polling client: poll, record the batch, poll again with the new cursor.

    ``urls`` lists the nodes, the first one first; poll ``n`` goes to ``urls[n % len(urls)]``.
    """

    def __init__(self, urls: list[str], messages: int, stats: Stats, open_timeout: float) -> None:
        super().__init__(messages, stats)
        self.endpoints = [Endpoint.parse(url) for url in urls]
        self.open_timeout = open_timeout
        self.cursor: str | None = None
        self.polls = 0
        self.conns: dict[int, HttpConnection] = {}

    @property
    def is_open(self) -> bool:
        """Whether a connection to some node is held."""
        return any(not c.closed for c in self.conns.values())

    async def _connection(self, node: int) -> HttpConnection:
        conn = self.conns.get(node)
        if conn is None or not conn.idle:
            if conn is not None:
                conn.abort()
            endpoint = self.endpoints[node]
            conn = await asyncio.wait_for(
                HttpConnection.open(endpoint.host, endpoint.port), self.open_timeout
            )
            self.conns[node] = conn
            self.stats.tcp_connects += 1
        return conn

    async def _get(self, node: int, timeout: float) -> tuple[int, bytes, float]:
        """One poll to ``node``: (status, body, time the body was complete).

        A kept-alive connection the server closed meanwhile is retried once on a new one,
        as HTTP clients do for idempotent requests.
        """
        endpoint = self.endpoints[node]
        for attempt in range(2):
            reused = node in self.conns and self.conns[node].idle
            conn = await self._connection(node)
            self.stats.http_requests += 1
            try:
                head_f, done_f = conn.request(endpoint, endpoint.with_cursor(self.cursor))
                body = await asyncio.wait_for(done_f, timeout)
                head = head_f.result()
                return head.status, body, time.time()
            except ConnectionError:
                conn.abort()
                if not reused or attempt:
                    raise
            except BaseException:
                conn.abort()
                raise
        raise ConnectionError("unreachable")

    def _take(self, body: bytes, now: float) -> int:
        """Record the frames of a 200 answer and move the cursor; return how many messages."""
        doc = json.loads(body)
        count = 0
        for frame in doc.get("frames", ()):
            kind = frame.get("type")
            if kind == "message":
                count += 1
                if frame.get("topic") == TOPIC:
                    self._record(frame.get("data"), now)
            elif kind == "reset":
                self.stats.resets += 1
            elif kind == "error":
                self.stats.errors[f"error frame {frame.get('code')}"] += 1
        cursor = doc.get("cursor")
        if isinstance(cursor, str):
            self.cursor = cursor
        return count

    async def open(self) -> None:
        """The first poll, without a cursor: the server answers at once with ``subscribed``."""
        status, body, now = await self._get(0, self.open_timeout)
        self.polls = 1
        if status != 200:
            raise HandshakeError(f"HTTP {status}: {body[:120]!r}")
        self._take(body, now)
        if not self.cursor:
            raise HandshakeError(f"no cursor in the first answer: {body[:160]!r}")

    async def read(self) -> None:
        """Poll until recording stops, each poll to the next node; give up after
        ``MAX_RECONNECTS`` failed polls in a row."""
        failures = 0
        try:
            for _ in range(MAX_POLLS):
                if not self.stats.recording:
                    return
                node = self.polls % len(self.endpoints)
                self.polls += 1
                try:
                    status, body, now = await self._get(node, POLL_WAIT_S)
                except (OSError, TimeoutError, HttpProtocolError) as exc:
                    status, body, now = 0, f"{type(exc).__name__}".encode(), time.time()
                if status == 200:
                    failures = 0
                    self._take(body, now)
                    continue
                if status == 204:
                    failures = 0
                    continue
                if not self.stats.recording:
                    return
                # an error status or a broken connection: back off, then poll from the cursor
                self.stats.closed[f"poll {status or body.decode(errors='replace')}"] += 1
                failures += 1
                if failures > MAX_RECONNECTS:
                    return
                self.stats.reconnects += 1
                await asyncio.sleep(random.uniform(0.1, 0.5 * 2**failures))
        finally:
            if not self.complete:
                self.stats.gone_clients += 1

    async def abort(self) -> None:
        """Drop every connection."""
        for conn in self.conns.values():
            conn.abort()
        self.conns.clear()


def make_http_client(
    protocol: str, urls: list[str], index: int, messages: int, stats: Stats, open_timeout: float
) -> Any:
    """Client number ``index`` of a worker: SSE streams go round-robin over the nodes; a
    long-poll client starts at node ``index % len(urls)`` and then takes each in turn."""
    if protocol == "sse":
        return SSEClient(urls[index % len(urls)], messages, stats, open_timeout)
    if protocol == "longpoll":
        start = index % len(urls)
        return LongPollClient(urls[start:] + urls[:start], messages, stats, open_timeout)
    raise ValueError(f"not an HTTP protocol: {protocol!r}")
