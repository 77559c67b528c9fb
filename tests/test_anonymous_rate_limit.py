"""HTTP rate limits over a real daphne. Callers without credentials are rate limited too (by
client address, or by session): rapid credential-less long-polls and SSE opens get 429 within
the RATE/BURST bounds. POSTed acks spend a bucket of their own."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.servers import Daphne, run_script

pytestmark = pytest.mark.e2e

RATE, BURST = 2.0, 5
ATTEMPTS = 40


@pytest.fixture
def node(request: pytest.FixtureRequest, database) -> Iterator[Daphne]:
    # A fresh process per test: the buckets are per process, and every test starts full. A
    # test may ask for another RATE (indirect parametrization).
    rate = getattr(request, "param", RATE)
    server = Daphne(
        database[0], {"RT_POLL_TIMEOUT": "0.2", "RT_RATE": str(rate), "RT_BURST": str(BURST)}
    )
    yield server
    server.stop()


def topic() -> str:
    return f"public.rl-{uuid.uuid4().hex[:8]}"


async def rapid(http: httpx.AsyncClient, path: str, **kwargs: object) -> tuple[list[int], float]:
    """Statuses of ATTEMPTS requests one after the other, and the seconds they took."""
    statuses = []
    started = time.monotonic()
    for _ in range(ATTEMPTS):
        async with http.stream("GET", path, params={"topic": topic()}, **kwargs) as response:
            statuses.append(response.status_code)  # an SSE stream is not read: just closed
    return statuses, time.monotonic() - started


def assert_limited(statuses: list[int], elapsed: float) -> None:
    assert 429 in statuses, statuses
    assert set(statuses) <= {200, 429}, statuses
    # A full bucket of BURST, refilled at RATE per second while the requests ran.
    assert statuses.count(200) <= BURST + RATE * elapsed + 1, (statuses, elapsed)
    assert statuses[:BURST] == [200] * BURST, statuses


@pytest.mark.parametrize("path", ["/realtime/poll/", "/realtime/sse/"])
async def test_rapid_requests_without_credentials_hit_429(node, path):
    async with httpx.AsyncClient(base_url=node.http, timeout=10) as http:
        statuses, elapsed = await rapid(http, path)
        assert_limited(statuses, elapsed)
        refused = await http.get(path, params={"topic": topic()})
    if refused.status_code == 429:
        assert refused.json()["error"]["code"] == "rate_limited"


async def test_the_anonymous_bucket_is_not_an_authenticated_users(node, database):
    alice = {"Authorization": f"Bearer {database[1]['alice']['token']}"}
    async with httpx.AsyncClient(base_url=node.http, timeout=10) as http:
        statuses, _ = await rapid(http, "/realtime/poll/")
        assert 429 in statuses
        response = await http.get("/realtime/poll/", params={"topic": topic()}, headers=alice)
    assert response.status_code == 200, response.text


# An anonymous session that holds data, as a site's cart or preferences would make one.
SESSION_SCRIPT = """
import json, django
django.setup()
from django.contrib.sessions.backends.db import SessionStore
session = SessionStore()
session["cart"] = [1, 2]
session.create()
print(json.dumps({"key": session.session_key}))
"""


def anonymous_session(database: str) -> str:
    return str(json.loads(run_script(database, SESSION_SCRIPT))["key"])


# One token per 100 s: the emptied bucket cannot refill between the two clients, however
# slow the machine.
@pytest.mark.parametrize("node", [0.01], indirect=True)
async def test_a_made_up_session_cookie_does_not_buy_a_fresh_bucket(node):
    async with httpx.AsyncClient(base_url=node.http, timeout=10) as http:
        statuses, _ = await rapid(http, "/realtime/poll/")
        assert 429 in statuses
    forged = {"sessionid": uuid.uuid4().hex}
    async with httpx.AsyncClient(base_url=node.http, timeout=10, cookies=forged) as http:
        response = await http.get("/realtime/poll/", params={"topic": topic()})
    assert response.status_code == 429, response.text


async def test_an_anonymous_session_has_its_own_bucket(node, database):
    session = {"sessionid": anonymous_session(database[0])}
    async with httpx.AsyncClient(base_url=node.http, timeout=10) as http:
        statuses, _ = await rapid(http, "/realtime/poll/")
        assert 429 in statuses  # the address's bucket is empty
    async with httpx.AsyncClient(base_url=node.http, timeout=10, cookies=session) as http:
        served = await http.get("/realtime/poll/", params={"topic": topic()})
        assert served.status_code == 200, served.text
        statuses, elapsed = await rapid(http, "/realtime/poll/")
    assert_limited([200, *statuses], elapsed)  # and it is limited in turn


async def test_ticket_requests_spend_the_users_bucket(node, database):
    alice = {"Authorization": f"Bearer {database[1]['alice']['token']}"}
    statuses = []
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=node.http, timeout=10, headers=alice) as http:
        for _ in range(ATTEMPTS):
            statuses.append((await http.post("/realtime/ticket/")).status_code)
    assert set(statuses) <= {201, 429}, statuses
    assert_limited([200 if s == 201 else s for s in statuses], time.monotonic() - started)


async def test_ack_posts_spend_a_bucket_of_their_own(node, database):
    alice = {"Authorization": f"Bearer {database[1]['alice']['token']}"}
    ack = {"type": "ack", "ids": ["m-1"]}
    async with httpx.AsyncClient(base_url=node.http, timeout=10, headers=alice) as http:
        statuses, _ = await rapid(http, "/realtime/poll/")
        assert 429 in statuses  # polls emptied the common bucket
        send = {"type": "send", "id": f"rl-{uuid.uuid4().hex[:8]}", "event": "echo"}
        assert (await http.post("/realtime/send/", json=send)).status_code == 429
        acks = []
        started = time.monotonic()
        for _ in range(ATTEMPTS):
            acks.append((await http.post("/realtime/send/", json=ack)).status_code)
    assert set(acks) <= {204, 429}, acks
    # acknowledging still works, and is limited in turn
    assert_limited([200 if s == 204 else s for s in acks], time.monotonic() - started)
