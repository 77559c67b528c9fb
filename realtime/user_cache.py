"""The users of recently verified tokens, per process: a connect (or an SSE or long-poll
request) with a token whose user was loaded less than ``TOKEN_CACHE_TTL`` seconds ago reuses
that user instead of asking the database again.

Bounded in size (``TOKEN_CACHE_SIZE`` users, the least recently used dropped first) and in
age. A revocation empties a user's entry at once in the process that made it
(:mod:`realtime.revocation`) and, through the broker, in every server process of the cluster
(:func:`realtime.control.aforget_user`; each hub takes the order); a process only keeps users
while its hub hears those orders. A load that started before a revocation is not kept."""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CachedUser:
    """A user as a token check loaded it: the user, the auth hash its tokens must carry, and
    its token cutoff (the time of its last deactivation, ``None`` when never deactivated)."""

    user: Any
    auth_hash: str
    not_before: float | None
    loaded_at: float


class UserCache:
    """Users by primary key (as text), thread-safe: sync code may revoke from any thread."""

    def __init__(self) -> None:
        #: the clock of :attr:`CachedUser.loaded_at` (tests replace it)
        self.clock = time.monotonic
        self._entries: collections.OrderedDict[str, CachedUser] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._forgotten = 0  # how many forget() calls so far: a load spanning one is not kept

    def get(self, user_pk: str, ttl: float) -> CachedUser | None:
        """The entry of ``user_pk`` if it is younger than ``ttl`` seconds."""
        with self._lock:
            entry = self._entries.get(user_pk)
            if entry is None:
                return None
            if self.clock() - entry.loaded_at >= ttl:
                del self._entries[user_pk]
                return None
            self._entries.move_to_end(user_pk)
            return entry

    def generation(self) -> int:
        """Take before loading a user; hand to :meth:`put` with what was loaded."""
        with self._lock:
            return self._forgotten

    def put(self, user_pk: str, entry: CachedUser, generation: int, size: int) -> None:
        """Keep ``entry``, unless a revocation came since ``generation`` was taken (the load
        may predate it) or ``size`` is 0; the oldest entries go beyond ``size``."""
        with self._lock:
            if generation != self._forgotten or size <= 0:
                return
            self._entries[user_pk] = entry
            self._entries.move_to_end(user_pk)
            while len(self._entries) > size:
                self._entries.popitem(last=False)

    def forget(self, user_pk: Any) -> None:
        """Drop ``user_pk``'s entry (its access was revoked), and keep no load in flight."""
        with self._lock:
            self._forgotten += 1
            self._entries.pop(str(user_pk), None)

    def clear(self) -> None:
        with self._lock:
            self._forgotten += 1
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


#: This process's cache.
users = UserCache()
