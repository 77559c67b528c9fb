"""A consumer with handlers, as a user of the app would write one."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import redis.asyncio as aioredis

import realtime
from realtime.conf import get_config

CALLS: list[tuple[str, Any]] = []
# How many times this process ran on_ack, and reported undelivered, per message id
# (``GET /test/acks/``: the tests prove "once" with them).
ACKED: Counter[str] = Counter()
UNDELIVERED: Counter[str] = Counter()


def record_undelivered(sender: Any, message_id: str, **kwargs: Any) -> None:
    UNDELIVERED[message_id] += 1


class EchoConsumer(realtime.RealtimeConsumer):
    # A client whose User-Agent says "crash-<hook>" makes that hook raise: how
    # tests/test_user_code_errors.py gives the server a consumer with a bug.
    def _crash(self, hook: str) -> None:
        connection = getattr(self, "connection", None)
        if connection is not None and f"crash-{hook}" in connection.user_agent:
            raise RuntimeError(f"{hook} bug")

    async def authenticate(self, user: Any) -> Any:
        self._crash("authenticate")
        return user

    async def can_subscribe(self, topic: str) -> None:
        self._crash("can_subscribe")
        await super().can_subscribe(topic)

    async def on_ack(self, message_id: str) -> None:
        self._crash("on_ack")
        ACKED[message_id] += 1

    async def on_connect(self) -> None:
        self._crash("on_connect")

    async def on_disconnect(self, code: int) -> None:
        self._crash("on_disconnect")

    async def handle_echo(self, data: Any) -> Any:
        CALLS.append(("echo", data))
        return {"echo": data}

    def handle_count(self, data: Any) -> Any:
        # sync handler: run in a thread
        CALLS.append(("count", data))
        return {"calls": sum(1 for name, _ in CALLS if name == "count")}

    async def handle_stamp(self, data: Any) -> Any:
        # a different answer on every run: equal answers prove the handler ran once
        return {"stamp": uuid.uuid4().hex}

    async def handle_refuse(self, data: Any) -> Any:
        raise realtime.Rejected("not today")

    async def handle_crash(self, data: Any) -> Any:
        raise ZeroDivisionError("boom")

    async def handle_hold(self, data: Any) -> Any:
        """A slow handler the test controls, for overlapping retries: ``data`` is a Redis key
        name. Each run counts itself in ``<key>:runs``, pushes its run number to
        ``<key>:started``, then waits (at most 30 s) for the test to push to ``<key>:go``."""
        url = get_config().redis_url
        if url is None or not isinstance(data, str):
            raise realtime.Rejected("'hold' needs REDIS_URL and a key name")
        client = aioredis.Redis.from_url(url)
        try:
            run = await client.incr(f"{data}:runs")
            await client.rpush(f"{data}:started", run)
            await client.blpop([f"{data}:go"], timeout=30)
        finally:
            await client.aclose()
        return {"run": run, "stamp": uuid.uuid4().hex}


class OwnNamesConsumer(EchoConsumer):
    """A consumer whose own methods bear the names a WebSocket transport uses (``close``,
    ``dispatch``, ``send_text``, ``send``), as a shop's might: they are the user's, and the
    socket must neither call them nor be broken by them."""

    def close(self, order: Any) -> str:
        return f"closed {order}"

    def dispatch(self, parcel: Any) -> str:
        return f"dispatched {parcel}"

    def send_text(self, text: Any) -> str:
        return f"texted {text}"

    async def send(self, invoice: Any) -> str:
        return f"sent {invoice}"

    async def handle_ship(self, data: Any) -> Any:
        return [self.close(data), self.dispatch(data), self.send_text(data), await self.send(data)]
