"""Topic permissions of the test app (autodiscovered by realtime)."""

from __future__ import annotations

from typing import Any

import realtime

realtime.register_topic("public.{name}", realtime.allow_any)
realtime.register_topic("staff.{name}", realtime.allow_staff)
realtime.register_topic("room.{name}", realtime.allow_authenticated, presence=True)


@realtime.topic("user.{user_id:int}")
def own_user_topic(user: Any, user_id: int) -> bool:
    # sync on purpose: runs in a thread like a typical ORM permission
    return bool(user.is_authenticated and (user.pk == user_id or user.is_staff))


@realtime.topic("crash.{name}")
def crashing_permission(user: Any, name: str) -> bool:
    # a permission with a bug, as README's example had for anonymous users (tests of
    # tests/test_user_code_errors.py)
    raise TypeError(f"permission bug for {name}")
