"""Which HTTP status a refused SSE or long-poll request gets: 401 ``auth_required`` when it
carried no credentials at all, 403 ``forbidden`` when an authenticated caller may not have the
topic; over a real daphne, with httpx."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.servers import Daphne

pytestmark = pytest.mark.e2e

PATHS = ["/realtime/sse/", "/realtime/poll/"]


@pytest.fixture(scope="module")
def node(database) -> Iterator[Daphne]:
    server = Daphne(database[0], {"RT_POLL_TIMEOUT": "0.2", "RT_SSE_KEEPALIVE": "0.5"})
    yield server
    server.stop()


def bearer(database: Any, name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {database[1][name]['token']}"}


async def get(
    node: Daphne, path: str, topics: list[str], cookies: Any = None, **kwargs: Any
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=node.http, timeout=10, cookies=cookies) as http:
        params = {"topic": topics}
        if path.endswith("sse/"):
            async with http.stream("GET", path, params=params, **kwargs) as response:
                if response.status_code == 200:
                    return response  # a stream: do not read it to the end
                await response.aread()
                return response
        return await http.get(path, params=params, **kwargs)


@pytest.mark.parametrize("path", PATHS)
async def test_no_credentials_and_a_refused_topic_is_401_auth_required(node, path):
    response = await get(node, path, ["public.open", "staff.board"])
    assert response.status_code == 401, response.text
    error = response.json()["error"]
    assert (error["code"], error["ref"]) == ("auth_required", "staff.board")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="realtime"'


@pytest.mark.parametrize("path", PATHS)
async def test_an_authenticated_caller_refused_a_topic_is_403_forbidden(node, database, path):
    response = await get(node, path, ["staff.board"], headers=bearer(database, "alice"))
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert (error["code"], error["ref"]) == ("forbidden", "staff.board")
    assert "WWW-Authenticate" not in response.headers


@pytest.mark.parametrize("path", PATHS)
async def test_a_logged_out_session_counts_as_no_credentials(node, path):
    async with httpx.AsyncClient(base_url=node.http, timeout=10) as http:
        logged_in = await http.post("/test/login/", json={"username": "alice", "password": "pw"})
        assert logged_in.status_code == 204
        own = await http.get("/realtime/poll/", params={"topic": "room.lobby"})
        assert own.status_code == 200, own.text  # room.* needs a logged-in user
        await http.post("/test/logout/")
        cookies = dict(http.cookies)
    response = await get(node, path, ["room.lobby"], cookies=cookies)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "auth_required"


@pytest.mark.parametrize("path", PATHS)
async def test_without_credentials_an_open_topic_is_served(node, path):
    response = await get(node, path, ["public.open"])
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("path", PATHS)
async def test_a_bad_token_is_401_invalid_token_with_the_bearer_challenge(node, path):
    response = await get(node, path, ["public.open"], headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_token"
    challenge = 'Bearer realm="realtime", error="invalid_token"'
    assert response.headers["WWW-Authenticate"] == challenge


async def test_the_ticket_endpoint_answers_201_with_the_ticket_or_401(node, database):
    async with httpx.AsyncClient(base_url=node.http, timeout=10) as http:
        refused = await http.post("/realtime/ticket/")
        issued = await http.post("/realtime/ticket/", headers=bearer(database, "alice"))
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "auth_required"
    assert issued.status_code == 201
    body = issued.json()
    assert set(body) == {"ticket", "expires_in_ms"}
    assert body["expires_in_ms"] == 10_000
    assert isinstance(body["ticket"], str) and 0 < len(body["ticket"]) <= 64
