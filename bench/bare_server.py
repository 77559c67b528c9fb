"""The ceiling: a bare ``websockets`` broadcast server with no Django.

Every connection is kept in a set. One Redis pub/sub subscription (so that several nodes can
share a publisher) feeds ``websockets.broadcast``, which writes each message to every open
connection without awaiting anything: the least work Python can do per delivered frame.

Run: ``python -m bench.bare_server --port 8123 --redis-url redis://127.0.0.1:6379/0
--channel bench-1234:bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import redis.asyncio as aioredis
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

from bench._common import raise_fd_limit, redis_url_from_env, require_loopback_redis

#: Sent once a connection is in the broadcast set, so a client knows it will see every message.
READY_FRAME = '{"type":"ready"}'


async def serve_forever(port: int, redis_url: str, channel: str) -> None:
    """Serve on 127.0.0.1:``port``, broadcast each message of Redis ``channel``; until SIGTERM."""
    clients: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        clients.add(ws)
        try:
            await ws.send(READY_FRAME)
            async for _ in ws:  # clients send nothing we care about; just keep reading
                pass
        except ConnectionClosed:
            pass  # a client dropping its socket is routine here, not a handler failure
        finally:
            clients.discard(ws)

    client = aioredis.from_url(redis_url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(channel)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)

    async def pump() -> None:
        while True:
            message = await pubsub.get_message(timeout=1.0)
            if message is not None and message["type"] == "message":
                broadcast(clients, message["data"], text=True)

    async with serve(
        handler,
        "127.0.0.1",
        port,
        compression=None,  # daphne does not negotiate permessage-deflate either
        max_size=65536,
        backlog=4096,
    ):
        pump_task = asyncio.create_task(pump())
        try:
            await stop.wait()
        finally:
            pump_task.cancel()
            await pubsub.aclose()
            await client.aclose()


def main() -> None:
    """Command-line entry point."""
    raise_fd_limit()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", default=redis_url_from_env())
    parser.add_argument("--channel", required=True, help="Redis pub/sub channel to broadcast")
    args = parser.parse_args()
    asyncio.run(serve_forever(args.port, require_loopback_redis(args.redis_url), args.channel))


if __name__ == "__main__":
    main()
