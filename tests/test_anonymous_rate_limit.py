"""Callers without credentials are rate limited too (by client address, or by session): rapid
credential-less long-polls and SSE opens get 429 within the RATE/BURST bounds, over a real
daphne."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.servers import Daphne

pytestmark = pytest.mark.e2e

RATE, BURST = 2.0, 5
ATTEMPTS = 40


@pytest.fixture
def node(database) -> Iterator[Daphne]:
    # A fresh process per test: the buckets are per process, and every test starts full.
    server = Daphne(
        database[0], {"RT_POLL_TIMEOUT": "0.2", "RT_RATE": str(RATE), "RT_BURST": str(BURST)}
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
