"""Graceful drain: on SIGTERM, a server process sends its clients elsewhere over
``DRAIN_WINDOW`` seconds, then lets the server stop (docs/deployment.md, "Graceful drain").

With ``DRAIN_WINDOW`` above 0, the first hub made in the process's main thread (with its first
realtime connection, once the server runs) puts :meth:`_Drain.on_signal` in front of the
SIGTERM handler the server installed: daphne's (Twisted's) and uvicorn's both stop at once,
daphne without a close frame, uvicorn with 1012. On SIGTERM the process starts draining:
under daphne it stops listening (:func:`_close_listeners`), so new connections are refused at
once and a proxy passes them to another node; new WebSocket handshakes, SSE streams and
long-polls that still reach the application are refused (:func:`draining`), each open
WebSocket and SSE stream is closed with 4012 (service restart) at its own moment of the
window, spread evenly with jitter so the other nodes see a ramp, and each waiting long-poll
is answered (204) the same way. Once no connection is left, or :data:`CLOSE_GRACE` seconds
after the window, the server's own handler runs and the server stops. A second SIGTERM stops
it at once.

Only that hub's event loop is drained: an ASGI server runs one per process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, Protocol, cast

from realtime import hubs
from realtime.conf import get_config
from realtime.exceptions import CloseCode

logger = logging.getLogger("realtime.drain")

# How long after the window the process waits for the last connections to finish closing.
CLOSE_GRACE = 2.0
# How often the drain looks whether any connection is left.
CHECK_INTERVAL = 0.1

_SignalHandler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class _Transport(Protocol):
    def close(self, code: CloseCode, reason: str = "") -> None: ...


class _Closable(Protocol):
    """What the drain needs of a hub's connection (:class:`realtime.connection.Connection`)."""

    @property
    def transport(self) -> _Transport: ...


class _Drain:
    """The drain of one process: its loop, the SIGTERM handler it stands in front of, and the
    long-polls waiting on that loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, previous: _SignalHandler) -> None:
        self.loop = loop
        self.previous = previous
        self.started_at: float | None = None
        self.waiting: set[Callable[[], None]] = set()
        self.task: asyncio.Task[None] | None = None

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.started_at is not None or self.loop.is_closed():
            self.stop_server(signum, frame)  # a second SIGTERM: stop now
            return
        self.started_at = time.monotonic()
        self.loop.call_soon_threadsafe(self.start)

    def start(self) -> None:
        self.task = self.loop.create_task(self.run())

    def members(self) -> list[Callable[[], None]]:
        """How to end each connection of this loop: close a WebSocket or SSE stream with
        4012, answer a waiting long-poll."""
        code = CloseCode.SERVICE_RESTART
        ends = [
            # every hub's connection is a realtime.connection.Connection
            _closer(cast(_Closable, connection), code)
            for hub in hubs.all_hubs()
            if getattr(hub, "loop", None) is self.loop
            for connection in list(hub.connections.values())
        ]
        return ends + list(self.waiting)

    def open_count(self) -> int:
        served = sum(
            len(hub.connections)
            for hub in hubs.all_hubs()
            if getattr(hub, "loop", None) is self.loop
        )
        return served + len(self.waiting)

    async def run(self) -> None:
        window = get_config().drain_window
        closed = _close_listeners(self.loop)
        ends = self.members()
        logger.info(
            "Draining %d connections over %g s (%d listening sockets closed)",
            len(ends),
            window,
            closed,
        )
        random.shuffle(ends)
        # one close per slot of window / n, at a random moment of its slot: an even ramp
        slot = window / max(len(ends), 1)
        for index, end in enumerate(ends):
            self.loop.call_later((index + random.random()) * slot, end)
        await asyncio.sleep(window)
        for end in self.members():  # opened while the first ones closed, if any
            end()
        for _ in range(round(CLOSE_GRACE / CHECK_INTERVAL)):  # until empty, at most CLOSE_GRACE
            if not self.open_count():
                break
            await asyncio.sleep(CHECK_INTERVAL)
        logger.info("Drained; %d connections left: stopping", self.open_count())
        self.stop_server(signal.SIGTERM, None)

    def stop_server(self, signum: int, frame: FrameType | None) -> None:
        """Run the handler the server installed for ``signum`` (it stops the server)."""
        previous = self.previous
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_IGN:
            return
        else:  # the default action: end the process
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)


def _close_listeners(loop: asyncio.AbstractEventLoop) -> int:
    """Under daphne (Twisted's reactor runs ``loop``), stop listening: a new connection is
    then refused at once, which a proxy passes on to another node (nginx's
    ``proxy_next_upstream error``), instead of being accepted here only to be sent away; the
    open connections stay. Returns how many listening sockets were closed: 0 under another
    server (uvicorn refuses what still arrives with 503, which a proxy passes on too)."""
    # Looked up, not imported: importing the reactor module where none runs would install
    # one. Twisted puts the installed reactor itself in its module's place.
    reactor: Any = sys.modules.get("twisted.internet.reactor")
    tcp: Any = sys.modules.get("twisted.internet.tcp")  # loaded by any reactor that listens
    if reactor is None or tcp is None or not getattr(reactor, "running", False):
        return 0
    if getattr(reactor, "_asyncioEventloop", None) is not loop:  # not daphne's, or not here
        return 0
    ports: list[Any] = [r for r in reactor.getReaders() if isinstance(r, tcp.Port)]
    for port in ports:  # a UNIX socket's port (daphne -u) is a tcp.Port too
        port.stopListening()
    return len(ports)


def _closer(connection: _Closable, code: CloseCode) -> Callable[[], None]:
    return lambda: connection.transport.close(code, code.reason)


_drain: _Drain | None = None
_lock = threading.Lock()


def install(loop: asyncio.AbstractEventLoop) -> None:
    """Drain this process on SIGTERM, serving connections on ``loop``: called with the first
    hub of the process. Does nothing when ``DRAIN_WINDOW`` is 0, off the main thread (where
    signals cannot be handled), or when a drain is already installed."""
    global _drain
    if get_config().drain_window <= 0 or threading.current_thread() is not threading.main_thread():
        return
    with _lock:
        if _drain is not None:
            return
        previous = signal.getsignal(signal.SIGTERM)
        _drain = _Drain(loop, previous)
        signal.signal(signal.SIGTERM, _drain.on_signal)


def draining() -> bool:
    """Whether this process is draining: new connections are refused."""
    drain = _drain
    return drain is not None and drain.started_at is not None


@contextlib.contextmanager
def waiting(end: Callable[[], None]) -> Iterator[None]:
    """Around a long-poll's wait: a drain calls ``end`` (answer now) at the poll's moment of
    the window."""
    drain = _drain
    if drain is None:
        yield
        return
    drain.waiting.add(end)
    try:
        yield
    finally:
        drain.waiting.discard(end)
