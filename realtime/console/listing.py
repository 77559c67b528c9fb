"""What the console lists: the request's parameters, and one registry read that gives the page
of connections, the filter choices (from the data) and the cluster-wide totals.

The registry is read once per request (``all()``, one round trip per node in Redis) and the
page is cut with the registry's own :func:`~realtime.registry.base.select`, so the filter
choices and the totals cost no second read."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from django.core.paginator import Paginator
from django.http import QueryDict

from realtime.backends import get_registry
from realtime.registry import Entry, Page, Query
from realtime.registry.base import SORT_KEYS, select

PER_PAGE = 50
TOP_TOPICS = 20
DEFAULT_SORT = "-connected_at"

# Sortable columns: the registry's sort keys (column name -> key without direction).
SORTABLE = {
    "user": "user",
    "node": "node",
    "connected_at": "connected_at",
    "last_seen": "last_seen",
    "messages_out": "messages_out",
}


@dataclass(frozen=True)
class Params:
    """The console's GET parameters: ``q`` (search), ``node``, ``transport``, ``topic``,
    ``o`` (sort key, ``-`` for descending) and ``p`` (page, from 1)."""

    search: str = ""
    node: str = ""
    transport: str = ""
    topic: str = ""
    sort: str = DEFAULT_SORT
    page: int = 1

    @classmethod
    def from_query(cls, data: QueryDict) -> Params:
        """Read the parameters leniently: unknown sort keys and bad page numbers fall back
        to the defaults, as the admin's change list does."""
        sort = data.get("o", DEFAULT_SORT)
        try:
            page = max(1, int(data.get("p", "1")))
        except ValueError:
            page = 1
        return cls(
            search=data.get("q", "").strip()[:200],
            node=data.get("node", ""),
            transport=data.get("transport", ""),
            topic=data.get("topic", ""),
            sort=sort if sort in SORT_KEYS else DEFAULT_SORT,
            page=page,
        )

    def query(self) -> Query:
        return Query(
            search=self.search,
            node=self.node,
            transport=self.transport,
            topic=self.topic,
            sort=self.sort,
            offset=(self.page - 1) * PER_PAGE,
            limit=PER_PAGE,
        )

    def querystring(self, **changes: Any) -> str:
        """``?…`` for these parameters with ``changes`` applied; defaults are left out."""
        params = replace(self, **changes)
        pairs = [
            ("q", params.search),
            ("node", params.node),
            ("transport", params.transport),
            ("topic", params.topic),
            ("o", "" if params.sort == DEFAULT_SORT else params.sort),
            ("p", "" if params.page == 1 else str(params.page)),
        ]
        encoded = urlencode([(name, value) for name, value in pairs if value])
        return f"?{encoded}" if encoded else "?"

    @property
    def filtered(self) -> bool:
        return bool(self.search or self.node or self.transport or self.topic)


@dataclass
class Snapshot:
    """One read of the registry, for one request."""

    params: Params
    page: Page
    nodes: Counter[str] = field(default_factory=Counter)
    transports: Counter[str] = field(default_factory=Counter)
    topics: Counter[str] = field(default_factory=Counter)
    connections: int = 0
    messages_in: int = 0
    messages_out: int = 0
    time: float = 0.0

    @property
    def pages(self) -> int:
        return max(1, -(-self.page.total // PER_PAGE))

    def totals(self) -> dict[str, Any]:
        """Cluster-wide figures for the chart: rates are computed by the page between polls."""
        return {
            "connections": self.connections,
            "nodes": len(self.nodes),
            "messages_in": self.messages_in,
            "messages_out": self.messages_out,
            "time": self.time,
        }


def snapshot_of(entries: list[Entry], params: Params, now: float) -> Snapshot:
    """Cut the page for ``params`` out of ``entries`` and count the filter choices. A page
    number past the end shows the last page."""
    page = select(entries, params.query())
    last = max(1, -(-page.total // PER_PAGE))
    if params.page > last:
        params = replace(params, page=last)
        page = select(entries, params.query())
    return Snapshot(
        params=params,
        page=page,
        nodes=Counter(page.nodes),
        transports=Counter(e.transport for e in entries),
        topics=Counter(topic for e in entries for topic in e.topics),
        connections=len(entries),
        messages_in=sum(e.messages_in for e in entries),
        messages_out=sum(e.messages_out for e in entries),
        time=now,
    )


async def asnapshot(params: Params) -> Snapshot:
    """Read the registry once and build the :class:`Snapshot` for ``params``."""
    entries = await get_registry().all()
    return snapshot_of(entries, params, time.time())


# ---- presentation -------------------------------------------------------------------------


def ago(seconds: float) -> str:
    """A short duration: ``4 s``, ``12 min``, ``3 h 5 min``, ``2 d 4 h``."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def row(entry: Entry, now: float) -> dict[str, Any]:
    """What a row of the table shows for ``entry``."""
    return {
        "id": entry.id,
        "user": entry.username,
        "user_id": entry.user_id,
        "transport": entry.transport,
        "node": entry.node,
        "topics": entry.topics,
        "client": entry.client,
        "user_agent": entry.user_agent,
        "connected_at": datetime.fromtimestamp(entry.connected_at, UTC),
        "connected_for": ago(now - entry.connected_at),
        "last_seen": datetime.fromtimestamp(entry.last_seen, UTC),
        "last_seen_ago": ago(now - entry.last_seen),
        "messages_in": entry.messages_in,
        "messages_out": entry.messages_out,
        "pending_acks": entry.pending_acks,
    }


def choices(
    params: Params, name: str, counts: Counter[str], limit: int | None = None
) -> list[dict[str, Any]]:
    """Filter choices for parameter ``name`` (``node``, ``transport`` or ``topic``): "All",
    then the values present in the data, busiest first (at most ``limit``; the selected
    value is always listed)."""
    selected = getattr(params, name)
    values = [value for value, _ in counts.most_common(limit)]
    if selected and selected not in values:
        values.append(selected)
    listed: list[dict[str, Any]] = [
        {
            "display": "All",
            "count": None,
            "selected": not selected,
            "query_string": params.querystring(**{name: "", "page": 1}),
        }
    ]
    for value in values:
        listed.append(
            {
                "display": value,
                "count": counts.get(value, 0),
                "selected": value == selected,
                "query_string": params.querystring(**{name: value, "page": 1}),
            }
        )
    return listed


def columns(params: Params) -> list[dict[str, Any]]:
    """The table's columns, with sort links for the sortable ones."""
    titles = [
        ("user", "User"),
        ("transport", "Transport"),
        ("node", "Node"),
        ("topics", "Topics"),
        ("client", "Client address"),
        ("user_agent", "User agent"),
        ("connected_at", "Connected since"),
        ("last_seen", "Last seen"),
        ("messages_in", "Msgs in"),
        ("messages_out", "Msgs out"),
        ("pending_acks", "Pending ACKs"),
    ]
    listed = []
    current = params.sort.lstrip("-")
    descending = params.sort.startswith("-")
    for name, title in titles:
        column: dict[str, Any] = {"name": name, "title": title, "sorted": None, "url": None}
        key = SORTABLE.get(name)
        if key is not None:
            if key == current:
                column["sorted"] = "descending" if descending else "ascending"
                flipped = key if descending else f"-{key}"
                column["url"] = params.querystring(sort=flipped, page=1)
            else:
                column["url"] = params.querystring(sort=key, page=1)
        listed.append(column)
    return listed


def page_links(snapshot: Snapshot) -> list[dict[str, Any]]:
    """The paginator: page numbers around the current one, ``…`` for the gaps."""
    if snapshot.pages <= 1:
        return []
    paginator = Paginator(range(snapshot.page.total), PER_PAGE)
    number = snapshot.params.page
    links: list[dict[str, Any]] = []
    for item in paginator.get_elided_page_range(number, on_each_side=2, on_ends=1):
        if isinstance(item, int):
            url = snapshot.params.querystring(page=item)
            links.append({"number": item, "url": url, "current": item == number})
        else:  # Paginator.ELLIPSIS
            links.append({"number": None, "url": None, "current": False})
    return links
