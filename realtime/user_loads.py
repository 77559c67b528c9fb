"""Users loaded for token checks in batches, per event loop: the loads asked for while one
batch runs go together in the next, one thread hop and one query for all of them.

Each database call from async code hops to the one thread that runs sync database code
(``database_sync_to_async``), so a crowd of connects with tokens of users not in the cache
(:mod:`realtime.user_cache`; a restarted node has none) would queue one hop and one query per
connect there. Loads of one user asked for together share one row."""

from __future__ import annotations

import asyncio
import copy
import weakref
from collections.abc import Callable
from typing import Any

from channels.db import database_sync_to_async

#: The most users one query asks for.
MAX_BATCH = 500

# What a batch gives each primary key: the user and its token cutoff, or why it is refused.
Found = tuple[Any, float | None] | Exception
LoadMany = Callable[[list[str]], dict[str, Found]]


class UserLoads:
    """The batched loads of one event loop, through ``load_many`` (sync: it runs in the
    database thread), which answers every primary key it is given."""

    def __init__(self, load_many: LoadMany) -> None:
        self._load_many = load_many
        self._waiting: dict[str, list[asyncio.Future[tuple[Any, float | None]]]] = {}
        self._running: asyncio.Task[None] | None = None

    async def load(self, user_pk: str) -> tuple[Any, float | None]:
        """The user ``user_pk`` (a copy of its own) and its token cutoff; raises what
        ``load_many`` gave for it (:class:`~realtime.exceptions.TokenInvalid`), or what the
        query raised."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[tuple[Any, float | None]] = loop.create_future()
        self._waiting.setdefault(user_pk, []).append(waiter)
        if self._running is None or self._running.done():
            self._running = loop.create_task(self._run())
        return await waiter

    async def _run(self) -> None:
        while self._waiting:
            pks = list(self._waiting)[:MAX_BATCH]
            batch = {pk: self._waiting.pop(pk) for pk in pks}
            try:
                found = await database_sync_to_async(self._load_many)(pks)
            except Exception as error:  # the query failed: each waiter gets the error
                found = dict.fromkeys(pks, error)
            for pk, waiters in batch.items():
                result = found[pk]
                for waiter in waiters:
                    if waiter.done():  # its connection went away meanwhile
                        continue
                    if isinstance(result, Exception):
                        waiter.set_exception(result)
                    else:
                        user, not_before = result
                        waiter.set_result((copy.copy(user), not_before))


_loads: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, UserLoads] = (
    weakref.WeakKeyDictionary()
)


def loads_of(loop: asyncio.AbstractEventLoop, load_many: LoadMany) -> UserLoads:
    """The batched loads of ``loop`` (made on first use)."""
    found = _loads.get(loop)
    if found is None:
        found = _loads[loop] = UserLoads(load_many)
    return found
