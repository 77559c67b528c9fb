"""Sending notifications: one function, called from views, the consumer and the command."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import transaction

import realtime

from .models import STAFF_TOPIC, Notification


def notify(user: Any, title: str, body: str = "") -> Notification:
    """Create a notification for ``user`` and push it to the user's browsers.

    It is published with ``ack=True``: the server sends it again until a browser acknowledges
    it, and the acknowledgement marks it delivered (see ``consumers.DemoConsumer.on_ack``).
    The row and its messages are written in one transaction (the demo publishes durably,
    ``REALTIME["DURABLE"]``): never a message for a rolled-back row, and never a saved row
    whose message is lost, even if Redis is down (the message then waits in the outbox until
    it is back). Raises only what the database raises."""
    with transaction.atomic():
        notification = Notification.objects.create(
            user=user, title=title, body=body, message_id=uuid.uuid4().hex
        )
        realtime.publish_to_user(
            user,
            "notification",
            notification.as_data(),
            ack=True,
            message_id=notification.message_id,
        )
        realtime.publish(STAFF_TOPIC, "created", staff_row(notification))
    return notification


def staff_row(notification: Notification) -> dict[str, Any]:
    """A row of the staff page's table."""
    return {
        "id": notification.pk,
        "user": notification.user.get_username(),
        "title": notification.title,
        "created": notification.created,
        "delivered_at": notification.delivered_at,
    }
