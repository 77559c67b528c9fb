"""The built-in per-user topic ``user:<pk>`` and ``publish_to_user()``.

Every site ends up writing the same thing: a topic per user, a permission that lets only that
user follow it, and a helper that publishes to it. This module is that, registered when the
app starts (before the apps' ``realtime_topics.py`` modules, so a project may replace the
permission by registering the same pattern, :data:`USER_TOPIC_PATTERN`)::

    realtime.publish_to_user(request.user, "notification", {"title": "Your order shipped"})

    {% realtime_client user_topic %}   {# with user_topic = realtime.user_topic(request.user) #}

Only the user whose primary key is in the topic may subscribe to it: not staff, not other
users, not anonymous connections. A user's topic carries what is private to them; staff pages
that watch every user's events are better served by a staff topic of their own.

The colon sets the built-in apart from the ``user.<id>`` topics projects already register for
themselves, which keep working unchanged."""

from __future__ import annotations

from typing import Any

import realtime
from realtime.topics import register_topic

#: The pattern of the built-in per-user topic; register it again to change its permission.
USER_TOPIC_PATTERN = "user:{pk}"


def user_topic(user: Any) -> str:
    """The topic of ``user``: a user object (its ``pk``) or a primary key (``int``, ``str``,
    ``UUID``), e.g. ``"user:42"``. Raises ``ValueError`` for an anonymous or unsaved user
    (no primary key), or a key that cannot be part of a topic name."""
    pk = getattr(user, "pk", user)
    if pk is None or isinstance(pk, bool) or getattr(user, "is_anonymous", False):
        raise ValueError(
            f"{user!r} has no primary key: only a saved, authenticated user has a topic."
        )
    text = str(pk)
    if not text or not all(c.isascii() and (c.isalnum() or c in "_@-") for c in text):
        raise ValueError(
            f"The primary key {pk!r} cannot be part of a topic name (letters, digits, _ @ - "
            "only); publish to a topic of your own with realtime.publish()."
        )
    return f"user:{text}"


async def can_follow_own_topic(user: Any, pk: str) -> bool:
    """The built-in permission of ``user:<pk>``: the authenticated user whose primary key is
    ``pk``, and nobody else."""
    return bool(user is not None and user.is_authenticated and str(user.pk) == pk)


def publish_to_user(
    user: Any,
    event: str,
    data: Any = None,
    *,
    ack: bool = False,
    message_id: str | None = None,
    using: str | None = None,
    durable: bool | None = None,
) -> str:
    """Publish to the topic of ``user`` (a user object or a primary key): the same as
    ``publish(user_topic(user), event, data, ...)``, with the same options, return value,
    exceptions and transaction behaviour; ``ValueError`` when ``user`` has no topic."""
    return realtime.publish(
        user_topic(user), event, data, ack=ack, message_id=message_id, using=using, durable=durable
    )


async def apublish_to_user(
    user: Any,
    event: str,
    data: Any = None,
    *,
    ack: bool = False,
    message_id: str | None = None,
    durable: bool | None = None,
) -> str:
    """The async twin of :func:`publish_to_user`, as :func:`realtime.apublish` is of
    :func:`realtime.publish`."""
    return await realtime.apublish(
        user_topic(user), event, data, ack=ack, message_id=message_id, durable=durable
    )


def register() -> None:
    """Register the built-in topic; called by the app's ``ready()``."""
    register_topic(USER_TOPIC_PATTERN, can_follow_own_topic)
