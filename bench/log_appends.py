"""Topic-log appends per second on one Redis against a three-master Redis Cluster, in one run.

For each topology (a private ``redis-server``; three ``redis-server --cluster-enabled yes``
joined by ``redis-cli --cluster create``, all on free loopback ports), ``--publishers``
processes each append ``--appends`` messages (or as many as they can in ``--seconds``) through
:meth:`realtime.log.redis.RedisLog.append`, the call ``publish()`` makes for one message, over
``--topics`` topics in turn, with ``--inflight`` appends in flight per process. Reported per
topology: appends/s (all publishers, from the first append to the last one's end), the CPU
each redis-server used per second of the run (1.0 is one core busy) and the publishers' own
CPU, so that the figures say whether Redis or the Python clients hold the rate back; then the
cluster's rate over one Redis's.

    python -m bench.log_appends [--appends 20000] [--seconds 30] [--topics 100] [--publishers 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from typing import Any

from bench.broker import _child, _cpu_seconds, on_both_topologies

PUBLISHER = r"""
import asyncio, json, os, sys, time, uuid
from realtime.log.redis import RedisLog
from realtime._redis import aclose_clients
url, prefix, topics, appends, seconds, inflight, start = sys.argv[1:8]
topics, appends, inflight = int(topics), int(appends), int(inflight)
seconds, start = float(seconds), float(start)

async def main():
    log = RedisLog(url, prefix, 1000, 3600.0)
    for n in range(topics):  # every topic's epoch exists before the clock starts
        await log.append(f"bench.{n}", uuid.uuid4().hex, "message", "{}", False, time.time())
    await asyncio.sleep(max(0.0, start - time.time()))
    began, cpu = time.time(), time.process_time()
    deadline = began + seconds
    queue = iter(range(appends))
    done = 0

    async def worker():
        nonlocal done
        for n in queue:
            if time.time() > deadline:
                return
            await log.append(f"bench.{n % topics}", uuid.uuid4().hex, "message",
                             '{"n": %d, "data": "%s"}' % (n, "x" * 64), False, time.time())
            done += 1

    await asyncio.gather(*(worker() for _ in range(inflight)))
    ended = time.time()
    print(json.dumps({"began": began, "ended": ended, "done": done,
                      "cpu": time.process_time() - cpu}), flush=True)
    await aclose_clients()

asyncio.run(main())
"""


def measure(url: str, opts: argparse.Namespace, servers: list[int]) -> dict[str, Any]:
    """One topology: the publishers at full speed, the figures; ``servers`` are the
    redis-server pids, whose CPU time is reported one by one."""
    prefix = f"bench-log-{uuid.uuid4().hex[:6]}"
    start = time.time() + 3.0 + opts.topics * 0.002
    before = [_cpu_seconds([pid]) for pid in servers]
    publishers = [
        _child(
            PUBLISHER, url, prefix, opts.topics, opts.appends, opts.seconds, opts.inflight, start
        )
        for _ in range(opts.publishers)
    ]
    timeout = opts.seconds + 120
    spans = [json.loads(p.communicate(timeout=timeout)[0].splitlines()[-1]) for p in publishers]
    after = [_cpu_seconds([pid]) for pid in servers]
    began = min(s["began"] for s in spans)
    ended = max(s["ended"] for s in spans)
    elapsed = ended - began
    done = sum(s["done"] for s in spans)
    return {
        "appends": done,
        "appends_per_s": round(done / elapsed),
        "seconds": round(elapsed, 1),
        # per redis-server, per second of the run: 1.0 is one core busy
        "redis_cpu": [round((a - b) / elapsed, 2) for a, b in zip(after, before, strict=True)],
        # all publishers together, per second of the run
        "publishers_cpu": round(sum(s["cpu"] for s in spans) / elapsed, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.log_appends", description=__doc__)
    parser.add_argument("--appends", type=int, default=20000, help="per publisher, at most")
    parser.add_argument("--seconds", type=float, default=30.0, help="per topology, at most")
    parser.add_argument("--topics", type=int, default=100)
    parser.add_argument("--publishers", type=int, default=3)
    parser.add_argument("--inflight", type=int, default=20, help="per publisher")
    parser.add_argument("--repeat", type=int, default=1)
    opts = parser.parse_args()
    ratios = []
    for repeat in range(opts.repeat):
        one, three = on_both_topologies(measure, opts)
        ratios.append(three["appends_per_s"] / one["appends_per_s"])
        for row in (one, three):
            print(json.dumps({**row, "repeat": repeat}), flush=True)
        print(json.dumps({"repeat": repeat, "ratio": round(ratios[-1], 2)}), flush=True)
    if opts.repeat > 1:
        print(json.dumps({"median_ratio": round(statistics.median(ratios), 2)}), flush=True)


if __name__ == "__main__":
    main()
