"""Background loops and cancellation."""

from __future__ import annotations

import asyncio


def stop_if_cancelled(error: BaseException | None = None) -> None:
    """Raise ``CancelledError`` if the running task was asked to stop.

    A background loop that catches ``Exception`` (a Redis error, a timeout) and goes on calls
    this first: a library that turns a cancellation into an ordinary exception (redis-py's or
    ``asyncio.timeout``'s timeout racing the cancellation) would otherwise keep the loop alive,
    and an event loop shutting down cancels each task once and waits for it forever. A loop
    also calls it (without ``error``) at the top of each round, for a cancellation swallowed
    deeper down."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from error
