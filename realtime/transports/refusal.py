""" "Try again later" answers to a new connection this node will not take now: it is draining
(:mod:`realtime.drain`), or over its admission budget (:mod:`realtime.admission`). An HTTP 503
with ``Retry-After`` for an SSE stream or long-poll, and for a WebSocket handshake where the
server can send one (uvicorn); under daphne, which can refuse a handshake only with a bare
403, the socket is accepted and closed at once with a close code and a ``close`` frame that
carries the hint."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from django.http import JsonResponse

from realtime import admission, drain, health, protocol
from realtime.exceptions import CloseCode
from realtime.metrics import REFUSED

DRAINING_REASON = "This server is restarting; connect again (to another node)."
BUSY_REASON = "This server is busy; try again later."


@dataclass(frozen=True)
class Refusal:
    """Why a new connection is turned away, and when to try again (seconds)."""

    reason: str
    retry_after: int
    code: CloseCode


def turned_away(*, admitting: bool = True) -> Refusal | None:
    """The one gate of every transport for a new connection: a :class:`Refusal` while this
    process drains or is over its admission budget, else ``None`` (and, with ``admitting``,
    the connection is taken from the budget; ``False`` for a long-poll that carries a
    cursor, which continues a client rather than adding one)."""
    if drain.draining():
        REFUSED.labels("draining").inc()
        return Refusal(DRAINING_REASON, 1, CloseCode.SERVICE_RESTART)
    hint = admission.admit() if admitting else None
    if hint is not None:
        REFUSED.labels("busy").inc()
        return Refusal(BUSY_REASON, hint, CloseCode.TRY_AGAIN_LATER)
    return None


def try_later_body(reason: str) -> dict[str, Any]:
    """The JSON body of a 503: the ``unavailable`` error of docs/protocol.md."""
    return {"error": {"code": "unavailable", "reason": reason}}


def refuse_request(refusal: Refusal) -> JsonResponse:
    """:func:`try_later` for a refused SSE stream or long-poll."""
    return try_later(refusal.reason, refusal.retry_after)


def try_later(reason: str, retry_after: int = 1) -> JsonResponse:
    """HTTP 503 ``unavailable`` with ``Retry-After`` (seconds), for an SSE or long-poll
    request (or a POST) this node does not take now. Not logged as a server error."""
    response = JsonResponse(try_later_body(reason), status=503)
    response["Retry-After"] = str(retry_after)
    return health.outage_answer(response)


async def refuse_handshake(
    scope: dict[str, Any],
    send: Callable[[dict[str, Any]], Coroutine[Any, Any, None]],
    refusal: Refusal,
) -> None:
    """Refuse a WebSocket handshake (before ``websocket.accept``) as "try again later".

    Where the server supports the ASGI ``websocket.http.response`` extension (uvicorn): HTTP
    503 with ``Retry-After`` and the JSON body of :func:`try_later`. Elsewhere (daphne, whose
    only refusal is HTTP 403 with no headers of the app's): accept, send a ``close`` frame
    with the refusal's code, reason and ``retry_after_ms``, and close with that code (4013
    for a busy node, 4012 for a draining one), which a client tells apart from a refused
    Origin."""
    reason, retry_after, code = refusal.reason, refusal.retry_after, refusal.code
    extensions = scope.get("extensions") or {}
    if "websocket.http.response" in extensions:
        body = json.dumps(try_later_body(reason)).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"retry-after", str(retry_after).encode()),
        ]
        await send({"type": "websocket.http.response.start", "status": 503, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
        return
    accept: dict[str, Any] = {"type": "websocket.accept"}
    if protocol.SUBPROTOCOL in scope.get("subprotocols", ()):
        accept["subprotocol"] = protocol.SUBPROTOCOL
    await send(accept)
    frame = protocol.close_frame(code, reason, retry_after)
    await send({"type": "websocket.send", "text": frame})
    # int(): autobahn refuses a close code that is not exactly an int
    await send({"type": "websocket.close", "code": int(code), "reason": code.reason})
