"""Presence per topic and user, and the opt-in join/leave events, on both backends."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.test import Client

import realtime
from realtime.hub import get_hub
from realtime.testing import RealtimeCommunicator
from tests.asgi import application
from tests.conftest import BACKENDS, use_backend

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True, params=BACKENDS)
def backend(request: Any, realtime_settings: Any) -> Any:
    # settings first, Redis over them: torn down in the reverse order, nothing leaks
    realtime_settings(HEARTBEAT_TIMEOUT=0.3, HEARTBEAT_INTERVAL=5.0)  # a snapshot every 0.1 s
    return use_backend(request, request.param)


@sync_to_async
def cookie_for(name: str) -> list[tuple[bytes, bytes]]:
    user = get_user_model().objects.create_user(name, password="pw")
    browser = Client()
    browser.force_login(user)
    return [(b"cookie", f"sessionid={browser.cookies['sessionid'].value}".encode())]


async def tab(cookie: Any, topic: str) -> Any:
    client = RealtimeCommunicator(application, headers=cookie)
    assert (await client.connect())[0]
    await client.receive_frame()
    assert (await client.subscribe(topic))["type"] == "subscribed"
    await get_hub().registry_written()  # presence is read from the registry
    return client


async def next_event(client: Any) -> tuple[str, str]:
    frame = await client.receive_frame()
    return frame["event"], frame["data"]["username"]


async def test_presence_counts_a_user_with_two_tabs_once():
    ann, ben = await cookie_for("ann"), await cookie_for("ben")
    tabs = [
        await tab(ann, "public.lobby"),
        await tab(ann, "public.lobby"),
        await tab(ben, "public.lobby"),
        await tab(ben, "public.elsewhere"),
    ]
    present = await realtime.apresence("public.lobby")
    assert [(u["username"], u["connections"]) for u in present] == [("ann", 2), ("ben", 1)]
    await tabs[2].disconnect()
    assert [u["username"] for u in await realtime.apresence("public.lobby")] == ["ann"]
    for client in (tabs[0], tabs[1], tabs[3]):
        await client.disconnect()


async def test_join_and_leave_events_once_per_user():
    ann, ben = await cookie_for("cat"), await cookie_for("dan")
    first = await tab(ann, "room.kitchen")
    assert await next_event(first) == ("presence.join", "cat")
    second_tab = await tab(ann, "room.kitchen")  # same user: no event
    other = await tab(ben, "room.kitchen")
    assert await next_event(first) == ("presence.join", "dan")
    await other.disconnect()
    assert await next_event(first) == ("presence.leave", "dan")
    await second_tab.disconnect()
    assert await first.receive_nothing(0.4), "cat is still there in another tab"
    await first.disconnect()


async def test_topics_without_presence_get_no_events():
    client = await tab(await cookie_for("eve"), "public.quiet")
    assert await client.receive_nothing(0.4)
    await client.disconnect()
