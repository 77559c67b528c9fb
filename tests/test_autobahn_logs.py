"""Daphne's autobahn debug-log arguments, deferred (realtime/autobahn_logs.py): nothing is
formatted for a log line at a level that is off; a line that is written reads as before."""

from __future__ import annotations

import pprint
from typing import Any

import autobahn.twisted.websocket as twisted_websocket
import autobahn.websocket.protocol as websocket_protocol
from autobahn import util

from realtime.autobahn_logs import Deferred, defer_debug_arguments


def test_the_helpers_daphne_runs_format_only_when_the_line_is_written():
    defer_debug_arguments()
    assert defer_debug_arguments() is False, "idempotent"
    options = [("openHandshakeTimeout", 5, "WebSocketServerFactory")]
    deferred = websocket_protocol.pformat(options)
    assert isinstance(deferred, Deferred)
    assert str(deferred) == f"{deferred}" == pprint.pformat(options)
    for module in (websocket_protocol, twisted_websocket):
        method = websocket_protocol.WebSocketProtocol.sendData
        assert f"<{module.hltype(method)}>" == f"<{util.hltype(method)}>"
        assert str(module.hlval(12)) == util.hlval(12)
    timings = websocket_protocol.Timings()
    timings.track("handshake")
    assert isinstance(str(timings), str) and "handshake" in str(timings)


def test_a_deferred_argument_is_not_computed_until_formatted():
    calls: list[Any] = []

    def expensive(value: Any) -> str:
        calls.append(value)
        return f"<{value}>"

    deferred = Deferred(expensive, (1,))
    assert calls == []
    assert f"{deferred:>5}" == "  <1>" and repr(deferred) == "'<1>'"
    assert calls == [1, 1]


def test_txaio_drops_a_debug_line_before_its_arguments_are_formatted():
    import txaio

    log = txaio.make_logger()
    formatted: list[Any] = []
    log.debug("{x}", x=Deferred(formatted.append, ("debug",)))
    assert formatted == [], "debug is off by default: the argument is never formatted"
