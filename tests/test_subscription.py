"""A subscription fills its own gaps from the topic log (the in-memory log; no server)."""

from __future__ import annotations

import json
import time

from realtime import protocol
from realtime.log.memory import MemoryLog
from realtime.subscription import Subscription


class Client:
    """What a subscription sends, decoded, and the messages it reported as sent."""

    def __init__(self) -> None:
        self.frames: list[dict] = []
        self.sent: list[tuple[str, str, bool]] = []

    def send(self, text: str) -> None:
        self.frames.append(json.loads(text))

    def report(
        self, topic: str, message_id: str, ack: bool, frame: str, epoch: str, offset: int
    ) -> None:
        self.sent.append((topic, message_id, ack))

    def offsets(self) -> list[int]:
        return [f["offset"] for f in self.frames if f["type"] == "message"]


async def publish(log: MemoryLog, topic: str, n: int) -> tuple[str, int, str]:
    """Append message ``m<n>`` to the log; its epoch, offset and live frame."""
    epoch, offset = await log.append(topic, f"m{n}", "e", str(n), n % 2 == 0, time.time())
    return (
        epoch,
        offset,
        protocol.message_frame(topic, "e", str(n), f"m{n}", epoch, offset, n % 2 == 0),
    )


async def test_resume_replays_after_the_cursor_then_goes_live():
    log, client = MemoryLog(100, 3600), Client()
    epoch, _, _ = await publish(log, "t", 1)
    await publish(log, "t", 2)
    sub = Subscription("t", log, client.send, client.report)
    assert await sub.start({"epoch": epoch, "offset": 1})
    assert client.frames[0] == {
        "type": "subscribed", "topic": "t", "epoch": epoch, "offset": 1, "recovered": True,
    }  # fmt: skip
    assert client.offsets() == [2]
    assert client.sent == [("t", "m2", True)]
    _, offset, frame = await publish(log, "t", 3)
    assert not sub.live(epoch, offset, "m3", False, frame), "the next one: no gap"
    assert not sub.live(epoch, offset, "m3", False, frame), "a duplicate is dropped"
    assert client.offsets() == [2, 3]


async def test_a_live_message_after_a_gap_is_held_until_the_log_fills_the_gap():
    log, client = MemoryLog(100, 3600), Client()
    sub = Subscription("t", log, client.send, client.report)
    await sub.start(None)
    lost = [await publish(log, "t", n) for n in (1, 2)]  # never reached this node live
    epoch, offset, frame = await publish(log, "t", 3)
    assert sub.live(epoch, offset, "m3", False, frame), "a gap: the caller fills it"
    assert sub.recovering and client.offsets() == []
    _, offset4, frame4 = await publish(log, "t", 4)
    assert not sub.live(epoch, offset4, "m4", True, frame4), "held while recovering"
    assert await sub.fill_gap(grace=1.0)
    assert client.offsets() == [1, 2, 3, 4], "each once, in order"
    assert not sub.recovering and (sub.epoch, sub.offset) == (lost[0][0], 4)


async def test_a_cursor_from_a_lost_epoch_resets_to_the_start_of_the_new_one():
    log, client = MemoryLog(100, 3600), Client()
    await publish(log, "t", 1)
    sub = Subscription("t", log, client.send, client.report)
    await sub.start({"epoch": "gone", "offset": 7})
    epoch = sub.epoch
    assert [f["type"] for f in client.frames] == ["reset", "subscribed", "message"]
    assert client.frames[0] == {
        "type": "reset", "topic": "t", "reason": "epoch_changed", "epoch": epoch, "offset": 0,
    }  # fmt: skip
    assert client.frames[1]["recovered"] is False
    assert client.offsets() == [1], "the new epoch's messages are not lost too"


async def test_a_stopped_subscription_sends_nothing_more():
    log, client = MemoryLog(100, 3600), Client()
    sub = Subscription("t", log, client.send, client.report)
    sub.stop()
    assert not await sub.start(None)
    assert client.frames == []
