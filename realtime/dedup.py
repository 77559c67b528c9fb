"""Idempotency for client messages: every ``send`` id gets one handler run, and every attempt
with that id gets the same answer once it exists.

Keys are scoped per user (or session, or connection for anonymous clients without a session)
and held in memory or in Redis, so that a retry on another node is recognised too. A key
holds either a **claim** (an attempt is running the handler) or the **answer** (the encoded
``ack`` frame):

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
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Literal, Protocol

from realtime._redis import get_client

logger = logging.getLogger("realtime.dedup")

State = Literal["new", "pending", "done"]

# Claims start with a NUL, which an encoded answer (a JSON object) never does.
_CLAIM = "\x00claim:"

# An overlapping attempt polls for the answer, from this interval doubling up to the cap.
POLL_FIRST = 0.02
POLL_MAX = 0.25


class Dedup(Protocol):
    """A store of claims and answers; the backends below are interchangeable."""

    async def begin(self, key: str, owner: str) -> tuple[State, str | None]:
        """Claim ``key`` for ``owner`` for one lease. ``("new", None)``: claimed, run the
        handler, then :meth:`finish`. ``("pending", None)``: another attempt holds a live
        claim. ``("done", answer)``: the stored answer."""
        ...

    async def renew(self, key: str, owner: str) -> bool:
        """Extend ``owner``'s claim by one lease. False if the claim is no longer its own
        (expired, taken over, or answered): there is nothing left to renew."""
        ...

    async def finish(self, key: str, owner: str, answer: str) -> str:
        """Store ``answer`` for ``DEDUP_TTL`` in place of the claim, unless an answer is
        already stored; return the stored answer, which is the one to send."""
        ...


def _claim(owner: str) -> str:
    return _CLAIM + owner


class MemoryDedup:
    """Bounded in-process store (expired keys, then the oldest past ``limit``, evicted).
    ``clock`` is for tests."""

    def __init__(
        self,
        ttl: float,
        lease: float,
        limit: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.lease = lease
        self.limit = limit
        self.clock = clock
        self._items: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._lock = threading.Lock()  # publish() and daphne may run on different threads

    def __len__(self) -> int:
        """How many ids it holds (running claims and remembered answers), at most ``limit``."""
        return len(self._items)

    def _live(self, key: str, now: float) -> str | None:
        found = self._items.get(key)
        if found is None:
            return None
        if found[0] <= now:
            del self._items[key]
            return None
        return found[1]

    def _evict(self, now: float) -> None:
        # Insertion order is roughly expiry order (claims are short, answers long): drop
        # expired keys from the old end, and the oldest past the limit.
        while self._items:
            oldest = next(iter(self._items.values()))
            if oldest[0] > now and len(self._items) < self.limit:
                break
            self._items.popitem(last=False)

    async def begin(self, key: str, owner: str) -> tuple[State, str | None]:
        now = self.clock()
        with self._lock:
            self._evict(now)
            value = self._live(key, now)
            if value is None:
                self._items[key] = (now + self.lease, _claim(owner))
                return "new", None
            return ("pending", None) if value.startswith(_CLAIM) else ("done", value)

    async def renew(self, key: str, owner: str) -> bool:
        now = self.clock()
        with self._lock:
            if self._live(key, now) != _claim(owner):
                return False
            self._items[key] = (now + self.lease, _claim(owner))
            return True

    async def finish(self, key: str, owner: str, answer: str) -> str:
        now = self.clock()
        with self._lock:
            value = self._live(key, now)
            if value is not None and not value.startswith(_CLAIM):
                return value
            self._items.pop(key, None)
            self._items[key] = (now + self.ttl, answer)
            return answer


# Each script is one atomic step on one key, so two nodes never both claim it and a stale
# owner never renews or overwrites what another attempt holds.
_BEGIN = """
local value = redis.call('GET', KEYS[1])
if value then return value end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_FINISH = """
local value = redis.call('GET', KEYS[1])
if value and string.sub(value, 1, 1) ~= '\\0' then return value end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisDedup:
    """Claims and answers in Redis, shared by every node: one key per message id, a claim
    expiring with its lease, an answer with ``DEDUP_TTL``."""

    def __init__(self, url: str, prefix: str, ttl: float, lease: float) -> None:
        self.url = url
        self.prefix = prefix
        self.ttl_ms = max(1, int(ttl * 1000))
        self.lease_ms = max(1, int(lease * 1000))

    def _name(self, key: str) -> str:
        return f"{self.prefix}:dedup:{key}"

    async def begin(self, key: str, owner: str) -> tuple[State, str | None]:
        client = get_client(self.url)
        found = await client.eval(_BEGIN, 1, self._name(key), _claim(owner), self.lease_ms)
        if found is None:
            return "new", None
        value = _text(found)
        return ("pending", None) if value.startswith(_CLAIM) else ("done", value)

    async def renew(self, key: str, owner: str) -> bool:
        client = get_client(self.url)
        return bool(await client.eval(_RENEW, 1, self._name(key), _claim(owner), self.lease_ms))

    async def finish(self, key: str, owner: str, answer: str) -> str:
        client = get_client(self.url)
        return _text(await client.eval(_FINISH, 1, self._name(key), answer, self.ttl_ms))


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
            logger.warning("Renewing the claim on a client message failed: %r", error)
