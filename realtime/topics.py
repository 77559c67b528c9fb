"""Topic names, their channel-layer group names, and the registry of topic permissions.

A topic is a name such as ``user.42`` or ``order.1234``. Subscribing is allowed only when a
registered pattern matches the topic and its permission callable says yes; a topic that no
pattern matches is forbidden, so forgetting to register a topic fails closed.

Register patterns in a ``realtime_topics.py`` module of any installed app (it is imported at
start-up) or in ``AppConfig.ready()``::

    import realtime

    @realtime.topic("order.{order_id:int}")
    def can_subscribe_order(user, order_id):
        if not user.is_authenticated:  # AnonymousUser: filter(customer=user) would raise
            return False
        return user.is_staff or Order.objects.filter(pk=order_id, customer=user).exists()

    realtime.register_topic("news", realtime.allow_any)
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async

from realtime.exceptions import Forbidden, InvalidTopic, RealtimeError

logger = logging.getLogger("realtime.topics")

TOPIC_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@\-]{0,199}")
TOPIC_HELP = (
    "A topic is 1 to 200 characters of letters, digits and _ . : @ -, "
    "starting with a letter or digit (e.g. 'order.42')."
)

Permission = Callable[..., bool | Awaitable[bool]]

_CONVERTERS = {"str": (r"[A-Za-z0-9_@\-]+", str), "int": (r"[0-9]{1,18}", int)}
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([a-z]+))?\}")


def validate_topic(topic: object) -> str:
    """Return ``topic`` if it is a valid topic name, else raise :class:`InvalidTopic`."""
    if not isinstance(topic, str) or not TOPIC_RE.fullmatch(topic):
        raise InvalidTopic(f"Invalid topic {topic!r}. {TOPIC_HELP}", ref=str(topic)[:200])
    return topic


def group_name(topic: str) -> str:
    """The channel-layer group for a topic: a hash, so any valid topic maps to a valid,
    short group name and two topics never share one."""
    digest = hashlib.blake2b(topic.encode(), digest_size=16).hexdigest()
    return f"realtime.t.{digest}"


@dataclass(frozen=True)
class TopicPattern:
    """One registered pattern and the permission callable guarding it."""

    pattern: str
    regex: re.Pattern[str]
    casts: dict[str, Callable[[str], Any]]
    permission: Permission
    presence: bool = False

    def match(self, topic: str) -> dict[str, Any] | None:
        found = self.regex.fullmatch(topic)
        if found is None:
            return None
        return {name: self.casts[name](value) for name, value in found.groupdict().items()}


def compile_pattern(pattern: str, permission: Permission, presence: bool = False) -> TopicPattern:
    """Compile ``"order.{order_id:int}"`` style patterns. Raises ``ValueError`` if malformed."""
    parts: list[str] = []
    casts: dict[str, Callable[[str], Any]] = {}
    end = 0
    for placeholder in _PLACEHOLDER.finditer(pattern):
        name, kind = placeholder.group(1), placeholder.group(2) or "str"
        if kind not in _CONVERTERS:
            raise ValueError(
                f"Unknown converter {kind!r} in topic pattern {pattern!r}: use str or int."
            )
        regex, cast = _CONVERTERS[kind]
        parts.append(re.escape(pattern[end : placeholder.start()]))
        parts.append(f"(?P<{name}>{regex})")
        casts[name] = cast
        end = placeholder.end()
    parts.append(re.escape(pattern[end:]))
    literal = _PLACEHOLDER.sub("x", pattern)
    if not TOPIC_RE.fullmatch(literal):
        raise ValueError(f"Topic pattern {pattern!r} can never match a valid topic. {TOPIC_HELP}")
    return TopicPattern(pattern, re.compile("".join(parts)), casts, permission, presence)


class TopicRegistry:
    """Ordered topic patterns; the first pattern that matches a topic decides."""

    def __init__(self) -> None:
        self._patterns: list[TopicPattern] = []

    def register(self, pattern: str, permission: Permission, presence: bool = False) -> None:
        """Register (or replace) the permission for ``pattern``."""
        compiled = compile_pattern(pattern, permission, presence)
        self._patterns = [p for p in self._patterns if p.pattern != pattern] + [compiled]

    def unregister(self, pattern: str) -> None:
        self._patterns = [p for p in self._patterns if p.pattern != pattern]

    def patterns(self) -> list[str]:
        return [p.pattern for p in self._patterns]

    def snapshot(self) -> tuple[TopicPattern, ...]:
        """The registrations as they are now, for :meth:`restore`."""
        return tuple(self._patterns)

    def restore(self, snapshot: tuple[TopicPattern, ...]) -> None:
        """Go back to the registrations of ``snapshot``: those made since are forgotten, those
        removed since come back."""
        self._patterns = list(snapshot)

    def presence_enabled(self, topic: str) -> bool:
        """Whether ``topic`` announces joins and leaves (its pattern says ``presence=True``)."""
        try:
            return self.resolve(topic)[0].presence
        except (Forbidden, InvalidTopic):
            return False

    def resolve(self, topic: str) -> tuple[TopicPattern, dict[str, Any]]:
        """The pattern matching ``topic`` and its parameters; :class:`Forbidden` if none."""
        validate_topic(topic)
        for pattern in self._patterns:
            params = pattern.match(topic)
            if params is not None:
                return pattern, params
        raise Forbidden(f"No topic pattern matches {topic!r}.", ref=topic)

    async def acheck(self, user: Any, topic: str) -> None:
        """Raise :class:`Forbidden` unless ``user`` may subscribe to ``topic``.

        Sync permission callables run in a thread (they usually query the database). A
        permission that raises (a bug, e.g. an ORM filter given ``AnonymousUser``) refuses the
        topic too: its traceback is logged once on ``realtime.topics``, and
        :class:`Forbidden` is raised, so that only this subscribe fails (fail closed)."""
        pattern, params = self.resolve(topic)
        try:
            if inspect.iscoroutinefunction(pattern.permission):
                allowed = await pattern.permission(user, **params)
            else:
                allowed = await database_sync_to_async(pattern.permission)(user, **params)
        except RealtimeError:
            raise  # a deliberate answer (Forbidden, Rejected, …)
        except Exception:
            name = getattr(pattern.permission, "__qualname__", repr(pattern.permission))
            logger.exception(
                "The permission %s of topic pattern %r raised for topic %r; the subscribe "
                "is refused (forbidden)",
                name,
                pattern.pattern,
                topic,
            )
            raise Forbidden(
                f"Not allowed to subscribe to {topic!r}: the permission check failed.", ref=topic
            ) from None
        if not allowed:
            raise Forbidden(f"Not allowed to subscribe to {topic!r}.", ref=topic)


registry = TopicRegistry()


def register_topic(pattern: str, permission: Permission, *, presence: bool = False) -> None:
    """Allow subscribing to topics matching ``pattern`` when ``permission(user, **params)`` is
    true. ``permission`` may be sync (run in a thread) or async. With ``presence=True`` the
    topic's subscribers get ``presence.join`` / ``presence.leave`` events (realtime.roster)."""
    registry.register(pattern, permission, presence)


def topic(pattern: str, *, presence: bool = False) -> Callable[[Permission], Permission]:
    """Decorator form of :func:`register_topic`."""

    def decorator(permission: Permission) -> Permission:
        register_topic(pattern, permission, presence=presence)
        return permission

    return decorator


async def allow_any(user: Any, **params: Any) -> bool:
    """Permission: everyone, including anonymous connections."""
    return True


async def allow_authenticated(user: Any, **params: Any) -> bool:
    """Permission: any logged-in (or token-bearing) user."""
    return bool(user is not None and user.is_authenticated)


async def allow_staff(user: Any, **params: Any) -> bool:
    """Permission: active staff users."""
    return bool(user is not None and user.is_active and user.is_staff)
