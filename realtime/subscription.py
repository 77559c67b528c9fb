"""One topic of one connection: its position in the topic's log, and the recovery of gaps.

Ordering: a subscription tracks ``(epoch, offset)``. A live message whose offset is not the
next one (a message lost between nodes, or an epoch change) switches the subscription to
*recovering*: live messages are buffered while the gap is read from the topic log, then the
buffer is drained with duplicates dropped. The same path serves a resume with a cursor, so
replay-then-live never loses or repeats a message."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from realtime import health, protocol
from realtime._tasks import stop_if_cancelled
from realtime.log.base import Entry, Log, Replay

# The connection's logger: what goes wrong here goes wrong for a connection.
logger = logging.getLogger("realtime.connection")

# How many log reads one gap may take before the subscription gives up with a reset.
MAX_RECOVERY_ROUNDS = 5
# Backoff between log reads that failed while filling a gap (within BACKEND_GRACE).
RECOVERY_RETRY_FIRST = 0.25
RECOVERY_RETRY_MAX = 4.0

# A message frame that was sent: (topic, message id, whether it wants an ACK, the frame, its
# epoch and offset).
Sent = Callable[[str, str, bool, str, str, int], None]


class Subscription:
    """A connection's subscription to ``topic``. Frames go out through ``send``; each
    ``message`` frame is also reported to ``sent`` (to count it and track its ACK). Reads go
    to ``log``. It starts *recovering* (live messages held) until :meth:`start` has replayed
    from the cursor; the connection calls :meth:`stop` when it drops the subscription."""

    def __init__(self, topic: str, log: Log, send: Callable[[str], None], sent: Sent) -> None:
        self.topic = topic
        self.epoch = ""
        self.offset = 0
        self.recovering = True
        self.active = True
        # live messages held while recovering: (epoch, offset, message_id, ack, frame)
        self.buffer: list[tuple[str, int, str, bool, str]] = []
        self._log = log
        self._send = send
        self._sent = sent

    def stop(self) -> None:
        """The connection dropped this subscription: a read under way sends nothing more."""
        self.active = False

    async def start(self, cursor: protocol.Cursor | None) -> bool:
        """Replay after ``cursor`` (none: start at the head), say ``subscribed``, then go live
        once the gap is filled. False if the subscription was dropped during the first read.
        Raises what the log raises."""
        replay = await self._read(
            cursor["epoch"] if cursor else None, cursor["offset"] if cursor else 0
        )
        if not self.active:
            return False
        self.epoch, self.offset = replay.epoch, replay.offset
        if replay.reset:
            self._send_reset(replay)
        recovered = cursor is not None and replay.reset is None
        self._send(protocol.subscribed_frame(self.topic, self.epoch, self.offset, recovered))
        for entry in replay.entries:
            self._send_entry(entry)
        if not self._drain():
            self.recovering = True
            await self._recover()
        return True

    def live(self, epoch: str, offset: int, message_id: str, ack: bool, frame: str) -> bool:
        """Take a live message: send it if it is the next one, drop it if it was sent, hold it
        while recovering. True when it shows a gap: the caller is to run :meth:`fill_gap`."""
        if self.recovering:
            self.buffer.append((epoch, offset, message_id, ack, frame))
        elif epoch == self.epoch and offset <= self.offset:
            pass  # already delivered (replayed, or a duplicate from the layer)
        elif epoch == self.epoch and offset == self.offset + 1:
            self._send_message(offset, message_id, ack, frame)
        else:  # a gap, or the log's epoch changed under us: recover from the log
            self.recovering = True
            self.buffer.append((epoch, offset, message_id, ack, frame))
            return True
        return False

    def behind(self, epoch: str, offset: int) -> bool:
        """The topic's log is at ``(epoch, offset)`` (learnt out of band): True if this
        subscription is not there and not recovering already; it then recovers, and the
        caller is to run :meth:`fill_gap`."""
        if self.recovering or (self.epoch == epoch and self.offset >= offset):
            return False
        self.recovering = True
        return True

    async def fill_gap(self, grace: float) -> bool:
        """Fill the gap from the log. While the log is unreachable, retry with backoff for
        ``grace`` seconds (live messages wait in the buffer). False when the log stayed
        unreachable that long: the caller closes the connection, and the client resumes from
        its cursor."""
        deadline = time.monotonic() + grace
        delay = RECOVERY_RETRY_FIRST
        while True:
            try:
                await self._recover()
            except Exception as error:
                stop_if_cancelled(error)
                # an outage is one quiet state change; a bug keeps its traceback
                health.request_failed("log", error, logger, "Filling a gap from the log failed")
                if not self.active:
                    return True
                if time.monotonic() + delay > deadline:
                    return False
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECOVERY_RETRY_MAX)
            else:
                health.ok("log")
                return True

    def _send_message(self, offset: int, message_id: str, ack: bool, frame: str) -> None:
        self.offset = offset
        self._send(frame)
        self._sent(self.topic, message_id, ack, frame, self.epoch, offset)

    def _send_entry(self, entry: Entry) -> None:
        frame = protocol.message_frame(
            self.topic,
            entry.event,
            entry.data,
            entry.message_id,
            self.epoch,
            entry.offset,
            entry.ack,
        )
        self._send_message(entry.offset, entry.message_id, entry.ack, frame)

    def _send_reset(self, replay: Replay) -> None:
        self._send(protocol.reset_frame(self.topic, replay.reset, replay.epoch, replay.offset))

    async def _read(self, epoch: str | None, offset: int) -> Replay:
        """Read the log after a position. When the epoch changed, the reader jumps to the
        start of the new epoch if the log still holds all of it, so that messages published
        since the loss are not lost too."""
        replay = await self._log.read_after(self.topic, epoch, offset)
        if replay.reset == "epoch_changed" and replay.offset > 0:
            fresh = await self._log.read_after(self.topic, replay.epoch, 0)
            if fresh.reset is None:
                return Replay(fresh.epoch, 0, fresh.entries, "epoch_changed")
        return replay

    async def _recover(self) -> None:
        """Fill the gap after this subscription's position from the log, then go live."""
        for _ in range(MAX_RECOVERY_ROUNDS):
            replay = await self._read(self.epoch, self.offset)
            if not self.active:
                return
            if replay.reset:
                self.epoch, self.offset = replay.epoch, replay.offset
                self._send_reset(replay)
            for entry in replay.entries:
                self._send_entry(entry)
            if self._drain():
                return
        logger.warning("Topic %r: gap not filled after %d reads", self.topic, MAX_RECOVERY_ROUNDS)
        replay = await self._log.read_after(self.topic, None, 0)
        self.epoch, self.offset, self.buffer, self.recovering = (
            replay.epoch,
            replay.offset,
            [],
            False,
        )
        self._send_reset(Replay(replay.epoch, replay.offset, [], "too_old"))

    def _drain(self) -> bool:
        """Send buffered live messages that follow on; False if a gap remains."""
        buffered, self.buffer = sorted(self.buffer, key=lambda m: m[1]), []
        for index, (epoch, offset, message_id, ack, frame) in enumerate(buffered):
            if epoch != self.epoch:
                continue  # from before a reset; the log read decided the current epoch
            if offset <= self.offset:
                continue
            if offset != self.offset + 1:
                self.buffer = buffered[index:]
                return False
            self._send_message(offset, message_id, ack, frame)
        self.recovering = False
        return True
