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
    The row is committed first, with the message id chosen here, and published after the
    commit: never for a rolled-back row, and a failure reaches the caller (a publish inside
    the atomic block would be sent on commit, where a failure is only logged). Publishing
    again with the same id is safe: the topic log keeps one copy.

    Raises ``realtime.PublishError`` when realtime is unavailable (Redis down): the row is
    committed all the same, and the user sees it on their next page load, so a caller must
    not create it again (see :data:`NOT_PUSHED`)."""
    message_id = uuid.uuid4().hex
    with transaction.atomic():
        notification = Notification.objects.create(
            user=user, title=title, body=body, message_id=message_id
        )
    realtime.publish_to_user(
        user, "notification", notification.as_data(), ack=True, message_id=message_id
    )
    realtime.publish(STAFF_TOPIC, "created", staff_row(notification))
    return notification


# What callers tell a person when notify() raised PublishError: saved, not pushed live.
NOT_PUSHED = (
    "could not be pushed live (realtime is unavailable), but it is saved: it shows on the "
    "user's next page load. Do not send it again."
)


def staff_row(notification: Notification) -> dict[str, Any]:
    """A row of the staff page's table."""
    return {
        "id": notification.pk,
        "user": notification.user.get_username(),
        "title": notification.title,
        "created": notification.created,
        "delivered_at": notification.delivered_at,
    }
