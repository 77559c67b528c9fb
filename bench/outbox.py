"""Durable against plain publishing, on SQLite and PostgreSQL, in one run.

For each database (a fresh SQLite file; a fresh database on the local PostgreSQL server,
dropped afterwards) a child process measures:

- the call: ``publish()`` inside an open transaction, plain (registers the on-commit send)
  and durable (inserts the outbox row), p50/p99;
- commit → broadcast: from the end of an ``atomic`` block holding a write of its own (a row
  of the test app) and one publish (the commit and its on-commit callbacks follow) to the
  moment a Redis subscriber of the topic's channel-layer group (another process) gets the
  broadcast, plain (sent on commit by the committing thread) and durable (moved on commit by
  the committing thread, or by the process's relay when it cannot);
- the drain: rows committed while no relay runs, then moved by one relay, rows/s.

    python -m bench.outbox [--messages 300] [--rows 5000] [--redis-url redis://127.0.0.1:6379/0]

The publish → receive latency at 1,000 WebSocket connections, durable against plain, is
measured by the broadcast benchmark (bench/README.md), targets ``realtime-durable`` (SQLite)
and ``realtime-durable-pg``::

    python -m bench.run --connections 1000 --nodes 1 \
        --targets realtime,realtime-durable,realtime-durable-pg --repeat 3

Needs Redis and PostgreSQL on 127.0.0.1 (PostgreSQL: user ``postgres``, trust auth)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"

CHILD = r"""
import json, select, subprocess, sys, time
import django
django.setup()
from django.core.management import call_command
from django.db import transaction
import realtime
from realtime.models import OutboxMessage
from realtime.outbox.relay import stop_relays
from realtime.publishing import new_relay
from realtime.topics import group_name
from tests.testapp.models import Parcel

messages, rows, redis_url, prefix = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
call_command("migrate", verbosity=0)

def percentiles(values):
    values = sorted(values)
    return {"p50_ms": 1000 * values[len(values) // 2],
            "p99_ms": 1000 * values[min(len(values) - 1, int(len(values) * 0.99))]}

def call_cost(durable):
    spent = []
    for n in range(messages):
        with transaction.atomic():
            start = time.perf_counter()
            realtime.publish("bench.call", "e", {"n": n}, durable=durable)
            spent.append(time.perf_counter() - start)
            transaction.set_rollback(True)  # the cost of the call only
    return percentiles(spent)

# The subscriber: a process of its own (the publishing thread's work after the broadcast, such
# as the fast path's delete and commit, is then not counted), printing the monotonic clock
# (one clock for all processes) when each message arrives.
SUBSCRIBER = '''
import sys, time, redis
pubsub = redis.Redis.from_url(sys.argv[1]).pubsub()
pubsub.subscribe(sys.argv[2])
for message in pubsub.listen():
    print("ready" if message["type"] == "subscribe" else time.monotonic(), flush=True)
'''

def received(subscriber):
    if not select.select([subscriber.stdout], [], [], 5)[0]:
        raise SystemExit("no broadcast within 5 s")
    return subscriber.stdout.readline().strip()

def commit_to_broadcast(durable):
    topic = f"bench.latency.{int(durable)}"
    subscriber = subprocess.Popen(
        [sys.executable, "-c", SUBSCRIBER, redis_url, f"{prefix}__group__{group_name(topic)}"],
        stdout=subprocess.PIPE, text=True)
    try:
        if received(subscriber) != "ready":
            raise SystemExit("the subscriber did not subscribe")
        spent = []
        for n in range(messages):
            with transaction.atomic():
                Parcel.objects.create(status=str(n))  # the caller's own write
                realtime.publish(topic, "e", {"n": n}, durable=durable)
                start = time.monotonic()  # the commit (and its callbacks) follows
            spent.append(float(received(subscriber)) - start)
    finally:
        subscriber.kill()
        subscriber.wait()
    return percentiles(spent)

result = {
    "call_plain": call_cost(False),
    "call_durable": call_cost(True),
    "latency_plain": commit_to_broadcast(False),
    "latency_durable": commit_to_broadcast(True),
}
stop_relays()
OutboxMessage.objects.bulk_create(
    [OutboxMessage(topic=f"bench.drain.{n % 50}", message_id=f"d{n}", event="e", data="{}",
                   created=time.time()) for n in range(rows)], batch_size=1000)
relay = new_relay()
start = time.perf_counter()
moved = relay.drain()
result["drain_rows_per_s"] = moved / (time.perf_counter() - start)
result["drained"] = moved
print(json.dumps(result))
"""


def run_child(database_env: dict[str, str], args: argparse.Namespace) -> dict[str, object]:
    prefix = f"rt-bench-outbox-{uuid.uuid4().hex[:6]}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "RT_REDIS_URL": args.redis_url,
        "RT_PREFIX": prefix,
        "RT_RELAY_INTERVAL": "2",
        **database_env,
    }
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(args.messages), str(args.rows), args.redis_url, prefix],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if out.returncode:
        raise SystemExit(out.stderr)
    import redis  # the bench's own cleanup

    client = redis.Redis.from_url(args.redis_url)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    args = parser.parse_args()
    results = {}
    path = tempfile.mktemp(prefix="rt-bench-outbox-", suffix=".sqlite3")
    try:
        results["sqlite"] = run_child({"RT_TEST_DB": path}, args)
    finally:
        if os.path.exists(path):
            os.unlink(path)
    import psycopg  # PostgreSQL only

    name = f"rt_bench_outbox_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        results["postgresql"] = run_child({"RT_TEST_PG": name}, args)
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    load = os.getloadavg()
    print(
        f"Outbox benchmark: {args.messages} messages per measure, {args.rows} rows drained; "
        f"load average {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f} on {os.cpu_count()} CPU(s)"
    )
    print(f"{'database':<11} {'measure':<30} {'plain':>16} {'durable':>16}")
    for database, result in results.items():
        for label, key in (
            ("publish() call in a transaction", "call"),
            ("commit -> broadcast", "latency"),
        ):
            plain, durable = result[f"{key}_plain"], result[f"{key}_durable"]
            print(
                f"{database:<11} {label:<30} "
                f"{plain['p50_ms']:>6.2f}/{plain['p99_ms']:>6.2f} ms "  # type: ignore[index]
                f"{durable['p50_ms']:>6.2f}/{durable['p99_ms']:>6.2f} ms"  # type: ignore[index]
            )
        print(
            f"{database:<11} {'drain (one relay, 50 topics)':<30} {'':>16} "
            f"{result['drain_rows_per_s']:>9.0f} rows/s"
        )
    print("(p50/p99)")


if __name__ == "__main__":
    main()
