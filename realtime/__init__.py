"""Dependable realtime push for Django: ``realtime.publish("order.42", "status", {...})``.

Public names are imported lazily, so ``import realtime`` never touches the app registry.

The imports under ``TYPE_CHECKING`` below are the one list of public names: type checkers
read them, and :func:`__getattr__` imports a name from the module they name on first use
(read from this file's source, as SPEC 1's ``lazy_loader.attach_stub`` reads a stub).
Adding a public name is adding one line there."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from realtime import testing as testing
    from realtime.auth import make_token as make_token
    from realtime.consumers import RealtimeConsumer as RealtimeConsumer
    from realtime.exceptions import Forbidden as Forbidden
    from realtime.exceptions import InvalidFrame as InvalidFrame
    from realtime.exceptions import InvalidTopic as InvalidTopic
    from realtime.exceptions import MessageTooLarge as MessageTooLarge
    from realtime.exceptions import PublishError as PublishError
    from realtime.exceptions import PublishTimeout as PublishTimeout
    from realtime.exceptions import RealtimeError as RealtimeError
    from realtime.exceptions import Rejected as Rejected
    from realtime.exceptions import TokenExpired as TokenExpired
    from realtime.exceptions import TokenInvalid as TokenInvalid
    from realtime.exceptions import UnknownEvent as UnknownEvent
    from realtime.model_events import publish_model as publish_model
    from realtime.publishing import aget_cursors as aget_cursors
    from realtime.publishing import apublish as apublish
    from realtime.publishing import get_cursors as get_cursors
    from realtime.publishing import publish as publish
    from realtime.roster import apresence as apresence
    from realtime.roster import presence as presence
    from realtime.topics import allow_any as allow_any
    from realtime.topics import allow_authenticated as allow_authenticated
    from realtime.topics import allow_staff as allow_staff
    from realtime.topics import register_topic as register_topic
    from realtime.topics import topic as topic
    from realtime.users import apublish_to_user as apublish_to_user
    from realtime.users import publish_to_user as publish_to_user
    from realtime.users import user_topic as user_topic


def _public_names() -> dict[str, str]:
    """Each public name → the module it comes from, from the ``TYPE_CHECKING`` block."""
    tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    block = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name)
        if node.test.id == "TYPE_CHECKING"
    )
    return {
        alias.name: str(statement.module)
        for statement in block.body
        if isinstance(statement, ast.ImportFrom)
        for alias in statement.names
    }


_SOURCES = _public_names()
# Submodules (realtime.testing) are reachable as attributes but left out of ``import *``.
__all__ = sorted(name for name, module in _SOURCES.items() if module != __name__)


def __getattr__(name: str) -> Any:
    module = _SOURCES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if module == __name__:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_SOURCES})
