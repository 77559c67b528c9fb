"""Run a coroutine eagerly: step it synchronously, and only if it really suspends hand the
rest to a task.

Sending on an ASGI connection is a coroutine, but under daphne (and under uvicorn while the
socket is writable) it completes without ever suspending. Fan-out to thousands of connections
would pay a task and a loop iteration per frame if every send were scheduled; stepping the
coroutine inline costs one function call, and a send that does block (a congested socket) still
finishes correctly in a task of its own, which the caller uses as its back-pressure signal."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


def start(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[None] | None:
    """Run ``coro`` up to its first suspension. Return ``None`` if it finished, else a task
    that drives it to the end. Exceptions raised before the first suspension propagate."""
    try:
        blocked_on = coro.send(None)
    except StopIteration:
        return None
    return asyncio.get_running_loop().create_task(_finish(coro, blocked_on))


async def _finish(coro: Coroutine[Any, Any, Any], blocked_on: Any) -> None:
    while True:
        try:
            if blocked_on is None:  # a bare yield: give the loop one turn
                await asyncio.sleep(0)
            else:
                blocked_on._asyncio_future_blocking = False
                await asyncio.wait((blocked_on,))
        except BaseException as exc:  # cancelled while waiting: let the coroutine clean up
            try:
                coro.throw(exc)
            except (StopIteration, type(exc)):
                pass
            raise
        try:
            blocked_on = coro.send(None)
        except StopIteration:
            return
