"""A notification for one user, pushed live on the user's built-in topic ``user:<id>``."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Notification(models.Model):
    """One notification. ``message_id`` is the id of the realtime message that carried it:
    when the user's browser acknowledges that message, ``delivered_at`` is set."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications"
    )
    title = models.CharField(max_length=120)
    body = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    message_id = models.CharField(max_length=64, blank=True, db_index=True)

    class Meta:
        ordering = ["-created", "-pk"]

    def __str__(self) -> str:
        return self.title

    def as_data(self) -> dict[str, object]:
        """What a browser gets in the ``notification`` message."""
        return {
            "id": self.pk,
            "title": self.title,
            "body": self.body,
            "created": self.created,
        }


#: Staff pages follow every notification's delivery here.
STAFF_TOPIC = "notifications.staff"
