"""The registry of live connections, cluster-wide: what the admin console and the
``realtime_status`` / ``realtime_disconnect`` commands read.

Each node (one hub: one process and event loop) owns one record set. It adds and removes its
connections as they come and go and refreshes its set every ``HEARTBEAT_TIMEOUT / 3`` seconds
with fresh counters (:mod:`realtime.node`). A node's set expires ``HEARTBEAT_TIMEOUT`` after its
last refresh, so the connections of a node that died (SIGKILL, power cut) leave the registry
within one heartbeat timeout without anyone cleaning up after it.

Reads fetch every live node's set in one round trip per node and filter, sort and paginate in
the reading process: 10,000 entries are a few MB of JSON (docs/operations.md has the figures)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

SortKey = Literal[
    "connected_at",
    "-connected_at",
    "last_seen",
    "-last_seen",
    "user",
    "-user",
    "messages_out",
    "-messages_out",
    "node",
    "-node",
]
SORT_KEYS: tuple[str, ...] = SortKey.__args__  # type: ignore[attr-defined]


@dataclass
class Entry:
    """One live connection, as the registry shows it."""

    id: str
    node: str
    address: str  # where control messages (disconnect, test message) for it are sent
    transport: str
    user_id: Any
    username: str
    topics: list[str]
    client: str
    user_agent: str
    connected_at: float
    last_seen: float
    messages_in: int = 0
    messages_out: int = 0
    pending_acks: int = 0

    def to_dict(self) -> dict[str, Any]:
        # what dataclasses.asdict() gives, without its deep copy of every value (a connect
        # storm and each registry refresh build one per connection)
        data = dict(vars(self))
        data["topics"] = list(self.topics)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Entry:
        names = _ENTRY_FIELDS
        return cls(**{k: v for k, v in data.items() if k in names})


_ENTRY_FIELDS = frozenset(f.name for f in dataclasses.fields(Entry))


@dataclass
class Query:
    """What a registry read asks for. Empty fields match everything."""

    search: str = ""  # substring of the username, the connection id or the client address
    node: str = ""
    transport: str = ""
    topic: str = ""
    user_id: Any = None
    sort: str = "-connected_at"
    offset: int = 0
    limit: int = 50

    def matches(self, entry: Entry) -> bool:
        if self.node and entry.node != self.node:
            return False
        if self.transport and entry.transport != self.transport:
            return False
        if self.topic and self.topic not in entry.topics:
            return False
        if self.user_id is not None and str(entry.user_id) != str(self.user_id):
            return False
        if self.search:
            needle = self.search.lower()
            haystack = f"{entry.username}\n{entry.id}\n{entry.client}".lower()
            return needle in haystack
        return True


@dataclass
class Page:
    entries: list[Entry]
    total: int
    nodes: dict[str, int] = field(default_factory=dict)  # node -> its connection count


def select(entries: list[Entry], query: Query) -> Page:
    """Filter, sort and paginate ``entries`` for ``query`` (shared by the backends)."""
    nodes: dict[str, int] = {}
    for entry in entries:
        nodes[entry.node] = nodes.get(entry.node, 0) + 1
    chosen = [e for e in entries if query.matches(e)]
    key = query.sort if query.sort in SORT_KEYS else "-connected_at"
    name = key.lstrip("-")
    attribute = "username" if name == "user" else name
    chosen.sort(key=lambda e: (getattr(e, attribute), e.id), reverse=key.startswith("-"))
    return Page(chosen[query.offset : query.offset + query.limit], len(chosen), nodes)


class Registry(Protocol):
    async def add(self, node: str, entry: Entry) -> None: ...
    async def remove(self, node: str, connection_id: str) -> None: ...
    async def write(self, node: str, entries: list[Entry], removed: list[str]) -> None:
        """Add (or replace) ``entries`` and remove the connections ``removed``, in one go."""
        ...

    async def refresh(self, node: str, entries: list[Entry], ttl: float) -> None:
        """Write the node's current entries and keep its set alive for ``ttl`` seconds."""
        ...

    async def touch(self, node: str, entries: list[Entry], ttl: float) -> bool:
        """Write ``entries`` (those that changed since the last write) and keep the node's
        set alive for ``ttl`` seconds; False (and nothing kept alive) if the set was gone,
        e.g. expired or lost with a Redis restart: :meth:`refresh` it whole."""
        ...

    async def forget_node(self, node: str) -> None: ...
    async def all(self) -> list[Entry]: ...
    async def query(self, query: Query) -> Page: ...
    async def get(self, connection_id: str) -> Entry | None: ...
