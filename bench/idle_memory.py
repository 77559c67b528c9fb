"""Where an idle connection's memory goes: ``python -m bench.idle_memory [--connections N]``.

Opens N WebSocket connections to the `realtime` target's ASGI application in this process
(Channels' ``WebsocketCommunicator``: the application's side of each socket, without daphne's
and autobahn's own objects), each subscribed to one topic, and compares two ``tracemalloc``
snapshots, before and after, grouped by the line that allocated (and by file). The figures are
per connection. Needs Redis on 127.0.0.1 (``REDIS_URL``), as the benchmark's realtime target;
the keys of the run (a unique prefix) are deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import secrets
import tracemalloc

from bench._common import raise_fd_limit, redis_url_from_env, require_loopback_redis
from bench.nodes import cleanup_redis


async def measure(count: int, top: int) -> None:
    from channels.testing import WebsocketCommunicator

    from bench.realtime_app.asgi import application
    from realtime.hub import get_hub

    async def connect() -> WebsocketCommunicator:
        client = WebsocketCommunicator(
            application,
            "/realtime/ws/",
            headers=[(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")],
            subprotocols=["realtime.v1"],
        )
        connected, _ = await client.connect()
        assert connected
        await client.receive_from(5)  # welcome
        await client.send_to('{"type":"subscribe","topic":"bench"}')
        await client.receive_from(5)  # subscribed
        return client

    warmup = [await connect() for _ in range(20)]  # imports, caches, the hub and its tasks
    await get_hub().registry_written()
    gc.collect()
    before = tracemalloc.take_snapshot()
    clients = [await connect() for _ in range(count)]
    await get_hub().registry_written()
    gc.collect()
    after = tracemalloc.take_snapshot()
    total = sum(s.size_diff for s in after.compare_to(before, "filename"))
    print(f"{count} connections: {total / count / 1024:.2f} KiB per connection (Python heap)\n")
    print("by file (bytes per connection):")
    for stat in after.compare_to(before, "filename")[:top]:
        print(f"  {stat.size_diff / count:8.0f}  {stat.traceback[0].filename}")
    print("\nby line (bytes per connection, objects per connection):")
    for stat in after.compare_to(before, "lineno")[:top]:
        frame = stat.traceback[0]
        print(
            f"  {stat.size_diff / count:8.0f}  {stat.count_diff / count:5.1f}  "
            f"{frame.filename}:{frame.lineno}"
        )
    for client in warmup + clients:
        await client.disconnect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    raise_fd_limit()
    url = require_loopback_redis(redis_url_from_env())
    prefix = f"bench-{secrets.token_hex(5)}"
    os.environ.update(REDIS_URL=url, BENCH_REDIS_URL=url, BENCH_PREFIX=prefix)
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.realtime_app.settings"
    import django

    django.setup()
    tracemalloc.start(1)
    try:
        asyncio.run(measure(args.connections, args.top))
    finally:
        cleanup_redis(url, prefix)


if __name__ == "__main__":
    main()
