"""Batch frames (docs/protocol.md, "Batch frames") on the WebSocket: the frames a batching
client's socket queued within one turn of the event loop, sent together at the end of it
(:class:`Flushes`) as one ``batch`` frame (:func:`gather`)."""

from __future__ import annotations

import asyncio
import collections
import weakref
from typing import Any, Protocol

from realtime import protocol

Message = dict[str, Any]


class _Batching(Protocol):
    def flush_due(self) -> None: ...


class Flushes:
    """The batching sockets of one event loop whose frames wait for the end of the loop's
    turn: one callback sends them all (one per socket would cost a loop handle per socket and
    turn, thousands per fan-out)."""

    __slots__ = ("_waiting",)  # not the loop: it is the key of a weak mapping to this

    def __init__(self) -> None:
        self._waiting: list[_Batching] = []

    def add(self, loop: asyncio.AbstractEventLoop, transport: _Batching) -> None:
        if not self._waiting:
            loop.call_soon(self._run)
        self._waiting.append(transport)

    def _run(self) -> None:
        waiting, self._waiting = self._waiting, []
        for transport in waiting:
            transport.flush_due()


_flushes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Flushes] = (
    weakref.WeakKeyDictionary()
)


def flushes_of(loop: asyncio.AbstractEventLoop) -> Flushes:
    """The running loop's :class:`Flushes`, made by the first batching socket that waits."""
    flushes = _flushes.get(loop)
    if flushes is None:
        flushes = _flushes[loop] = Flushes()
    return flushes


def gather(first: Message, queue: collections.deque[Message]) -> Message:
    """``first`` and the text frames queued right behind it, as one ``batch`` frame within
    :data:`~realtime.protocol.MAX_BATCH_FRAMES` and :data:`~realtime.protocol.MAX_BATCH_BYTES`
    (``first`` alone when nothing fits with it)."""
    texts = [first["text"]]
    size = _utf8_size(texts[0])
    while queue and len(texts) < protocol.MAX_BATCH_FRAMES:
        following = queue[0]
        if following["type"] != "websocket.send":
            break  # a close: it ends the batch, and goes out after it
        size += _utf8_size(following["text"])
        if size > protocol.MAX_BATCH_BYTES:
            break
        texts.append(following["text"])
        queue.popleft()
    if len(texts) == 1:
        return first
    return {"type": "websocket.send", "text": protocol.batch_frame(texts)}


def _utf8_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
