"""Background loops stop when cancelled, even when a library turns the cancellation into an
ordinary exception (the presence test's event loop once waited forever for a registry
refresher at shutdown)."""

from __future__ import annotations

import asyncio

from realtime._tasks import stop_if_cancelled


async def converts_cancellation() -> None:
    """As a library whose own timeout races the cancellation and wins."""
    try:
        await asyncio.sleep(0.01)
    except asyncio.CancelledError:
        raise TimeoutError("the library's timeout") from None


async def test_a_loop_that_catches_exception_stops_when_cancelled():
    async def loop() -> None:
        for _ in range(100):  # bounded: a loop that lost its cancellation ends on its own
            try:
                await converts_cancellation()
            except Exception as error:
                stop_if_cancelled(error)

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=5)
    assert task in done and task.cancelled(), "the loop went on after its cancellation"


async def test_an_ordinary_failure_does_not_stop_the_loop():
    failures = 0

    async def loop() -> None:
        nonlocal failures
        while failures < 3:
            try:
                raise TimeoutError("Redis is slow")
            except Exception as error:
                stop_if_cancelled(error)
                failures += 1

    await asyncio.wait_for(loop(), 2)
    assert failures == 3
