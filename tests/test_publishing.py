"""publish() / apublish(): transactions, validation, and the per-process publisher loop."""

from __future__ import annotations

import asyncio
import threading

import pytest
from django.db import transaction

import realtime
from realtime.backends import get_log
from realtime.testing import capture_published


def read(topic: str):
    return asyncio.run(get_log().read_after(topic, None, 0))


def entries(topic: str):
    position = read(topic)
    return asyncio.run(get_log().read_after(topic, position.epoch, 0)).entries


@pytest.mark.django_db(transaction=True)
def test_publish_appends_to_the_log_and_returns_the_message_id():
    message_id = realtime.publish("public.p", "ev", {"a": 1})
    [entry] = entries("public.p")
    assert (entry.message_id, entry.event, entry.data, entry.offset) == (
        message_id,
        "ev",
        '{"a":1}',
        1,
    )


@pytest.mark.django_db(transaction=True)
def test_publish_in_a_rolled_back_transaction_sends_nothing():
    with pytest.raises(RuntimeError), transaction.atomic():
        realtime.publish("public.tx", "ev", 1)
        raise RuntimeError("roll back")
    assert read("public.tx").offset == 0


@pytest.mark.django_db(transaction=True)
def test_publish_in_a_transaction_waits_for_commit():
    with transaction.atomic():
        realtime.publish("public.tx2", "ev", 1)
        assert read("public.tx2").offset == 0, "must not be sent before the commit"
    assert read("public.tx2").offset == 1


def test_publish_encodes_with_the_django_encoder():
    import datetime
    import decimal
    import uuid

    realtime.publish(
        "public.enc",
        "ev",
        {"d": decimal.Decimal("1.5"), "u": uuid.UUID(int=1), "t": datetime.date(2026, 1, 2)},
    )
    assert entries("public.enc")[0].data == (
        '{"d":"1.5","u":"00000000-0000-0000-0000-000000000001","t":"2026-01-02"}'
    )


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("bad topic", "ev", 1), realtime.InvalidTopic),
        (("public.x", "bad event!", 1), ValueError),
        (("public.x", "ev", object()), TypeError),
        (("public.x", "ev", "x" * 70000), realtime.MessageTooLarge),
    ],
)
def test_publish_rejects_bad_input_with_a_clear_error(args, error):
    with pytest.raises(error):
        realtime.publish(*args)
    assert read("public.x").offset == 0


async def test_publish_from_async_code_says_to_use_apublish():
    with pytest.raises(RuntimeError, match="apublish"):
        realtime.publish("public.x", "ev", 1)


async def test_apublish_appends_to_the_log():
    await realtime.apublish("public.a", "ev", 1)
    assert (await get_log().read_after("public.a", None, 0)).offset == 1


def test_publish_reuses_one_loop_from_many_threads(monkeypatch):
    loops = set()
    log = get_log()
    append = log.append

    async def spy(*args):
        loops.add(asyncio.get_running_loop())
        return await append(*args)

    monkeypatch.setattr(log, "append", spy)
    threads = [
        threading.Thread(target=realtime.publish, args=("public.t", "ev", n)) for n in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(loops) == 1
    assert read("public.t").offset == 8


def test_capture_published_collects_instead_of_sending():
    with capture_published() as published:
        message_id = realtime.publish("public.cap", "ev", {"x": [1]}, ack=True)
    assert [(m["topic"], m["event"], m["data"], m["id"], m["ack"]) for m in published] == [
        ("public.cap", "ev", {"x": [1]}, message_id, True)
    ]
    assert read("public.cap").offset == 0


def test_publish_timeout_when_redis_is_unreachable(realtime_settings):
    from realtime import backends

    realtime_settings(REDIS_URL="redis://127.0.0.1:1/0", PUBLISH_TIMEOUT=2.0)
    backends.reset()
    with pytest.raises(realtime.PublishError):
        realtime.publish("public.down", "ev", 1)
