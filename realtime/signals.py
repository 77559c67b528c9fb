"""Signals sent by realtime.

``message_undelivered(sender, connection, topic, message_id)``
    A message published with ``ack=True`` was not acknowledged after ``ACK_MAX_RETRIES``
    retries on one connection. The message stays in the topic log. Sent on the event loop:
    receivers must not block (use ``asgiref.sync.sync_to_async`` for database work).

``connection_opened(sender, connection)`` / ``connection_closed(sender, connection, code)``
    A connection finished authentication / ended, on any transport.
"""

from __future__ import annotations

from django.dispatch import Signal

message_undelivered = Signal()
connection_opened = Signal()
connection_closed = Signal()
