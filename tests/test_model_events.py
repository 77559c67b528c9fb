"""``realtime.publish_model()``: a model's saves and deletes published without signal code, in
a Django TestCase (captured), with a broken Redis (the save still succeeds), and on real
daphne nodes sharing the real Redis with this process."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.test import TestCase
from django.utils import timezone

import realtime
from realtime import backends
from realtime.model_events import ModelPublisher
from realtime.signals import publish_failed
from realtime.testing import capture_published
from tests.servers import Client, Daphne, running_nodes
from tests.testapp.models import Parcel


@pytest.fixture(autouse=True)
def _no_publisher_left() -> Iterator[None]:
    yield
    realtime.publish_model(Parcel, topic="x", fields=["status"]).disconnect()


def events(published: list[dict[str, Any]]) -> list[tuple[str, str, Any]]:
    return [(m["topic"], m["event"], m["data"]) for m in published]


class PublishModelInATestCase(TestCase):
    def test_create_update_delete_publish_the_fields_after_the_commit(self) -> None:
        owner = User.objects.create_user("owner")
        realtime.publish_model(
            Parcel, topic="public.parcel-{pk}", fields=["status", "owner", "weight", "label"]
        )
        with capture_published() as published:
            with transaction.atomic():
                parcel = Parcel.objects.create(owner=owner, weight=Decimal("1.50"), label="a.pdf")
            parcel.status = "sent"
            parcel.save()
            pk = parcel.pk
            parcel.delete()
        topic = f"public.parcel-{pk}"
        fields = {"pk": pk, "owner": owner.pk, "weight": "1.50", "label": "a.pdf"}
        assert events(published) == [
            (topic, "parcel.created", {**fields, "status": "new"}),
            (topic, "parcel.updated", {**fields, "status": "sent"}),
            (topic, "parcel.deleted", {**fields, "status": "sent"}),
        ]

    def test_a_rolled_back_change_is_not_published(self) -> None:
        realtime.publish_model(Parcel, topic="public.parcels", fields=["status"])
        with capture_published() as published:
            with transaction.atomic():
                Parcel.objects.create(status="kept")
            with transaction.atomic():
                Parcel.objects.create(status="dropped")
                transaction.set_rollback(True)
        assert [m["data"]["status"] for m in published] == ["kept"]

    def test_if_changed_publishes_an_update_only_when_a_tracked_field_changed(self) -> None:
        parcel = Parcel.objects.create()
        realtime.publish_model(
            Parcel,
            topic="public.parcels",
            fields=["status", "updated_at"],
            if_changed=["status"],
            events=["updated"],
        )
        with capture_published() as published:
            loaded = Parcel.objects.get(pk=parcel.pk)
            loaded.note = "only the note"
            loaded.save()  # status unchanged: nothing
            loaded.status = "sent"
            loaded.save(update_fields=["note"])  # status changed but not saved: nothing
            loaded.save()  # now saved: published
            loaded.save()  # compared with the last save: nothing
            deferred = Parcel.objects.only("note").get(pk=parcel.pk)
            deferred.note = "again"
            deferred.save()  # saves only the loaded fields: status not saved, nothing
            Parcel.objects.create(status="new")  # "created" is not among the events
        assert [m["data"]["status"] for m in published] == ["sent"]
        assert [m["event"] for m in published] == ["parcel.updated"]

    def test_data_callable_topic_callable_with_several_topics_prefix_and_ack(self) -> None:
        realtime.publish_model(
            Parcel,
            topic=lambda parcel: ["public.parcels", f"public.parcel-{parcel.pk}"],
            data=lambda parcel: {"id": parcel.pk, "shout": parcel.status.upper()},
            event_prefix="shop.parcel",
            ack=True,
        )
        with capture_published() as published:
            parcel = Parcel.objects.create(status="new")
        assert events(published) == [
            ("public.parcels", "shop.parcel.created", {"id": parcel.pk, "shout": "NEW"}),
            (
                f"public.parcel-{parcel.pk}",
                "shop.parcel.created",
                {"id": parcel.pk, "shout": "NEW"},
            ),
        ]
        assert all(m["ack"] for m in published)
        assert len({m["id"] for m in published}) == 2

    def test_fixture_loading_publishes_nothing(self) -> None:
        realtime.publish_model(Parcel, topic="public.parcels", fields=["status"])
        with capture_published() as published:
            Parcel(status="fixture", updated_at=timezone.now()).save_base(raw=True)
        assert published == []
        assert Parcel.objects.filter(status="fixture").exists()

    def test_registering_again_replaces_and_disconnect_stops(self) -> None:
        realtime.publish_model(Parcel, topic="public.first", fields=["status"])
        publisher = realtime.publish_model(Parcel, topic="public.second", fields=["status"])
        assert isinstance(publisher, ModelPublisher)
        with capture_published() as published:
            Parcel.objects.create()
            publisher.disconnect()
            Parcel.objects.create()
        assert [m["topic"] for m in published] == ["public.second"]


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        ({"fields": ["nope"]}, "Parcel has no field 'nope'"),
        ({"fields": ["tags"]}, "many-to-many fields are saved after post_save"),
        ({"fields": "status"}, "fields must be a list of names or '__all__'"),
        ({}, "pass either fields=[...]"),
        ({"fields": ["status"], "data": lambda parcel: 1}, "not both"),
        ({"fields": ["status"], "events": ["saved"]}, "events must be some of"),
        ({"fields": ["status"], "event_prefix": "9"}, "not a valid event name"),
        ({"fields": ["status"], "if_changed": ["nope"]}, "Parcel has no field 'nope'"),
        ({"fields": ["status"], "topic": "parcel.{nope}"}, "has no attribute 'nope'"),
        ({"fields": ["status"], "topic": "parcel.{0}"}, "has no attribute '0'"),
        ({"fields": ["status"], "topic": "parcel.{pk"}, "topic 'parcel.{pk'"),
    ],
)
def test_mistakes_are_refused_at_registration(arguments: dict[str, Any], says: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=r"publish_model\(testapp\.Parcel\)") as error:
        realtime.publish_model(Parcel, **{"topic": "public.parcels", **arguments})
    assert says in str(error.value)


def test_all_fields_on_request(db: Any) -> None:
    realtime.publish_model(Parcel, topic="public.parcels", fields="__all__")
    with capture_published() as published:
        parcel = Parcel.objects.create()
    assert set(published[0]["data"]) == {
        "pk",
        "id",
        "owner",
        "status",
        "note",
        "weight",
        "label",
        "updated_at",
    }
    assert published[0]["data"]["id"] == parcel.pk


def test_a_failed_publish_does_not_fail_the_save(
    transactional_db: Any, realtime_settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    realtime_settings(REDIS_URL="redis://127.0.0.1:1/0", PUBLISH_TIMEOUT=1.0)
    backends.reset()
    failures: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        failures.append(kwargs)

    publish_failed.connect(receiver)
    realtime.publish_model(Parcel, topic="public.parcels", fields=["status"])
    try:
        with caplog.at_level(logging.WARNING, logger="realtime.model_events"):
            parcel = Parcel.objects.create(status="saved")
    finally:
        publish_failed.disconnect(receiver)
        backends.reset()
    assert Parcel.objects.get(pk=parcel.pk).status == "saved"
    [failure] = failures
    assert (failure["topic"], failure["event"]) == ("public.parcels", "parcel.created")
    assert isinstance(failure["error"], realtime.PublishError)
    assert f"parcel.created {failure['message_id']} of testapp.Parcel pk={parcel.pk}" in caplog.text


# ---- real daphne nodes on the real Redis -----------------------------------------------------


@pytest.fixture(scope="module")
def nodes(database, redis_url, cluster_prefix) -> Iterator[list[Daphne]]:
    env = {"RT_REDIS_URL": redis_url, "RT_PREFIX": cluster_prefix}
    with running_nodes(database[0], env, count=1) as servers:
        yield servers


@pytest.fixture
def prefix(cluster_prefix: str) -> str:
    return cluster_prefix  # this process publishes into the node's Redis namespace


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
async def test_a_browser_gets_each_committed_change_of_a_model(nodes, use_redis) -> None:
    topic = f"public.parcels-{uuid.uuid4().hex[:8]}"
    realtime.publish_model(Parcel, topic=topic, fields=["status"], ack=True)
    client = await Client.connect(nodes[0])
    assert (await client.subscribe(topic))["type"] == "subscribed"

    def change() -> int:
        with transaction.atomic():
            parcel = Parcel.objects.create(status="new")
        with transaction.atomic():
            parcel.status = "lost"
            parcel.save()
            transaction.set_rollback(True)  # never reaches anyone
        parcel.status = "sent"
        parcel.save()
        pk = parcel.pk
        parcel.delete()
        return pk

    pk = await sync_to_async(change)()
    got = []
    for _ in range(3):
        message = await client.receive()
        await client.send({"type": "ack", "ids": [message["id"]]})
        got.append((message["event"], message["data"], message["ack"]))
    assert got == [
        ("parcel.created", {"pk": pk, "status": "new"}, True),
        ("parcel.updated", {"pk": pk, "status": "sent"}, True),
        ("parcel.deleted", {"pk": pk, "status": "sent"}, True),
    ]
    await client.close()
