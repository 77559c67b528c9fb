"""The connections' timers share one event-loop timer (realtime/sweep.py): a thousand idle
connections' heartbeats cost the loop a few wake-ups, each deadline runs once, never early,
and a cancelled one never runs."""

from __future__ import annotations

import asyncio
from typing import Any

from realtime.sweep import Sweep
from realtime.timers import Timers


async def test_a_thousand_connections_timers_share_a_few_loop_timers(monkeypatch):
    loop = asyncio.get_running_loop()
    armed = 0
    call_at = loop.call_at

    def counting_call_at(when: float, callback: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal armed
        armed += 1
        return call_at(when, callback, *args, **kwargs)

    monkeypatch.setattr(loop, "call_at", counting_call_at)
    ran: list[tuple[int, float, float]] = []
    done = asyncio.Event()
    timers = [Timers(loop) for _ in range(1000)]

    def ping(n: int, due: float) -> None:
        ran.append((n, due, loop.time()))
        if len(ran) == len(timers) - 1:
            done.set()

    for n, connection in enumerate(timers):
        connection.set("ping", 0.2, ping, n, loop.time() + 0.2)
    timers[7].cancel("ping")  # a connection that closed
    await asyncio.wait_for(done.wait(), 10)
    assert sorted(n for n, _, _ in ran) == [n for n in range(1000) if n != 7]
    assert all(at >= due for _, due, at in ran), "no deadline runs early"
    assert armed <= 10, f"{armed} loop timers for 1,000 connections' pings"


async def test_deadlines_of_other_delays_run_in_order_once():
    loop = asyncio.get_running_loop()
    sweep = Sweep(loop)
    ran: list[str] = []
    done = asyncio.Event()

    def run(name: str) -> None:
        ran.append(name)
        if len(ran) == 3:
            done.set()

    sweep.call_later(0.15, run, "late")
    sweep.call_later(0.05, run, "early")
    sweep.call_later(0.1, run, "middle")
    sweep.call_later(0.05, run, "cancelled").cancel()
    await asyncio.wait_for(done.wait(), 10)
    await asyncio.sleep(0.2)
    assert ran == ["early", "middle", "late"]
    assert len(sweep) == 0, "nothing left queued"
