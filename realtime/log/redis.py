"""Topic log in Redis Streams, shared by every node.

Per topic: a hash ``<prefix>:meta:{<topic>}`` with the ``epoch`` and the last ``top`` offset,
a stream ``<prefix>:log:{<topic>}`` whose entry ids are ``<offset>-0``, trimmed to
``HISTORY_SIZE`` entries and expiring ``HISTORY_TTL`` after the last append, and a sorted set
``<prefix>:ids:{<topic>}`` of the message ids of the last ``HISTORY_SIZE`` entries scored by
offset, with the stream's TTL: an append whose message id is there returns that entry's
``(epoch, offset)`` and appends nothing, so a retried publish never creates a second entry.
The scripts run atomically in Redis; they touch the three keys of one topic, which the hash
tag ``{<topic>}`` puts in one slot, so they run on Redis Cluster too (topic names hold no
braces, and ``KEY_PREFIX`` must not either: check E014). When the meta hash is missing (Redis
flushed or restarted without persistence, or the topic idled for ``META_TTL``) a new epoch
starts, so old cursors get ``reset``; so it does when the master was promoted from a replica
since the topic's last write (a failover, which may have lost its last appends: see
``_ENSURE_EPOCH``)."""

from __future__ import annotations

import time as _time
from collections.abc import Sequence

from realtime._redis import Script, get_client
from realtime.log.base import Entry, NewEntry, Replay, new_epoch

META_TTL = 30 * 86400.0

# Milliseconds a master trusts its own stamp on a topic before it checks its replication id
# again (see _ENSURE_EPOCH).
REPLICATION_CHECK_MS = 1000

# The topic's epoch, a new one when the meta hash is missing or when this master was promoted
# from a replica since the topic's last write (the replication id that wrote it, ``rid``,
# differs from this server's, and this server has a previous one, ``master_replid2``: a
# failover, which may have lost the topic's last appends). A restart keeps the epoch (a new
# replication id but no previous one). ``INFO`` costs a few microseconds, so a master checks a
# topic at most once per REPLICATION_CHECK_MS: it stamps the time in the field ``seen``,
# written with replication off, so that no replica has a fresh stamp when it is promoted.
_ENSURE_EPOCH = (
    """
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'rid', 'seen')
local epoch = meta[1]
local clock = redis.call('TIME')
local now = clock[1] * 1000 + math.floor(clock[2] / 1000)
local seen = tonumber(meta[3])
if not epoch or not seen or now - seen >= """
    + str(REPLICATION_CHECK_MS)
    + """ or now < seen then
  local info = redis.pcall('INFO', 'replication')
  local rid, previous
  if type(info) == 'string' then  -- a server that refuses INFO to scripts is not checked
    rid = string.match(info, 'master_replid:(%x+)')
    previous = string.match(info, 'master_replid2:(%x+)')
  end
  if epoch and rid and meta[2] and meta[2] ~= rid and previous and string.find(previous, '[^0]')
  then
    epoch = nil
  end
  if not epoch then
    epoch = ARGV[1]
    redis.call('HSET', KEYS[1], 'epoch', epoch, 'top', 0)
    redis.call('DEL', KEYS[2], KEYS[3])
  end
  if rid then redis.call('HSET', KEYS[1], 'rid', rid) end
  redis.set_repl(redis.REPL_NONE)
  redis.call('HSET', KEYS[1], 'seen', now)
  redis.set_repl(redis.REPL_ALL)
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""
)

APPEND = (
    _ENSURE_EPOCH
    + """
local known = redis.call('ZSCORE', KEYS[3], ARGV[5])
if known then return {epoch, tonumber(known)} end
local offset = redis.call('HINCRBY', KEYS[1], 'top', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], offset .. '-0',
           'i', ARGV[5], 'e', ARGV[6], 'd', ARGV[7], 'a', ARGV[8], 't', ARGV[9])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('ZADD', KEYS[3], offset, ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', offset - tonumber(ARGV[3]))
redis.call('PEXPIRE', KEYS[3], ARGV[4])
return {epoch, offset}
"""
)

# APPEND for each message of ARGV[5..] (five arguments each), trimming and expiring once.
APPEND_MANY = (
    _ENSURE_EPOCH
    + """
local result = {epoch}
local top = nil
for i = 5, #ARGV, 5 do
  local known = redis.call('ZSCORE', KEYS[3], ARGV[i])
  if known then
    table.insert(result, tonumber(known))
  else
    top = redis.call('HINCRBY', KEYS[1], 'top', 1)
    redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], top .. '-0', 'i', ARGV[i],
               'e', ARGV[i + 1], 'd', ARGV[i + 2], 'a', ARGV[i + 3], 't', ARGV[i + 4])
    redis.call('ZADD', KEYS[3], top, ARGV[i])
    table.insert(result, top)
  end
end
if top then
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', top - tonumber(ARGV[3]))
  redis.call('PEXPIRE', KEYS[3], ARGV[4])
end
return result
"""
)

READ = (
    _ENSURE_EPOCH
    + """
local top = tonumber(redis.call('HGET', KEYS[1], 'top'))
local after = tonumber(ARGV[4])
if ARGV[3] ~= epoch or after >= top then return {epoch, top, {}} end
return {epoch, top, redis.call('XRANGE', KEYS[2], (after + 1) .. '-0', '+', 'COUNT', ARGV[5])}
"""
)


_APPEND, _APPEND_MANY, _READ = Script(APPEND), Script(APPEND_MANY), Script(READ)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisLog:
    """The Redis Streams backend; see the module docstring for the key layout."""

    def __init__(self, url: str, prefix: str, size: int, ttl: float) -> None:
        self.url = url
        self.prefix = prefix
        self.size = size
        self.ttl = ttl

    def _keys(self, topic: str) -> list[str]:
        return [
            f"{self.prefix}:meta:{{{topic}}}",
            f"{self.prefix}:log:{{{topic}}}",
            f"{self.prefix}:ids:{{{topic}}}",
        ]

    async def append(
        self, topic: str, message_id: str, event: str, data: str, ack: bool, time: float
    ) -> tuple[str, int]:
        epoch, offset = await _APPEND(
            get_client(self.url),
            self._keys(topic),
            new_epoch(),
            int(META_TTL * 1000),
            self.size,
            max(1, int(self.ttl * 1000)),
            message_id,
            event,
            data,
            "1" if ack else "0",
            repr(time),
        )
        return _text(epoch), int(offset)

    async def append_many(self, topic: str, messages: Sequence[NewEntry]) -> list[tuple[str, int]]:
        args: list[str | int] = []
        for message_id, event, data, ack, time in messages:
            args += [message_id, event, data, "1" if ack else "0", repr(time)]
        epoch, *offsets = await _APPEND_MANY(
            get_client(self.url),
            self._keys(topic),
            new_epoch(),
            int(META_TTL * 1000),
            self.size,
            max(1, int(self.ttl * 1000)),
            *args,
        )
        return [(_text(epoch), int(offset)) for offset in offsets]

    async def read_after(self, topic: str, epoch: str | None, offset: int) -> Replay:
        current, top, raw = await _READ(
            get_client(self.url),
            self._keys(topic),
            new_epoch(),
            int(META_TTL * 1000),
            epoch or "",
            offset if epoch is not None else 0,
            self.size,
        )
        current, top = _text(current), int(top)
        if epoch is None:
            return Replay(current, top, [])
        if epoch != current:
            return Replay(current, top, [], "epoch_changed")
        if offset > top:
            return Replay(current, top, [], "cursor_ahead")
        if offset == top:
            return Replay(current, offset, [])
        horizon = _time.time() - self.ttl
        entries = []
        for entry_id, fields in raw:
            values = {_text(k): _text(v) for k, v in zip(fields[::2], fields[1::2], strict=True)}
            entries.append(
                Entry(
                    offset=int(_text(entry_id).split("-", 1)[0]),
                    message_id=values["i"],
                    event=values["e"],
                    data=values["d"],
                    ack=values["a"] == "1",
                    time=float(values["t"]),
                )
            )
        if not entries or entries[0].offset != offset + 1 or entries[0].time < horizon:
            return Replay(current, top, [], "too_old")
        return Replay(current, offset, entries)

    async def clear(self) -> None:
        client = get_client(self.url)
        for pattern in (f"{self.prefix}:meta:*", f"{self.prefix}:log:*", f"{self.prefix}:ids:*"):
            keys = [key async for key in client.scan_iter(match=pattern, count=500)]
            if keys:
                await client.delete(*keys)
