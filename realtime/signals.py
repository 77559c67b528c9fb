"""Signals sent by realtime.

``message_undelivered(sender, connection, topic, message_id)``
    A message published with ``ack=True`` was not acknowledged by its user (anonymous: the
    session) within its ACK schedule (``ACK_MAX_RETRIES`` retries, see docs/protocol.md,
    "ACKs"). Sent once per message and user, cluster-wide: by the node of a connection that
    still held it (``connection``, ``sender`` its class), or, when no connection of the user
    was left, by a node's sweeper (``connection`` is ``None``). The message stays in the topic
    log. Sent on the event loop: receivers must not block (use
    ``asgiref.sync.sync_to_async`` for database work).

``publish_failed(sender, topic, event, message_id, error)``
    A ``publish()`` made inside ``transaction.atomic`` failed after the transaction committed
    (``error`` is the :class:`~realtime.PublishError` or :class:`~realtime.PublishTimeout`
    that a direct call would have raised). The message was not published, or for a timeout
    may have been; publish it again with the same ``message_id`` to be sure (appends are
    idempotent by id). ``sender`` is :func:`realtime.publish`. Sent in the thread that
    committed, after the commit.

``connection_opened(sender, connection)`` / ``connection_closed(sender, connection, code)``
    A connection finished authentication / ended, on any transport.
"""

from __future__ import annotations

from django.dispatch import Signal

message_undelivered = Signal()
publish_failed = Signal()
connection_opened = Signal()
connection_closed = Signal()
