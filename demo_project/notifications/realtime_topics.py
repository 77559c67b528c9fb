"""Who may follow which notification topic; autodiscovered by the realtime app."""

from __future__ import annotations

from typing import Any

import realtime

from .models import STAFF_TOPIC


@realtime.topic("user.{user_id:int}")
def can_follow_user(user: Any, user_id: int) -> bool:
    """A user's notifications: that user, and staff."""
    return bool(user.is_authenticated and (user.pk == user_id or user.is_staff))


realtime.register_topic(STAFF_TOPIC, realtime.allow_staff)
