"""The ACK tracker's schedule and the pending-ACK store it shares with the user's other
connections (a fake clock and a fake timer; the store in memory, and in the real Redis)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import REGISTRY

from realtime import acks
from realtime.acks import AckTracker
from realtime.backends import get_pending_acks
from realtime.conf import get_config
from realtime.signals import message_undelivered
from realtime.stores.base import Pending
from realtime.stores.memory import MemoryPendingAcks


class Clock:
    """Wall-clock seconds that move only when the test says so."""

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

    async def fire(self, tracker: AckTracker) -> None:
        """Move the clock to the timer's time, run it, and wait for the resends it starts."""
        assert self.due is not None, "no timer set"
        self.clock.now, callback = self.due, self.callback
        self.due = self.callback = None
        callback()
        await settle(tracker)


async def settle(tracker: AckTracker) -> None:
    """Wait for the tracker's resends and store writes under way."""
    while (task := tracker._retrying or tracker._saving) is not None:
        await task


class Side:
    """One connection's tracker, with its clock, timer and the frames it sent."""

    def __init__(self, store: Any, clock: Clock, scope: str = "u:1") -> None:
        self.clock = clock
        self.timer = Timer(clock)
        self.sent: list[str] = []
        self.connection = object()
        self.tracker = AckTracker(
            self.connection,
            self.sent.append,
            get_config(),
            self.timer,
            clock,
            scope=lambda: scope,
            store=store,
        )


@pytest.fixture
def clock(realtime_settings) -> Clock:
    realtime_settings(ACK_TIMEOUT=2.0, ACK_MAX_RETRIES=3)
    return Clock()


@pytest.fixture
def store(clock: Clock) -> MemoryPendingAcks:
    return MemoryPendingAcks(get_config().ack_window, clock)


@pytest.fixture
def undelivered() -> Any:
    reported: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        reported.append({"sender": sender, **kwargs})

    message_undelivered.connect(receiver)
    yield reported
    message_undelivered.disconnect(receiver)


def counter(name: str) -> float:
    return REGISTRY.get_sample_value(f"realtime_messages_{name}_total") or 0.0


async def test_a_message_is_resent_after_the_timeout_doubling_then_reported_undelivered(
    clock, store, undelivered
):
    side = Side(store, clock)
    retried, lost = counter("retried"), counter("undelivered")
    start = clock.now
    side.tracker.track("order.1", "m1", "e", 1, "frame-1")
    resent_at = []
    for _ in range(3):
        await side.timer.fire(side.tracker)
        resent_at.append(clock.now - start)
    assert side.sent == ["frame-1"] * 3
    assert resent_at == [2.0, 6.0, 14.0]  # 2 s, then 4 s, then 8 s after each resend
    assert not undelivered
    await side.timer.fire(side.tracker)  # 16 s after the last resend: given up
    assert clock.now - start == 30.0 == get_config().ack_window
    assert side.sent == ["frame-1"] * 3, "not sent a fourth time"
    assert undelivered == [
        {
            "sender": object,
            "signal": message_undelivered,
            "connection": side.connection,
            "topic": "order.1",
            "message_id": "m1",
        }
    ]
    assert (counter("retried") - retried, counter("undelivered") - lost) == (3, 1)
    assert len(side.tracker) == 0 and side.timer.due is None, "nothing left to wait for"
    assert await store.pending("u:1", ["m1"]) == set(), "nor in the store"


async def test_one_timer_serves_every_message_at_its_own_time(clock, store):
    side = Side(store, clock)
    side.tracker.track("t", "m1", "e", 1, "frame-1")
    clock.now += 1.5
    side.tracker.track("t", "m2", "e", 2, "frame-2")
    await side.timer.fire(side.tracker)
    assert side.sent == ["frame-1"]
    assert side.timer.due == clock.now + 1.5, "next: m2, 2 s after it was sent"
    await side.timer.fire(side.tracker)
    assert side.sent == ["frame-1", "frame-2"]


async def test_acknowledged_messages_are_not_resent_and_repeats_are_ignored(clock, store):
    side = Side(store, clock)
    acked = counter("acked")
    side.tracker.track("t", "m1", "e", 1, "frame-1")
    side.tracker.track("t", "m2", "e", 2, "frame-2")
    assert await side.tracker.acknowledge(["m1", "m1", "unknown"]) == ["m1"]
    assert await side.tracker.acknowledge(["m1"]) == [], "taken once"
    assert counter("acked") - acked == 1
    await side.timer.fire(side.tracker)
    assert side.sent == ["frame-2"]
    assert await side.tracker.acknowledge(["m2"]) == ["m2"]
    assert len(side.tracker) == 0


async def test_tracking_a_message_again_keeps_its_schedule(clock, store):
    side = Side(store, clock)
    side.tracker.track("t", "m1", "e", 1, "frame-1")
    await side.timer.fire(side.tracker)
    side.tracker.track("t", "m1", "e", 1, "frame-1")  # the same message delivered again
    assert side.tracker.pending["m1"].attempts == 1
    assert side.timer.due == clock.now + 4.0
    assert side.sent == ["frame-1"]


async def test_unsubscribing_stops_resending_here_but_the_user_still_owes_the_ack(clock, store):
    side = Side(store, clock)
    side.tracker.track("a", "m1", "e", 1, "frame-1")
    side.tracker.track("b", "m2", "e", 1, "frame-2")
    side.tracker.forget_topic("a")
    await side.timer.fire(side.tracker)
    assert side.sent == ["frame-2"]
    assert await store.pending("u:1", ["m1", "m2"]) == {"m1", "m2"}


async def test_an_ack_on_another_connection_of_the_user_stops_the_resends_here(clock, store):
    first, second = Side(store, clock), Side(store, clock)
    first.tracker.track("t", "m1", "e", 1, "frame-1")
    await settle(first.tracker)
    # the other connection never sent m1, yet the user owes its ACK: accepted, taken there
    assert await second.tracker.owed(["m1"])
    assert await second.tracker.acknowledge(["m1"]) == ["m1"]
    await first.tracker.acknowledge([])  # nothing: m1 was taken once
    await first.timer.fire(first.tracker)
    assert first.sent == [] and len(first.tracker) == 0


async def test_a_new_subscription_sends_again_what_the_user_owes_and_takes_its_schedule(
    clock, store
):
    gone = Side(store, clock)
    gone.tracker.track("t", "m1", "e1", 3, "frame-1")
    gone.tracker.track("t", "m2", "e1", 4, "frame-2")
    gone.tracker.track("other", "m3", "e1", 1, "frame-3")
    await gone.tracker.close()  # the connection was cut before the ACKs came
    assert await store.pending("u:1", ["m1", "m2", "m3"]) == {"m1", "m2", "m3"}

    clock.now += 2.5  # the first resend (at 2 s) was missed: nobody was there
    new = Side(store, clock)
    await new.tracker.adopt("t", "e1", 10)  # the cursor is past both
    assert new.sent == ["frame-1", "frame-2"], "the topic's own, in order"
    assert new.tracker.pending["m1"].attempts == 1
    assert new.timer.due == clock.now + 3.5, "the second resend, 6 s after the first send"
    other_scope = Side(store, clock, scope="u:2")
    await other_scope.tracker.adopt("t", "e1", 10)
    assert other_scope.sent == [], "another user's connection gets nothing"
    later_epoch = Side(store, clock)
    await later_epoch.tracker.adopt("t", "e2", 10)
    assert later_epoch.sent == [], "an epoch the client no longer follows is not sent"


async def test_a_message_nobody_acknowledged_is_reported_undelivered_once_by_the_sweeper(
    clock, undelivered, backend
):
    store = get_pending_acks()
    scope = f"u:sweep-{id(clock)}"
    sides = [Side(store, clock, scope=scope) for _ in range(2)]
    for side in sides:
        side.tracker.track("t", "m1", "e", 1, "frame-1")
        await side.tracker.close()
    # the sweeper runs on every node; each message is reported by one of them, once
    deadline = clock.now + get_config().ack_window
    sweeps = await asyncio.gather(*(acks.sweep(object, deadline + 3.0) for _ in range(3)))
    assert sorted(sweeps) == [0, 0, 1]
    assert [(r["connection"], r["message_id"]) for r in undelivered] == [(None, "m1")]


async def test_the_store_takes_each_id_once_and_does_not_bring_back_an_acknowledged_one(
    clock, backend
):
    store = get_pending_acks()
    scope = f"u:store-{id(clock)}"
    entry = Pending("m1", "t", "e", 1, "frame", 1.0, 31.0)
    await store.put(scope, [entry])
    await store.put(scope, [Pending("m1", "t", "e", 1, "other", 5.0, 35.0)])
    assert await store.of_topic(scope, "t") == [entry], "the first schedule stands"
    assert await store.of_topic(scope, "u") == []
    taken = await asyncio.gather(*(store.acknowledge(scope, ["m1", "m2"]) for _ in range(4)))
    assert sorted(taken) == [[], [], [], ["m1"]]
    await store.put(scope, [entry])  # a late copy from another connection
    assert await store.pending(scope, ["m1"]) == set()
    await store.put(scope, [Pending("m2", "t", "e", 2, "frame", 1.0, 31.0)])
    assert await store.give_up(scope, ["m2"]) == ["m2"]
    assert await store.give_up(scope, ["m2"]) == []


async def test_a_resend_pass_looks_at_the_messages_due_not_at_everything_pending(
    clock, store, monkeypatch
):
    reads = 0

    class Counted(acks.PendingAck):
        """Counts how often a message's due time is looked at."""

        def __getattribute__(self, name: str) -> Any:
            nonlocal reads
            if name == "due":
                reads += 1
            return super().__getattribute__(name)

    monkeypatch.setattr(acks, "PendingAck", Counted)
    side = Side(store, clock)
    for n in range(1000):
        side.tracker.track("t", f"m{n}", "e", n, f"frame-{n}")
        clock.now += 0.001
    await settle(side.tracker)
    for n in range(3):  # each pass resends the one message due, and sets the next timer
        reads = 0
        await side.timer.fire(side.tracker)
        assert side.sent[-1] == f"frame-{n}" and len(side.sent) == n + 1
        assert reads < 20, f"a pass looked at {reads} due times for one message due"
    reads = 0
    assert await side.tracker.acknowledge(["m500"]) == ["m500"]
    assert reads < 20, "an ACK costs the same whatever else is pending"


class CountingStore(MemoryPendingAcks):
    """The memory store, counting the reads a subscription makes (``of_topic``)."""

    def __init__(self, window: float, clock: Clock) -> None:
        super().__init__(window, clock)
        self.reads = 0

    async def of_topic(self, scope: str, topic: str) -> list[Pending]:
        self.reads += 1
        return await super().of_topic(scope, topic)


async def test_a_subscription_reads_no_store_for_a_connection_scope_that_put_nothing(clock):
    store = CountingStore(get_config().ack_window, clock)
    scope = f"{acks.CONNECTION_SCOPE_PREFIX}one-connection"
    side = Side(store, clock, scope=scope)
    await side.tracker.adopt("t", "e", 10)
    assert store.reads == 0, "nothing can be there: no other connection writes this scope"
    # once it put a message there, a later subscription of the topic finds it again
    side.tracker.track("t", "m1", "e", 1, "frame-1")
    await settle(side.tracker)
    side.tracker.forget_topic("t")  # unsubscribed
    await side.tracker.adopt("t", "e", 10)  # and subscribed again
    assert store.reads == 1 and side.sent == ["frame-1"]
    user = Side(store, clock, scope="u:1")
    await user.tracker.adopt("t", "e", 10)
    assert store.reads == 2, "a user's (or session's) scope is shared: always read"


async def test_a_storm_of_adoptions_reads_the_pending_acks_in_one_pipeline(
    clock, backend, monkeypatch
):
    """Many subscriptions resuming at once (a reconnect storm) read their users' pending ACKs
    in one Redis pipeline (realtime/stores/batched.py), each getting its own scope's."""
    if backend is None:
        pytest.skip("batched reads are the Redis stores'")
    from realtime.stores import batched

    pipelines = []
    real = batched.get_client

    def counting(url: str) -> Any:
        client = real(url)

        class Counted:
            def pipeline(self, **options: Any) -> Any:
                pipelines.append(options)
                return client.pipeline(**options)

        return Counted()

    monkeypatch.setattr(batched, "get_client", counting)
    store = get_pending_acks()
    scopes = [f"u:storm-{id(clock)}-{n}" for n in range(50)]
    for n, scope in enumerate(scopes):
        await store.put(scope, [Pending(f"m{n}", "t", "e", n, f"frame-{n}", 1.0, 31.0)])
    found = await asyncio.gather(*(store.of_topic(scope, "t") for scope in scopes))
    assert [[e.message_id for e in entries] for entries in found] == [[f"m{n}"] for n in range(50)]
    assert pipelines == [{"transaction": False}]
    await store.put(scopes[0], [Pending("late", "t", "e", 99, "frame", 1.0, 31.0)])
    assert {e.message_id for e in await store.of_topic(scopes[0], "t")} == {"m0", "late"}
