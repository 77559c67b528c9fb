"""The publisher: sends M messages at R per second, each carrying its sequence number and the
``time.time()`` just before it was handed to the target's publishing API.

One process per run, separate from the servers and the clients. Kinds:

* ``bare``: Redis ``PUBLISH`` on ``<prefix>:bench`` (what ``bench.bare_server`` subscribes to);
* ``channels``: ``await channel_layer.group_send("bench", ...)`` with the plain-Channels settings;
* ``realtime``: ``realtime.publish("bench", "tick", data)``, the sync API a Django view would use
  (with ``--ack``: ``ack=True``, so every client must acknowledge every message; with
  ``REALTIME["DURABLE"]`` on, an outbox row that the process's relay moves after its commit).

Every kind first makes one warm-up call that reaches no client, so connection set-up is not
charged to message 0. Prints one JSON line (``{"event": "done", ...}``) and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench._common import (
    EVENT,
    TOPIC,
    emit,
    percentile,
    raise_fd_limit,
    redis_url_from_env,
    require_loopback_redis,
)

WARMUP_TOPIC = f"{TOPIC}.warmup"


class Pacer:
    """Schedules call ``i`` at ``start + i / rate`` and keeps the timing statistics."""

    def __init__(self, messages: int, rate: float) -> None:
        self.messages = messages
        self.interval = 1.0 / rate
        self.call_ms: list[float] = []
        self.errors = 0
        self.first_error: str | None = None
        self.max_behind_ms = 0.0
        self.t_first: float | None = None
        self.t_last: float | None = None
        self.start = 0.0
        self.times: list[float] = []

    def payload(self, seq: int) -> dict[str, Any]:
        """The data of message ``seq``, stamped now."""
        now = time.time()
        if self.t_first is None:
            self.t_first = now
        self.t_last = now
        self.times.append(now)
        return {"seq": seq, "t": now}

    def due(self, seq: int) -> float:
        """Seconds to wait before message ``seq`` (0 when late; lateness is recorded)."""
        target = self.start + seq * self.interval
        delay = target - time.monotonic()
        if delay < 0:
            self.max_behind_ms = max(self.max_behind_ms, -delay * 1000.0)
            return 0.0
        return delay

    def record(self, began: float, error: BaseException | None) -> None:
        """Record one call that began at monotonic time ``began``."""
        self.call_ms.append((time.monotonic() - began) * 1000.0)
        if error is not None:
            self.errors += 1
            if self.first_error is None:
                self.first_error = f"{type(error).__name__}: {error}"

    def report(self) -> None:
        """Print the summary line for the orchestrator."""
        calls = sorted(self.call_ms)
        emit(
            "done",
            published=len(calls) - self.errors,
            errors=self.errors,
            first_error=self.first_error,
            t_first=self.t_first,
            t_last=self.t_last,
            call_ms_p50=percentile(calls, 50),
            call_ms_p99=percentile(calls, 99),
            call_ms_max=calls[-1] if calls else None,
            max_behind_ms=round(self.max_behind_ms, 3),
            times=self.times,
        )


async def run_async(pacer: Pacer, send: Callable[[int], Awaitable[None]]) -> None:
    """Drive an async ``send(seq)`` at the pacer's rate."""
    pacer.start = time.monotonic()
    for seq in range(pacer.messages):
        await asyncio.sleep(pacer.due(seq))
        began = time.monotonic()
        error: BaseException | None = None
        try:
            await send(seq)
        except Exception as exc:
            error = exc
        pacer.record(began, error)


async def publish_bare(pacer: Pacer, redis_url: str, prefix: str) -> None:
    """Redis PUBLISH, as the bare server's subscription expects."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
    channel = f"{prefix}:{TOPIC}"
    try:
        await client.ping()

        async def send(seq: int) -> None:
            await client.publish(channel, json.dumps(pacer.payload(seq)))

        await run_async(pacer, send)
    finally:
        await client.aclose()


async def publish_channels(pacer: Pacer) -> None:
    """``group_send`` on the configured channels_redis layer."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        raise SystemExit("bench.publisher: no channel layer configured")
    await layer.group_send(f"{TOPIC}-warmup", {"type": "bench.message", "text": "{}"})

    async def send(seq: int) -> None:
        text = json.dumps(pacer.payload(seq))
        await layer.group_send(TOPIC, {"type": "bench.message", "text": text})

    await run_async(pacer, send)


def publish_realtime(pacer: Pacer, ack: bool = False) -> None:
    """``realtime.publish`` from plain sync code, as a Django view or a task would call it."""
    import realtime

    try:  # connection set-up should not be charged to message 0
        realtime.publish(WARMUP_TOPIC, EVENT, {"seq": -1, "t": time.time()})
    except Exception as exc:
        emit("warning", detail=f"warm-up publish failed: {type(exc).__name__}: {exc}")
    pacer.start = time.monotonic()
    for seq in range(pacer.messages):
        time.sleep(pacer.due(seq))
        began = time.monotonic()
        error: BaseException | None = None
        try:
            realtime.publish(TOPIC, EVENT, pacer.payload(seq), ack=ack)
        except Exception as exc:
            error = exc
        pacer.record(began, error)
    # With REALTIME["DURABLE"] (the realtime-durable targets) this process's relay moves the
    # rows after each commit: let it finish, as a long-lived publisher would. A process that
    # exits while its relay holds a claim leaves those rows, and the later ones of the topic,
    # to another relay once the claim's lease has passed.
    from realtime.outbox.relay import stop_relays

    stop_relays()


def main() -> None:
    """Command-line entry point."""
    raise_fd_limit()
    parser = argparse.ArgumentParser(description="bench publisher")
    parser.add_argument("--kind", choices=("bare", "channels", "realtime"), required=True)
    parser.add_argument("--messages", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--ack", action="store_true", help="realtime: publish with ack=True")
    parser.add_argument("--prefix", default=os.environ.get("BENCH_PREFIX", "bench"))
    parser.add_argument("--redis-url", default=redis_url_from_env())
    args = parser.parse_args()
    if args.messages < 1 or args.rate <= 0:
        raise SystemExit("bench.publisher: --messages must be >= 1 and --rate > 0")
    redis_url = require_loopback_redis(args.redis_url)
    pacer = Pacer(args.messages, args.rate)
    try:
        if args.kind == "bare":
            asyncio.run(publish_bare(pacer, redis_url, args.prefix))
        else:
            import django

            django.setup()
            if args.kind == "channels":
                asyncio.run(publish_channels(pacer))
            else:
                publish_realtime(pacer, args.ack)
    finally:
        pacer.report()


if __name__ == "__main__":
    main()
