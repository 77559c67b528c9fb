"""``publish()`` for sync code and ``apublish()`` for async code.

A message is first appended to its topic's log, which gives it its ``(epoch, offset)``, then
broadcast to every node's hub. ``publish()`` runs that on one long-lived event loop per process
(a daemon thread, :mod:`realtime.loop`), so a view, signal handler, management command or
Celery task pays one thread hop and reuses one Redis connection pool, instead of a new event
loop and a new connection per call as ``async_to_sync(group_send)`` does.

What a result means: once the append succeeded the message exists and reaches every
subscriber, so the call returns its id even if the broadcast failed (after one retry on a fresh
channel-layer connection; the failure is logged once per outage and counted in
``realtime_publish_errors_total{step="broadcast"}``). Its subscribers then get it with the
topic's next message (a gap in the offsets makes each connection read the log) or when they
reconnect and resume; a topic that stays quiet delivers it only then. When the append failed
the call raises :class:`PublishError`; when its outcome is unknown (no answer in time) it
raises :class:`PublishTimeout`. Either way, publishing again with the same ``message_id`` (and
the same event and data) is safe: the log appends a message id at most once (while it holds
the entry) and returns the first append's position, and the message is broadcast again, which
clients that have it ignore (they drop offsets they have already seen) and clients that missed
it take."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis.exceptions
from asgiref.sync import sync_to_async
from django.db import transaction

from realtime import health, protocol
from realtime._tasks import stop_if_cancelled
from realtime.backends import get_broker, get_log
from realtime.broker.base import MESSAGE_TYPE
from realtime.conf import get_config
from realtime.exceptions import MessageTooLarge, PublishError, PublishTimeout
from realtime.hubs import serves_connections
from realtime.loop import run_sync
from realtime.metrics import PUBLISH_ERRORS, PUBLISHED
from realtime.protocol import EVENT_RE, MESSAGE_ID_RE
from realtime.signals import publish_failed
from realtime.topics import validate_topic

if TYPE_CHECKING:
    from realtime.outbox.relay import Relay

logger = logging.getLogger("realtime.publishing")

# The recorders of realtime.testing.capture_published(): while any is installed, messages go
# to them instead of being sent. A recorder gets the message (``data`` decoded) and the database
# connection whose transaction was open when it was published (None outside one).
captures: list[Callable[[dict[str, Any], Any], None]] = []


def _capture(message: dict[str, Any], connection: Any) -> None:
    for record in list(captures):
        record({**message, "data": json.loads(message["data"])}, connection)


def _prepare(
    topic: str, event: str, data: Any, ack: bool, message_id: str | None
) -> dict[str, Any]:
    validate_topic(topic)
    if not isinstance(event, str) or not EVENT_RE.fullmatch(event):
        raise ValueError(
            f"Invalid event {event!r}: use 1-64 letters, digits, '_', '.', '-', starting with "
            "a letter."
        )
    if message_id is not None and (
        not isinstance(message_id, str) or not MESSAGE_ID_RE.fullmatch(message_id)
    ):
        raise ValueError(
            f"Invalid message_id {message_id!r}: use 1-64 letters, digits, '_', '.', ':', '-'."
        )
    try:
        data_json = protocol.encode(data)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"publish() data is not JSON serializable: {exc}") from exc
    limit = get_config().max_message_bytes
    if len(data_json.encode()) > limit:
        raise MessageTooLarge(
            f"Message data is {len(data_json.encode())} bytes once encoded; the limit is "
            f"{limit} (REALTIME['MAX_MESSAGE_BYTES']). Publish an id and let clients fetch."
        )
    return {
        "type": MESSAGE_TYPE,
        "topic": topic,
        "event": event,
        "id": message_id if message_id is not None else uuid.uuid4().hex,
        "ack": bool(ack),
        "data": data_json,
    }


def _unknown_outcome(timeout: float) -> str:
    return (
        f"The topic log did not confirm the message within {timeout} s "
        "(REALTIME['PUBLISH_TIMEOUT']); is Redis reachable? The outcome is unknown: the "
        "message may still be appended and delivered. Publishing it again with the same "
        "message id (message_id=...) is safe: it is appended at most once."
    )


async def _deliver(message: dict[str, Any], timeout: float) -> None:
    """Append, then broadcast. Raises :class:`PublishTimeout` or :class:`PublishError` when
    the append did not succeed; a failed broadcast is reported, not raised."""
    await _deliver_all([message], timeout)


async def _deliver_all(messages: list[dict[str, Any]], timeout: float) -> None:
    """:func:`_deliver` for several messages of one topic, in order: one append for all (the
    outbox relay's batches), then a broadcast of each."""
    if captures:
        for message in messages:
            _capture(message, None)
        return
    if not _isolation_reported and not get_config().redis_url and not serves_connections():
        _report_isolation()
    log, now = get_log(), time.time()
    entries = [(m["id"], m["event"], m["data"], m["ack"], now) for m in messages]
    try:
        async with asyncio.timeout(timeout):
            if len(entries) == 1:
                positions = [await log.append(messages[0]["topic"], *entries[0])]
            else:
                positions = await log.append_many(messages[0]["topic"], entries)
    except (TimeoutError, redis.exceptions.TimeoutError) as error:
        health.failed("log", error)
        PUBLISH_ERRORS.labels("append").inc()
        raise PublishTimeout(_unknown_outcome(timeout)) from None
    except Exception as error:
        health.failed("log", error)
        PUBLISH_ERRORS.labels("append").inc()
        raise PublishError(
            f"The topic log did not take the message: {error!r}. Publishing it again with the "
            "same message id (message_id=...) is safe."
        ) from error
    health.ok("log")
    for message, position in zip(messages, positions, strict=True):
        message["epoch"], message["offset"] = position
        message["time"] = time.time()
        await _broadcast(message, timeout)
        PUBLISHED.inc()


_isolation_reported = False


def _report_isolation() -> None:
    """Say once per process that a publish here reaches nobody: without Redis the topic log
    and the connections live in the memory of the server process, not of this one."""
    global _isolation_reported
    _isolation_reported = True
    logger.warning(
        "realtime.publish() in a process that serves no realtime connection, without Redis "
        "(REALTIME['REDIS_URL'] is not set): the message stays in this process's own topic "
        "log and reaches no browser. To publish from a shell, a management command or a "
        "worker, give every process the same REALTIME['REDIS_URL'] and channels_redis' "
        "RedisPubSubChannelLayer (README, 'Adding it to your project'). In a server process "
        "this is said once, before its first connection, and can be ignored."
    )


def forget_isolation_warning() -> None:
    """Let the next publish() without Redis in a process without connections warn again (the
    warning is given once per process): for tests of the warning itself."""
    global _isolation_reported
    _isolation_reported = False


async def _broadcast(message: dict[str, Any], timeout: float) -> None:
    """Send a logged message to every node; retry once on a fresh connection. Never raises:
    the message is in the log, so subscribers get it with the topic's next message."""
    broker = get_broker()
    for attempt in (1, 2):
        try:
            async with asyncio.timeout(timeout):
                await broker.broadcast(message["topic"], message)
        except Exception as error:
            stop_if_cancelled(error)
            if attempt == 1:
                await broker.reconnect()
                continue
            health.failed("layer", error)
            PUBLISH_ERRORS.labels("broadcast").inc()
            return
        health.ok("layer")
        return


def _deliver_sync(message: dict[str, Any], timeout: float) -> None:
    try:
        # the append and the two broadcast attempts are bounded by ``timeout`` each
        run_sync(_deliver(message, timeout), 3 * timeout + 1)
    except TimeoutError:
        raise PublishTimeout(_unknown_outcome(timeout)) from None
    except PublishError:
        raise
    except Exception as exc:
        raise PublishError(f"Publishing failed: {exc!r}") from exc


def _deliver_on_commit(message: dict[str, Any], timeout: float) -> None:
    """The transaction committed: a failure must not raise into the request. It is logged,
    counted and sent as the ``publish_failed`` signal."""
    try:
        _deliver_sync(message, timeout)
    except PublishError as error:
        logger.warning(
            "Message %s on topic %r was committed but not published: %s",
            message["id"],
            message["topic"],
            error,
        )
        publish_failed.send(
            sender=publish,
            topic=message["topic"],
            event=message["event"],
            message_id=message["id"],
            error=error,
        )


def publish(
    topic: str,
    event: str,
    data: Any = None,
    *,
    ack: bool = False,
    message_id: str | None = None,
    using: str | None = None,
    durable: bool | None = None,
) -> str:
    """Publish ``data`` (anything DjangoJSONEncoder encodes) as ``event`` on ``topic`` and
    return the message id: ``message_id`` when given (1-64 letters, digits, ``_.:-``; a
    retry with the same id is appended at most once), else a fresh one.

    Blocks until the topic log has the message, and returns its id once it has, even if the
    live broadcast then failed (subscribers get it with the topic's next message). With
    ``ack=True`` clients must acknowledge it and are sent it again until they do. Raises
    ``InvalidTopic``, ``ValueError`` (bad event name or message id), ``TypeError`` (data not
    JSON serializable), ``MessageTooLarge``, ``PublishError`` (not appended) or
    ``PublishTimeout`` (outcome unknown; retry with the same ``message_id``);
    ``RuntimeError`` when called from a running event loop (use :func:`apublish` there).

    Inside ``transaction.atomic`` (of database ``using``) the message is sent when the
    transaction commits, and never if it rolls back; the id is returned at once. A failure
    after the commit does not raise into the committed request: it is logged, counted in
    ``realtime_publish_errors`` and sent as the ``publish_failed`` signal, and the message is
    not sent.

    With ``durable=True`` (default: ``REALTIME["DURABLE"]``) the message is instead written to
    the outbox table of database ``using``, in the open transaction (so it commits or rolls
    back with the caller's writes) or committed at once outside one, and a relay moves it
    into the log after the commit: it is not lost if this process dies or Redis is down then
    (docs/publishing.md, "Durable publishing"). The call then raises what the database
    raises, never ``PublishError``.

    Under ``realtime.testing.capture_published()`` nothing is sent: the message is captured
    at once, and dropped from the capture if its transaction rolls back (docs/testing.md)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(
            "realtime.publish() was called from async code, where it would block the event "
            "loop; use `await realtime.apublish(...)` instead."
        )
    message = _prepare(topic, event, data, ack, message_id)
    timeout = get_config().publish_timeout
    connection = transaction.get_connection(using)
    if captures:
        # Recorded now, not at the commit: in a Django TestCase the test's own transaction
        # wraps every block, so the commit never comes. The recorder drops the message again
        # if this transaction rolls back.
        _capture(message, connection if connection.in_atomic_block else None)
    elif get_config().durable if durable is None else durable:
        _enqueue(message, using)
    elif connection.in_atomic_block:
        transaction.on_commit(lambda: _deliver_on_commit(message, timeout), using=using)
    else:
        _deliver_sync(message, timeout)
    return str(message["id"])


def _enqueue(message: dict[str, Any], using: str | None) -> None:
    # the outbox model needs the app registry: loaded by the first durable publish
    from realtime.outbox.relay import enqueue

    enqueue(_deliver_all, message, using)


def start_relay(using: str = "default") -> Relay:
    """This process's outbox relay for database ``using``, started (in a daemon thread) if it
    is not running yet: server processes call it when ``DURABLE`` is on."""
    # the outbox model needs the app registry: loaded when a relay is first wanted
    from realtime.outbox.relay import process_relay

    return process_relay(_deliver_all, using)


def new_relay(using: str = "default") -> Relay:
    """A relay that moves rows with :func:`publish`'s own delivery, not started: for
    ``manage.py realtime_relay`` and tests."""
    # the outbox model needs the app registry: loaded when a relay is first wanted
    from realtime.outbox.relay import Relay

    return Relay(_deliver_all, using)


async def aget_cursors(topics: list[str]) -> dict[str, dict[str, Any]]:
    """The current position of each topic, as ``{"topic": {"epoch": …, "offset": …}}``."""
    log = get_log()
    cursors = {}
    for topic in topics:
        replay = await log.read_after(validate_topic(topic), None, 0)
        cursors[topic] = {"epoch": replay.epoch, "offset": replay.offset}
    return cursors


def get_cursors(topics: list[str]) -> dict[str, dict[str, Any]]:
    """Sync twin of :func:`aget_cursors`: capture positions while rendering a page, so that a
    client subscribing with them later gets everything published in between."""
    return run_sync(aget_cursors(topics))


async def apublish(
    topic: str,
    event: str,
    data: Any = None,
    *,
    ack: bool = False,
    message_id: str | None = None,
    durable: bool | None = None,
) -> str:
    """The async twin of :func:`publish`, for consumers and async views. It does not wait
    for a transaction (async code has none); returns and raises as :func:`publish` does.
    Durably (``durable``, as for :func:`publish`), the outbox row is committed at once on the
    default database."""
    message = _prepare(topic, event, data, ack, message_id)
    if captures:
        _capture(message, None)
        return str(message["id"])
    if get_config().durable if durable is None else durable:
        await sync_to_async(_enqueue)(message, None)
        return str(message["id"])
    try:
        await _deliver(message, get_config().publish_timeout)
    except (PublishError, asyncio.CancelledError):
        raise
    except Exception as exc:
        raise PublishError(f"Publishing failed: {exc!r}") from exc
    return str(message["id"])
