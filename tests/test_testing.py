"""realtime.testing: capture_published() where users test (Django TestCase, pytest-django's
django_db, real transactions) and reset()."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from django.db import transaction
from django.test import TestCase

import realtime
from realtime import testing
from realtime.backends import get_log
from realtime.testing import capture_published
from realtime.topics import registry


def log_offset(topic: str) -> int:
    return asyncio.run(get_log().read_after(topic, None, 0)).offset


class Boom(Exception):
    pass


class CaptureInsideATestCase(TestCase):
    """Each test of a TestCase runs in a transaction that is rolled back: its commit (and so
    transaction.on_commit) never comes."""

    def test_a_publish_in_the_test_is_captured(self) -> None:
        with capture_published() as published:
            message_id = realtime.publish("public.tc", "ev", {"n": 1})
            assert [(m["id"], m["data"]) for m in published] == [(message_id, {"n": 1})]
        assert [m["topic"] for m in published] == ["public.tc"]
        assert log_offset("public.tc") == 0  # captured instead of sent

    def test_a_publish_inside_transaction_atomic_is_captured(self) -> None:
        with capture_published() as published:
            with transaction.atomic():
                realtime.publish("public.tc", "first", 1)
                with transaction.atomic():
                    realtime.publish("public.tc", "second", 2)
            realtime.publish("public.tc", "third", 3)
        assert [(m["event"], m["data"]) for m in published] == [
            ("first", 1),
            ("second", 2),
            ("third", 3),
        ]

    def test_a_publish_from_a_view_is_captured(self) -> None:
        with capture_published() as published:
            response = self.client.post(
                "/test/publish/",
                json.dumps({"topic": "public.view", "event": "ev", "data": [1]}),
                content_type="application/json",
            )
        assert [(m["id"], m["topic"], m["data"]) for m in published] == [
            (response.json()["id"], "public.view", [1])
        ]

    def test_a_view_publishing_in_transaction_atomic_is_captured_unless_it_rolls_back(
        self,
    ) -> None:
        def post(**body: object) -> object:
            return self.client.post(
                "/test/publish-in-transaction/",
                json.dumps({"topic": "public.atomic-view", "event": "ev", **body}),
                content_type="application/json",
            )

        with capture_published() as published:
            committed = post(data=1)
        assert [(m["id"], m["data"]) for m in published] == [(committed.json()["id"], 1)]
        with capture_published() as published:
            refused = post(data=2, fail=True)
        assert (refused.status_code, published) == (409, [])

    def test_a_publish_in_a_rolled_back_block_is_not_captured(self) -> None:
        with capture_published() as published:
            realtime.publish("public.tc", "kept", 1)
            with pytest.raises(Boom), transaction.atomic():
                realtime.publish("public.tc", "rolled-back", 2)
                raise Boom
            with transaction.atomic():
                realtime.publish("public.tc", "kept-too", 3)
                try:
                    with transaction.atomic():
                        realtime.publish("public.tc", "inner-rolled-back", 4)
                        raise Boom
                except Boom:
                    pass
        assert [m["event"] for m in published] == ["kept", "kept-too"]


@pytest.mark.django_db
def test_pytest_django_db_captures_publishes_in_and_out_of_atomic():
    with capture_published() as published:
        realtime.publish("public.pt", "plain", 1)
        with transaction.atomic():
            realtime.publish("public.pt", "atomic", 2)
        with pytest.raises(Boom), transaction.atomic():
            realtime.publish("public.pt", "rolled-back", 3)
            raise Boom
    assert [m["event"] for m in published] == ["plain", "atomic"]
    assert log_offset("public.pt") == 0


@pytest.mark.django_db(transaction=True)
def test_real_transactions_capture_what_commits_and_send_nothing():
    with capture_published() as published:
        with transaction.atomic():
            realtime.publish("public.tx", "committed", 1)
        with pytest.raises(Boom), transaction.atomic():
            realtime.publish("public.tx", "rolled-back", 2)
            raise Boom
    assert [m["event"] for m in published] == ["committed"]
    assert log_offset("public.tx") == 0


@pytest.mark.django_db(transaction=True)
def test_a_message_captured_inside_an_open_transaction_is_not_sent_at_its_commit():
    with transaction.atomic():
        with capture_published() as published:
            realtime.publish("public.open", "ev", 1)
        assert [m["event"] for m in published] == ["ev"]
    assert log_offset("public.open") == 0


@pytest.mark.django_db
def test_a_publish_from_another_thread_is_captured():
    with capture_published() as published:
        thread = threading.Thread(target=realtime.publish, args=("public.thr", "ev", 1))
        thread.start()
        thread.join(10)
    assert [m["event"] for m in published] == ["ev"]


def test_nested_captures_each_get_the_message():
    with capture_published() as outer:
        realtime.publish("public.n", "a", 1)
        with capture_published() as inner:
            realtime.publish("public.n", "b", 2)
    assert [m["event"] for m in outer] == ["a", "b"]
    assert [m["event"] for m in inner] == ["b"]


async def test_apublish_is_captured():
    with capture_published() as published:
        await realtime.apublish("public.async", "ev", {"a": 1})
    assert [(m["event"], m["data"]) for m in published] == [("ev", {"a": 1})]


def test_reset_forgets_the_in_memory_logs():
    realtime.publish("public.reset", "ev", 1)
    assert log_offset("public.reset") == 1
    testing.reset()
    assert log_offset("public.reset") == 0
    realtime.publish("public.reset", "ev", 2)
    assert log_offset("public.reset") == 1


@pytest.mark.django_db(transaction=True)
async def test_the_communicator_example_of_docs_testing():
    # docs/testing.md's RealtimeCommunicator example, on the built-in user:<pk> topic
    from asgiref.sync import sync_to_async
    from django.contrib.auth import get_user_model

    from realtime.testing import RealtimeCommunicator
    from tests.asgi import application

    user = await sync_to_async(get_user_model().objects.create_user)("ann", password="pw")
    client = RealtimeCommunicator(application, origin=None)
    connected, _ = await client.connect()
    assert connected
    assert (await client.auth(realtime.make_token(user)))["type"] == "welcome"
    assert (await client.subscribe(realtime.user_topic(user)))["type"] == "subscribed"

    await realtime.apublish_to_user(user, "status", {"status": "shipped"})

    frame = await client.receive_frame()
    assert (frame["type"], frame["event"], frame["data"]) == (
        "message",
        "status",
        {"status": "shipped"},
    )
    await client.disconnect()


def test_reset_empties_the_in_memory_channel_layer():
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    testing.reset()
    assert get_channel_layer() is not layer


def test_restore_topics_undoes_registrations_made_and_removed_inside_it():
    before = registry.patterns()
    kept = before[0]
    with testing.restore_topics():
        realtime.register_topic("only.{n:int}", realtime.allow_any)
        registry.unregister(kept)
        assert "only.{n:int}" in registry.patterns()
        assert kept not in registry.patterns()
    assert registry.patterns() == before
