"""The stores of :mod:`realtime.stores.base` in Redis, shared by every node."""

from __future__ import annotations

import json
import time

from realtime._redis import Script, get_client
from realtime.stores.base import CLAIM, Pending, State, claim
from realtime.stores.batched import BatchedHashReads

# Each script is one atomic step on one key, so two nodes never both claim it and a stale
# owner never renews or overwrites what another attempt holds.
_BEGIN = Script("""
local value = redis.call('GET', KEYS[1])
if value then return value end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
""")
_RENEW = Script("""
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
""")
_FINISH = Script("""
local value = redis.call('GET', KEYS[1])
if value and string.sub(value, 1, 1) ~= '\\0' then return value end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
""")

# Pending ACKs: KEYS[1] the scope's hash (id -> entry), KEYS[2] its acknowledged ids (a sorted
# set by time); ARGV[1] now, ARGV[2] the window (seconds). Each decides each id in one step,
# so an id is taken by exactly one caller, and an acknowledged one is not put back.
_PUT = Script("""
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
local added = {}
for i = 3, #ARGV, 2 do
  if not redis.call('ZSCORE', KEYS[2], ARGV[i])
      and redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) == 1 then
    added[#added + 1] = ARGV[i]
  end
end
redis.call('PEXPIRE', KEYS[1], math.ceil(window * 2000))
return added
""")
_TAKE = Script("""
local now, window, acked = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3] == '1'
local taken = {}
for i = 4, #ARGV do
  if redis.call('HDEL', KEYS[1], ARGV[i]) == 1 then
    taken[#taken + 1] = ARGV[i]
    if acked then redis.call('ZADD', KEYS[2], now, ARGV[i]) end
  end
end
if acked and #taken > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
  redis.call('PEXPIRE', KEYS[2], math.ceil(window * 1000))
end
return taken
""")


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
        found = await _BEGIN(client, [self._name(key)], claim(owner), self.lease_ms)
        if found is None:
            return "new", None
        value = _text(found)
        return ("pending", None) if value.startswith(CLAIM) else ("done", value)

    async def renew(self, key: str, owner: str) -> bool:
        client = get_client(self.url)
        return bool(await _RENEW(client, [self._name(key)], claim(owner), self.lease_ms))

    async def finish(self, key: str, owner: str, answer: str) -> str:
        client = get_client(self.url)
        return _text(await _FINISH(client, [self._name(key)], answer, self.ttl_ms))


class RedisTickets:
    """One key per ticket, expiring after ``TICKET_TTL``; redeemed with ``GETDEL``."""

    def __init__(self, url: str, prefix: str, ttl: float) -> None:
        self.url = url
        self.prefix = prefix
        self.ttl_ms = int(ttl * 1000)

    async def put(self, ticket: str, user_pk: str) -> None:
        await get_client(self.url).set(f"{self.prefix}:ticket:{ticket}", user_pk, px=self.ttl_ms)

    async def take(self, ticket: str) -> str | None:
        value = await get_client(self.url).getdel(f"{self.prefix}:ticket:{ticket}")
        return value.decode() if isinstance(value, bytes) else value


class RedisPresence:
    """One key per topic holding the announced set, and a short lock per topic and interval,
    so that one node announces each change."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = prefix

    async def swap(
        self, topic: str, node: str, now: dict[str, str], interval: float
    ) -> dict[str, str] | None:
        client = get_client(self.url)
        lock = f"{self.prefix}:presence-lock:{topic}"
        if not await client.set(lock, node, nx=True, px=max(1, int(interval * 900))):
            return None
        key = f"{self.prefix}:presence:{topic}"
        raw = await client.getset(key, json.dumps(now))
        await client.pexpire(key, int(max(interval * 20, 3600) * 1000))
        return json.loads(raw) if raw else {}


class RedisPendingAcks:
    """Per scope, a hash of its pending entries and a sorted set of the ids it acknowledged
    in the last ``window`` seconds (both keys hash-tagged by scope, so each script touches
    one slot); a sorted set of every entry by deadline is the sweeper's index.

    The index is in a slot of its own on Redis Cluster, so it is never written in the scope's
    scripts but by a separate command after them, in an order that keeps the sweeper right:
    ``put`` indexes only the entries its script added, after adding them, so an index member
    always had its entry; ``_take`` removes members after its script took the entries, and a
    member whose entry is gone (taken, or expired with its scope's key) is dropped by
    :meth:`overdue` when it meets it. A failure between the two steps leaves at worst an
    entry without an index member: the connections that hold it still resend it, and only a
    sweep after they all closed would miss it."""

    def __init__(self, url: str, prefix: str, window: float) -> None:
        self.url = url
        self.prefix = prefix
        self.window = window
        self._index = f"{prefix}:acks-by-deadline"
        # what the subscriptions of a reconnect storm read at once: one pipeline, not N reads
        self._hashes = BatchedHashReads(url)

    def _keys(self, scope: str) -> tuple[str, str]:
        return f"{self.prefix}:acks:{{{scope}}}", f"{self.prefix}:acked:{{{scope}}}"

    async def put(self, scope: str, entries: list[Pending]) -> None:
        if not entries:
            return
        client = get_client(self.url)
        args: list[str | float] = [time.time(), self.window]
        for entry in entries:
            args += [entry.message_id, entry.encode()]
        added = {_text(m) for m in await _PUT(client, self._keys(scope), *args)}
        deadlines = {
            json.dumps([scope, e.message_id]): e.deadline for e in entries if e.message_id in added
        }
        if deadlines:
            await client.zadd(self._index, deadlines)

    async def pending(self, scope: str, ids: list[str]) -> set[str]:
        if not ids:
            return set()
        found = await get_client(self.url).hmget(self._keys(scope)[0], ids)
        return {m for m, value in zip(ids, found, strict=True) if value is not None}

    async def _take(self, scope: str, ids: list[str], acked: bool) -> list[str]:
        if not ids:
            return []
        client = get_client(self.url)
        args = [time.time(), self.window, "1" if acked else "0", *dict.fromkeys(ids)]
        taken = [_text(m) for m in await _TAKE(client, self._keys(scope), *args)]
        if taken:
            await client.zrem(self._index, *(json.dumps([scope, m]) for m in taken))
        return taken

    async def acknowledge(self, scope: str, ids: list[str]) -> list[str]:
        return await self._take(scope, ids, True)

    async def give_up(self, scope: str, ids: list[str]) -> list[str]:
        return await self._take(scope, ids, False)

    async def of_topic(self, scope: str, topic: str) -> list[Pending]:
        found = await self._hashes.hgetall(self._keys(scope)[0])
        entries = [Pending.decode(_text(m), _text(v)) for m, v in found.items()]
        return [e for e in entries if e.topic == topic]

    async def overdue(self, before: float, limit: int) -> list[tuple[str, Pending]]:
        client = get_client(self.url)
        members = await client.zrangebyscore(self._index, "-inf", before, start=0, num=limit)
        found: list[tuple[str, Pending]] = []
        gone = []
        for member in members:
            scope, message_id = json.loads(_text(member))  # type: ignore[arg-type]
            value = await client.hget(self._keys(scope)[0], message_id)
            if value is None:
                gone.append(member)  # taken already, or expired with its scope's key
            else:
                found.append((scope, Pending.decode(message_id, _text(value))))
        if gone:
            await client.zrem(self._index, *gone)  # type: ignore[arg-type]
        return found
