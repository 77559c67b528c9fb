"""A connection's client messages (``send`` frames): each id runs the consumer's
``on_message`` hook once across the cluster (see :mod:`realtime.dedup`), and every attempt with
that id is answered with the same ``ack`` frame."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from realtime import health, protocol
from realtime.backends import get_dedup
from realtime.conf import Config
from realtime.dedup import answer_once
from realtime.exceptions import InProgress, RealtimeError
from realtime.hooks import Hooks

# The connection's logger: a handler that fails, fails for a connection.
logger = logging.getLogger("realtime.connection")


class ClientMessages:
    """Answers the ``send`` frames of one connection. ``scope`` gives whose ids a ``send`` id
    is unique among (see :attr:`Connection.dedup_scope`); ``send`` writes an answer to the
    client, ``spawn`` runs a waiting attempt in the background, and ``fail`` closes the
    connection when the dedup store fails while an attempt waits."""

    __slots__ = ("_fail", "_scope", "_send", "_spawn", "config", "hooks")

    def __init__(
        self,
        hooks: Hooks,
        config: Config,
        *,
        scope: Callable[[], str],
        send: Callable[[str], None],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        fail: Callable[[], None],
    ) -> None:
        self.hooks = hooks
        self.config = config
        self._scope = scope
        self._send = send
        self._spawn = spawn
        self._fail = fail

    async def receive(self, frame: protocol.SendFrame) -> None:
        """Answer ``frame`` now if its answer is ready or this attempt runs the handler.
        Raises what the dedup store raises."""
        answer = await self.answer(frame, wait=0.0)
        if answer is not None:
            self._send(answer)
        else:
            # Another attempt runs the handler: wait for its answer in a task, so that this
            # connection's other frames (pongs included) are handled meanwhile.
            self._spawn(self._send_when_answered(frame))

    async def answer(self, frame: protocol.SendFrame, wait: float | None = None) -> str | None:
        """The encoded ``ack`` for a client ``send``: the handler's, run once per id across
        the cluster, or the answer stored for the id. None when another attempt with the id
        still runs the handler after ``wait`` seconds (default ``SEND_WAIT``): the client is
        to send it again (``in_progress``). Raises what the dedup store raises."""
        answer = await answer_once(
            get_dedup(),
            f"{self._scope()}:{frame['id']}",
            lambda: self._run_handler(frame),
            wait=self.config.send_wait if wait is None else wait,
            lease=self.config.send_lease,
        )
        health.ok("dedup")
        return answer

    async def _send_when_answered(self, frame: protocol.SendFrame) -> None:
        try:
            answer = await self.answer(frame)
        except Exception as failure:
            health.request_failed(
                "dedup", failure, logger, "Waiting for the answer of a client message failed"
            )
            self._fail()
            return
        if answer is None:
            error = InProgress()
            answer = protocol.error_ack(frame["id"], {"code": error.code, "reason": error.reason})
        self._send(answer)

    async def _run_handler(self, frame: protocol.SendFrame) -> str:
        """Run the consumer's handler; its result or error, encoded as the ``ack`` frame."""
        message_id = frame["id"]
        result: Any = None
        error: protocol.ErrorBody | None = None
        try:
            result = await self.hooks.on_message(frame["event"], frame.get("data"))
        except RealtimeError as refusal:
            error = {"code": refusal.code, "reason": refusal.reason}
        except Exception:
            logger.exception("Handler for event %r failed", frame["event"])
            error = {"code": "handler_error", "reason": "The handler failed."}
        try:
            if error is not None:
                return protocol.error_ack(message_id, error)
            return protocol.result_ack(message_id, result)
        except (TypeError, ValueError):
            logger.exception("Handler for event %r returned a non-JSON result", frame["event"])
            error = {
                "code": "handler_error",
                "reason": "The handler's result is not JSON serializable.",
            }
            return protocol.error_ack(message_id, error)
