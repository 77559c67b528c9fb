"""Presence: who is subscribed to a topic, cluster-wide, per user (several tabs count once).

:func:`apresence` reads it from the registry, so a node that dies takes its users with it
within one heartbeat timeout: no zombies. Topics registered with ``presence=True`` also get
``presence.join`` and ``presence.leave`` events ({"user_id", "username"}) published on the
topic itself. They are computed by comparing snapshots every ``HEARTBEAT_TIMEOUT / 3``
seconds, which debounces them: a user who reloads the page (leaves and comes back between
two snapshots) causes no event. One node per topic and interval computes the difference (a
short Redis lock), so each change is announced once."""

from __future__ import annotations

import logging
from typing import Any

from realtime.backends import get_presence, get_registry
from realtime.loop import run_sync
from realtime.publishing import apublish
from realtime.registry import Entry
from realtime.topics import registry as topics

logger = logging.getLogger("realtime.presence")


def _present(entries: list[Entry], topic: str) -> dict[str, dict[str, Any]]:
    users: dict[str, dict[str, Any]] = {}
    for entry in entries:
        if topic in entry.topics and entry.user_id is not None:
            user = users.setdefault(
                str(entry.user_id),
                {"user_id": entry.user_id, "username": entry.username, "connections": 0},
            )
            user["connections"] += 1
    return users


async def apresence(topic: str) -> list[dict[str, Any]]:
    """The users subscribed to ``topic`` on any node: ``[{"user_id", "username",
    "connections"}]`` sorted by username. Anonymous connections are not listed."""
    users = _present(await get_registry().all(), topic)
    return sorted(users.values(), key=lambda u: (u["username"], str(u["user_id"])))


def presence(topic: str) -> list[dict[str, Any]]:
    """Sync twin of :func:`apresence`."""
    return run_sync(apresence(topic))


async def tick(node: str, local_topics: list[str], interval: float) -> None:
    """Announce joins and leaves on the presence topics this node has subscribers of."""
    watched = [t for t in local_topics if topics.presence_enabled(t)]
    if not watched:
        return
    entries = await get_registry().all()
    for topic in watched:
        now = {uid: user["username"] for uid, user in _present(entries, topic).items()}
        previous = await get_presence().swap(topic, node, now, interval)
        if previous is None:
            continue
        for uid in sorted(now.keys() - previous.keys()):
            await apublish(topic, "presence.join", {"user_id": uid, "username": now[uid]})
        for uid in sorted(previous.keys() - now.keys()):
            await apublish(topic, "presence.leave", {"user_id": uid, "username": previous[uid]})
