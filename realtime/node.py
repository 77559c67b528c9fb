"""A hub's record in the registry: the hub is one registry *node* (one process and event
loop), and its record lists the node's open connections.

Writes run in the background: the registry is for operators, so a slow or unreachable Redis
never holds up or fails a connection. The entries of connections that opened, changed or closed
are written in batches (one write at a time, taking all that was queued meanwhile), each
bounded by :data:`REGISTRY_TIMEOUT`, and
while the node has connections a refresher renews its record every ``HEARTBEAT_TIMEOUT / 3``
seconds (so it expires ``HEARTBEAT_TIMEOUT`` after the process dies), rewriting the entries
whose counters moved since they were last written (those moved only by the heartbeat at most
every :data:`IDLE_REWRITE_S`; a whole rewrite after a failed write, or when the record was
gone), and then runs the presence tick (:func:`realtime.roster.tick`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sized
from typing import Protocol

from realtime import health, roster
from realtime._tasks import stop_if_cancelled
from realtime.backends import get_registry
from realtime.conf import get_config
from realtime.registry.base import Entry

# How long one registry write (add, update, remove, refresh) may take, in seconds.
REGISTRY_TIMEOUT = 2.0


class Member(Protocol):
    """What the record needs of a connection (:class:`realtime.connection.Connection`)."""

    @property
    def id(self) -> str: ...

    # what moves in an entry between writes (its topics are written when they change)
    messages_in: int
    messages_out: int
    pongs: int  # of messages_in

    @property
    def pending(self) -> Sized: ...

    def entry(self) -> Entry: ...


# An entry whose only change is the heartbeat (its ``pong`` in ``messages_in`` and
# ``last_seen``) is rewritten once in this many seconds (or at every renewal, where renewals
# are further apart): most entries of an idle node change only so, and rewriting each after
# every pong was most of an idle node's own CPU.
IDLE_REWRITE_S = 60.0


def idle_turns(ttl: float) -> int:
    """Over how many renewals (one every ``ttl / 3`` seconds) the heartbeat-only rewrites are
    spread: as many as fit in :data:`IDLE_REWRITE_S`, at least one."""
    return max(1, int(IDLE_REWRITE_S * 3 // ttl))


def _stamp(member: Member) -> tuple[int, int, int, int]:
    """What the refresher compares to tell whether an entry changed since it was written:
    the activity (frames in other than pongs, messages out, pending ACKs), then the pongs."""
    return member.messages_in - member.pongs, member.messages_out, len(member.pending), member.pongs


class NodeRecord:
    """The registry record of node ``name``: the connections in ``connections`` (the hub's
    own table, which the hub keeps), and the presence of the topics ``topics()`` returns."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        name: str,
        connections: Mapping[str, Member],
        topics: Callable[[], list[str]],
    ) -> None:
        self.loop = loop
        self.name = name
        self.connections = connections
        self.topics = topics
        self._refresher: asyncio.Task[None] | None = None
        # connections whose entry is to be written (None: removed), and the task writing them
        self._pending: dict[str, Member | None] = {}
        self._flusher: asyncio.Task[None] | None = None
        # each connection's stamp when its entry was last written; _whole: rewrite every
        # entry at the next renewal; _renewals: renewals so far (whose turn it is to have
        # a heartbeat-only change written)
        self._stamps: dict[str, tuple[int, int, int, int]] = {}
        self._whole = True
        self._renewals = 0

    def opened(self, connection: Member) -> None:
        """Add a connection that joined ``connections``, and keep the record alive."""
        if self._refresher is None or self._refresher.done():
            self._refresher = self.loop.create_task(self._refresh())
        self.write(connection)

    def write(self, connection: Member) -> None:
        """Rewrite a connection's entry (its topics changed)."""
        self._queue(connection.id, connection)

    def closed(self, connection_id: str) -> None:
        """Remove a connection that left ``connections``."""
        if not self.connections and self._refresher is not None:
            self._refresher.cancel()  # nothing left to keep alive; the record expires
            self._refresher = None
        self._queue(connection_id, None)

    def stop(self) -> None:
        """Stop refreshing the record (thread-safe)."""
        if self._refresher is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._refresher.cancel)
        self._refresher = None

    async def written(self) -> None:
        """Wait until the writes queued so far have finished (or timed out)."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.wait([self._flusher])

    def _queue(self, connection_id: str, connection: Member | None) -> None:
        """Queue one connection's write. One write to the registry runs at a time and takes
        every entry queued before it started, so a connection storm costs a few Redis round
        trips per node, not one per socket; the last state queued for a connection wins, so a
        remove is never overtaken by an earlier add."""
        self._pending[connection_id] = connection
        if self._flusher is None or self._flusher.done():
            self._flusher = self.loop.create_task(self._flush())

    async def _flush(self) -> None:
        """Write the queued entries, in batches, until none is queued; each batch is bounded
        by REGISTRY_TIMEOUT."""
        while self._pending:
            batch, self._pending = self._pending, {}
            entries = [
                member.entry()
                for connection_id, member in batch.items()
                if member is not None and connection_id in self.connections
            ]
            removed = [connection_id for connection_id, member in batch.items() if member is None]
            try:
                async with asyncio.timeout(REGISTRY_TIMEOUT):
                    await get_registry().write(self.name, entries, removed)
            except Exception as error:  # the next refresh rewrites the record
                self._whole = True
                health.failed("registry", error)
            else:
                health.ok("registry")

    async def _renew(self, ttl: float) -> None:
        """Keep the record alive for ``ttl``: write the entries that changed since they were
        last written, or all of them (after a failed write, or when the record was gone).
        An entry whose only change is the heartbeat waits for its turn, which comes once
        every :data:`IDLE_REWRITE_S` (connections take turns, so the rewrites are spread)."""
        self._renewals += 1
        fresh = {i: _stamp(c) for i, c in self.connections.items()}
        registry = get_registry()
        if not self._whole:
            turns = idle_turns(ttl)
            turn = self._renewals % turns
            stamps = dict(fresh)
            changed: list[Entry] = []
            for i, stamp in fresh.items():
                before = self._stamps.get(i)
                if before == stamp:
                    continue
                if before is not None and before[:3] == stamp[:3] and hash(i) % turns != turn:
                    stamps[i] = before  # the heartbeat only: written at its turn
                else:
                    changed.append(self.connections[i].entry())
            self._whole = not await registry.touch(self.name, changed, ttl)
            if not self._whole:
                self._stamps = stamps
                return
        await registry.refresh(self.name, [c.entry() for c in self.connections.values()], ttl)
        self._whole = False
        self._stamps = fresh

    async def _refresh(self) -> None:
        """Renew this node's registry record (fresh counters, topics) and keep it alive.
        It expires ``HEARTBEAT_TIMEOUT`` after the last refresh if the process dies. Each
        write and each presence tick is bounded, so a hung Redis delays nothing else."""
        ttl = get_config().heartbeat_timeout
        while True:
            await asyncio.sleep(ttl / 3)
            stop_if_cancelled()  # e.g. swallowed by a presence event's broadcast
            try:
                async with asyncio.timeout(REGISTRY_TIMEOUT):
                    await self._renew(ttl)
            except Exception as error:
                stop_if_cancelled(error)
                self._whole = True
                health.failed("registry", error)
            else:
                health.ok("registry")
            try:
                async with asyncio.timeout(max(REGISTRY_TIMEOUT, ttl / 3)):
                    await roster.tick(self.name, self.topics(), ttl / 3)
            except Exception as error:
                stop_if_cancelled(error)
                health.failed("presence", error)
            else:
                health.ok("presence")
