"""The clients of the rolling-restart scenario (``bench.rolling``), one worker process of many.

Each client follows the topic ``bench`` over WebSocket as the JS client does: with ``--batch``
it offers ``realtime.batch`` next to ``realtime.v1`` and unpacks ``batch`` frames
(docs/protocol.md, "Batch frames"); it resumes from its cursor after every break; after a
close with 4012 (service restart, a draining node) or 1012, the socket's or a ``close``
frame's (the only frame of a handshake a draining daphne took), it reconnects within a
random delay under 1 s, after another ``close`` frame with ``retry_after_ms`` (4013, busy)
after that hint plus up to as much again, after any other break or a refused handshake
after a full-jitter backoff (0.5 s doubling up to 20 s). A
``reset`` (the log no longer held the client's gap) moves its cursor to the log's position
and is counted; the messages it skipped count as lost. Given two node URLs, where it
reconnects plays the load balancer: to a node the orchestrator says is in rotation
(``{"up": [bool, bool]}`` on stdin), the other node first; given one URL (a load
balancer's: ``bench.rolling --via nginx``), always to it.

Protocol on stdout (JSON lines): ``{"event": "ready"}`` once every client is subscribed, then,
after ``{"total": M}`` on stdin and once every client holds offset M (or ``--max-wait``
seconds passed), ``{"event": "result", ...}``: lost and duplicate messages over all clients,
the time of every reconnect per node as the clients saw it (their own loop may be late:
the orchestrator counts reconnects from the servers' access logs), the ``batch`` frames
received and the frames they held, and the worker's CPU seconds. With ``BENCH_DEBUG`` set,
every close and refused handshake is logged on stderr. Loopback only; every loop bounded."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import websockets

from bench._common import BATCH_SUBPROTOCOL, TOPIC, emit, raise_fd_limit, unbatch

DEBUG = bool(os.environ.get("BENCH_DEBUG"))
RESTART_CODES = (4012, 1012)
RESTART_JITTER_S = 1.0
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.5, 20.0


class Closing(Exception):
    """The server sent a ``close`` frame (docs/protocol.md): its code, the socket's close
    follows."""

    def __init__(self, code: int | None) -> None:
        super().__init__(code)
        self.code = code


class World:
    """What every client of this worker shares: the node URLs, which are in rotation, the
    last offset published (once known), and the reconnect times per node."""

    def __init__(self, urls: list[str], batch: bool) -> None:
        self.urls = urls
        self.subprotocols = ["realtime.v1", BATCH_SUBPROTOCOL] if batch else ["realtime.v1"]
        self.batch_frames = 0  # `batch` frames received, and the frames they held
        self.batched = 0
        self.resets = 0  # `reset` frames: a cursor the log could no longer serve
        self.up = [True] * len(urls)
        self.total: int | None = None
        self.reconnects: list[list[float]] = [[] for _ in urls]
        self.changed = asyncio.Event()

    def route(self, previous: int) -> int:
        """The node a new connection goes to: the other one if it is in rotation (with one
        URL, a load balancer's, always that one)."""
        if len(self.urls) == 1:
            return 0
        other = 1 - previous
        return other if self.up[other] or not self.up[previous] else previous


class Follower:
    def __init__(self, node: int) -> None:
        self.node = node
        self.offsets: list[int] = []
        self.cursor: dict[str, Any] | None = None
        self.subscribed = asyncio.Event()
        self.attempts = 0
        self.hint = 0.0  # seconds to wait before the next attempt, from a close frame

    def done(self, world: World) -> bool:
        return world.total is not None and bool(self.offsets) and self.offsets[-1] >= world.total

    async def run(self, world: World) -> None:
        first = True
        for _ in range(1000):  # connections, at most
            url = world.urls[self.node]
            try:
                ws = await websockets.connect(
                    url,
                    origin=f"http://{urlsplit(url).netloc}",  # type: ignore[arg-type]
                    subprotocols=world.subprotocols,  # type: ignore[arg-type]
                    open_timeout=10,
                    max_queue=None,
                    compression=None,  # daphne accepts no permessage-deflate
                    ping_interval=None,  # the JS client sends no WebSocket pings
                )
            except Exception as error:  # refused (draining: 403/503) or nothing listens (stopped)
                if DEBUG:
                    print(
                        f"{time.time():.2f} connect {self.node} failed: {error!r}", file=sys.stderr
                    )
                await self._pause(world, None)
                continue
            code = await self._follow(ws, world, first)
            if DEBUG:
                print(f"{time.time():.2f} node {self.node} closed {code}", file=sys.stderr)
            first = False
            if self.done(world):
                return
            await self._pause(world, code)

    async def _follow(self, ws: Any, world: World, first: bool) -> int | None:
        try:
            welcome = json.loads(await ws.recv())
            if welcome.get("type") == "close":  # a handshake a draining daphne took
                raise self._closing(welcome)
            if welcome.get("type") != "welcome":
                return None
            if not first:
                world.reconnects[self.node].append(time.time())
            frame: dict[str, Any] = {"type": "subscribe", "topic": TOPIC}
            if self.cursor is not None:
                frame["cursor"] = self.cursor
            await ws.send(json.dumps(frame))
            async for text in ws:
                for message in unbatch(json.loads(text), world):
                    if await self._handle(ws, message, world):
                        await ws.close()
                        return 1000
        except Closing as closing:
            return closing.code
        except websockets.ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None
        except Exception:
            return None
        return None

    def _closing(self, frame: dict[str, Any]) -> Closing:
        """A ``close`` frame: act on its code as on the socket's, after its hint if any."""
        self.hint = float(frame.get("retry_after_ms") or 0) / 1000
        return Closing(frame["code"] if isinstance(frame.get("code"), int) else None)

    async def _handle(self, ws: Any, message: dict[str, Any], world: World) -> bool:
        """Take one server frame; whether this client now holds every message."""
        kind = message["type"]
        if kind == "message":
            self.offsets.append(message["offset"])
            self.cursor = {"epoch": message["epoch"], "offset": message["offset"]}
            return self.done(world)
        if kind == "subscribed":
            if self.cursor is None:
                self.cursor = {"epoch": message["epoch"], "offset": message["offset"]}
            self.subscribed.set()
            self.attempts = 0
        elif kind == "reset":  # the gap is gone from the log: continue from its position
            world.resets += 1
            if DEBUG:
                print(f"reset {message} (cursor {self.cursor})", file=sys.stderr, flush=True)
            self.cursor = {"epoch": message["epoch"], "offset": message["offset"]}
        elif kind == "ping":
            await ws.send('{"type":"pong"}')
        elif kind == "close":
            raise self._closing(message)
        return False

    async def _pause(self, world: World, code: int | None) -> None:
        hint, self.hint = self.hint, 0.0
        if code in RESTART_CODES:  # a restart (the close frame's code too): at once
            delay = random.random() * RESTART_JITTER_S
            self.attempts = 0
        elif hint:  # a close frame's retry_after_ms (busy): that, plus up to as much again
            delay = hint * (1 + random.random())
        else:
            ceiling = min(BACKOFF_MAX_S, BACKOFF_MIN_S * 2**self.attempts)
            self.attempts += 1
            delay = random.random() * ceiling
        self.node = world.route(self.node)
        await asyncio.sleep(delay)


async def main(args: argparse.Namespace) -> None:
    raise_fd_limit()
    world = World(args.urls, args.batch)
    followers = [Follower((args.offset + i) % len(args.urls)) for i in range(args.count)]
    tasks: list[asyncio.Task[None]] = []
    for follower in followers:  # at most 50 handshakes at a time
        tasks.append(asyncio.create_task(follower.run(world)))
        if len(tasks) % 50 == 0:
            await asyncio.sleep(0.05)
    async with asyncio.timeout(60 + args.count / 20):
        await asyncio.gather(*(f.subscribed.wait() for f in followers))
    emit("ready")
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    for _ in range(100):  # commands, at most
        line = await stdin.readline()
        if not line:
            break
        command = json.loads(line)
        if "up" in command and len(command["up"]) == len(world.urls):
            world.up = [bool(up) for up in command["up"]]
        if "total" in command:
            world.total = int(command["total"])
            break
    for _ in range(int(args.max_wait / 0.2)):  # until every client holds the last offset
        if all(f.done(world) for f in followers):
            break
        await asyncio.sleep(0.2)
    for task in tasks:
        task.cancel()
    total = world.total or 0
    lost = sum(len(set(range(1, total + 1)) - set(f.offsets)) for f in followers)
    duplicates = sum(len(f.offsets) - len(set(f.offsets)) for f in followers)
    incomplete = sum(not f.done(world) for f in followers)  # still catching up at --max-wait
    emit(
        "result",
        lost=lost,
        duplicates=duplicates,
        incomplete=incomplete,
        reconnects=world.reconnects,
        batch_frames=world.batch_frames,
        batched=world.batched,
        resets=world.resets,
        cpu_s=round(time.process_time(), 2),
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--urls", nargs="+", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--max-wait", type=float, default=120.0)
    parser.add_argument("--batch", action="store_true", help="offer realtime.batch")
    arguments = parser.parse_args()
    for url in arguments.urls:
        if urlsplit(url).hostname not in ("127.0.0.1", "localhost"):
            raise SystemExit(f"{url}: loopback URLs only")
    asyncio.run(main(arguments))
