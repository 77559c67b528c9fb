"""Signals sent by realtime.

``message_undelivered(sender, connection, topic, message_id)``
    A message published with ``ack=True`` was not acknowledged after ``ACK_MAX_RETRIES``
    retries on one connection. The message stays in the topic log. Sent on the event loop:
    receivers must not block (use ``asgiref.sync.sync_to_async`` for database work).

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
