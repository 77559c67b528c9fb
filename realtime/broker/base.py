"""The interface every broker implements, and the two kinds of message it carries."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Protocol

# A published message, for every hub with subscribers of its topic.
MESSAGE_TYPE = "realtime.message"
# An order for one hub's connection (ACK, disconnect, notice) or a probe of the hub itself.
CONTROL_TYPE = "realtime.control"
# What every hub joins, as a topic that no client can name (a topic starts with a letter or a
# digit): orders for every server process, e.g. forget the cached user of a revoked token.
EVERY_HUB = "_realtime.hubs"


class Endpoint(Protocol):
    """What a broker needs of a hub it delivers to (:class:`realtime.hub.Hub`)."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the hub runs on."""
        ...

    @property
    def subscribers(self) -> Mapping[str, object]:
        """The topics the hub has local subscribers of (the keys)."""
        ...

    def dispatch(self, message: dict[str, Any]) -> None:
        """Hand a published message to the local subscribers of its topic."""
        ...

    def control(self, message: dict[str, Any]) -> None:
        """Hand a control message to the local connection it names."""
        ...

    async def channel(self) -> str:
        """The hub's channel in the channel layer."""
        ...

    def resync(self) -> None:
        """The broker may have lost messages (its connection broke and is back): compare the
        local subscriptions with the log, which fills what they missed."""
        ...


class Broker(Protocol):
    """Carries messages between hubs. A hub joins a topic while it has local subscribers;
    :meth:`broadcast` reaches every hub that joined it, on any node."""

    #: Whether messages reach the hubs of other processes.
    cluster_wide: bool

    async def join(self, hub: Endpoint, topic: str) -> None:
        """Deliver ``topic``'s messages to ``hub`` from now on."""
        ...

    async def leave(self, hub: Endpoint, topic: str) -> None:
        """Stop delivering ``topic``'s messages to ``hub``."""
        ...

    async def broadcast(self, topic: str, message: dict[str, Any]) -> None:
        """Hand ``message`` to every hub that joined ``topic``."""
        ...

    async def address(self, hub: Endpoint) -> str:
        """Where :meth:`send_control` reaches ``hub``, from any process."""
        ...

    async def send_control(self, address: str, message: dict[str, Any]) -> None:
        """Hand a control message to the hub at ``address``."""
        ...

    async def reconnect(self) -> None:
        """Drop idle connections, so that the next attempt opens a fresh one."""
        ...

    async def aclose(self) -> None:
        """Close what the broker opened on the running event loop (before the loop closes)."""
        ...
