"""The consumer hooks a connection calls (:class:`realtime.RealtimeConsumer` documents each),
and the guards around them.

User code (the consumer's hooks, the topic permissions) is guarded where it is called, so that
its bugs answer one request and never take a connection down; see docs/security.md. (The
``on_message`` handler is guarded where client messages are answered,
:mod:`realtime.client_messages`.)"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from realtime.exceptions import Forbidden, HookFailed, RealtimeError

# What the hooks' bugs are logged on (docs/security.md): a bug in a hook is a connection's.
logger = logging.getLogger("realtime.connection")


class Hooks(Protocol):
    """The consumer hooks a connection calls (see :class:`realtime.RealtimeConsumer`)."""

    async def authenticate(self, user: Any) -> Any: ...
    async def can_subscribe(self, topic: str) -> None: ...
    async def on_message(self, event: str, data: Any) -> Any: ...
    async def on_ack(self, message_id: str) -> None: ...
    async def on_connect(self) -> None: ...
    async def on_disconnect(self, code: int) -> None: ...


async def check_subscribe(hooks: Hooks, topic: str) -> None:
    """Run the ``can_subscribe`` hook for ``topic``. Raises what it raises if that is a
    :class:`RealtimeError` (:class:`Forbidden`, ``Rejected``, …); any other exception is a bug
    in the hook: logged with its traceback, and the topic refused with :class:`Forbidden`."""
    try:
        await hooks.can_subscribe(topic)
    except RealtimeError:
        raise
    except Exception:
        logger.exception(
            "The can_subscribe hook of %s raised for topic %r; the subscribe is refused "
            "(forbidden)",
            type(hooks).__name__,
            topic,
        )
        raise Forbidden(
            f"Not allowed to subscribe to {topic!r}: the permission check failed.", ref=topic
        ) from None


async def notify(hooks: Hooks, hook: str, *args: Any) -> None:
    """Run the notification hook ``hook`` (``on_connect``, ``on_ack``, ``on_disconnect``)
    with ``args``. Nothing answers a notification, so an exception it raises is logged with
    its traceback and goes no further: the connection carries on."""
    try:
        await getattr(hooks, hook)(*args)
    except Exception:
        logger.exception(
            "The %s hook of %s raised%s; ignored",
            hook,
            type(hooks).__name__,
            f" (called with {', '.join(map(repr, args))})" if args else "",
        )


async def authenticate(hooks: Hooks, user: Any) -> Any:
    """The ``authenticate`` hook's answer for ``user``. A :class:`RealtimeError` it raises
    (``TokenInvalid``: the documented refusal) goes on; any other exception is a bug in the
    hook: logged with its traceback, then raised as :class:`HookFailed`, which the transports
    answer as a server error (close 4011, HTTP 503) without logging it again."""
    try:
        return await hooks.authenticate(user)
    except RealtimeError:
        raise
    except Exception as error:
        logger.exception(
            "The authenticate hook of %s raised; the connection is refused as a server error",
            type(hooks).__name__,
        )
        raise HookFailed("authenticate") from error
