"""The demo's consumer: it marks a notification delivered when a browser acknowledges the
message that carried it, and lets a page send its user a test notification.

Configured for every transport by ``REALTIME["CONSUMER"]`` (settings) and for the WebSocket
route by ``get_asgi_application(...)`` in ``demo_project/asgi.py``."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from django.utils import timezone

import realtime

from .models import STAFF_TOPIC, Notification
from .services import notify, staff_row


class DemoConsumer(realtime.RealtimeConsumer):
    async def on_ack(self, message_id: str) -> None:
        """A browser acknowledged a message: if it carried a notification of this user, the
        notification is delivered. Staff pages and the user's other tabs hear of it."""
        row: dict[str, Any] | None = await database_sync_to_async(_mark_delivered)(
            message_id, self.user.pk
        )
        if row is not None:
            delivered = {"id": row["id"], "delivered_at": row["delivered_at"]}
            await realtime.apublish_to_user(self.user, "delivered", delivered)
            await realtime.apublish(STAFF_TOPIC, "delivered", row)

    def handle_notifications_test(self, data: Any) -> dict[str, Any]:
        """``client.send("notifications.test")``: notify this user (runs in a thread)."""
        if not self.user.is_authenticated:
            raise realtime.Rejected("Log in to get notifications.")
        stamp = timezone.localtime().strftime("%H:%M:%S")
        notification = notify(self.user, "Test notification", f"You sent this at {stamp}.")
        return {"id": notification.pk}


def _mark_delivered(message_id: str, user_id: Any) -> dict[str, Any] | None:
    notification = (
        Notification.objects.select_related("user")
        .filter(message_id=message_id, user_id=user_id, delivered_at__isnull=True)
        .first()
    )
    if notification is None:
        return None  # not a notification, or another tab acknowledged it first
    notification.delivered_at = timezone.now()
    notification.save(update_fields=["delivered_at"])
    return staff_row(notification)
