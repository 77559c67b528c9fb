"""Batched hash reads: the ``HGETALL``\\ s of many keys asked at the same moment go to Redis as
one pipeline (:class:`BatchedHashReads`).

A reconnect storm (a node restarted, its clients come back together) makes every resumed
subscription read its user's pending ACKs (:meth:`realtime.acks.AckTracker.adopt`). One
command each meant hundreds in flight at once, each holding a pooled connection: the pool
opened hundreds of new connections in the burst and other commands waited for one, or failed
(docs/benchmarks.md, "Rolling restart"). Per event loop, at most one pipeline runs and at
most one more waits:

- a read asked for while none runs starts with the next turn of the loop, together with
  every read asked for until then;
- a read asked for while one runs waits for the *next* pipeline, which starts when the
  running one ends and reads every key asked for in the meantime. Joining the running one
  instead would hand out a state read before the caller asked.

So N reads at once cost about as many round trips as there are pipelines in the burst, and
one connection each, not N."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from realtime._redis import get_client

_Found = dict[str, dict[Any, Any]]


@dataclass
class _Batch:
    """The keys the next pipeline reads, and its answer (key -> the hash's fields)."""

    answer: asyncio.Future[_Found]
    keys: set[str] = field(default_factory=set)


@dataclass
class _Reads:
    """The state of one event loop: the pipeline running (its task) and the batch waiting."""

    running: asyncio.Task[None] | None = None
    waiting: _Batch | None = None


class BatchedHashReads:
    """``HGETALL`` on the Redis at ``url``, batched as the module docstring says."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._reads: dict[asyncio.AbstractEventLoop, _Reads] = {}

    async def hgetall(self, key: str) -> dict[Any, Any]:
        """The fields of the hash ``key`` (empty if there is none), read at or after the
        call. Raises what the pipeline raises."""
        loop = asyncio.get_running_loop()
        reads = self._reads.get(loop)
        if reads is None:
            reads = self._reads[loop] = _Reads()
        batch = reads.waiting
        if batch is None:
            batch = reads.waiting = _Batch(loop.create_future())
            # nobody may see an exception nobody awaits (every caller may have gone)
            batch.answer.add_done_callback(_retrieve)
            if reads.running is None:
                reads.running = loop.create_task(self._run(loop, reads))
        batch.keys.add(key)
        # shielded: a caller that goes away (its connection closed) cancels only its own wait
        found = await asyncio.shield(batch.answer)
        return found[key]

    async def _run(self, loop: asyncio.AbstractEventLoop, reads: _Reads) -> None:
        """Read the waiting batches of ``loop`` one after the other until none waits."""
        batch = None
        try:
            while reads.waiting is not None:
                batch, reads.waiting = reads.waiting, None
                keys = list(batch.keys)
                try:
                    pipeline = get_client(self.url).pipeline(transaction=False)
                    for key in keys:
                        pipeline.hgetall(key)
                    values = await pipeline.execute()
                except Exception as error:
                    batch.answer.set_exception(error)
                else:
                    batch.answer.set_result(dict(zip(keys, values, strict=True)))
        finally:
            del self._reads[loop]
            # cancelled (the loop is closing): the callers still waiting get CancelledError
            for left in (batch, reads.waiting):
                if left is not None and not left.answer.done():
                    left.answer.cancel()


def _retrieve(answer: asyncio.Future[_Found]) -> None:
    if not answer.cancelled():
        answer.exception()
