"""``POST realtime/send/`` (client frames for the HTTP transports) and ``POST
realtime/ticket/`` (single-use tickets for a bare EventSource). See docs/protocol.md."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from realtime import acks, health, protocol, tickets
from realtime.broker.base import CONTROL_TYPE
from realtime.conf import get_config
from realtime.connection import notify
from realtime.exceptions import (
    CloseCode,
    InProgress,
    InvalidFrame,
    InvalidJSON,
    MessageTooLarge,
    RealtimeError,
)
from realtime.hub import get_hub
from realtime.transports.http import (
    Caller,
    CollectingTransport,
    admit,
    charge,
    error_response,
    failure_response,
    open_connection,
)

CONNECTION_HEADER = "X-Realtime-Connection"


@csrf_exempt
@require_POST
async def send(request: HttpRequest) -> HttpResponse:
    """Run a client ``send`` (200 with its ``ack`` frame) or relay an ``ack`` (204)."""
    component = "dedup"
    try:
        caller = await admit(request, csrf=True, rate_limit=False)
        frame = _read_frame(request, caller)
        if frame["type"] == "ack":
            component = "layer"
            await _acknowledge(request, caller, frame["ids"])
            return HttpResponse(status=204)
        if frame["type"] != "send":
            raise InvalidFrame("Only 'send' and 'ack' frames may be POSTed.")
        connection, _ = open_connection(
            request, caller, CollectingTransport(), "post", register=False
        )
        await connection.authenticated(caller.user, welcome=False)
        try:
            answer = await connection.answer_send(frame)
        finally:
            await connection.closed(CloseCode.NORMAL)
        if answer is None:
            return in_progress(frame["id"])
    except Exception as error:
        return failure_response(error, component, "A POSTed frame failed")
    return HttpResponse(answer, content_type="application/json")


def _read_frame(request: HttpRequest, caller: Caller) -> protocol.ClientFrame:
    """The POSTed frame, charged to the caller's rate limit: an ``ack`` to the bucket of
    acknowledgements, anything else (a ``send``, a frame refused) to the common one."""
    try:
        limit = get_config().max_frame_bytes
        if len(request.body) > limit:
            raise MessageTooLarge(f"The frame is larger than {limit} bytes.")
        try:
            text = request.body.decode()
        except UnicodeDecodeError:
            raise InvalidJSON("The body is not UTF-8.") from None
        frame = protocol.parse_client_frame(text)
    except RealtimeError:
        charge(caller)
        raise
    charge(caller, ack=frame["type"] == "ack")
    return frame


def in_progress(message_id: str) -> HttpResponse:
    """409 ``in_progress`` with ``Retry-After``: another attempt with this id is still running
    its handler; POST it again (same id) to get its answer."""
    response = error_response(InProgress(ref=message_id))
    response["Retry-After"] = "1"
    return response


async def _acknowledge(request: HttpRequest, caller: Caller, ids: list[str]) -> None:
    """Take the ACKs from the caller's pending ACKs (any node can: they are kept per user,
    or per session) and run the consumer's ``on_ack`` here for those taken. With the header
    of an SSE stream, also tell the node holding it, through the channel layer: it stops
    resending them at once, and a caller without a session (whose stream's ACKs only that
    stream knows) gets them taken there."""
    if caller.scope.startswith(("u:", "s:")):
        taken = await acks.acknowledge(caller.scope, list(dict.fromkeys(ids)))
        if taken:
            _, hooks = open_connection(
                request, caller, CollectingTransport(), "post", register=False
            )
            for message_id in taken:
                await notify(hooks, "on_ack", message_id)  # a hook that raises is logged
    target = request.headers.get(CONNECTION_HEADER, "")
    _, _, address = target.partition("@")
    if address:
        user_id = caller.user.pk if caller.user.is_authenticated else None
        message = {
            "type": CONTROL_TYPE,
            "connection": target,
            "op": "ack",
            "user": user_id,
            "ids": ids,
        }
        await get_hub().broker.send_control(address, message)


@csrf_exempt
@require_POST
async def ticket(request: HttpRequest) -> HttpResponse:
    """A single-use ticket for ``GET realtime/sse/?ticket=…`` (bare EventSource); 503 with
    ``Retry-After`` when the ticket store (Redis) cannot be written."""
    try:
        # rate-limited like every request: each ticket is a key in Redis for TICKET_TTL
        caller = await admit(request, login_required=True, csrf=True)
        value = await tickets.issue(str(caller.user.pk))
    except Exception as error:  # refused (see admit), or the ticket store (Redis) is unreachable
        return failure_response(error, "tickets", "Issuing a ticket failed")
    health.ok("tickets")
    return JsonResponse(
        {"ticket": value, "expires_in_ms": int(get_config().ticket_ttl * 1000)}, status=201
    )
