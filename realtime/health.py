"""Backend health per component, and quiet logging of it.

A Redis outage makes every background loop fail once a second or more; a traceback per failure
buries what operators need. Each component (``log``, ``layer``, ``registry``, …) reports here
instead: :func:`failed` logs one warning when the component goes down and, while anything is
down, one reminder of every component down at most every :data:`REMINDER` seconds;
:func:`ok` logs one info line when it is back. Both keep the
``realtime_backend_up{component}`` gauge and the ``realtime_backend_errors{component}``
counter. Thread-safe: ``publish()`` reports from its own thread.

channels_redis' pub/sub layer logs a traceback per second from its receive task while Redis is
away; :class:`LayerLogFilter` (installed on its logger when this module is imported) turns
those records into ``failed("layer", …)``."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TypeVar

from django.http import HttpResponseBase
from redis.exceptions import RedisClusterException, RedisError

from realtime.exceptions import HookFailed
from realtime.metrics import BACKEND_ERRORS, BACKEND_UP

logger = logging.getLogger("realtime.health")

# Seconds between "still down" reminders.
REMINDER = 30.0


@dataclass
class _State:
    up: bool = True
    since: float = 0.0
    failures: int = 0
    outages: int = 0


_states: dict[str, _State] = {}
_lock = threading.Lock()
# When the last "still down" line was logged. One line reminds of every component that is down,
# so a long outage costs the log one line per REMINDER, however many components it hits.
_reminded = 0.0


def _describe(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def failed(component: str, error: BaseException) -> None:
    """Record a failure of ``component``: a warning when it goes down, and while anything is
    down one reminder (of every component down) at most every :data:`REMINDER` seconds;
    nothing otherwise."""
    global _reminded
    now = time.monotonic()
    BACKEND_ERRORS.labels(component).inc()
    BACKEND_UP.labels(component).set(0)
    args: tuple[object, ...]
    with _lock:
        state = _states.setdefault(component, _State())
        state.failures += 1
        if state.up:
            if all(other.up for other in _states.values()):
                _reminded = now  # the first component down: the reminders count from here
            state.up, state.since, state.failures = False, now, 1
            state.outages += 1
            message, args = "Backend %r is down: %s", (component, _describe(error))
        elif now - _reminded >= REMINDER:
            _reminded = now
            down = ", ".join(
                f"{name!r} for {now - other.since:.0f} s ({other.failures} failures)"
                for name, other in sorted(_states.items())
                if not other.up
            )
            message, args = "Backends still down: %s; last error: %s", (down, _describe(error))
        else:
            return
    logger.warning(message, *args)


def ok(component: str) -> None:
    """Record a success of ``component``: one info line if it was down."""
    state = _states.get(component)
    if state is not None and state.up:
        # every publish and client send reports here: while up, the gauge is 1 already
        return
    BACKEND_UP.labels(component).set(1)
    with _lock:
        state = _states.get(component)
        if state is None:
            _states[component] = _State()
            return
        if state.up:
            return
        state.up = True
        down_for, failures = time.monotonic() - state.since, state.failures
    logger.info("Backend %r is back after %.0f s (%d failures)", component, down_for, failures)


# What a backend raises when it is unreachable or does not answer in time (redis-py's errors,
# socket errors, timeouts): an outage, not a bug. redis-py's cluster client raises
# RedisClusterException, which is not a RedisError, when no node of a Redis Cluster answers.
OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    RedisError,
    RedisClusterException,
    OSError,
    TimeoutError,
)


def request_failed(component: str, error: BaseException, log: logging.Logger, what: str) -> None:
    """A request or a client frame failed with ``error``. A backend outage is recorded as a
    failure of ``component`` (one warning per outage, see :func:`failed`), so that clients
    retrying through an outage do not print a traceback each; anything else is a bug and is
    logged on ``log`` with its traceback, as ``what`` (unless it is :class:`HookFailed`,
    logged already where the consumer's hook raised)."""
    if isinstance(error, HookFailed):
        return
    if isinstance(error, OUTAGE_ERRORS):
        failed(component, error)
    else:
        log.error("%s", what, exc_info=error)


R = TypeVar("R", bound=HttpResponseBase)


def outage_answer(response: R) -> R:
    """Mark a 503 that reports an outage as an answer, not a server error: Django's
    ``django.request`` logger (and the mail to ``ADMINS``) would otherwise get one ERROR
    record per request while clients retry through the outage."""
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response


def is_up(component: str) -> bool:
    """False while ``component``'s last report was a failure."""
    with _lock:
        state = _states.get(component)
        return state is None or state.up


def outages(component: str) -> int:
    """How many times ``component`` went down in this process."""
    with _lock:
        state = _states.get(component)
        return 0 if state is None else state.outages


def reset() -> None:
    """Forget every state (tests)."""
    with _lock:
        _states.clear()


class LayerLogFilter(logging.Filter):
    """Drops channels_redis' per-failure tracebacks and reports them as ``layer`` failures."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            if isinstance(error, Exception):
                failed("layer", error)
                return False
        return True


_layer_filter = LayerLogFilter()
logging.getLogger("channels_redis.pubsub").addFilter(_layer_filter)
