"""The hubs of this process, one per event loop that serves connections
(:func:`realtime.hub.get_hub` creates them).

Apart from :mod:`realtime.hub` so that what only asks about them imports nothing of the hub:
``publish()`` (which warns when no hub of this process listens, without Redis), the metrics'
connection gauges and the operator commands. The hub, for its part, runs the registry refresher
and the presence events, which publish."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Mapping, Sized
from typing import Protocol, TypeVar, cast


class Served(Protocol):
    """What is read of a hub's connection here (:class:`realtime.connection.Connection`)."""

    @property
    def transport_name(self) -> str: ...

    @property
    def pending(self) -> Sized: ...


class Hub(Protocol):
    """What is kept and read of a hub here (:class:`realtime.hub.Hub`)."""

    @property
    def node(self) -> str: ...

    @property
    def connections(self) -> Mapping[str, Served]: ...

    def stop(self) -> None: ...


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


H = TypeVar("H", bound=Hub)


def hub_of(loop: asyncio.AbstractEventLoop, create: Callable[[], H]) -> H:
    """The hub of ``loop``, made by ``create`` if it has none yet."""
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = create()
    return cast(H, hub)  # only get_hub() makes hubs, so every hub here is a realtime.hub.Hub


def all_hubs() -> list[Hub]:
    """Every hub of this process (one per event loop that served connections)."""
    return list(_hubs.values())


def serves_connections() -> bool:
    """Whether this process has ever had a realtime connection (a hub exists): a server
    process, not a shell, a worker or a management command. Safe from any thread."""
    return len(_hubs) > 0


def reset_hubs() -> None:
    """Stop and forget all hubs (settings changed in tests)."""
    for hub in list(_hubs.values()):
        hub.stop()
    _hubs.clear()
