"""Daphne's WebSocket protocol (autobahn) formats the arguments of its debug log lines on every
handshake and every frame, whether or not debug logging is on: a ``pprint.pformat`` of about
thirty protocol options per connection (about 0.7 ms, measured on the development machine;
bench/README.md, "Profiling a node") and colour codes around function names and byte counts
(``hltype``, ``hlval``) for every frame sent or received.

:func:`defer_debug_arguments` makes those three helpers, as the two autobahn modules daphne
runs call them, return an object that does the work only when the line is written. A log line
at a level that is off is dropped by txaio before its arguments are formatted, so the work
never happens; with debug logging on, each line reads as before. Applied when the app is
ready (:class:`realtime.apps.RealtimeConfig`) in a process that has imported autobahn (daphne
imports it before it loads the application); a process without autobahn is left alone."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

#: The modules whose helpers are deferred, and the helpers' names in them.
_TARGETS = {
    "autobahn.websocket.protocol": ("pformat", "hltype", "hlval"),
    "autobahn.twisted.websocket": ("hltype", "hlval"),
}


class Deferred:
    """``function(*args)``, called when the object is formatted (``str``, ``format``,
    ``repr``), and each time it is."""

    __slots__ = ("_args", "_function")

    def __init__(self, function: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self._function = function
        self._args = args

    def __str__(self) -> str:
        return str(self._function(*self._args))

    def __format__(self, spec: str) -> str:
        return format(self._function(*self._args), spec)

    def __repr__(self) -> str:
        return repr(self._function(*self._args))


def _deferring(function: Callable[..., Any]) -> Callable[..., Deferred]:
    def deferred(*args: Any) -> Deferred:
        return Deferred(function, args)

    deferred.__wrapped__ = function  # type: ignore[attr-defined]
    return deferred


def defer_debug_arguments() -> bool:
    """Defer autobahn's debug-log helpers in the modules already imported (see the module's
    docstring). Idempotent; returns whether anything was deferred by this call."""
    changed = False
    for module_name, names in _TARGETS.items():
        module = sys.modules.get(module_name)
        if module is None:
            continue
        for name in names:
            function = getattr(module, name, None)
            if function is None or hasattr(function, "__wrapped__"):
                continue  # not there in this version, or deferred already
            setattr(module, name, _deferring(function))
            changed = True
            timings = getattr(module, "Timings", None)
            if name == "pformat" and timings is not None:
                # Timings.__str__ returns pformat(...): it must still return a str
                original = timings.__str__
                timings.__str__ = lambda self, original=original: str(original(self))
    return changed
