"""What every transport shares: how a connection gets its consumer hooks.

Each connection gets its own instance of the consumer class (the one routed with
``RealtimeConsumer.as_asgi()``, or ``REALTIME["CONSUMER"]`` for the HTTP transports). The
transport sets ``scope`` on it (the ASGI scope of the socket, or one made for the HTTP request)
and, once the connection exists, ``connection``: what the hooks read as ``self.scope``,
``self.connection`` and ``self.user``. The instance holds hooks only; the transport is a
separate object, so a hook class may use any method name for itself."""

from __future__ import annotations

from typing import Any

from realtime.connection import Connection, Transport


def new_hooks(consumer_class: type[Any], scope: dict[str, Any], **initkwargs: Any) -> Any:
    """An instance of ``consumer_class`` (made with ``initkwargs``) with ``scope`` set."""
    hooks = consumer_class(**initkwargs)
    hooks.scope = scope
    return hooks


def new_connection(transport: Transport, hooks: Any, **options: Any) -> Connection:
    """A :class:`Connection` writing through ``transport`` and calling ``hooks``, which gets it
    as ``hooks.connection``. ``options`` are :class:`Connection`'s keyword arguments."""
    connection = Connection(transport, hooks, **options)
    hooks.connection = connection
    return connection
