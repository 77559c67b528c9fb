"""How fast the admin console reads the registry at 10,000 connections.

Fills a Redis registry with 10,000 entries across 4 nodes under a unique key prefix, times
``query()`` (median and worst of 20 runs) for the console's first page, a filtered query and a
search, and the console's whole read (one ``all()``, the page, the filter choices and the
totals), prints the figures, and deletes its keys::

    .venv/bin/python -m bench.registry_reads [--entries 10000] [--nodes 4] [--runs 20]

It needs a Redis on 127.0.0.1 (``BENCH_REDIS_URL`` or ``REDIS_URL``, loopback only)."""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from bench._common import redis_url_from_env, require_loopback_redis
from realtime._redis import aclose_clients, get_client
from realtime.registry.base import Entry, Query
from realtime.registry.redis import RedisRegistry

USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)


def make_entries(count: int, nodes: list[str]) -> dict[str, list[Entry]]:
    """``count`` plausible connections, spread round-robin over ``nodes``."""
    now = time.time()
    by_node: dict[str, list[Entry]] = {node: [] for node in nodes}
    for n in range(count):
        node = nodes[n % len(nodes)]
        user = n % 3000
        topics = [f"user.{user}", f"room.{n % 50}"] + (["news"] if n % 4 == 0 else [])
        by_node[node].append(
            Entry(
                id=uuid.uuid4().hex,
                node=node,
                address=f"realtime.hub.{node}!{uuid.uuid4().hex}",
                transport=("websocket", "websocket", "sse", "longpoll")[n % 4],
                user_id=user,
                username=f"customer{user:05d}",
                topics=topics,
                client=f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}:{40000 + n % 20000}",
                user_agent=USER_AGENT,
                connected_at=now - n,
                last_seen=now - n % 30,
                messages_in=n % 100,
                messages_out=n % 1000,
                pending_acks=n % 3,
            )
        )
    return by_node


async def timed(runs: int, read: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    """Median and worst wall time of ``runs`` reads, in milliseconds (after one warm-up)."""
    await read()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        await read()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), max(samples)


async def main(url: str, count: int, node_count: int, runs: int) -> None:
    from realtime.console.listing import Params, snapshot_of

    prefix = f"rt-bench-registry-{uuid.uuid4().hex[:8]}"
    registry = RedisRegistry(url, prefix, 60.0)
    nodes = [f"bench-host-{n}:{1000 + n}:1" for n in range(node_count)]
    try:
        for node, entries in make_entries(count, nodes).items():
            await registry.refresh(node, entries, 600)
        size = sum(
            [await get_client(url).memory_usage(f"{prefix}:node:{node}") or 0 for node in nodes]
        )
        page = await registry.query(Query())
        print(f"registry: {page.total} entries on {len(page.nodes)} nodes, {size / 1e6:.1f} MB")

        async def console() -> Any:
            return snapshot_of(await registry.all(), Params(), time.time())

        cases: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            ("query: page 1 (50, newest first)", lambda: registry.query(Query())),
            (
                "query: node + transport filter",
                lambda: registry.query(Query(node=nodes[1], transport="sse")),
            ),
            ("query: topic filter", lambda: registry.query(Query(topic="room.7"))),
            ("query: search 'customer0042'", lambda: registry.query(Query(search="customer0042"))),
            ("all() alone (fetch + decode)", registry.all),
            ("console poll (all + page + facets)", console),
        ]
        results = {}
        for name, read in cases:
            median, worst = await timed(runs, read)
            results[name] = {"median_ms": round(median, 1), "max_ms": round(worst, 1)}
            print(f"{name:<40} median {median:7.1f} ms   max {worst:7.1f} ms   ({runs} runs)")
        print(json.dumps({"entries": count, "nodes": node_count, "runs": runs, **results}))
    finally:
        client = get_client(url)
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
        await aclose_clients()


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--redis-url", default=redis_url_from_env())
    options = parser.parse_args()
    url = require_loopback_redis(options.redis_url)
    asyncio.run(main(url, options.entries, options.nodes, options.runs))


if __name__ == "__main__":
    run()
