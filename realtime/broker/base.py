"""The interface every broker implements, and the two kinds of message it carries."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from realtime.hub import Hub

# A published message, for every hub with subscribers of its topic.
MESSAGE_TYPE = "realtime.message"
# An order for one hub's connection (ACK, disconnect, notice) or a probe of the hub itself.
CONTROL_TYPE = "realtime.control"


class Broker(Protocol):
    """Carries messages between hubs. A hub joins a topic while it has local subscribers;
    :meth:`broadcast` reaches every hub that joined it, on any node."""

    async def join(self, hub: Hub, topic: str) -> None:
        """Deliver ``topic``'s messages to ``hub`` from now on."""
        ...

    async def leave(self, hub: Hub, topic: str) -> None:
        """Stop delivering ``topic``'s messages to ``hub``."""
        ...

    async def broadcast(self, topic: str, message: dict[str, Any]) -> None:
        """Hand ``message`` to every hub that joined ``topic``."""
        ...

    async def address(self, hub: Hub) -> str:
        """Where :meth:`send_control` reaches ``hub``, from any process."""
        ...

    async def send_control(self, address: str, message: dict[str, Any]) -> None:
        """Hand a control message to the hub at ``address``."""
        ...

    async def reconnect(self) -> None:
        """Drop idle connections, so that the next attempt opens a fresh one."""
        ...
