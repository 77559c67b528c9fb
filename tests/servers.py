"""Real daphne processes on 127.0.0.1 for end-to-end tests, and a protocol-speaking
`websockets` client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import httpx
import redis
import websockets
from websockets.asyncio.client import ClientConnection

from bench.asgi_servers import server_command
from bench.nginx import documented
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent

SETUP_SCRIPT = """
import json, django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.contrib.auth import get_user_model
import realtime
users = {}
for name, staff in (("alice", False), ("bob", False), ("staff", True)):
    user = get_user_model().objects.create_user(name, password="pw", is_staff=staff)
    users[name] = {"pk": user.pk, "token": realtime.make_token(user)}
print(json.dumps(users))
"""


def script_process(
    database: str,
    script: str,
    *args: str,
    settings: str = "tests.settings",
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` (Python, with ``args`` in ``sys.argv[1:]``) in a fresh interpreter on the
    SQLite file ``database``, as the daphne nodes see it, with ``env`` added to the
    environment (``RT_*`` settings); return the finished process, whatever its status."""
    full_env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": settings,
        "RT_TEST_DB": database,
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        env=full_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def run_script(database: str, script: str, *args: str, settings: str = "tests.settings") -> str:
    """Run ``script`` as :func:`script_process` does; raise if it failed, else return the last
    line it printed."""
    process = script_process(database, script, *args, settings=settings)
    process.check_returncode()
    return process.stdout.strip().splitlines()[-1]


def make_database(
    script: str = SETUP_SCRIPT, settings: str = "tests.settings"
) -> tuple[str, dict[str, Any]]:
    """A migrated SQLite file prepared by ``script`` (default: users alice, bob and staff),
    which prints a JSON summary as its last line; returns the path and that summary (per
    user, the pk and a token)."""
    path = tempfile.mktemp(prefix="rt-e2e-", suffix=".sqlite3")
    return path, json.loads(run_script(path, script, settings=settings))


# Debian's Chromium, driven by Playwright through executable_path: `playwright install`
# cannot download here and is never used. Without the background-networking flags Chromium
# keeps trying to reach Google's hosts.
CHROMIUM = os.environ.get("RT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextlib.contextmanager
def launch_chromium(*extra_args: str) -> Iterator[Any]:
    """A headless Chromium browser (Playwright's sync API), with ``extra_args`` if any."""
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"No Chromium at {CHROMIUM}: run tests/browser/ensure_chromium.sh.")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        args = [*CHROMIUM_ARGS, *extra_args]
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        yield browser
        browser.close()


TRACEBACK = "Traceback (most recent call last)"
# An ERROR/CRITICAL record: realtime's console handler ("ERROR realtime.x: …", tests/settings.py)
# or daphne's root handler ("2026-11-30 12:00:00,123 ERROR    …"), which also carries
# django.request's "Internal Server Error" (a 500) and daphne's "Exception inside application".
ERROR_LINE = re.compile(r"^(?:\d{4}-\d\d-\d\d [\d:,.]+\s+)?(?:ERROR|CRITICAL)\b")


def stop_process(process: subprocess.Popen[Any]) -> None:
    """SIGTERM ``process`` if it still runs and wait for it; SIGKILL it after 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


class ServerTraceback(AssertionError):
    """A daphne node logged a traceback or an ERROR record."""


class Daphne:
    """One daphne process serving an ASGI application of the tests (tests.asgi unless told
    otherwise); started on a free port, stopped by pid. Its stderr lines are kept in ``log``:
    :meth:`assert_no_tracebacks` fails on a traceback or an ERROR record there (the
    ``clean_server_log`` marker or ``--clean-server-log`` checks every node after each test)."""

    #: every node started by this process, for the per-test log check in tests/conftest.py
    started: ClassVar[list[Daphne]] = []
    #: what the server prints on stderr once it listens, and how many times (once per process)
    READY = "Listening on TCP address"
    READY_COUNT = 1

    def command(self, application: str) -> list[str]:
        """The server's argv: docs/deployment.md's daphne command."""
        return server_command("daphne", self.port, application)

    def __init__(
        self,
        database: str,
        env: dict[str, str] | None = None,
        *,
        application: str = "tests.asgi:application",
        settings: str = "tests.settings",
    ) -> None:
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}/realtime/ws/"
        self.http = f"http://127.0.0.1:{self.port}"
        self.origin = f"http://127.0.0.1:{self.port}"
        full_env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": settings,
            "RT_TEST_DB": database,
            "RT_DAPHNE_NODE": "1",  # tests/settings.py: log through daphne's handler only
            **(env or {}),
        }
        self.process = subprocess.Popen(
            self.command(application),
            env=full_env,
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.log: list[str] = []
        listening = threading.Event()

        def read() -> None:
            assert self.process.stderr is not None
            ready = 0
            for line in self.process.stderr:
                self.log.append(line)
                if self.READY in line:
                    ready += 1
                    if ready == self.READY_COUNT:
                        listening.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        Daphne.started.append(self)
        if not listening.wait(30):
            self.stop()
            raise RuntimeError(
                f"{self.command(application)[2]} did not start:\n" + "".join(self.log)
            )

    def mark(self) -> int:
        """A position in :attr:`log`, to check only what is logged after it."""
        return len(self.log)

    def problems(self, since: int = 0, allow: tuple[str, ...] = ()) -> list[str]:
        """Tracebacks and ERROR records logged since ``since``, each with the lines after
        it (up to the next problem or 30 lines); those mentioning a string of ``allow`` are
        left out (for tests that provoke a server error on purpose)."""
        lines = self.log[since:]
        starts = [i for i, line in enumerate(lines) if TRACEBACK in line or ERROR_LINE.match(line)]
        found = []
        for n, start in enumerate(starts):
            if n and start == starts[n - 1] + 1 and TRACEBACK in lines[start]:
                continue  # the traceback of the ERROR record just before: one problem
            end = min([s for s in starts if s > start + 1] + [start + 30, len(lines)])
            block = "".join(lines[start:end])
            if not any(text in block for text in allow):
                found.append(block)
        return found

    def assert_no_tracebacks(self, since: int = 0, allow: tuple[str, ...] = ()) -> None:
        """Raise :class:`ServerTraceback` if the node logged a traceback or an ERROR record
        since ``since`` (see :meth:`problems`)."""
        if found := self.problems(since, allow):
            raise ServerTraceback(
                f"daphne on port {self.port} logged {len(found)} problem(s):\n"
                + "\n".join(found[:5])
            )

    def kill(self) -> None:
        """SIGKILL: the node dies without cleaning anything up."""
        self.process.kill()
        self.process.wait(10)
        self.stop()

    def stop(self) -> None:
        stop_process(self.process)
        self._reader.join(10)
        if self.process.stderr is not None:
            self.process.stderr.close()


class Uvicorn(Daphne):
    """The same node served by uvicorn (its ``websockets-sansio`` WebSocket implementation),
    with docs/deployment.md's uvicorn command."""

    READY = "Uvicorn running on"

    def command(self, application: str) -> list[str]:
        return server_command("uvicorn", self.port, application)


class Gunicorn(Daphne):
    """gunicorn's arbiter with two uvicorn workers (``uvicorn_worker.UvicornWorker``) sharing
    one port, run with docs/deployment.md's gunicorn command; ready once both workers are."""

    READY = "Application startup complete"
    READY_COUNT = 2

    def command(self, application: str) -> list[str]:
        [line] = documented("gunicorn").strip().splitlines()
        argv = shlex.split(line)
        if (
            argv[0] != "gunicorn"
            or "127.0.0.1:8001" not in argv
            or not argv[-1].endswith(":application")
        ):
            raise LookupError(f"docs/deployment.md's gunicorn command changed: {line}")
        argv = [f"127.0.0.1:{self.port}" if arg == "127.0.0.1:8001" else arg for arg in argv]
        return [sys.executable, "-m", *argv[:-1], application]


D = TypeVar("D", bound="Daphne")


@contextlib.contextmanager
def running_nodes(
    database: str,
    env: dict[str, str],
    count: int = 2,
    node: Callable[[str, dict[str, str]], D] = Daphne,
) -> Iterator[list[D]]:
    """``count`` daphne nodes (``node(database, env)``) on one database and one environment
    (e.g. one Redis and key prefix), stopped on exit."""
    servers: list[D] = []
    try:
        for _ in range(count):
            servers.append(node(database, env))
        yield servers
    finally:
        for server in servers:
            server.stop()


def delete_prefix(redis_url: str, prefix: str) -> None:
    """Delete every Redis key under ``prefix`` (what a test's servers or process wrote)."""
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


class Client:
    """A `websockets` client that speaks the realtime protocol."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.welcome: dict[str, Any] = {}

    @classmethod
    async def connect(
        cls, server: Daphne, *, origin: bool = True, subprotocols: list[str] | None = None
    ) -> Client:
        ws = await websockets.connect(
            server.url,
            origin=server.origin if origin else None,  # type: ignore[arg-type]
            subprotocols=subprotocols or ["realtime.v1"],  # type: ignore[arg-type]
            open_timeout=10,
        )
        client = cls(ws)
        if origin or subprotocols:
            client.welcome = await client.receive()
            assert client.welcome["type"] == "welcome", client.welcome
        return client

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    async def receive(self, timeout: float = 5, skip_pings: bool = True) -> dict[str, Any]:
        """The next frame; ``ping`` frames are answered and skipped unless asked for."""
        while True:
            async with asyncio.timeout(timeout):
                frame: dict[str, Any] = json.loads(await self.ws.recv())
            if not (skip_pings and frame["type"] == "ping"):
                return frame
            await self.send({"type": "pong"})

    async def subscribe(self, topic: str, cursor: dict[str, Any] | None = None) -> dict[str, Any]:
        frame: dict[str, Any] = {"type": "subscribe", "topic": topic}
        if cursor:
            frame["cursor"] = cursor
        await self.send(frame)
        return await self.receive()

    async def close_code(self, timeout: float = 5) -> int | None:
        """Wait for the server to close the connection; return its close code."""
        async with asyncio.timeout(timeout):
            try:
                while True:
                    await self.ws.recv()
            except websockets.ConnectionClosed as closed:
                return closed.rcvd.code if closed.rcvd else None

    async def close(self) -> None:
        await self.ws.close()


class SSEReader:
    """Reads events from a streaming httpx response."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.aiter_lines()
        self.comments: list[str] = []

    async def next(self, timeout: float = 5) -> dict[str, Any]:
        """The next event as ``{"event", "id", "data"}`` (``data`` decoded from JSON)."""
        event: dict[str, Any] = {}
        async with asyncio.timeout(timeout):
            async for line in self.lines:
                if line == "":
                    if event:
                        return event
                    continue
                field, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if field == "":
                    self.comments.append(value)
                elif field == "data":
                    event["data"] = json.loads(value)
                else:
                    event[field] = value
        raise EOFError("the stream ended")

    async def frame(self, timeout: float = 5) -> dict[str, Any]:
        """The next event that carries a frame, with its ``id`` (if any) under ``_id``."""
        while True:
            event = await self.next(timeout)
            if "data" in event:
                return {**event["data"], "_id": event.get("id"), "_event": event.get("event")}
