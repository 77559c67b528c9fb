"""Helpers for your own tests (docs/testing.md).

``capture_published()`` collects what ``publish()``/``apublish()`` would send, like
``django.core.mail.outbox``, also inside a Django ``TestCase``::

    with realtime.testing.capture_published() as published:
        client.post("/orders/42/ship/")
    assert published[0]["topic"] == "order.42"

``reset()`` forgets the process's in-memory topic logs, hubs and stores between tests;
``restore_topics()`` undoes the topic registrations a test made; ``aclose_redis()`` closes
the Redis connections of an async test's event loop. ``RealtimeCommunicator`` speaks the
protocol over Channels' ``WebsocketCommunicator``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from channels.layers import InMemoryChannelLayer, channel_layers
from channels.testing import WebsocketCommunicator

from realtime import backends, health, hubs, protocol
from realtime._redis import aclose_clients
from realtime.publishing import captures
from realtime.topics import registry


class _Commit:
    """An on-commit callback that only notes that its transaction committed."""

    ran = False

    def __call__(self) -> None:
        self.ran = True


@contextlib.contextmanager
def capture_published() -> Iterator[list[dict[str, Any]]]:
    """Capture published messages (dicts with ``topic``, ``event``, ``data``, ``id``,
    ``ack``; ``data`` decoded from JSON) instead of sending them: nothing reaches the topic
    log or any client while the block runs.

    A message is added to the list when it is published, also inside ``transaction.atomic``
    (whose commit never comes in a Django ``TestCase``: the test's own transaction is rolled
    back). When the block exits, messages whose transaction has rolled back by then are
    removed: the list then holds what a site would have sent. A transaction still open at
    that moment counts as committed. Captures nest; each gets every message."""
    published: list[dict[str, Any]] = []
    in_transactions: list[tuple[dict[str, Any], _Commit, Any]] = []

    def record(message: dict[str, Any], connection: Any) -> None:
        published.append(message)
        if connection is not None:
            commit = _Commit()
            # Django forgets the callbacks of a block (savepoint) that rolls back: if this
            # one is neither run nor still waiting at the end, its transaction rolled back.
            connection.on_commit(commit)
            in_transactions.append((message, commit, connection))

    captures.append(record)
    try:
        yield published
    finally:
        captures.remove(record)
        rolled_back = {
            id(message)
            for message, commit, connection in in_transactions
            if not commit.ran
            and not any(callback is commit for _, callback, _ in connection.run_on_commit)
        }
        if rolled_back:
            published[:] = [message for message in published if id(message) not in rolled_back]


def reset() -> None:
    """Forget this process's in-memory realtime state: topic logs, the dedup store, tickets,
    announced presence and the registry of connections (those kept in memory, without
    ``REDIS_URL``), every hub, the in-memory channel layers and the outage states. Call it
    between tests that publish for real (in ``setUp`` or an autouse fixture) so that one
    test's messages are not in the next one's logs; not while connections are open. Nothing
    stored in Redis is touched."""
    hubs.reset_hubs()
    backends.reset()
    health.reset()
    for alias, layer in list(channel_layers.backends.items()):
        if isinstance(layer, InMemoryChannelLayer):
            del channel_layers.backends[alias]


@contextlib.contextmanager
def restore_topics() -> Iterator[None]:
    """Undo, when the block exits, every topic registration made (``register_topic``,
    ``@topic``) or removed inside it: the registrations of your apps stay, those of one test
    do not leak into the next."""
    snapshot = registry.snapshot()
    try:
        yield
    finally:
        registry.restore(snapshot)


async def aclose_redis() -> None:
    """Close the Redis connections realtime opened on the running event loop (with
    ``REDIS_URL`` set: topic log, dedup store, registry, ``apublish()``). Realtime keeps one
    connection pool per event loop; await this at the end of an async test that used Redis,
    before its event loop closes, so that no connection outlives it."""
    await backends.get_broker().aclose()
    await aclose_clients()


class RealtimeCommunicator(WebsocketCommunicator):  # type: ignore[misc]
    """A ``WebsocketCommunicator`` that speaks the realtime protocol.

    ``headers`` defaults to a same-site ``Origin`` so session auth applies; pass
    ``origin=None`` to act as a non-browser client (which must then :meth:`auth`)."""

    def __init__(
        self,
        application: Any,
        path: str = "/realtime/ws/",
        *,
        origin: str | None = "http://testserver",
        headers: list[tuple[bytes, bytes]] | None = None,
        subprotocols: list[str] | None = None,
    ) -> None:
        headers = list(headers or [])
        if origin is not None:
            headers.append((b"origin", origin.encode()))
        super().__init__(
            application,
            path,
            headers=headers,
            subprotocols=subprotocols or [protocol.SUBPROTOCOL],
        )

    async def send_frame(self, frame: dict[str, Any]) -> None:
        await self.send_json_to(frame)

    async def receive_frame(self, timeout: float = 2) -> dict[str, Any]:
        """The next frame, skipping ``ping`` frames."""
        while True:
            frame: dict[str, Any] = await self.receive_json_from(timeout)
            if frame.get("type") != "ping":
                return frame

    async def auth(self, token: str) -> dict[str, Any]:
        await self.send_frame({"type": "auth", "token": token})
        return await self.receive_frame()

    async def subscribe(self, topic: str, cursor: dict[str, Any] | None = None) -> dict[str, Any]:
        frame: dict[str, Any] = {"type": "subscribe", "topic": topic}
        if cursor is not None:
            frame["cursor"] = cursor
        await self.send_frame(frame)
        return await self.receive_frame()
