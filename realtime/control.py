"""Operator actions on live connections anywhere in the cluster: disconnect them, or send
them a notice. The order travels through the channel layer to the node that holds the
connection (the registry says which), so it works from any process: the admin, a management
command, a signal handler."""

from __future__ import annotations

from typing import Any

from realtime.backends import get_broker, get_registry
from realtime.broker.base import CONTROL_TYPE, EVERY_HUB
from realtime.loop import run_sync
from realtime.registry import Entry, Query
from realtime.user_cache import users

MAX_TARGETS = 100_000


async def _order(entries: list[Entry], operation: str, **fields: Any) -> int:
    broker = get_broker()
    for entry in entries:
        message = {"type": CONTROL_TYPE, "connection": entry.id, "op": operation, **fields}
        await broker.send_control(entry.address, message)
    return len(entries)


async def _find(connection_ids: list[str]) -> list[Entry]:
    wanted = set(connection_ids)
    return [e for e in await get_registry().all() if e.id in wanted]


async def adisconnect(connection_ids: list[str], reason: str = "disconnected") -> int:
    """Close these connections (with 4403) wherever they are; returns how many were found."""
    return await _order(await _find(connection_ids), "disconnect", reason=reason)


async def adisconnect_user(user_id: Any, reason: str = "access revoked") -> int:
    """Close every live connection of a user on every node; returns how many."""
    page = await get_registry().query(Query(user_id=user_id, limit=MAX_TARGETS))
    return await _order(page.entries, "disconnect", reason=reason)


async def aforget_user(user_id: Any) -> None:
    """Make every server process forget the cached user of ``user_id``'s tokens
    (:mod:`realtime.user_cache`): this one at once, the others as the order reaches their
    hubs. Called on every revocation."""
    users.forget(user_id)
    message = {"type": CONTROL_TYPE, "op": "forget_user", "user": str(user_id)}
    await get_broker().broadcast(EVERY_HUB, message)


async def anotify(connection_ids: list[str], text: str) -> int:
    """Send these connections a ``notice`` frame (the admin's test message)."""
    return await _order(await _find(connection_ids), "notice", text=text[:1000])


def disconnect(connection_ids: list[str], reason: str = "disconnected") -> int:
    """Sync twin of :func:`adisconnect`."""
    return run_sync(adisconnect(connection_ids, reason))


def disconnect_user(user_id: Any, reason: str = "access revoked") -> int:
    """Sync twin of :func:`adisconnect_user`."""
    return run_sync(adisconnect_user(user_id, reason))


def forget_user(user_id: Any) -> None:
    """Sync twin of :func:`aforget_user`."""
    run_sync(aforget_user(user_id))


def notify(connection_ids: list[str], text: str) -> int:
    """Sync twin of :func:`anotify`."""
    return run_sync(anotify(connection_ids, text))
