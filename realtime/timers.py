"""A connection's timers (the auth deadline, the heartbeat, the token expiry) and background
tasks. The timers are deadlines in the event loop's one :class:`~realtime.sweep.Sweep`, the
tasks run on the loop; none runs inside a frame's handling, and all of them stop when the
connection closes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

from realtime import protocol
from realtime.conf import Config
from realtime.exceptions import CloseCode
from realtime.sweep import Deadline, sweep_of


class Timers:
    """Named one-shot timers on ``loop``'s sweep (setting a name again replaces its timer;
    each may run up to 1% of its delay late, see :mod:`realtime.sweep`), and background
    tasks: :meth:`cancel_all` stops them all."""

    __slots__ = ("_handles", "_loop", "_tasks")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._handles: dict[str, Deadline] = {}
        self._tasks: set[asyncio.Task[Any]] | None = None  # made by the first spawn

    def set(self, name: str, delay: float, callback: Callable[..., None], *args: Any) -> None:
        """Run ``callback(*args)`` in ``delay`` seconds (now, if negative)."""
        self.cancel(name)
        self._handles[name] = sweep_of(self._loop).call_later(
            delay, self._fire, name, callback, args
        )

    def _fire(self, name: str, callback: Callable[..., None], args: tuple[Any, ...]) -> None:
        self._handles.pop(name, None)
        callback(*args)

    def cancel(self, *names: str) -> None:
        for name in names:
            handle = self._handles.pop(name, None)
            if handle is not None:
                handle.cancel()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` as a task until it ends or :meth:`cancel_all`."""
        task = self._loop.create_task(coro)
        if self._tasks is None:
            self._tasks = set()
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def cancel_all(self) -> None:
        self.cancel(*list(self._handles))
        for task in list(self._tasks or ()):
            task.cancel()


class _ConnectionTimer:
    """A timer of one connection: set on its :class:`Timers`, with its settings, writing
    frames with ``send`` and closing it with ``close``."""

    __slots__ = ("_close", "_config", "_send", "_timers")

    def __init__(
        self,
        timers: Timers,
        config: Config,
        send: Callable[[str], None],
        close: Callable[[CloseCode], None],
    ) -> None:
        self._timers = timers
        self._config = config
        self._send = send
        self._close = close


class Heartbeat(_ConnectionTimer):
    """Sends ``ping`` every ``HEARTBEAT_INTERVAL`` seconds, and closes the connection (4408)
    when no frame arrived within ``HEARTBEAT_TIMEOUT`` seconds after a ping."""

    __slots__ = ("_last_seen", "_ping_sent")

    def start(self, last_seen: Callable[[], float]) -> None:
        """Start pinging; ``last_seen`` tells when the last frame arrived (monotonic)."""
        self._last_seen = last_seen
        self._ping_sent = 0.0
        self._timers.set("ping", self._config.heartbeat_interval, self._ping)

    def _ping(self) -> None:
        self._ping_sent = time.monotonic()
        self._send(protocol.PING)
        self._timers.set("pong", self._config.heartbeat_timeout, self._check_pong)

    def _check_pong(self) -> None:
        if self._last_seen() < self._ping_sent:
            self._close(CloseCode.HEARTBEAT_TIMEOUT)
        else:
            delay = self._ping_sent + self._config.heartbeat_interval - time.monotonic()
            self._timers.set("ping", delay, self._ping)


class TokenExpiry(_ConnectionTimer):
    """The expiry of the token a connection was authenticated with: ``token-expiring`` is
    sent ``TOKEN_EXPIRY_WARNING`` seconds before it, and the connection closed (4419) at it."""

    __slots__ = ()

    def set(self, expires_at: float | None) -> None:
        """The token now expires at ``expires_at`` (epoch seconds), or never (None)."""
        self._timers.cancel("token-warning", "token-expiry")
        if expires_at is None:
            return
        remaining = expires_at - time.time()
        warning = remaining - self._config.token_expiry_warning
        self._timers.set("token-warning", warning, self._warn, expires_at)
        self._timers.set("token-expiry", remaining, self._close, CloseCode.TOKEN_EXPIRED)

    def _warn(self, expires_at: float) -> None:
        remaining = max(0, int((expires_at - time.time()) * 1000))
        self._send(protocol.token_expiring_frame(remaining))
