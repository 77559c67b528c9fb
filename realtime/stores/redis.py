"""The stores of :mod:`realtime.stores.base` in Redis, shared by every node."""

from __future__ import annotations

import json

from realtime._redis import get_client
from realtime.stores.base import CLAIM, State, claim

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
        found = await client.eval(_BEGIN, 1, self._name(key), claim(owner), self.lease_ms)
        if found is None:
            return "new", None
        value = _text(found)
        return ("pending", None) if value.startswith(CLAIM) else ("done", value)

    async def renew(self, key: str, owner: str) -> bool:
        client = get_client(self.url)
        return bool(await client.eval(_RENEW, 1, self._name(key), claim(owner), self.lease_ms))

    async def finish(self, key: str, owner: str, answer: str) -> str:
        client = get_client(self.url)
        return _text(await client.eval(_FINISH, 1, self._name(key), answer, self.ttl_ms))


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
