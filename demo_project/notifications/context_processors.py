"""Template context for every page: the bell's unread count and the user's topic."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

import realtime

from .models import Notification


def notifications(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"user_topic": None, "unread_count": 0}
    unread = Notification.objects.filter(user=user, read_at__isnull=True).count()
    return {"user_topic": realtime.user_topic(user), "unread_count": unread}
