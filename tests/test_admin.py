"""The admin console: permissions, the listing (search, filters, sort, pages), the JSON the
page polls, the actions on real connections, and the per-topic page."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from realtime.backends import get_log, get_registry
from realtime.console import listing
from realtime.console.topics import publish_rate
from realtime.hub import get_hub
from realtime.log import Entry as LogEntry
from realtime.loop import run_sync
from realtime.registry import Entry
from realtime.testing import RealtimeCommunicator
from tests.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

CONSOLE = "/admin/realtime/liveconnection/"
POLL = CONSOLE + "poll/"
ACTIONS = CONSOLE + "actions/"


def make_user(name: str, *perms: str, staff: bool = True, superuser: bool = False) -> Any:
    user = get_user_model().objects.create_user(
        name, password="pw", is_staff=staff, is_superuser=superuser
    )
    for codename in perms:
        user.user_permissions.add(
            Permission.objects.get(codename=codename, content_type__app_label="realtime")
        )
    return user


def browser(user: Any = None, **options: Any) -> Client:
    client = Client(**options)
    if user is not None:
        client.force_login(user)
    return client


@pytest.fixture
def viewer() -> Client:
    return browser(make_user("viewer", "view_connections"))


@pytest.fixture
def manager() -> Client:
    return browser(make_user("manager", "manage_connections"))


def entry(n: int, node: str = "node-a", **fields: Any) -> Entry:
    values: dict[str, Any] = {
        "id": f"c{n:05d}",
        "node": node,
        "address": "local.0",
        "transport": ("websocket", "sse", "longpoll")[n % 3],
        "user_id": n % 5,
        "username": f"user{n % 5}",
        "topics": [f"room.{n % 4}"],
        "client": f"10.1.{n // 250}.{n % 250}:40000",
        "user_agent": "Mozilla/5.0 test",
        "connected_at": 1_700_000_000.0 + n,
        "last_seen": time.time() - n,
        "messages_in": n,
        "messages_out": 10 * n,
        "pending_acks": n % 2,
    }
    return Entry(**{**values, **fields})


def put(node: str, entries: list[Entry]) -> None:
    run_sync(get_registry().refresh(node, entries, 30))


def ids(response: Any) -> list[str]:
    return [row["id"] for row in response.context["rows"]]


# ---- permissions --------------------------------------------------------------------------


def test_console_is_linked_from_the_admin_index_under_realtime():
    client = browser(make_user("root", superuser=True))
    for url in ("/admin/", "/admin/realtime/"):
        response = client.get(url)
        assert response.status_code == 200
        assert f'href="{CONSOLE}"' in response.content.decode()
        assert "Live connections" in response.content.decode()


def test_anonymous_visitors_are_sent_to_the_login_page():
    for url in (CONSOLE, POLL, CONSOLE + "topic/room.1/"):
        response = browser().get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/?next=")


def test_staff_without_the_permission_get_403_and_no_index_entry():
    client = browser(make_user("plainstaff"))
    for url in (CONSOLE, POLL, CONSOLE + "topic/room.1/"):
        assert client.get(url).status_code == 403
    assert client.post(ACTIONS, {"action": "disconnect", "ids": ["x"]}).status_code == 403
    assert CONSOLE not in client.get("/admin/").content.decode()


def test_the_permission_without_staff_status_is_not_enough():
    response = browser(make_user("outsider", "manage_connections", staff=False)).get(CONSOLE)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_view_permission_shows_the_console_without_actions(viewer):
    put("node-a", [entry(1)])
    response = viewer.get(CONSOLE)
    assert response.status_code == 200
    assert ids(response) == ["c00001"]
    assert 'value="disconnect"' not in response.content.decode()
    assert viewer.get(POLL).status_code == 200
    assert viewer.post(ACTIONS, {"action": "disconnect", "ids": ["c00001"]}).status_code == 403


def test_manage_permission_shows_the_actions(manager):
    put("node-a", [entry(1)])
    page = manager.get(CONSOLE).content.decode()
    assert 'value="disconnect"' in page
    assert 'value="notify"' in page
    assert 'name="ids" value="c00001"' in page


def test_actions_are_csrf_protected():
    client = browser(make_user("csrfless", "manage_connections"), enforce_csrf_checks=True)
    response = client.post(ACTIONS, {"action": "disconnect", "ids": ["c00001"]})
    assert response.status_code == 403
    assert client.get(ACTIONS).status_code == 405


# ---- the listing --------------------------------------------------------------------------


def test_lists_every_column_of_a_connection(viewer):
    put("node-a", [entry(7, topics=["room.1", "user.7"], user_agent="Firefox/140 on Linux")])
    response = viewer.get(CONSOLE)
    [row] = response.context["rows"]
    assert (row["user"], row["transport"], row["node"], row["topics"]) == (
        "user2",
        "sse",
        "node-a",
        ["room.1", "user.7"],
    )
    assert (row["client"], row["messages_in"], row["messages_out"], row["pending_acks"]) == (
        "10.1.0.7:40000",
        7,
        70,
        1,
    )
    page = response.content.decode()
    for text in ("Firefox/140 on Linux", "10.1.0.7:40000", "user2", "Pending ACKs"):
        assert text in page
    assert f'href="{CONSOLE}topic/user.7/"' in page


def test_filters_by_node_transport_and_topic(viewer):
    put("node-a", [entry(n) for n in range(0, 30)])
    put("node-b", [entry(n, node="node-b") for n in range(30, 40)])
    assert len(ids(viewer.get(CONSOLE, {"node": "node-b"}))) == 10
    assert set(ids(viewer.get(CONSOLE, {"transport": "sse"}))) == {
        f"c{n:05d}" for n in range(40) if n % 3 == 1
    }
    assert set(ids(viewer.get(CONSOLE, {"topic": "room.2", "node": "node-a"}))) == {
        f"c{n:05d}" for n in range(30) if n % 4 == 2
    }
    assert ids(viewer.get(CONSOLE, {"topic": "nobody.listens"})) == []


def test_filter_choices_come_from_the_data(viewer):
    put("node-a", [entry(n) for n in range(6)])
    put("node-b", [entry(n, node="node-b", transport="sse") for n in range(6, 8)])
    filters = dict(viewer.get(CONSOLE, {"node": "node-b"}).context["filters"])
    nodes = {c["display"]: (c["count"], c["selected"]) for c in filters["node"]}
    assert nodes == {"All": (None, False), "node-a": (6, False), "node-b": (2, True)}
    transports = {c["display"]: c["count"] for c in filters["transport"]}
    assert transports == {"All": None, "sse": 4, "websocket": 2, "longpoll": 2}
    assert [c["display"] for c in filters["topic"]][:2] == ["All", "room.0"]
    chosen = next(c for c in filters["transport"] if c["display"] == "sse")
    assert chosen["query_string"] == "?node=node-b&transport=sse"


def test_search_by_user_connection_id_and_client_address(viewer):
    put("node-a", [entry(n) for n in range(20)])
    assert set(ids(viewer.get(CONSOLE, {"q": "USER3"}))) == {"c00003", "c00008", "c00013", "c00018"}
    assert ids(viewer.get(CONSOLE, {"q": "c00017"})) == ["c00017"]
    assert ids(viewer.get(CONSOLE, {"q": "10.1.0.12:"})) == ["c00012"]
    page = viewer.get(CONSOLE, {"q": "nobody"}).content.decode()
    assert "No live connection matches." in page


def test_sorts_by_columns(viewer):
    put("node-a", [entry(n, username=name) for n, name in enumerate(["cy", "al", "bo"])])
    assert ids(viewer.get(CONSOLE)) == ["c00002", "c00001", "c00000"]  # newest first
    assert ids(viewer.get(CONSOLE, {"o": "user"})) == ["c00001", "c00002", "c00000"]
    assert ids(viewer.get(CONSOLE, {"o": "-user"})) == ["c00000", "c00002", "c00001"]
    assert ids(viewer.get(CONSOLE, {"o": "messages_out"})) == ["c00000", "c00001", "c00002"]
    assert ids(viewer.get(CONSOLE, {"o": "-last_seen"})) == ["c00000", "c00001", "c00002"]
    assert ids(viewer.get(CONSOLE, {"o": "bogus"})) == ["c00002", "c00001", "c00000"]
    columns = {c["name"]: c for c in viewer.get(CONSOLE, {"o": "user"}).context["columns"]}
    assert (columns["user"]["sorted"], columns["user"]["url"]) == ("ascending", "?o=-user")
    assert columns["transport"]["url"] is None


def test_pages_of_fifty(viewer):
    put("node-a", [entry(n) for n in range(120)])
    first = viewer.get(CONSOLE)
    assert len(ids(first)) == 50
    assert ids(first)[0] == "c00119"
    assert [link["number"] for link in first.context["page_links"]] == [1, 2, 3]
    third = viewer.get(CONSOLE, {"p": "3"})
    assert ids(third) == [f"c{n:05d}" for n in range(19, -1, -1)]
    assert ids(viewer.get(CONSOLE, {"p": "99"})) == ids(third), "past the end: the last page"
    assert ids(viewer.get(CONSOLE, {"p": "x"})) == ids(first)
    assert '<span class="this-page">3</span>' in third.content.decode()
    assert "120 live connections" in third.content.decode()


def test_the_poll_endpoint_returns_rows_and_totals(viewer):
    put("node-a", [entry(n) for n in range(4)])
    put("node-b", [entry(n, node="node-b") for n in range(4, 6)])
    response = viewer.get(POLL, {"node": "node-b"})
    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0")
    data = response.json()
    assert (data["total"], data["page"], data["pages"]) == (2, 1, 1)
    assert [e["id"] for e in data["entries"]] == ["c00005", "c00004"]
    totals = data["totals"]
    assert (totals["connections"], totals["nodes"]) == (6, 2)
    assert (totals["messages_in"], totals["messages_out"]) == (15, 150)
    assert abs(totals["time"] - time.time()) < 5
    assert 'data-id="c00005"' in data["html"]["rows"]
    assert 'data-id="c00001"' not in data["html"]["rows"]
    assert "2 live connections" in data["html"]["paginator"]
    assert "node-a" in data["html"]["filters"]
    put("node-c", [entry(9, node="node-c")])
    assert viewer.get(POLL).json()["totals"]["connections"] == 7, "fresh data on every poll"


def test_an_unreachable_registry_is_reported(viewer, realtime_settings):
    realtime_settings(REDIS_URL="redis://127.0.0.1:1/0", PUBLISH_TIMEOUT=2.0)
    from realtime import backends

    backends.reset()
    page = viewer.get(CONSOLE)
    assert page.status_code == 200
    assert "The registry could not be read" in page.content.decode()
    response = viewer.get(POLL)
    assert response.status_code == 503
    assert "could not be read" in response.json()["error"]
    backends.reset()


# ---- actions on real connections ------------------------------------------------------------


async def connect() -> Any:
    client = RealtimeCommunicator(application)
    assert (await client.connect())[0]
    client.connection_id = (await client.receive_frame())["connection_id"]
    await get_hub().registry_written()  # the registry is written in the background
    return client


@sync_to_async
def manager_post(data: dict[str, Any]) -> Any:
    client = browser(make_user(f"m{time.monotonic_ns()}", "manage_connections"))
    return client.post(ACTIONS, data, follow=True)


def notes(response: Any) -> list[str]:
    return [str(message) for message in response.context["messages"]]


async def test_disconnect_action_closes_the_connection_with_4403(backend):
    assert type(get_registry()).__name__ == ("RedisRegistry" if backend else "MemoryRegistry")
    client = await connect()
    other = await connect()
    response = await manager_post(
        {"action": "disconnect", "ids": [client.connection_id], "next": "?transport=websocket"}
    )
    assert response.redirect_chain == [(CONSOLE + "?transport=websocket", 302)]
    assert notes(response) == ["Disconnect sent to 1 connection."]
    frame = await client.receive_frame(3)  # the last frame says why, for the user
    assert frame == {"type": "close", "code": 4403, "reason": "disconnected by an operator"}
    output = await client.receive_output(3)
    assert (output["type"], output["code"]) == ("websocket.close", 4403)
    assert await other.receive_nothing(0.2), "only the selected connection is closed"
    await other.disconnect()


async def test_test_message_action_delivers_a_notice(backend):
    clients = [await connect(), await connect()]
    response = await manager_post(
        {"action": "notify", "ids": [c.connection_id for c in clients], "text": " hello ops "}
    )
    assert notes(response) == ["Test message sent to 2 connections."]
    for client in clients:
        assert await client.receive_frame(3) == {"type": "notice", "text": "hello ops"}
        await client.disconnect()


def test_actions_say_what_is_missing_or_gone_and_are_logged(manager, caplog):
    put("node-a", [entry(1)])

    def post(data: dict[str, Any]) -> list[str]:
        return notes(manager.post(ACTIONS, data, follow=True))

    assert post({"action": "disconnect"}) == ["Select one or more connections first."]
    assert post({"action": "notify", "ids": ["c00001"], "text": "  "}) == [
        "Type the test message to send."
    ]
    assert post({"action": "explode", "ids": ["c00001"]}) == ["Unknown action 'explode'."]
    with caplog.at_level(logging.INFO, logger="realtime.console"):
        assert post({"action": "notify", "ids": ["c00001", "gone"], "text": "hi"}) == [
            "Test message sent to 1 connection. 1 of the selected had already gone."
        ]
    assert caplog.messages == ["manager: notify for 1 of 2 selected connection(s): c00001 gone"]
    response = manager.post(ACTIONS, {"action": "disconnect", "next": "//evil.example/"})
    assert response["Location"] == CONSOLE, "only a query string is kept from `next`"


# ---- the per-topic page -------------------------------------------------------------------


def append(topic: str, times: list[float]) -> None:
    log = get_log()
    for n, at in enumerate(times):
        run_sync(log.append(topic, f"m{n}", "tick", "{}", False, at))


@pytest.mark.parametrize("backend_name", ["memory", "redis"])
def test_topic_page_shows_subscribers_log_and_rate(viewer, backend_name, request):
    if backend_name == "redis":
        request.getfixturevalue("use_redis")
    assert type(get_log()).__name__ == {"memory": "MemoryLog", "redis": "RedisLog"}[backend_name]
    now = time.time()
    # 10 messages two minutes ago, then 30 over the last minute: 0.5 messages/s
    append("room.1", [now - 120 + n for n in range(10)] + [now - 59 + 2 * n for n in range(30)])
    put("node-a", [entry(n) for n in range(12)])  # room.1: n % 4 == 1, three of them
    response = viewer.get(CONSOLE + "topic/room.1/")
    assert response.status_code == 200
    stats = response.context["stats"]
    assert (stats.last_offset, stats.log_length, stats.first_offset) == (40, 40, 1)
    assert stats.rate == pytest.approx(0.5)
    assert stats.subscribers.total == 3
    assert sorted(ids(response)) == ["c00001", "c00005", "c00009"]
    page = response.content.decode()
    assert '<td id="rt-last-offset">40</td>' in page
    assert "0.50 messages/s" in page
    assert f'href="{CONSOLE}?topic=room.1"' in page


@pytest.mark.parametrize("backend_name", ["memory", "redis"])
def test_topic_log_length_counts_what_is_still_available(viewer, backend_name, request):
    if backend_name == "redis":
        request.getfixturevalue("use_redis")
    # after use_redis, so that its settings are undone first (overrides nest)
    realtime_settings = request.getfixturevalue("realtime_settings")
    realtime_settings(HISTORY_SIZE=8, HISTORY_TTL=100.0)
    from realtime import backends

    backends.reset()
    now = time.time()
    append("room.count", [now - 5 + n * 0.1 for n in range(20)])  # trimmed by count
    stats = viewer.get(CONSOLE + "topic/room.count/").context["stats"]
    assert (stats.last_offset, stats.log_length, stats.first_offset) == (20, 8, 13)
    # trimmed by age: 5 entries older than HISTORY_TTL, then 3 fresh ones
    append("room.age", [now - 500 + n for n in range(5)] + [now - 3, now - 2, now - 1])
    stats = viewer.get(CONSOLE + "topic/room.age/").context["stats"]
    assert (stats.last_offset, stats.log_length, stats.first_offset) == (8, 3, 6)
    empty = viewer.get(CONSOLE + "topic/room.never/").context["stats"]
    assert (empty.last_offset, empty.log_length, empty.rate) == (0, 0, 0.0)


def test_an_invalid_topic_is_404(viewer):
    assert viewer.get(CONSOLE + "topic/-bad-/").status_code == 404


def test_publish_rate_of_a_log_trimmed_within_the_minute():
    now = 1000.0
    entries = [LogEntry(100 + n, f"m{n}", "e", "{}", False, now - 10 + n) for n in range(10)]
    assert publish_rate(entries, now) == pytest.approx(1.0)
    assert publish_rate([], now) == 0.0
    whole = [LogEntry(1 + n, f"m{n}", "e", "{}", False, now - 10 + n) for n in range(10)]
    assert publish_rate(whole, now) == pytest.approx(10 / 60)


def test_durations_read_short():
    assert [listing.ago(s) for s in (-1, 4, 61, 3600, 3720, 86400 + 7200)] == [
        "0 s",
        "4 s",
        "1 min",
        "1 h",
        "1 h 2 min",
        "1 d 2 h",
    ]
