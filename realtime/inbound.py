"""A connection's inbound frames: each client frame parsed, charged to the connection's rate
limit (ACKs of what it owes excepted) and dispatched, or answered with the error it earned.
:meth:`realtime.connection.Connection.handle_text` calls :func:`handle_text`."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from realtime import health, protocol
from realtime.connection_state import State
from realtime.exceptions import AuthRequired, CloseCode, RateLimited, RealtimeError, TokenInvalid

if TYPE_CHECKING:
    from realtime.connection import Connection

logger = logging.getLogger("realtime.connection")

_SLOW_DOWN = "Too many frames; slow down and reconnect."


async def handle_text(connection: Connection, text: str) -> None:
    """Handle one client frame. Errors that end the connection close it; the others are
    answered with an ``error`` frame. A consumer hook that raises answers this frame only
    (see :func:`check_subscribe`, :func:`notify`), except ``authenticate`` (4011)."""
    connection.last_seen = time.monotonic()
    connection.messages_in += 1
    if text == protocol.PONG and connection.state is State.OPEN:
        # the heartbeat's answer, most of an idle connection's frames: its arrival is all
        # it does; charged as parsing it would be, nothing else to do
        if not connection.bucket.take():
            connection.close(RateLimited(_SLOW_DOWN))
        return
    kind = ""
    try:
        frame = await _admit(connection, text)
        kind = frame["type"]
        await _dispatch(connection, frame)
    except RateLimited as error:
        connection.close(error)
    except TokenInvalid as error:
        if connection.state is State.OPEN:
            connection.send(protocol.error_frame(error.code, error.reason, error.ref))
        else:
            connection.refuse(error)
    except RealtimeError as error:
        connection.send(protocol.error_frame(error.code, error.reason, error.ref))
    except Exception as error:
        # e.g. Redis unreachable: close, so the client reconnects and resumes. (Also the
        # authenticate hook's HookFailed, logged already where it was raised.)
        component = "dedup" if kind == "send" else "log"
        health.request_failed(component, error, logger, "Handling a frame failed")
        connection.close_for(CloseCode.SERVER_ERROR)


async def _admit(connection: Connection, text: str) -> protocol.ClientFrame:
    """Parse a frame and charge it to the rate limit (:class:`RateLimited` when the
    bucket is empty). An ``ack`` of a message the user owes an ACK for (on this connection
    or another: :meth:`AckTracker.owed`) is free: it answers the server's own traffic, so
    a client acking every message of a busy topic is never closed for it; an ``ack`` of
    nothing pending is charged like any frame, so acks cannot flood either."""
    try:
        frame = protocol.parse_client_frame(text)
    except RealtimeError:
        _charge(connection)  # a flood of bad frames is limited like any other
        raise
    if not (frame["type"] == "ack" and await connection.acks.owed(frame["ids"])):
        _charge(connection)
    return frame


def _charge(connection: Connection) -> None:
    if not connection.bucket.take():
        raise RateLimited(_SLOW_DOWN)


async def _dispatch(connection: Connection, frame: protocol.ClientFrame) -> None:
    kind = frame["type"]
    if kind == "auth":
        await connection.on_auth(frame["token"])  # type: ignore[typeddict-item]
        return
    if connection.state is not State.OPEN:
        # answered, not closed: the client learns what is missing; AUTH_TIMEOUT and the
        # rate limit bound how long and how often it may try (docs/protocol.md)
        raise AuthRequired("Authenticate with an 'auth' frame first.")
    if kind == "subscribe":
        await connection.subscribe(frame["topic"], frame.get("cursor"))  # type: ignore[typeddict-item, arg-type]
    elif kind == "unsubscribe":
        connection.unsubscribe(frame["topic"])  # type: ignore[typeddict-item]
    elif kind == "ack":
        await connection.acks.acknowledge(frame["ids"])  # type: ignore[typeddict-item]
        connection.send(protocol.acked_frame(frame["ids"]))  # type: ignore[typeddict-item]
    elif kind == "send":
        await connection.client_messages.receive(frame)  # type: ignore[arg-type]
    # "pong": its arrival (last_seen) is all the heartbeat needs
