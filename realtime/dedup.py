"""Idempotency for client messages: every ``send`` id gets one handler run, and every attempt
with that id gets the same answer once it exists.

Keys are scoped per user (or session, or connection for anonymous clients without a session)
and held in memory or in Redis (the dedup store of :mod:`realtime.stores`), so that a retry on
another node is recognised too. A key holds either a **claim** (an attempt is running the
handler) or the **answer** (the encoded ``ack`` frame):

- the attempt that claims a key runs the handler. Its claim is a lease of ``SEND_LEASE``
  seconds, renewed while the handler runs (every third of the lease), so the claim of a node
  that died expires after at most one lease and the next attempt runs the handler;
- when the handler returns, the answer replaces the claim and is kept for ``DEDUP_TTL``;
- an attempt that finds a claim waits for the answer, up to ``SEND_WAIT`` seconds, and is
  otherwise told the message is still in progress (``in_progress``: send it again, same id).
  If the claim expires while it waits, it claims the key itself.

Why a bounded wait and then ``in_progress``: waiting answers the usual overlap (a retry sent a
moment after a reconnect, while the first attempt finishes) in one round trip; the bound keeps
a long handler, or a claim whose node just died, from holding a request open without limit,
and the client's retry of ``in_progress`` then finds the answer or the expired lease.

Claims carry a unique owner token, so only the owner renews its claim; the first answer
stored wins, so even a handler that ran twice (its lease lapsed while Redis was unreachable)
gives every attempt one answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from realtime._tasks import stop_if_cancelled
from realtime.stores.base import Dedup

logger = logging.getLogger("realtime.dedup")

# An overlapping attempt polls for the answer, from this interval doubling up to the cap.
POLL_FIRST = 0.02
POLL_MAX = 0.25


# Handler runs whose attempt was cancelled (a POST client that went away) finish here.
_running: set[asyncio.Task[str]] = set()


async def answer_once(
    dedup: Dedup, key: str, run: Callable[[], Awaitable[str]], *, wait: float, lease: float
) -> str | None:
    """The answer for ``key``: the stored one, or the one ``run`` returns when this attempt
    claims the key (``run`` must turn the handler's errors into an answer). Waits up to
    ``wait`` seconds while another attempt holds the claim, and returns None if it still
    does (answer ``in_progress``).

    Once started, ``run`` goes on to the end and its answer is stored even if this attempt is
    cancelled, so that a retry finds the answer rather than a second run. Raises what the
    store raises (Redis unreachable)."""
    owner = uuid.uuid4().hex
    deadline = time.monotonic() + wait
    delay = POLL_FIRST
    while True:
        state, answer = await dedup.begin(key, owner)
        if state == "done" and answer is not None:
            return answer
        if state == "new":
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, POLL_MAX)
    task = asyncio.get_running_loop().create_task(_run_claimed(dedup, key, owner, run, lease))
    _running.add(task)
    task.add_done_callback(_settled)
    return await asyncio.shield(task)


def _settled(task: asyncio.Task[str]) -> None:
    _running.discard(task)
    if not task.cancelled() and task.exception() is not None:
        # retrieved here so an orphaned run's failure is logged, not "never retrieved"
        logger.warning("Storing the answer of a client message failed: %r", task.exception())


async def _run_claimed(
    dedup: Dedup, key: str, owner: str, run: Callable[[], Awaitable[str]], lease: float
) -> str:
    renewer = asyncio.get_running_loop().create_task(_renew(dedup, key, owner, lease))
    try:
        answer = await run()
    finally:
        renewer.cancel()
    return await dedup.finish(key, owner, answer)


async def _renew(dedup: Dedup, key: str, owner: str, lease: float) -> None:
    """Keep ``owner``'s claim alive while its handler runs (a timer task, cancelled when the
    handler returns)."""
    while True:
        await asyncio.sleep(lease / 3)
        try:
            if not await dedup.renew(key, owner):
                return
        except Exception as error:  # Redis briefly away: try again at the next tick
            stop_if_cancelled(error)
            logger.warning("Renewing the claim on a client message failed: %r", error)
