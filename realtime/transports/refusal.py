""" "Try again later" answers to a new connection this node will not take now (it is draining:
:mod:`realtime.drain`): an HTTP 503 with ``Retry-After``, for a WebSocket handshake where the
server can send one, and for an SSE stream or long-poll."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from django.http import JsonResponse

from realtime import health

DRAINING_REASON = "This server is restarting; connect again (to another node)."


def try_later_body(reason: str) -> dict[str, Any]:
    """The JSON body of a 503: the ``unavailable`` error of docs/protocol.md."""
    return {"error": {"code": "unavailable", "reason": reason}}


def try_later(reason: str, retry_after: int = 1) -> JsonResponse:
    """HTTP 503 ``unavailable`` with ``Retry-After`` (seconds), for an SSE or long-poll
    request (or a POST) this node does not take now. Not logged as a server error."""
    response = JsonResponse(try_later_body(reason), status=503)
    response["Retry-After"] = str(retry_after)
    return health.outage_answer(response)


async def refuse_handshake(
    scope: dict[str, Any],
    send: Callable[[dict[str, Any]], Coroutine[Any, Any, None]],
    reason: str,
    retry_after: int = 1,
) -> None:
    """Refuse a WebSocket handshake (before ``websocket.accept``) as "try again later": an
    HTTP 503 with ``Retry-After`` and the JSON body of :func:`try_later` where the server
    supports the ASGI ``websocket.http.response`` extension (uvicorn), else a plain refusal
    (daphne answers it with HTTP 403). Either way a browser sees the handshake fail (1006)."""
    extensions = scope.get("extensions") or {}
    if "websocket.http.response" in extensions:
        body = json.dumps(try_later_body(reason)).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"retry-after", str(retry_after).encode()),
        ]
        await send({"type": "websocket.http.response.start", "status": 503, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close"})
