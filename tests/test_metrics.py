"""The Prometheus endpoint: off by default, protected, and its values move."""

from __future__ import annotations

import re

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.test import Client

import realtime
from realtime.testing import RealtimeCommunicator
from tests.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


def value(text: str, name: str, labels: str = "") -> float:
    pattern = rf"^{re.escape(name)}{re.escape(labels)} (\S+)$"
    found = re.search(pattern, text, re.M)
    return float(found.group(1)) if found else 0.0


@sync_to_async
def scrape(client: Client, **headers: str):
    return client.get("/realtime/metrics/", headers=headers)


@pytest.fixture
def staff_client() -> Client:
    user = get_user_model().objects.create_user("ops", password="pw", is_staff=True)
    client = Client()
    client.force_login(user)
    return client


async def test_metrics_are_off_by_default(staff_client):
    assert (await scrape(staff_client)).status_code == 404


async def test_metrics_need_staff_or_the_token(realtime_settings, staff_client):
    realtime_settings(METRICS=True)
    assert (await scrape(Client())).status_code == 401
    assert (await scrape(staff_client)).status_code == 200
    realtime_settings(METRICS=True, METRICS_TOKEN="s3cret")
    refused = await scrape(staff_client)
    assert refused.status_code == 401
    assert refused["WWW-Authenticate"] == 'Bearer realm="realtime metrics"'
    ok = await scrape(Client(), Authorization="Bearer s3cret")
    assert ok.status_code == 200


async def test_counters_and_gauges_move(realtime_settings, staff_client):
    realtime_settings(METRICS=True, ACK_TIMEOUT=0.05)
    before = (await scrape(staff_client)).content.decode()
    clients = []
    for _ in range(3):
        client = RealtimeCommunicator(application)
        await client.connect()
        await client.receive_frame()
        await client.subscribe("public.metrics")
        clients.append(client)
    message_id = await realtime.apublish("public.metrics", "m", 1, ack=True)
    for client in clients:
        await client.receive_frame()
    await clients[0].receive_frame()  # a retry
    await clients[0].send_frame({"type": "ack", "ids": [message_id]})
    await clients[0].send_frame({"type": "send", "id": "sync", "event": "echo"})
    await clients[0].receive_frame()
    after = (await scrape(staff_client)).content.decode()

    def grew(name: str) -> float:
        return value(after, name) - value(before, name)

    assert grew("realtime_messages_published_total") == 1
    assert grew("realtime_messages_delivered_total") == 3
    assert grew("realtime_messages_acked_total") == 1
    assert grew("realtime_messages_retried_total") >= 1
    assert grew("realtime_publish_to_deliver_seconds_count") == 1
    assert re.search(
        r'^realtime_connections\{node="[^"]+",transport="websocket"\} 3\.0$', after, re.M
    ) or re.search(
        r'^realtime_connections\{transport="websocket",node="[^"]+"\} 3\.0$', after, re.M
    )
    for client in clients:
        await client.disconnect()
