"""A consumer with handlers, as a user of the app would write one."""

from __future__ import annotations

import uuid
from typing import Any

import realtime

CALLS: list[tuple[str, Any]] = []


class EchoConsumer(realtime.RealtimeConsumer):
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
