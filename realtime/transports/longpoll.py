"""``GET realtime/poll/``: long-polling on the shared delivery model (docs/protocol.md).

Each request is a short-lived connection: it subscribes the ``topic`` parameters from the
``cursor`` parameter, answers at once if the log already holds something newer, else waits up
to ``POLL_TIMEOUT`` for the first live message. Nothing is kept between requests, so
consecutive polls may be answered by different nodes."""

from __future__ import annotations

import asyncio
import json

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from realtime import drain, health, protocol
from realtime.conf import get_config
from realtime.exceptions import CloseCode
from realtime.transports.http import (
    CollectingTransport,
    failure_response,
    frame_type,
    limits_header,
    open_topics,
)
from realtime.transports.refusal import refuse_request, turned_away

LIMITS_HEADER = "X-Realtime-Limits"


def _wanted(text: str) -> bool:
    # A resumed topic's `subscribed` frame says nothing new to a poller: drop it.
    return not (frame_type(text) == "subscribed" and json.loads(text)["recovered"])


@require_GET
async def poll(request: HttpRequest) -> HttpResponse:
    """Answer 200 with the frames after the cursor, or 204 when none came in time (or, while
    the node drains, at the poll's moment of the drain window)."""
    # a first poll (no cursor) is a new client, in the admission budget; later polls are not
    refusal = turned_away(admitting="cursor" not in request.GET)
    if refusal is not None:
        return refuse_request(refusal)
    transport = CollectingTransport()
    try:
        # Not registered: a poll lives for one request, and three registry writes per poll
        # would cost more than the poll itself (docs/operations.md).
        opened = await open_topics(request, transport, "longpoll", register=False)
        topics, cursors, connection = opened.topics, opened.cursors, opened.connection
        await connection.authenticated(opened.caller.user, welcome=False)
    except Exception as error:
        return failure_response(error, "log", "A long-poll request failed")
    try:
        for topic in topics:
            await connection.subscribe(topic, cursors.get(topic), checked=True)
        health.ok("log")
        frames = [text for text in transport.frames if _wanted(text)]
        if not frames:
            transport.frames.clear()
            transport.arrived.clear()
            try:
                with drain.waiting(transport.arrived.set):
                    await asyncio.wait_for(transport.arrived.wait(), get_config().poll_timeout)
            except TimeoutError:
                return _with_limits(HttpResponse(status=204))
            await asyncio.sleep(0)  # let messages that arrived together join the batch
            frames = transport.frames
            if not frames:  # ended by a drain: poll again (elsewhere)
                return _with_limits(HttpResponse(status=204))
        cursor = protocol.encode_cursors(connection.positions())
    except Exception as error:
        return failure_response(error, "log", "A long-poll request failed")
    finally:
        await connection.closed(CloseCode.NORMAL)
    body = '{"frames":[' + ",".join(frames) + '],"cursor":' + json.dumps(cursor) + "}"
    response = HttpResponse(body, content_type="application/json")
    response["Cache-Control"] = "no-cache, no-store"
    return _with_limits(response)


def _with_limits(response: HttpResponse) -> HttpResponse:
    # long-poll has no `welcome`: its answers say the limits a client must keep to
    response[LIMITS_HEADER] = limits_header()
    return response
