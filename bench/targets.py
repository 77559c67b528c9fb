"""The servers under test, side by side behind one small description each."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from typing import Any

from bench._common import TOPIC
from bench.asgi_servers import server_command as asgi_command

#: The HTTP transports' clients are anonymous and all come from 127.0.0.1, and anonymous
#: callers share their address's rate-limit bucket (docs/security.md): their servers raise
#: ``RATE``/``BURST`` out of the way (bench/realtime_app/settings.py).
HTTP_CLIENTS_ENV = {"BENCH_UNLIMITED_REQUESTS": "1"}


@dataclass(frozen=True)
class Target:
    """How to start one node of a target, reach its endpoint and publish to it."""

    name: str
    description: str
    #: ``realtime`` (docs/protocol.md over WebSocket), ``plain`` (a ready frame, then raw JSON
    #: payloads), or the realtime app's HTTP transports ``sse`` and ``longpoll``.
    protocol: str
    ws_path: str
    #: ``bench.publisher --kind``.
    publisher: str
    #: Django settings module, for daphne targets and their publisher; None for the bare server.
    settings: str | None = None
    #: ``module:attribute`` of the ASGI application for daphne; None for the bare server.
    asgi: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    #: Path and query of the HTTP endpoint the clients use (SSE, long-poll); None: WebSocket.
    http_path: str | None = None
    #: Published with ``ack=True``: every client acknowledges every message.
    publish_ack: bool = False
    #: How long the clients gather ACKs into one frame (0: one frame per message).
    ack_batch_ms: float = 0.0
    #: The database the run migrates before the servers start: ``sqlite`` (the run's file) or
    #: ``postgresql`` (a database the run creates on 127.0.0.1:5432 and drops); None: none.
    database: str | None = None
    #: Clients authenticate with a token each (a user of their own, bench/tokens.py), in the
    #: ``realtime.token.<token>`` subprotocol, without Origin: a non-browser client.
    tokens: bool = False
    #: Clients offer ``realtime.batch`` and unpack ``batch`` frames (docs/protocol.md).
    batch: bool = False
    #: The server's own WebSocket pings stay on (an application without a heartbeat).
    server_pings: bool = False

    def url(self, port: int) -> str:
        """Where the load clients of one node on 127.0.0.1:``port`` connect."""
        if self.http_path is not None:
            return f"http://127.0.0.1:{port}{self.http_path}"
        return f"ws://127.0.0.1:{port}{self.ws_path}"

    def server_command(
        self,
        port: int,
        prefix: str,
        redis_url: str,
        server: str = "daphne",
        server_pings: bool | None = None,
    ) -> list[str]:
        """The argv of one node listening on 127.0.0.1:``port``.

        ``server`` picks the ASGI server of the Django targets: ``daphne`` (what the issue
        compares) or ``uvicorn`` (its ``websockets-sansio`` implementation, to see how much of
        a target's cost is the server's). The server's own WebSocket pings are off for
        realtime's targets, as docs/deployment.md runs them, unless ``server_pings``.
        """
        if self.asgi is None:
            return [
                sys.executable,
                "-m",
                "bench.bare_server",
                "--port",
                str(port),
                "--redis-url",
                redis_url,
                "--channel",
                f"{prefix}:{TOPIC}",
            ]
        # by default the server's own pings stay on only where the application has no
        # heartbeat (``server_pings`` decides otherwise)
        pings = self.server_pings if server_pings is None else server_pings
        if server == "uvicorn":
            options = [
                "--ws-per-message-deflate",
                "false",  # daphne offers no compression either
                "--log-level",
                "warning",
                "--backlog",
                "4096",
                "--timeout-graceful-shutdown",
                "2",
            ]
            return asgi_command(server, port, self.asgi, options, server_pings=pings)
        return asgi_command(server, port, self.asgi, server_pings=pings)

    def process_env(self) -> dict[str, str]:
        """Variables this target's server and publisher need on top of the common ones."""
        env = dict(self.env)
        if self.settings is not None:
            env["DJANGO_SETTINGS_MODULE"] = self.settings
        return env


def _realtime(name: str, description: str, **changes: Any) -> Target:
    """The realtime app (bench/realtime_app) under daphne, on WebSocket unless ``changes``
    (other :class:`Target` fields) say otherwise; ``description`` says how it differs."""
    app = Target(
        name=name,
        description=description,
        protocol="realtime",
        ws_path="/realtime/ws/",
        publisher="realtime",
        settings="bench.realtime_app.settings",
        asgi="bench.realtime_app.asgi:application",
    )
    return replace(app, **changes)


def _durable(name: str, label: str, database: str) -> Target:
    """The same server as `realtime` with REALTIME["DURABLE"] on: every publish() inserts an
    outbox row, which the publisher's relay (woken on commit) moves into the log."""
    return _realtime(
        name,
        f"this app as `realtime`, DURABLE on: published through the outbox, {label}",
        env={"BENCH_DURABLE": "1"},
        database=database,
    )


def _channels(layer: str, description: str) -> Target:
    """Plain Channels (bench/plain_channels), one group per socket, on the ``layer`` layer."""
    return Target(
        name=f"channels-{layer}",
        description=f"plain Channels, group per socket, {description}, daphne",
        protocol="plain",
        ws_path="/ws/",
        publisher="channels",
        settings="bench.plain_channels.settings",
        asgi="bench.plain_channels.asgi:application",
        server_pings=True,
        env={"BENCH_LAYER": layer},
    )


_ALL = (
    _realtime(
        "realtime", "this app: realtime.asgi under daphne, RedisPubSubChannelLayer, hub fan-out"
    ),
    # The same server as `realtime`; the clients take several frames in one when queued.
    _realtime(
        "realtime-batch",
        "this app as `realtime`, clients offer realtime.batch (batch frames)",
        batch=True,
    ),
    # The same server as `realtime`; the Redis broker instead of the channel layer.
    _realtime(
        "realtime-redis",
        "this app as `realtime`, REALTIME['BROKER'] = 'redis' (no channel layer)",
        env={"BENCH_BROKER": "redis"},
    ),
    # The same server as `realtime`; only the load clients' transport differs.
    _realtime(
        "realtime-sse",
        "this app as `realtime`, clients on Server-Sent Events (realtime/sse/)",
        protocol="sse",
        http_path=f"/realtime/sse/?topic={TOPIC}",
        env=HTTP_CLIENTS_ENV,
    ),
    _realtime(
        "realtime-longpoll",
        "this app as `realtime`, clients long-polling (realtime/poll/)",
        protocol="longpoll",
        http_path=f"/realtime/poll/?topic={TOPIC}",
        env=HTTP_CLIENTS_ENV,
    ),
    # The same server as `realtime`; each client brings a token of its own user.
    _realtime(
        "realtime-token",
        "this app as `realtime`, each client with a token (subprotocol), no Origin",
        tokens=True,
    ),
    # The same server as `realtime`; every message is published with ack=True.
    _realtime(
        "realtime-ack",
        "this app as `realtime`, ack=True, one ack frame per message",
        publish_ack=True,
    ),
    _realtime(
        "realtime-ack-batch",
        "this app as `realtime`, ack=True, acks batched per 20 ms as realtime.js",
        publish_ack=True,
        ack_batch_ms=20.0,
    ),
    _durable("realtime-durable", "SQLite", "sqlite"),
    _durable("realtime-durable-pg", "PostgreSQL", "postgresql"),
    _channels("core", "channels_redis RedisChannelLayer"),
    _channels("pubsub", "RedisPubSubChannelLayer"),
    Target(
        name="asgi-floor",
        description="idle scenario only: an ASGI app that holds sockets and sends nothing",
        protocol="plain",
        ws_path="/",
        publisher="none",
        asgi="bench.asgi_floor:application",
    ),
    Target(
        name="bare",
        description="ceiling: bare websockets server + Redis pub/sub, websockets.broadcast",
        protocol="plain",
        ws_path="/",
        publisher="bare",
    ),
)
TARGETS: dict[str, Target] = {target.name: target for target in _ALL}
CHANNELS_TARGETS = ("channels-core", "channels-pubsub")
#: Targets served by the realtime app (bench/realtime_app), whatever the client transport.
REALTIME_TARGETS = (
    "realtime",
    "realtime-redis",
    "realtime-token",
    "realtime-sse",
    "realtime-longpoll",
    "realtime-ack",
    "realtime-ack-batch",
    "realtime-durable",
    "realtime-durable-pg",
)
#: `realtime` with ``ack=True`` messages, compared with `realtime` at the same size.
ACK_TARGETS = ("realtime-ack", "realtime-ack-batch")
#: The realtime app over its HTTP transports, compared with `realtime` over WebSocket.
HTTP_TARGETS = ("realtime-sse", "realtime-longpoll")
#: How the load clients reach the nodes (``--via``).
ROUTES = ("direct", "nginx")
