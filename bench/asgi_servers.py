"""The argv of a daphne or uvicorn node on 127.0.0.1: docs/deployment.md's commands, which
the tests' nodes (tests/servers.py) and the benchmark's (bench/targets.py) both run."""

from __future__ import annotations

import sys
from collections.abc import Sequence

ASGI_SERVERS = ("daphne", "uvicorn")


def server_command(
    server: str, port: int, application: str, options: Sequence[str] = ()
) -> list[str]:
    """``python -m <server>`` serving ``application`` (``module:attribute``) on
    127.0.0.1:``port``, as docs/deployment.md runs it (uvicorn: its ``websockets-sansio``
    implementation, no lifespan), with ``options`` added before the application."""
    if server == "daphne":
        head = ["daphne", "-b", "127.0.0.1", "-p", str(port)]
    elif server == "uvicorn":
        head = ["uvicorn", "--host", "127.0.0.1", "--port", str(port)]
        head += ["--ws", "websockets-sansio", "--lifespan", "off"]
    else:
        raise ValueError(f"unknown ASGI server {server!r}: choose from {', '.join(ASGI_SERVERS)}")
    return [sys.executable, "-m", *head, *options, application]
