"""The load generator: one worker process holding many clients in one asyncio loop (WebSocket
clients on ``websockets``; SSE and long-poll clients in ``bench.httpclients``).

The orchestrator (``bench.run``) starts a few of these so the client side gets more than one
core's worth of Python. A worker talks to it in JSON lines:

1. it opens ``--count`` connections (at most ``--concurrency`` handshakes at a time), spread
   round-robin over ``--urls``, waits until each is subscribed, and prints
   ``{"event": "ready", "connected": n, "failed": k, ...}``;
2. with ``{"storm": jitter}`` on stdin (the storm scenario, ``bench.storm``), it drops every
   socket at once, each client reconnects after a random pause of up to ``jitter`` seconds and
   resumes from its cursor, and it prints ``{"event": "stormed", ...}`` once every client is
   back (or gone); then it goes on with 3.;
3. it reads one line on stdin, ``{"t_last": <time of the last publish>, "drain": s,
   "max_drain": s, "idle": s}``, while its clients keep recording messages;
4. it stops recording when every connection holds all ``--messages`` messages, or once
   ``drain`` seconds have passed since ``t_last`` and nothing arrived for ``idle`` seconds,
   or at ``max_drain`` seconds after ``t_last``, whichever comes first; then prints
   ``{"event": "result", ...}`` with its counts and every publish-to-receive latency;
5. it exits when stdin closes (or after a bounded wait).

Every loop here is bounded by count or by time. Only loopback URLs are accepted.

Protocols: ``realtime`` speaks docs/protocol.md (subprotocol ``realtime.v1``, ``welcome``,
``subscribe``/``subscribed``, ``message``, ``ping``/``pong``, ``ack``) and, like the real client,
resumes from its cursor when the server closes it with a code that says "reconnect". It
acknowledges each ``ack: true`` message in a frame of its own, or with ``--ack-batch-ms`` as the
bundled JavaScript client does: the ids gathered for that long (at most 100) in one frame. ``plain``
(Channels baseline and bare server) expects one ``{"type": "ready"}`` frame and then raw
``{"seq": i, "t": ts}`` text frames; those servers have no resume, so a closed socket stays
closed and its missing messages count as lost. ``sse`` and ``longpoll`` are the realtime app's
HTTP transports (docs/protocol.md, "SSE and long-poll"); both resume from their cursor string,
and a long-poll client sends each poll to the next node (see ``bench.httpclients``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import sys
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from bench._common import (
    BATCH_SUBPROTOCOL,
    LOOPBACK_HOSTS,
    TOPIC,
    emit,
    machine_cpu_jiffies,
    raise_fd_limit,
    unbatch,
)
from bench.httpclients import make_http_client
from bench.recording import HandshakeError, Receiver, Stats

REALTIME_SUBPROTOCOL = Subprotocol("realtime.v1")
#: Close codes after which the realtime client reconnects and resumes (docs/protocol.md).
RESUMABLE_CLOSE_CODES = frozenset({1001, 1006, 1011, 4408, 4503})
MAX_RECONNECTS = 3
#: Further handshake attempts after a refused or failed one (HTTP 500 in a connection storm).
CONNECT_RETRIES = 3
PONG = '{"type":"pong"}'
#: At most this many ids in one batched ``ack`` frame (the JS client's ``maxAckIds``).
MAX_ACK_IDS = 100
#: ``realtime`` and ``plain`` are WebSocket protocols; ``sse`` and ``longpoll`` are the realtime
#: app's HTTP transports (bench.httpclients).
HTTP_PROTOCOLS = ("sse", "longpoll")
PROTOCOLS = ("realtime", "plain", *HTTP_PROTOCOLS)
EXIT_WAIT_S = 30.0
#: Handshakes a client lets a busy server refuse (4013, 4012 or 503 with a hint) in a row.
MAX_REFUSALS = 50


class Refused(Exception):
    """The server said "try again later" (docs/protocol.md, "Admission"), after ``hint`` s."""

    def __init__(self, hint: float) -> None:
        super().__init__(f"refused, retry after {hint:g} s")
        self.hint = hint

    def pause(self) -> float:
        """The hint plus up to as much again, as the JS client waits."""
        return self.hint * (1 + random.random())


class Client(Receiver):
    """One WebSocket connection: handshake, then record every benchmark message it receives."""

    def __init__(
        self,
        url: str,
        protocol: str,
        messages: int,
        stats: Stats,
        open_timeout: float,
        ack_batch_s: float = 0.0,
        token: str | None = None,
        batch: bool = False,
    ) -> None:
        super().__init__(messages, stats)
        self.batch = batch
        self.ack_batch_s = ack_batch_s
        self.token = token
        self._acks: list[str] = []
        self._ack_flush: asyncio.Task[None] | None = None
        self.url = url
        self.protocol = protocol
        self.open_timeout = open_timeout
        parts = urlsplit(url)
        self.origin = f"http://{parts.hostname}:{parts.port}"
        self.cursor: dict[str, Any] | None = None
        self.ws: ClientConnection | None = None
        # the storm scenario: the next reconnect waits up to this long; when it resumed
        self.storm_jitter: float | None = None
        self.resumed_at: float | None = None

    @property
    def is_open(self) -> bool:
        """Whether the socket is (still) held."""
        return self.ws is not None

    async def open(self) -> None:
        """Connect and wait until the server says this socket will get every message."""
        protocols = [REALTIME_SUBPROTOCOL] if self.protocol == "realtime" else None
        if self.token is not None and protocols is not None:
            # a non-browser client: no Origin, the token in the subprotocol
            protocols.append(Subprotocol(f"realtime.token.{self.token}"))
        if self.batch and protocols is not None:
            protocols.append(Subprotocol(BATCH_SUBPROTOCOL))
        try:
            self.ws = await connect(
                self.url,
                origin=None if self.token is not None else self.origin,  # type: ignore[arg-type]
                subprotocols=protocols,
                compression=None,
                proxy=None,
                open_timeout=self.open_timeout,
                ping_interval=None,  # the servers ping; the client only answers
                close_timeout=1.0,
                max_size=1 << 20,
            )
        except InvalidStatus as refusal:  # uvicorn: HTTP 503 with Retry-After
            response = refusal.response
            if response.status_code == 503 and response.headers.get("Retry-After"):
                raise Refused(float(response.headers["Retry-After"])) from None
            raise
        if self.protocol == "realtime":
            await self._realtime_handshake(self.ws)
        else:
            frame = json.loads(await self.ws.recv())
            if frame.get("type") != "ready":
                raise HandshakeError(f"expected a ready frame, got {str(frame)[:120]}")

    async def _realtime_handshake(self, ws: ClientConnection) -> None:
        welcome = json.loads(await ws.recv())
        if welcome.get("type") == "close" and welcome.get("retry_after_ms"):
            # daphne: accepted, then `close` with the hint and 4013 (busy) or 4012 (draining)
            await ws.close()
            raise Refused(float(welcome["retry_after_ms"]) / 1000)
        if welcome.get("type") != "welcome":
            raise HandshakeError(f"expected welcome, got {str(welcome)[:160]}")
        if self.batch and not welcome.get("batch"):
            raise HandshakeError("batch frames asked for and not confirmed by welcome")
        pending: list[dict[str, Any]] = []
        subscribe: dict[str, Any] = {"type": "subscribe", "topic": TOPIC}
        if self.cursor is not None:
            subscribe["cursor"] = self.cursor
        await ws.send(json.dumps(subscribe))
        for _ in range(10_000):  # replayed messages may come first; bounded all the same
            if not pending:
                pending = self._unpack(json.loads(await ws.recv()))
            frame = pending.pop(0)
            kind = frame.get("type")
            if kind == "subscribed":
                if self.cursor is None:
                    self.cursor = {"epoch": frame.get("epoch"), "offset": frame.get("offset")}
                now = time.time()
                for after in pending:  # live messages batched with the `subscribed`
                    await self._on_realtime_frame(ws, after, now)
                return
            if kind == "error":
                raise HandshakeError(f"subscribe refused: {str(frame)[:160]}")
            await self._on_realtime_frame(ws, frame, time.time())
        raise HandshakeError("no subscribed frame after 10,000 frames")

    def _unpack(self, frame: dict[str, Any]) -> list[dict[str, Any]]:
        """The frames of a ``batch`` frame; any other frame alone."""
        return unbatch(frame, self.stats)

    async def _on_realtime_frame(
        self, ws: ClientConnection, frame: dict[str, Any], now: float
    ) -> None:
        kind = frame.get("type")
        if kind == "message":
            if frame.get("topic") == TOPIC:
                self._record(frame.get("data"), now)
                self.cursor = {"epoch": frame.get("epoch"), "offset": frame.get("offset")}
            if frame.get("ack"):
                await self._ack(ws, str(frame.get("id")))
        elif kind == "ping":
            await ws.send(PONG)
        elif kind == "reset":
            self.stats.resets += 1
            self.cursor = {"epoch": frame.get("epoch"), "offset": frame.get("offset")}
        elif kind == "error":
            self.stats.errors[f"error frame {frame.get('code')}"] += 1

    async def _ack(self, ws: ClientConnection, message_id: str) -> None:
        if not self.ack_batch_s:
            await self._send_acks(ws, [message_id])
            return
        self._acks.append(message_id)
        if len(self._acks) >= MAX_ACK_IDS:
            ids, self._acks = self._acks, []
            await self._send_acks(ws, ids)
        elif self._ack_flush is None or self._ack_flush.done():
            self._ack_flush = asyncio.create_task(self._flush_acks_later(ws))

    async def _flush_acks_later(self, ws: ClientConnection) -> None:
        await asyncio.sleep(self.ack_batch_s)
        ids, self._acks = self._acks, []
        if ids and ws is self.ws:
            with contextlib.suppress(ConnectionClosed):
                await self._send_acks(ws, ids)

    async def _send_acks(self, ws: ClientConnection, ids: list[str]) -> None:
        self.stats.ack_frames += 1
        self.stats.ack_ids += len(ids)
        await ws.send(json.dumps({"type": "ack", "ids": ids}))

    async def read(self) -> None:
        """Record messages until the socket closes (resuming when the protocol allows it)."""
        reconnects = 0
        try:
            await self._read(reconnects)
        finally:
            if not self.complete:
                self.stats.gone_clients += 1

    async def _read(self, reconnects: int) -> None:
        while self.ws is not None:
            ws = self.ws
            code: int | None = None
            try:
                if self.protocol == "realtime":
                    async for raw in ws:
                        now = time.time()
                        for frame in self._unpack(json.loads(raw)):
                            await self._on_realtime_frame(ws, frame, now)
                else:
                    async for raw in ws:
                        self._record(json.loads(raw), time.time())
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else 1006
            except Exception as exc:
                self.stats.errors[f"{type(exc).__name__}: {str(exc)[:80]}"] += 1
                ws.transport.abort()
                code = 1006
            if code is None:  # the loop ended on a clean close (1000 or 1001)
                code = ws.close_code if ws.close_code is not None else 1000
            self.ws = None
            if not self.stats.recording:
                return
            self.stats.closed[str(code)] += 1
            if (
                self.protocol != "realtime"
                or code not in RESUMABLE_CLOSE_CODES
                or reconnects >= MAX_RECONNECTS
                or self.complete
            ):
                return
            reconnects += 1
            self.stats.reconnects += 1
            first_pause = 0.5 * 2**reconnects if self.storm_jitter is None else self.storm_jitter
            failures = 0
            pause = random.uniform(0.0, first_pause)
            for _ in range(1 + CONNECT_RETRIES + MAX_REFUSALS):  # a refused handshake again
                await asyncio.sleep(pause)
                try:
                    await asyncio.wait_for(self.open(), self.open_timeout)
                except Refused as refused:  # busy: after its hint, not counted as a failure
                    self.stats.refused += 1
                    await self.abort()
                    pause = refused.pause()
                    continue
                except Exception as exc:
                    self.stats.errors[f"reconnect: {type(exc).__name__}"] += 1
                    await self.abort()
                    failures += 1
                    if failures > CONNECT_RETRIES:
                        break
                    # full jitter, the ceiling doubling after each failed handshake
                    pause = random.uniform(0.0, first_pause * 2**failures)
                    continue
                if self.storm_jitter is not None:
                    self.storm_jitter, self.resumed_at = None, time.time()
                break

    async def abort(self) -> None:
        """Drop the socket without a closing handshake (the server is about to be killed)."""
        if self.ws is not None:
            self.ws.transport.abort()
        self.ws = None


def make_client(
    protocol: str,
    urls: list[str],
    index: int,
    messages: int,
    stats: Stats,
    open_timeout: float,
    ack_batch_s: float = 0.0,
    token: str | None = None,
    batch: bool = False,
) -> Any:
    """Client number ``index`` (counted over all workers) for ``protocol``.

    WebSocket and SSE clients go round-robin over the nodes (``urls``); a long-poll client
    sends each poll to the next node in turn, starting at node ``index % len(urls)``.
    """
    if protocol in HTTP_PROTOCOLS:
        return make_http_client(protocol, urls, index, messages, stats, open_timeout)
    url = urls[index % len(urls)]
    return Client(url, protocol, messages, stats, open_timeout, ack_batch_s, token, batch)


async def run_worker(args: argparse.Namespace) -> None:
    """Open the connections, report readiness, record until the drain ends, report results."""
    urls: list[str] = args.urls.split(",")
    for url in urls:
        if urlsplit(url).hostname not in LOOPBACK_HOSTS:
            raise SystemExit(f"bench.loadgen: refusing non-loopback URL {url!r}")
    stats = Stats()
    batch_s = args.ack_batch_ms / 1000.0
    tokens: list[str] = []
    if args.tokens:
        text = await asyncio.to_thread(Path(args.tokens).read_text, encoding="utf-8")
        tokens = json.loads(text)[args.offset : args.offset + args.count]
    clients = [
        make_client(
            args.protocol,
            urls,
            args.offset + i,
            args.messages,
            stats,
            30.0,
            batch_s,
            tokens[i] if tokens else None,
            args.batch,
        )
        for i in range(args.count)
    ]
    gate = asyncio.Semaphore(args.concurrency)
    fail_reasons: Counter[str] = Counter()
    retry_reasons: Counter[str] = Counter()
    connected = 0
    done_connecting = 0
    all_done = asyncio.Event()

    async def life(client: Client) -> None:
        nonlocal connected, done_connecting
        ok = False
        failures = 0
        pause = 0.0
        for _ in range(1 + CONNECT_RETRIES + MAX_REFUSALS):
            if pause:  # a real client retries a refused handshake too, after a pause
                await asyncio.sleep(pause)
            async with gate:
                try:
                    await asyncio.wait_for(client.open(), args.handshake_timeout)
                    ok = True
                except Refused as refused:  # busy: after its hint, not counted as a failure
                    stats.refused += 1
                    await client.abort()
                    pause = refused.pause()
                    continue
                except Exception as exc:
                    reason = f"{type(exc).__name__}: {str(exc)[:100]}"
                    failures += 1
                    if failures <= CONNECT_RETRIES:
                        retry_reasons[reason] += 1
                    else:
                        fail_reasons[reason] += 1
                    await client.abort()
                    pause = random.uniform(0.1, 0.4 * 2**failures)
            if ok or failures > CONNECT_RETRIES:
                break
        client.opened = ok
        connected += ok
        done_connecting += 1
        if done_connecting == len(clients):
            all_done.set()
        if ok:
            try:
                await client.read()
            except Exception as exc:  # keep it in the report, not in "never retrieved" noise
                stats.errors[f"reader: {type(exc).__name__}: {str(exc)[:80]}"] += 1

    started = time.monotonic()
    tasks = [asyncio.create_task(life(c)) for c in clients]
    if not clients:
        all_done.set()
    try:
        await asyncio.wait_for(all_done.wait(), args.connect_timeout)
    except TimeoutError:
        fail_reasons["connect phase timed out"] += len(clients) - done_connecting
        for client, task in zip(clients, tasks, strict=True):
            if not client.opened:
                task.cancel()
    connected_at_ready = connected
    failed = len(clients) - connected
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    emit(
        "ready",
        connected=connected,
        failed=failed,
        fail_reasons=dict(fail_reasons.most_common(5)),
        retries=sum(retry_reasons.values()),
        retry_reasons=dict(retry_reasons.most_common(5)),
        refused=stats.refused,
        connect_s=round(time.monotonic() - started, 3),
    )

    stdin = await open_stdin()
    line = await asyncio.wait_for(stdin.readline(), args.command_timeout)
    command = json.loads(line) if line.strip() else {"t_last": time.time(), "max_drain": 0}
    if "storm" in command:
        await storm(clients, tasks, float(command["storm"]), float(command.get("timeout", 120)))
        line = await asyncio.wait_for(stdin.readline(), args.command_timeout)
        command = json.loads(line) if line.strip() else {"t_last": time.time(), "max_drain": 0}
    t_last = float(command.get("t_last") or time.time())
    drain = float(command.get("drain", 10.0))
    max_drain = float(command.get("max_drain", 30.0))
    idle = float(command.get("idle", 2.0))
    status = "cutoff"
    for _ in range(int((max_drain + 60.0) / 0.05)):  # bounded; the checks below end it sooner
        now = time.time()
        if stats.complete_clients + stats.gone_clients >= connected_at_ready:
            status = "complete" if stats.complete_clients >= connected_at_ready else "closed"
            break
        if now >= t_last + drain and now - (stats.last_rx or t_last) >= idle:
            status = "idle"
            break
        if now >= t_last + max_drain:
            status = "cutoff"
            break
        await asyncio.sleep(0.05)
    stats.recording = False
    stopped_at = time.time()
    machine_jiffies = machine_cpu_jiffies()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    still_open = sum(1 for c in clients if c.is_open)
    emit(
        "result",
        connected=connected,
        failed=failed,
        still_open=still_open,
        unique=stats.unique,
        dups=stats.dups,
        out_of_range=stats.out_of_range,
        resets=stats.resets,
        reconnects=stats.reconnects,
        complete_connections=sum(1 for c in clients if c.complete),
        http_requests=stats.http_requests,
        tcp_connects=stats.tcp_connects,
        ack_frames=stats.ack_frames,
        ack_ids=stats.ack_ids,
        batch_frames=stats.batch_frames,
        batched=stats.batched,
        refused=stats.refused,
        closed=dict(stats.closed),
        errors=dict(stats.errors.most_common(5)),
        first_rx=stats.first_rx,
        last_rx=stats.last_rx,
        status=status,
        stopped_at=stopped_at,
        machine_jiffies=machine_jiffies,
        cpu_s=round(
            (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime),
            3,
        ),
        latencies_ms=[round(v, 3) for v in stats.latencies_ms],
    )
    # Wait for the orchestrator to close our stdin: it kills the servers first.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stdin.read(), EXIT_WAIT_S)


async def storm(
    clients: list[Client], tasks: list[asyncio.Task[None]], jitter: float, timeout: float
) -> None:
    """Drop every open socket at once; each client reconnects after up to ``jitter`` seconds
    and resumes from its cursor. Print ``stormed`` when all are back or gone (or after
    ``timeout`` seconds)."""
    live = [(c, t) for c, t in zip(clients, tasks, strict=True) if c.is_open]
    started = time.time()
    for client, _ in live:
        client.storm_jitter, client.resumed_at = jitter, None
        await client.abort()
    for _ in range(int(timeout / 0.05)):  # bounded
        if all(c.resumed_at is not None or t.done() for c, t in live):
            break
        await asyncio.sleep(0.05)
    resumed = sorted(c.resumed_at - started for c, _ in live if c.resumed_at is not None)
    emit(
        "stormed",
        dropped=len(live),
        resumed=len(resumed),
        started=started,
        resume_s=round(resumed[-1], 3) if resumed else None,
        resume_p50_s=round(resumed[len(resumed) // 2], 3) if resumed else None,
    )


async def open_stdin() -> asyncio.StreamReader:
    """Stdin as an asyncio stream, so waiting on it can time out without a stuck thread."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


def main() -> None:
    """Command-line entry point (run by ``bench.run``; not meant to be started by hand)."""
    raise_fd_limit()
    parser = argparse.ArgumentParser(description="bench load-generator worker")
    parser.add_argument(
        "--urls", required=True, help="comma-separated ws:// (http:// for sse, longpoll) URLs"
    )
    parser.add_argument("--protocol", choices=PROTOCOLS, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--offset", type=int, default=0, help="round-robin start among --urls")
    parser.add_argument("--messages", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument(
        "--ack-batch-ms",
        type=float,
        default=0.0,
        help="realtime: gather ACKs this long into one frame (0: one frame per message)",
    )
    parser.add_argument(
        "--batch",
        action="store_true",
        help="realtime: offer realtime.batch and unpack batch frames (docs/protocol.md)",
    )
    parser.add_argument("--handshake-timeout", type=float, default=30.0)
    parser.add_argument("--tokens", help="JSON list of tokens, one per client (bench.tokens)")
    parser.add_argument("--connect-timeout", type=float, default=120.0)
    parser.add_argument("--command-timeout", type=float, default=300.0)
    args = parser.parse_args()
    code = 0
    try:
        asyncio.run(run_worker(args))
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # do not wait for thousands of closing handshakes


if __name__ == "__main__":
    main()
