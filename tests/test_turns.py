"""realtime._turns: a broker reader that hands out a backlog without suspending gives the
event loop a turn every TURN seconds (else daphne writes nothing until the backlog is done)."""

from __future__ import annotations

import asyncio

from realtime._turns import TURN, Turns


async def test_a_reader_with_a_backlog_gives_the_loop_a_turn_every_turn_seconds(monkeypatch):
    loop = asyncio.get_running_loop()
    now = [1000.0]
    monkeypatch.setattr(loop, "time", lambda: now[0])
    turns = Turns(loop)
    other: list[float] = []

    def other_callback() -> None:  # what the loop has to do besides (a socket's write)
        other.append(now[0])
        loop.call_soon(other_callback)

    loop.call_soon(other_callback)
    await asyncio.sleep(0)
    other.clear()
    for _ in range(12):  # 12 messages of a backlog, each fan-out taking TURN / 4
        await turns.handed()
        now[0] += TURN / 4
    # the loop ran twice in 3 * TURN: after each TURN of work, not after every message
    assert len(other) == 2
    assert other[0] - 1000.0 >= TURN


async def test_a_turn_starts_with_the_first_message_after_one(monkeypatch):
    loop = asyncio.get_running_loop()
    now = [0.0]
    monkeypatch.setattr(loop, "time", lambda: now[0])
    turns = Turns(loop)
    ran: list[int] = []
    loop.call_soon(ran.append, 1)
    await turns.handed()  # the first message: no turn yet
    assert ran == []
    now[0] += TURN
    await turns.handed()
    assert ran == [1]
