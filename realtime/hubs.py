"""The hubs of this process, one per event loop that serves connections
(:func:`realtime.hub.get_hub` creates them).

Apart from :mod:`realtime.hub` so that what only asks about them imports nothing of the hub:
``publish()`` (which warns when no hub of this process listens, without Redis), the metrics'
connection gauges and the operator commands. The hub, for its part, runs the registry refresher
and the presence events, which publish."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from realtime.hub import Hub

_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def hub_of(loop: asyncio.AbstractEventLoop, create: Callable[[], Hub]) -> Hub:
    """The hub of ``loop``, made by ``create`` if it has none yet."""
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = create()
    return hub


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
