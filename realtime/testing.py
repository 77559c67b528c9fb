"""Helpers for your own tests.

``capture_published()`` collects what ``publish()``/``apublish()`` would send, like
``django.core.mail.outbox``::

    with realtime.testing.capture_published() as published:
        client.post("/orders/42/ship/")
    assert published[0]["topic"] == "order.42"

``RealtimeCommunicator`` speaks the protocol over Channels' ``WebsocketCommunicator``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from channels.testing import WebsocketCommunicator

from realtime import protocol
from realtime.publishing import captures


@contextlib.contextmanager
def capture_published() -> Iterator[list[dict[str, Any]]]:
    """Capture published messages (dicts with ``topic``, ``event``, ``data``, ``id``,
    ``ack``) instead of sending them. ``data`` is decoded from JSON."""
    published: list[dict[str, Any]] = []
    captures.append(published)
    try:
        yield published
    finally:
        captures.remove(published)


class RealtimeCommunicator(WebsocketCommunicator):  # type: ignore[misc]
    """A ``WebsocketCommunicator`` that speaks the realtime protocol.

    ``headers`` defaults to a same-site ``Origin`` so session auth applies; pass
    ``origin=None`` to act as a non-browser client (which must then :meth:`auth`)."""

    def __init__(
        self,
        application: Any,
        path: str = "/realtime/ws/",
        *,
        origin: str | None = "http://testserver",
        headers: list[tuple[bytes, bytes]] | None = None,
        subprotocols: list[str] | None = None,
    ) -> None:
        headers = list(headers or [])
        if origin is not None:
            headers.append((b"origin", origin.encode()))
        super().__init__(
            application,
            path,
            headers=headers,
            subprotocols=subprotocols or [protocol.SUBPROTOCOL],
        )

    async def send_frame(self, frame: dict[str, Any]) -> None:
        await self.send_json_to(frame)

    async def receive_frame(self, timeout: float = 2) -> dict[str, Any]:
        """The next frame, skipping ``ping`` frames."""
        while True:
            frame: dict[str, Any] = await self.receive_json_from(timeout)
            if frame.get("type") != "ping":
                return frame

    async def auth(self, token: str) -> dict[str, Any]:
        await self.send_frame({"type": "auth", "token": token})
        return await self.receive_frame()

    async def subscribe(self, topic: str, cursor: dict[str, Any] | None = None) -> dict[str, Any]:
        frame: dict[str, Any] = {"type": "subscribe", "topic": topic}
        if cursor is not None:
            frame["cursor"] = cursor
        await self.send_frame(frame)
        return await self.receive_frame()
