"""A test client that follows a topic as the JS client does, through server restarts and
Redis outages (tests/test_redis_restart.py, tests/test_outbox_e2e.py)."""

from __future__ import annotations

from typing import Any

import websockets

from tests.servers import Client, Daphne


class Follower:
    """A client as the JS client behaves: it keeps its cursor and, should the server close the
    socket, reconnects and resumes from it."""

    def __init__(self, nodes: list[Daphne], topic: str, client: Client, cursor: dict[str, Any]):
        self.nodes, self.topic, self.client, self.cursor = nodes, topic, client, cursor
        self.frames: list[dict[str, Any]] = []
        self.closes: list[int | None] = []

    async def drain(self) -> None:
        """Read what is there now; reconnect and resume if the server closed the socket."""
        try:
            while True:
                frame = await self.client.receive(timeout=0.5)
                self.frames.append(frame)
                if frame["type"] in ("message", "reset"):
                    self.cursor = {"epoch": frame["epoch"], "offset": frame["offset"]}
        except TimeoutError:
            return
        except websockets.ConnectionClosed as closed:
            self.closes.append(closed.rcvd.code if closed.rcvd else None)
        node = self.nodes[len(self.closes) % len(self.nodes)]
        try:
            self.client = await Client.connect(node)
            self.frames.append(await self.client.subscribe(self.topic, self.cursor))
        except (OSError, websockets.WebSocketException, AssertionError, TimeoutError):
            pass  # the server is still unhappy: the next drain tries again

    def messages(self) -> list[dict[str, Any]]:
        """The ``message`` frames received so far."""
        return [frame for frame in self.frames if frame["type"] == "message"]
