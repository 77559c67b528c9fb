"""Single-flight log reads: many subscriptions of one process reading one topic at once share
one read of the log.

A reconnect storm (a node restarted, its clients come back together) makes every client
resume its topics from its cursor; most of them hold the same cursors. :class:`SharedReads`
wraps a :class:`~realtime.log.base.Log` so that, per event loop, topic and epoch, at most one
read runs and at most one more waits:

- a read asked for while none runs starts at once;
- a read asked for while one runs waits for the *next* read, which starts when the running
  one ends and serves every read asked for in the meantime, from the lowest of their offsets.
  Joining the running read instead would hand out a log state taken before the caller asked,
  and miss a message published in between (its live copy may have gone out before the caller
  listened): a read that starts after the caller asked sees everything published before;
- each caller gets the answer for its own offset, cut from the shared one. A shared answer
  that cannot stand for a higher offset (``too_old`` for the lowest: the log was trimmed past
  it, which the higher one may not be) is read again for that offset alone.

So N subscriptions resuming one topic at once cost about as many reads as there are read
times in the storm, not N.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from realtime.log.base import Log, NewEntry, Replay

# (event loop, topic, epoch): the reads that can share one answer.
_Key = tuple[asyncio.AbstractEventLoop, str, str | None]


@dataclass
class _Batch:
    """The reads that will share the next read of one key, from ``offset``."""

    offset: int
    answer: asyncio.Future[Replay]


@dataclass
class _Reads:
    """The state of one key: the read running (its task) and the batch waiting for it."""

    running: asyncio.Task[None] | None = None
    waiting: _Batch | None = None


class SharedReads:
    """A :class:`~realtime.log.base.Log` whose :meth:`read_after` is shared among concurrent
    callers (see the module docstring); ``append``, ``append_many`` and ``clear`` go straight
    to ``log``."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self._reads: dict[_Key, _Reads] = {}

    async def append(
        self, topic: str, message_id: str, event: str, data: str, ack: bool, time: float
    ) -> tuple[str, int]:
        return await self.log.append(topic, message_id, event, data, ack, time)

    async def append_many(self, topic: str, messages: Sequence[NewEntry]) -> list[tuple[str, int]]:
        return await self.log.append_many(topic, messages)

    async def clear(self) -> None:
        await self.log.clear()

    async def read_after(self, topic: str, epoch: str | None, offset: int) -> Replay:
        """What ``log.read_after(topic, epoch, offset)`` answers, read at or after the call."""
        if epoch is None:
            offset = 0  # a fresh subscribe: only the current position is read
        loop = asyncio.get_running_loop()
        key = (loop, topic, epoch)
        reads = self._reads.get(key)
        if reads is None:
            reads = self._reads[key] = _Reads()
        batch = reads.waiting
        if batch is None:
            batch = reads.waiting = _Batch(offset, loop.create_future())
            # nobody may see an exception nobody awaits (every caller may have gone)
            batch.answer.add_done_callback(_retrieve)
            if reads.running is None:
                reads.running = loop.create_task(self._run(key, reads))
        else:
            batch.offset = min(batch.offset, offset)
        # shielded: a caller that goes away (its connection closed) cancels only its own wait
        replay = await asyncio.shield(batch.answer)
        if batch.offset == offset or epoch is None:
            return replay
        cut = _cut(replay, offset)
        if cut is None:
            return await self.log.read_after(topic, epoch, offset)
        return cut

    async def _run(self, key: _Key, reads: _Reads) -> None:
        """Run the waiting batches of ``key`` one after the other until none waits."""
        _, topic, epoch = key
        batch = None
        try:
            while reads.waiting is not None:
                batch, reads.waiting = reads.waiting, None
                try:
                    replay = await self.log.read_after(topic, epoch, batch.offset)
                except Exception as error:
                    batch.answer.set_exception(error)
                else:
                    batch.answer.set_result(replay)
        finally:
            del self._reads[key]
            # cancelled (the loop is closing): the callers still waiting get CancelledError
            for left in (batch, reads.waiting):
                if left is not None and not left.answer.done():
                    left.answer.cancel()


def _retrieve(answer: asyncio.Future[Replay]) -> None:
    if not answer.cancelled():
        answer.exception()


def _cut(replay: Replay, offset: int) -> Replay | None:
    """The answer for ``offset`` from ``replay``, the answer for a lower offset of the same
    epoch; None when it cannot be told from it."""
    if replay.reset == "too_old":
        return None  # the lower offset was trimmed away; this one may not be
    if replay.reset is not None:
        return replay  # epoch_changed, cursor_ahead: so is every higher offset
    top = replay.entries[-1].offset if replay.entries else replay.offset
    if offset > top:
        return Replay(replay.epoch, top, [], "cursor_ahead")
    return Replay(replay.epoch, offset, [e for e in replay.entries if e.offset > offset])
