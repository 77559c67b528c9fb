"""The argv of a daphne or uvicorn node on 127.0.0.1: docs/deployment.md's commands, which
the tests' nodes (tests/servers.py) and the benchmark's (bench/targets.py) both run."""

from __future__ import annotations

import sys
from collections.abc import Sequence

ASGI_SERVERS = ("daphne", "uvicorn")
#: The server's own WebSocket pings, off: realtime's heartbeat finds dead sockets already
#: (docs/deployment.md). daphne has no switch for it; a ping once a day is as good as none.
DAPHNE_NO_PING = ["--ping-interval", "86400"]
UVICORN_NO_PING = ["--ws-ping-interval", "0"]


def server_command(
    server: str,
    port: int,
    application: str,
    options: Sequence[str] = (),
    *,
    server_pings: bool = False,
) -> list[str]:
    """``python -m <server>`` serving ``application`` (``module:attribute``) on
    127.0.0.1:``port``, as docs/deployment.md runs it (uvicorn: its ``websockets-sansio``
    implementation, no lifespan; both without their own WebSocket pings), with ``options``
    added before the application. ``server_pings`` keeps the server's pings on, for an
    application without a heartbeat of its own (plain Channels)."""
    if server == "daphne":
        head = ["daphne", "-b", "127.0.0.1", "-p", str(port)]
        head += [] if server_pings else DAPHNE_NO_PING
    elif server == "uvicorn":
        head = ["uvicorn", "--host", "127.0.0.1", "--port", str(port)]
        head += ["--ws", "websockets-sansio", "--lifespan", "off"]
        head += [] if server_pings else UVICORN_NO_PING
    else:
        raise ValueError(f"unknown ASGI server {server!r}: choose from {', '.join(ASGI_SERVERS)}")
    return [sys.executable, "-m", *head, *options, application]
