"""Admin for notifications: who got what, and when it was delivered and read."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib import admin

from .models import Notification

if TYPE_CHECKING:
    NotificationAdminBase = admin.ModelAdmin[Notification]
else:
    NotificationAdminBase = admin.ModelAdmin


@admin.register(Notification)
class NotificationAdmin(NotificationAdminBase):
    list_display = ["title", "user", "created", "delivered_at", "read_at"]
    list_filter = [("delivered_at", admin.EmptyFieldListFilter), "created"]
    list_select_related = ["user"]
    search_fields = ["title", "body", "user__username"]
    readonly_fields = ["created", "delivered_at", "read_at", "message_id"]
