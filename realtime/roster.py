"""Presence: who is subscribed to a topic, cluster-wide, per user (several tabs count once).

:func:`apresence` reads it from the registry, so a node that dies takes its users with it
within one heartbeat timeout: no zombies. Topics registered with ``presence=True`` also get
``presence.join`` and ``presence.leave`` events ({"user_id", "username"}) published on the
topic itself. They are computed by comparing snapshots every ``HEARTBEAT_TIMEOUT / 3``
seconds, which debounces them: a user who reloads the page (leaves and comes back between
two snapshots) causes no event. One node per topic and interval computes the difference (a
short Redis lock), so each change is announced once."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from realtime._redis import get_client
from realtime.conf import get_config
from realtime.registry import Entry, get_registry
from realtime.topics import registry as topics

logger = logging.getLogger("realtime.presence")

_announced: dict[str, dict[str, str]] = {}  # memory backend: topic -> {user_id: username}
_lock = threading.Lock()


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
    from realtime.publishing import run_sync

    return run_sync(apresence(topic))


async def _swap(
    topic: str, node: str, now: dict[str, str], interval: float
) -> dict[str, str] | None:
    """Store the announced set; return the previous one, or None if another node is on it."""
    config = get_config()
    if not config.redis_url:
        with _lock:
            previous = _announced.get(topic, {})
            _announced[topic] = now
        return previous
    client = get_client(config.redis_url)
    lock = f"{config.key_prefix}:presence-lock:{topic}"
    if not await client.set(lock, node, nx=True, px=max(1, int(interval * 900))):
        return None
    key = f"{config.key_prefix}:presence:{topic}"
    raw = await client.getset(key, json.dumps(now))
    await client.pexpire(key, int(max(interval * 20, 3600) * 1000))
    return json.loads(raw) if raw else {}


async def tick(node: str, local_topics: list[str], interval: float) -> None:
    """Announce joins and leaves on the presence topics this node has subscribers of."""
    from realtime.publishing import apublish

    watched = [t for t in local_topics if topics.presence_enabled(t)]
    if not watched:
        return
    entries = await get_registry().all()
    for topic in watched:
        now = {uid: user["username"] for uid, user in _present(entries, topic).items()}
        previous = await _swap(topic, node, now, interval)
        if previous is None:
            continue
        for uid in sorted(now.keys() - previous.keys()):
            await apublish(topic, "presence.join", {"user_id": uid, "username": now[uid]})
        for uid in sorted(previous.keys() - now.keys()):
            await apublish(topic, "presence.leave", {"user_id": uid, "username": previous[uid]})
