"""Bounded turns for a reader that hands out a backlog.

A reader of the broker (the hub's channel-layer reader, the Redis broker's subscriber) gets
messages that were already waiting without ever suspending, so while it has a backlog no
other callback of the event loop runs. Under daphne (Twisted) that means no socket is written
and no pong is read until the whole backlog is handed out: at 5,000 connections and a few
hundred ms per fan-out, clients hear nothing for seconds. :class:`Turns` gives the loop a
turn once the reader has been at it for ``TURN`` seconds. Within a turn, a batching client's
frames are gathered into one ``batch`` frame (docs/protocol.md, "Batch frames")."""

from __future__ import annotations

import asyncio

#: How long a reader may hand out waiting messages before the event loop gets a turn.
TURN = 0.05


class Turns:
    """Call :meth:`handed` after each message a reader handed out."""

    __slots__ = ("_ends", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._ends: float | None = None

    async def handed(self) -> None:
        """Give the loop a turn if this one has lasted ``TURN`` seconds (a reader that waited
        for its message in between had one already; the next turn then ends early at most)."""
        now = self._loop.time()
        if self._ends is None:
            self._ends = now + TURN
        elif now >= self._ends:
            self._ends = None
            await asyncio.sleep(0)
