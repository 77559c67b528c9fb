"""Dependable realtime push for Django: ``realtime.publish("order.42", "status", {...})``.

Public names are imported lazily, so ``import realtime`` never touches the app registry."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "publish": "realtime.publishing",
    "apublish": "realtime.publishing",
    "make_token": "realtime.auth",
    "presence": "realtime.roster",
    "apresence": "realtime.roster",
    "get_cursors": "realtime.publishing",
    "aget_cursors": "realtime.publishing",
    "publish_to_user": "realtime.users",
    "apublish_to_user": "realtime.users",
    "user_topic": "realtime.users",
    "publish_model": "realtime.model_events",
    "RealtimeConsumer": "realtime.consumers",
    "register_topic": "realtime.topics",
    "topic": "realtime.topics",
    "allow_any": "realtime.topics",
    "allow_authenticated": "realtime.topics",
    "allow_staff": "realtime.topics",
    "RealtimeError": "realtime.exceptions",
    "InvalidTopic": "realtime.exceptions",
    "InvalidFrame": "realtime.exceptions",
    "MessageTooLarge": "realtime.exceptions",
    "TokenInvalid": "realtime.exceptions",
    "TokenExpired": "realtime.exceptions",
    "Forbidden": "realtime.exceptions",
    "Rejected": "realtime.exceptions",
    "UnknownEvent": "realtime.exceptions",
    "PublishError": "realtime.exceptions",
    "PublishTimeout": "realtime.exceptions",
}

__all__ = [
    "Forbidden",
    "InvalidFrame",
    "InvalidTopic",
    "MessageTooLarge",
    "PublishError",
    "PublishTimeout",
    "RealtimeConsumer",
    "RealtimeError",
    "Rejected",
    "TokenExpired",
    "TokenInvalid",
    "UnknownEvent",
    "aget_cursors",
    "allow_any",
    "allow_authenticated",
    "allow_staff",
    "apresence",
    "apublish",
    "apublish_to_user",
    "get_cursors",
    "make_token",
    "presence",
    "publish",
    "publish_model",
    "publish_to_user",
    "register_topic",
    "topic",
    "user_topic",
]

if TYPE_CHECKING:
    from realtime.auth import make_token
    from realtime.consumers import RealtimeConsumer
    from realtime.exceptions import (
        Forbidden,
        InvalidFrame,
        InvalidTopic,
        MessageTooLarge,
        PublishError,
        PublishTimeout,
        RealtimeError,
        Rejected,
        TokenExpired,
        TokenInvalid,
        UnknownEvent,
    )
    from realtime.model_events import publish_model
    from realtime.publishing import aget_cursors, apublish, get_cursors, publish
    from realtime.roster import apresence, presence
    from realtime.topics import allow_any, allow_authenticated, allow_staff, register_topic, topic
    from realtime.users import apublish_to_user, publish_to_user, user_topic


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'realtime' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
