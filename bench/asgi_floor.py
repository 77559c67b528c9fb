"""The idle scenario's floor (target `asgi-floor`): an ASGI application that accepts a
WebSocket, says ``ready`` (the load generator's ``plain`` handshake) and then only waits for
the disconnect, under daphne or uvicorn with their own pings off. What an idle socket costs
the server itself, before any application keeps anything or sends anything:
``bench.asgi_floor:application``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Message = dict[str, Any]


async def application(
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    """Accept each WebSocket and hold it; answer any HTTP request 404."""
    if scope["type"] == "websocket":
        while True:
            message = await receive()
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.accept"})
                await send({"type": "websocket.send", "text": '{"type":"ready"}'})
            elif message["type"] == "websocket.disconnect":
                return
    elif scope["type"] == "http":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
