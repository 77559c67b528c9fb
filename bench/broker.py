"""The Redis broker's fan-out on one Redis against a three-master Redis Cluster (sharded
pub/sub), in one run.

For each topology (a private ``redis-server``; three ``redis-server --cluster-enabled yes``
joined by ``redis-cli --cluster create``, all on free loopback ports), ``--subscribers``
processes each join ``--topics`` topics through :class:`realtime.broker.redis.RedisBroker`
(as a hub with local subscribers of every topic would), then ``--publishers`` processes
broadcast ``--messages`` messages each, over the topics in turn, as fast as they can with
``--inflight`` broadcasts in flight per process. Reported per topology: broadcasts/s (all
publishers, from the first send to the last one's end), deliveries/s (all subscribers, until
the last delivery) and the publish → receive latency of every delivery (p50, p99).

    python -m bench.broker [--messages 20000] [--topics 100] [--publishers 3] [--subscribers 2]

Log appends on the cluster: ``python -m bench.log_appends``."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

# the local servers the test suite starts, on free loopback ports
from tests.conftest import RedisServer
from tests.redis_topologies import LocalCluster

ROOT = Path(__file__).resolve().parent.parent

SUBSCRIBER = r"""
import asyncio, json, sys, time
from realtime.broker.redis import RedisBroker
url, prefix, topics, expected = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

class Hub:
    def __init__(self):
        self.loop = asyncio.get_running_loop()
        self.subscribers = {}
        self.latencies = []
        self.done = asyncio.Event()
        self.last = 0.0
    def dispatch(self, message):
        self.last = time.time()
        self.latencies.append(self.last - message["time"])
        if len(self.latencies) >= expected:
            self.done.set()
    def control(self, message): pass
    async def channel(self): return ""
    def resync(self): pass

async def main():
    broker, hub = RedisBroker(url, prefix), Hub()
    for n in range(topics):
        await broker.join(hub, f"bench.{n}")
    print("ready", flush=True)
    try:
        await asyncio.wait_for(hub.done.wait(), 300)
    except TimeoutError:
        pass
    print(json.dumps({"latencies": hub.latencies, "last": hub.last}), flush=True)
    await broker.aclose()

asyncio.run(main())
"""

PUBLISHER = r"""
import asyncio, json, sys, time
from realtime.broker.redis import RedisBroker
from realtime._redis import aclose_clients
url, prefix, topics, messages, inflight, start = sys.argv[1:7]
topics, messages, inflight, start = int(topics), int(messages), int(inflight), float(start)

async def main():
    broker = RedisBroker(url, prefix)
    await broker.broadcast("bench.warmup", {"type": "realtime.message", "topic": "bench.warmup"})
    await asyncio.sleep(max(0.0, start - time.time()))
    began = time.time()
    queue = iter(range(messages))

    async def worker():
        for n in queue:
            topic = f"bench.{n % topics}"
            await broker.broadcast(topic, {"type": "realtime.message", "topic": topic,
                                           "n": n, "data": "x" * 64, "time": time.time()})

    await asyncio.gather(*(worker() for _ in range(inflight)))
    print(json.dumps({"began": began, "ended": time.time()}), flush=True)
    await broker.aclose()
    await aclose_clients()

asyncio.run(main())
"""


def _child(script: str, *args: object) -> subprocess.Popen[str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench.base_settings"}
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of the processes ``pids`` so far (Linux ``/proc``)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def measure(url: str, opts: argparse.Namespace, servers: list[int]) -> dict[str, Any]:
    """One topology: subscribers ready, publishers at full speed, the figures; ``servers``
    are the redis-server pids, whose CPU time is reported."""
    prefix = f"bench-broker-{uuid.uuid4().hex[:6]}"
    expected = opts.messages * opts.publishers
    subscribers = [
        _child(SUBSCRIBER, url, prefix, opts.topics, expected) for _ in range(opts.subscribers)
    ]
    for process in subscribers:
        assert process.stdout is not None
        if process.stdout.readline().strip() != "ready":
            raise SystemExit("a subscriber did not start")
    start = time.time() + 2.0
    redis_cpu = _cpu_seconds(servers)
    publishers = [
        _child(PUBLISHER, url, prefix, opts.topics, opts.messages, opts.inflight, start)
        for _ in range(opts.publishers)
    ]
    spans = [json.loads(p.communicate(timeout=600)[0].splitlines()[-1]) for p in publishers]
    results = [json.loads(p.communicate(timeout=600)[0].splitlines()[-1]) for p in subscribers]
    redis_cpu = _cpu_seconds(servers) - redis_cpu
    began = min(s["began"] for s in spans)
    ended = max(s["ended"] for s in spans)
    latencies = [value for r in results for value in r["latencies"]]
    last = max(r["last"] for r in results)
    return {
        "broadcasts_per_s": round(expected / (ended - began)),
        "deliveries_per_s": round(len(latencies) / (last - began)),
        "delivered": f"{len(latencies)}/{expected * opts.subscribers}",
        "p50_ms": round(_percentile(latencies, 0.50) * 1000, 1),
        "p99_ms": round(_percentile(latencies, 0.99) * 1000, 1),
        # all redis-servers together, per second of the run: 1.0 is one core busy
        "redis_cpu_share": round(redis_cpu / (last - began), 2),
    }


def on_both_topologies(
    measure: Callable[[str, argparse.Namespace, list[int]], dict[str, Any]],
    opts: argparse.Namespace,
) -> list[dict[str, Any]]:
    """``measure(url, opts, redis-server pids)`` on a private Redis, then on a local
    three-master cluster, each stopped after its measure: the two rows of figures."""
    single = RedisServer()
    try:
        assert single.process is not None
        rows = [{"topology": "1 Redis", **measure(single.url, opts, [single.process.pid])}]
    finally:
        single.stop()
    cluster = LocalCluster()
    try:
        pids = [p.pid for p in cluster.processes]
        rows.append({"topology": "3 masters", **measure(cluster.url, opts, pids)})
    finally:
        cluster.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.broker", description=__doc__)
    parser.add_argument("--messages", type=int, default=20000, help="per publisher")
    parser.add_argument("--topics", type=int, default=100)
    parser.add_argument("--publishers", type=int, default=3)
    parser.add_argument("--subscribers", type=int, default=2)
    parser.add_argument("--inflight", type=int, default=20, help="per publisher")
    parser.add_argument("--repeat", type=int, default=1)
    opts = parser.parse_args()
    for repeat in range(opts.repeat):
        for row in on_both_topologies(measure, opts):
            print(json.dumps({**row, "repeat": repeat}), flush=True)


if __name__ == "__main__":
    main()
