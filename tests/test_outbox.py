"""Durable publishing in one process: the outbox row is written in the caller's transaction
(rolled back with it, committed with it), the process's relay moves committed rows into the
real Redis log once each, in publish order, and a relay that died after appending and before
finishing its rows causes no duplicate. On SQLite (the suite's database).

The suite's SQLite database is in memory, shared between threads through SQLite's shared
cache, where two threads touching one table at once fail with "table is locked" instead of
waiting: so while the process's relay thread runs, these tests watch the Redis log only, and
stop the relay before reading the outbox table."""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import transaction

import realtime
from realtime.backends import get_log
from realtime.loop import run_sync
from realtime.models import OutboxMessage
from realtime.outbox import relay, store
from realtime.outbox.relay import stop_relays
from realtime.publishing import new_relay
from tests.conftest import realtime_on_redis

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def durable_redis(redis_url: str, prefix: str) -> Iterator[None]:
    """Realtime on the test Redis under a fresh prefix, publishing durably; this process's
    relays are stopped afterwards."""
    from tests.servers import delete_prefix

    with realtime_on_redis(redis_url, prefix, DURABLE=True, RELAY_INTERVAL=0.2):
        try:
            yield
        finally:
            stop_relays()
    delete_prefix(redis_url, prefix)


def logged(topic: str) -> list[tuple[str, str]]:
    """The ``(message id, event)`` of every entry the topic's log holds, oldest first."""

    async def read() -> list[tuple[str, str]]:
        log = get_log()
        start = await log.read_after(topic, None, 0)
        replay = await log.read_after(topic, start.epoch, 0)
        return [(entry.message_id, entry.event) for entry in replay.entries]

    result: list[tuple[str, str]] = run_sync(read())
    return result


def wait_for(condition: Any, within: float = 10.0) -> None:
    """Poll ``condition`` (the relay runs in another thread) until it holds."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.02)


def test_a_durable_publish_inside_a_rolled_back_transaction_leaves_nothing(durable_redis):
    class Rollback(Exception):
        pass

    with pytest.raises(Rollback), transaction.atomic():
        realtime.publish("orders", "created", {"pk": 1})
        assert OutboxMessage.objects.count() == 1  # written in the transaction
        raise Rollback
    assert OutboxMessage.objects.count() == 0
    # a later committed publish is relayed: had the first reached the log, it would be there
    later = realtime.publish("orders", "created", {"pk": 2})
    wait_for(lambda: logged("orders"))
    assert logged("orders") == [(later, "created")]


def test_a_committed_durable_publish_reaches_the_log_once_and_leaves_the_outbox(durable_redis):
    with transaction.atomic():
        first = realtime.publish("orders", "created", {"pk": 1})
        second = realtime.publish("orders", "updated", {"pk": 1}, durable=True)
        assert logged("orders") == []  # nothing before the commit
    wait_for(lambda: len(logged("orders")) == 2)
    assert logged("orders") == [(first, "created"), (second, "updated")]
    stop_relays()
    assert OutboxMessage.objects.count() == 0
    # draining again moves nothing: the rows are gone
    assert new_relay().drain() == 0
    assert logged("orders") == [(first, "created"), (second, "updated")]


def test_outside_a_transaction_the_row_is_committed_at_once_and_the_id_returned(durable_redis):
    message_id = realtime.publish("orders", "created", {"pk": 3}, message_id="order-3-created")
    assert message_id == "order-3-created"
    wait_for(lambda: logged("orders") == [("order-3-created", "created")])


def test_durable_false_overrides_the_setting(durable_redis):
    with transaction.atomic():
        realtime.publish("orders", "created", {"pk": 4}, durable=False)
        assert OutboxMessage.objects.count() == 0
    assert len(logged("orders")) == 1


async def test_apublish_durable_commits_the_row_and_the_relay_moves_it(durable_redis):
    message_id = await realtime.apublish("orders", "created", {"pk": 5})
    deadline = time.monotonic() + 10
    while not await asyncio.to_thread(logged, "orders"):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert await asyncio.to_thread(logged, "orders") == [(message_id, "created")]


def test_a_relay_that_died_after_appending_causes_no_duplicate(durable_redis, realtime_settings):
    stop_relays()
    rows = [
        {"type": "message", "topic": f"t{n % 3}", "event": "e", "id": f"m{n}", "ack": False}
        for n in range(30)
    ]
    for row in rows:
        store.write({**row, "data": "{}"}, None)
    # relay "dead" claims every row with a short lease and appends them all, then dies before
    # finishing them (its rows stay in the outbox, claimed)
    claimed = store.claim("dead", 2.0, "default")
    assert len(claimed) == 30
    dead = new_relay()
    run_sync(_append_all(dead, claimed))
    assert OutboxMessage.objects.count() == 30
    # while the lease holds, no other relay takes the rows
    survivor = new_relay()
    assert store.claim(survivor.name, 10, "default") == []
    wait_for(lambda: store.claim("probe", 0, "default", batch=1) != [])
    assert survivor.drain() == 30
    assert OutboxMessage.objects.count() == 0
    for topic in ("t0", "t1", "t2"):
        ids = [message_id for message_id, _ in logged(topic)]
        assert ids == [f"m{n}" for n in range(30) if f"t{n % 3}" == topic]


async def _append_all(relay: Any, rows: list[store.Row]) -> None:
    for row in rows:
        await relay.deliver([store.message_of(row)], 5.0)


def test_rows_of_a_topic_behind_another_relays_claim_wait_for_it(durable_redis):
    stop_relays()
    for n, topic in enumerate(["a", "b", "a", "b", "c"]):
        store.write({"topic": topic, "event": "e", "id": f"m{n}", "ack": False, "data": "{}"}, None)
    first = store.claim("one", 30, "default", batch=2)  # m0 (a) and m1 (b)
    assert [row.message_id for row in first] == ["m0", "m1"]
    # another relay may take c, but not a or b: their earlier rows are not in the log yet
    second = store.claim("two", 30, "default")
    assert [row.message_id for row in second] == ["m4"]
    store.finish([row.id for row in first], 0, "default")
    third = store.claim("two", 30, "default")
    assert [row.message_id for row in third] == ["m2", "m3"]


def test_the_committing_thread_moves_its_rows_into_the_log_before_the_block_returns(
    durable_redis,
):
    stop_relays()
    with transaction.atomic():
        first = realtime.publish("orders", "created", {"pk": 1})
        other = realtime.publish("parcels", "created", {"pk": 2})
        second = realtime.publish("orders", "updated", {"pk": 1})
    # no wait: the fast path ran on commit, in this thread, before the relay was started
    assert logged("orders") == [(first, "created"), (second, "updated")]
    assert logged("parcels") == [(other, "created")]
    process_relay = relay._relays["default"][0]  # started for the sweeps
    stop_relays()
    assert process_relay.moved == 0  # it found nothing to move
    assert OutboxMessage.objects.count() == 0


def test_the_fast_path_leaves_rows_behind_another_relays_claim_of_their_topic(durable_redis):
    stop_relays()
    store.write({"topic": "a", "event": "e", "id": "m0", "ack": False, "data": "{}"}, None)
    held = store.claim("other", 30, "default")  # another relay holds m0 (a)
    assert [row.message_id for row in held] == ["m0"]
    with transaction.atomic():
        behind = realtime.publish("a", "e", {}, message_id="m1")
        free = realtime.publish("b", "e", {}, message_id="m2")
    assert logged("b") == [(free, "e")]  # moved on commit: nothing of b came first
    assert logged("a") == []  # m0 is not in the log yet: m1 waits for it
    stop_relays()  # the woken relay left m1 too: a is held
    run_sync(_append_all(new_relay(), held))
    store.finish([row.id for row in held], 0, "default")
    assert new_relay().drain() == 1
    assert logged("a") == [("m0", "e"), (behind, "e")]


def test_rows_of_a_rolled_back_savepoint_are_not_delivered_with_the_transaction(durable_redis):
    stop_relays()
    with transaction.atomic():
        kept = realtime.publish("orders", "created", {"pk": 1})
        with contextlib.suppress(RuntimeError), transaction.atomic():
            realtime.publish("orders", "cancelled", {"pk": 1})
            raise RuntimeError
        later = realtime.publish("orders", "updated", {"pk": 1})
    assert logged("orders") == [(kept, "created"), (later, "updated")]


def test_retention_keeps_delivered_rows_marked_then_purges_them(durable_redis, realtime_settings):
    stop_relays()
    realtime_settings(OUTBOX_RETENTION=0.2)
    store.write({"topic": "r", "event": "e", "id": "kept", "ack": False, "data": "{}"}, None)
    relay = new_relay()
    assert relay.drain() == 1
    row = OutboxMessage.objects.get()
    assert row.delivered is not None
    assert store.backlog("default") == (0, None)
    wait_for(lambda: time.time() - row.delivered > 0.2)  # type: ignore[operator]
    assert relay.drain() == 0
    assert OutboxMessage.objects.count() == 0


def test_backlog_counts_pending_rows_and_the_oldest_age(durable_redis):
    stop_relays()
    assert store.backlog("default") == (0, None)
    store.write({"topic": "r", "event": "e", "id": "x", "ack": False, "data": "{}"}, None)
    store.write({"topic": "r", "event": "e", "id": "y", "ack": False, "data": "{}"}, None)
    count, age = store.backlog("default")
    assert count == 2
    assert age is not None and 0 <= age < 5


def test_publish_model_and_publish_to_user_take_durable(redis_url, prefix):
    from tests.testapp.models import Parcel

    publisher = realtime.publish_model(Parcel, topic="parcel.{pk}", fields=["status"], durable=True)
    try:
        with realtime_on_redis(redis_url, prefix), transaction.atomic():
            parcel = Parcel.objects.create(status="new")
            realtime.publish_to_user(7, "notification", {"pk": parcel.pk}, durable=True)
            assert sorted(OutboxMessage.objects.values_list("topic", "event")) == [
                (f"parcel.{parcel.pk}", "parcel.created"),
                ("user:7", "notification"),
            ]
            transaction.set_rollback(True)
    finally:
        publisher.disconnect()
        stop_relays()
    assert OutboxMessage.objects.count() == 0


def test_the_relay_command_moves_what_waits_and_status_shows_the_backlog(redis_url, prefix):
    import json

    from django.core.management import call_command

    with realtime_on_redis(redis_url, prefix):
        for n in range(3):
            store.write(
                {"topic": "cmd", "event": "e", "id": f"c{n}", "ack": False, "data": "1"}, None
            )
        out = io.StringIO()
        call_command("realtime_status", "--json", stdout=out)
        outbox = json.loads(out.getvalue())["outbox"]
        assert outbox["pending"] == 3 and 0 <= outbox["oldest_age"] < 10
        out = io.StringIO()
        call_command("realtime_relay", "--once", stdout=out)
        assert out.getvalue().strip() == "3"
        assert [message_id for message_id, _ in logged("cmd")] == ["c0", "c1", "c2"]
        out = io.StringIO()
        call_command("realtime_status", stdout=out)
        assert "outbox: 0 message(s) waiting for a relay\n" in out.getvalue()


def test_the_relay_command_refuses_to_run_without_redis():
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="realtime_relay needs REALTIME\\['REDIS_URL'\\]"):
        call_command("realtime_relay", "--once")


def test_without_redis_a_process_serving_no_connection_leaves_its_rows_to_the_server():

    message_id = realtime.publish("orders", "created", {"pk": 9}, durable=True)
    assert relay._relays == {}  # no relay started here: it would move the row into this
    # process's own memory, where no client reads it
    assert list(OutboxMessage.objects.values_list("message_id", flat=True)) == [message_id]


async def test_the_server_application_starts_its_relay_on_its_first_call_not_on_import(
    realtime_settings,
):
    from realtime.asgi import RelayStarter, get_asgi_application

    realtime_settings(DURABLE=True)
    application = get_asgi_application()
    assert isinstance(application, RelayStarter)
    assert relay._relays == {}  # importing it (as the system checks do) starts nothing

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        pass

    # no route for that path (ValueError): the relay was started before routing
    with contextlib.suppress(ValueError):
        await application({"type": "websocket", "path": "/nowhere/", "headers": []}, receive, send)
    assert "default" in relay._relays
    await asyncio.to_thread(stop_relays)
