"""The ACK tracker's schedule (pure logic: a fake clock and a fake timer)."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import REGISTRY

from realtime.acks import AckTracker
from realtime.conf import get_config
from realtime.signals import message_undelivered


class Clock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Timer:
    """``loop.call_later`` for one pending timer: the test fires it when its time comes."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.due: float | None = None
        self.callback: Any = None
        self.cancelled = 0

    def __call__(self, delay: float, callback: Any) -> Timer:
        self.due, self.callback = self.clock.now + delay, callback
        return self

    def cancel(self) -> None:
        self.due = self.callback = None
        self.cancelled += 1

    def fire(self) -> None:
        """Move the clock to the timer's time and run it."""
        assert self.due is not None, "no timer set"
        self.clock.now, callback = self.due, self.callback
        self.due = self.callback = None
        callback()


@pytest.fixture
def setup(realtime_settings):
    realtime_settings(ACK_TIMEOUT=2.0, ACK_MAX_RETRIES=3)
    clock = Clock()
    timer = Timer(clock)
    sent: list[str] = []
    connection = object()
    tracker = AckTracker(connection, sent.append, get_config(), timer, clock)
    return tracker, clock, timer, sent, connection


def counter(name: str) -> float:
    return REGISTRY.get_sample_value(f"realtime_messages_{name}_total") or 0.0


def test_a_message_is_resent_after_the_timeout_doubling_then_reported_undelivered(setup):
    tracker, clock, timer, sent, connection = setup
    undelivered: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        undelivered.append({"sender": sender, **kwargs})

    message_undelivered.connect(receiver)
    retried, lost = counter("retried"), counter("undelivered")
    try:
        start = clock.now
        tracker.track("order.1", "m1", "frame-1")
        resent_at = []
        for _ in range(3):
            timer.fire()
            resent_at.append(clock.now - start)
        assert sent == ["frame-1"] * 3
        assert resent_at == [2.0, 6.0, 14.0]  # 2 s, then 4 s, then 8 s after each resend
        assert not undelivered
        timer.fire()  # 16 s after the last resend: given up
    finally:
        message_undelivered.disconnect(receiver)
    assert clock.now - start == 30.0
    assert sent == ["frame-1"] * 3, "not sent a fourth time"
    assert undelivered == [
        {
            "sender": object,
            "signal": message_undelivered,
            "connection": connection,
            "topic": "order.1",
            "message_id": "m1",
        }
    ]
    assert (counter("retried") - retried, counter("undelivered") - lost) == (3, 1)
    assert len(tracker) == 0 and timer.due is None, "nothing left to wait for"


def test_one_timer_serves_every_message_at_its_own_time(setup):
    tracker, clock, timer, sent, _ = setup
    tracker.track("t", "m1", "frame-1")
    clock.now += 1.5
    tracker.track("t", "m2", "frame-2")
    timer.fire()
    assert sent == ["frame-1"]
    assert timer.due == clock.now + 1.5, "next: m2, 2 s after it was sent"
    timer.fire()
    assert sent == ["frame-1", "frame-2"]


def test_acknowledged_messages_are_not_resent_and_repeats_are_ignored(setup):
    tracker, _, timer, sent, _ = setup
    acked = counter("acked")
    tracker.track("t", "m1", "frame-1")
    tracker.track("t", "m2", "frame-2")
    assert tracker.acknowledge(["m1", "m1", "unknown"]) == ["m1"]
    assert counter("acked") - acked == 1
    timer.fire()
    assert sent == ["frame-2"]
    assert tracker.acknowledge(["m2"]) == ["m2"]
    assert len(tracker) == 0


def test_tracking_a_message_again_keeps_its_schedule(setup):
    tracker, clock, timer, sent, _ = setup
    tracker.track("t", "m1", "frame-1")
    timer.fire()
    tracker.track("t", "m1", "frame-1")  # the same message delivered again, e.g. replayed
    assert tracker.pending["m1"].attempts == 1
    assert timer.due == clock.now + 4.0
    assert sent == ["frame-1"]


def test_unsubscribing_forgets_the_topics_messages_only(setup):
    tracker, _, timer, sent, _ = setup
    tracker.track("a", "m1", "frame-1")
    tracker.track("b", "m2", "frame-2")
    tracker.forget_topic("a")
    timer.fire()
    assert sent == ["frame-2"]


def test_clear_stops_the_timer_and_forgets_everything(setup):
    tracker, _, timer, sent, _ = setup
    tracker.track("t", "m1", "frame-1")
    tracker.clear()
    assert (len(tracker), timer.due, timer.cancelled) == (0, None, 1)
    tracker.track("t", "m2", "frame-2")
    assert timer.due is not None, "tracking again starts the timer again"
    assert sent == []


def test_messages_resent_a_different_number_of_times_each_come_back_at_their_own_time(setup):
    tracker, clock, timer, sent, _ = setup
    tracker.track("t", "m1", "frame-1")  # due at 2, then 6 (4 s after its resend)
    clock.now += 3.0
    tracker.track("t", "m2", "frame-2")  # due at 5
    timer.fire()
    assert (clock.now - 1000.0, sent) == (2.0, ["frame-1"])
    timer.fire()
    assert (clock.now - 1000.0, sent[1:]) == (5.0, ["frame-2"])
    timer.fire()
    assert (clock.now - 1000.0, sent[2:]) == (6.0, ["frame-1"])
    assert tracker.acknowledge(["m2"]) == ["m2"]
    timer.fire()  # m2's time (9): the timer is not moved by an ACK, it just sets itself again
    assert (clock.now - 1000.0, sent[3:]) == (9.0, []), "m2 acknowledged: not resent"
    timer.fire()
    assert (clock.now - 1000.0, sent[3:]) == (14.0, ["frame-1"])


def test_a_retry_looks_only_at_the_messages_that_are_due(setup, monkeypatch):
    """O(1) per message: with 1,000 messages waiting and one of them due, the retry timer reads
    the due time of a few queue heads, not of every pending message."""
    from realtime import acks

    reads = 0

    class CountingPendingAck(acks.PendingAck):
        def __getattribute__(self, name: str) -> Any:
            nonlocal reads
            if name == "due":
                reads += 1
            return super().__getattribute__(name)

    monkeypatch.setattr(acks, "PendingAck", CountingPendingAck)
    tracker, clock, timer, sent, _ = setup
    tracker.track("t", "m0", "frame-0")
    for n in range(1, 1000):
        clock.now += 0.001
        tracker.track("t", f"m{n}", f"frame-{n}")
    reads = 0
    timer.fire()
    assert sent == ["frame-0"]
    assert reads <= 5, f"{reads} due times read to resend one message of 1,000"
