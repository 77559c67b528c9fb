"""How an SSE stream fails or ends, as a client sees it (issue 14 item 4, issue 7): a backend
failure before streaming is a 503 with ``Retry-After``, never 200 and then silence; a stream
the server ends says why in a final ``close`` event."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import httpx
import pytest

from realtime.conf import DEFAULTS
from realtime.exceptions import CloseCode
from realtime.transports.sse import SSEStream
from tests.servers import Daphne, SSEReader, run_script

TOKEN_SCRIPT = """
import sys, django
django.setup()
from django.contrib.auth import get_user_model
import realtime
user = get_user_model().objects.get(username=sys.argv[1])
print(realtime.make_token(user, expires_in=float(sys.argv[2])))
"""


def short_token(database: str, username: str, seconds: float) -> str:
    """A token made by the nodes' own database (its auth hash must match)."""
    return run_script(database, TOKEN_SCRIPT, username, str(seconds))


@pytest.fixture(scope="module")
def node(database, private_redis) -> Iterator[Daphne]:
    env = {"RT_REDIS_URL": private_redis.url, "RT_PREFIX": f"rt-sse-end-{uuid.uuid4().hex[:6]}"}
    server = Daphne(database[0], env)
    yield server
    server.stop()


@pytest.mark.e2e
async def test_sse_stream_ends_with_a_close_event_at_token_expiry(node, database):
    token = await asyncio.to_thread(short_token, database[0], "alice", 4)
    headers = {"Authorization": f"Bearer {token}"}
    params = {"topic": f"public.end-{uuid.uuid4().hex[:8]}"}
    async with (
        httpx.AsyncClient(base_url=node.http, timeout=10) as http,
        http.stream("GET", "/realtime/sse/", params=params, headers=headers) as response,
    ):
        assert response.status_code == 200
        events = SSEReader(response)
        kinds = []
        while (frame := await events.frame(timeout=10))["type"] != "close":
            kinds.append(frame["type"])
        # the expiry warning is due at once for so short a token: it may come anywhere
        assert [kind for kind in kinds if kind != "token-expiring"] == ["welcome", "subscribed"]
        assert (frame["_event"], frame["type"], frame["code"]) == (
            "close",
            "close",
            CloseCode.TOKEN_EXPIRED,
        )
        assert frame["reason"]
        with pytest.raises(EOFError):
            await events.next()


@pytest.mark.e2e
async def test_sse_welcome_announces_the_keepalive_interval_as_heartbeat(node, database):
    headers = {"Authorization": f"Bearer {database[1]['alice']['token']}"}
    params = {"topic": f"public.hb-{uuid.uuid4().hex[:8]}"}
    async with (
        httpx.AsyncClient(base_url=node.http, timeout=10) as http,
        http.stream("GET", "/realtime/sse/", params=params, headers=headers) as response,
    ):
        welcome = await SSEReader(response).frame()
    assert welcome["heartbeat_interval_ms"] == int(DEFAULTS["SSE_KEEPALIVE"] * 1000)
    assert welcome["heartbeat_timeout_ms"] == int(DEFAULTS["HEARTBEAT_TIMEOUT"] * 1000)


@pytest.mark.e2e
async def test_sse_answers_503_with_retry_after_while_redis_is_down(node, database, private_redis):
    headers = {"Authorization": f"Bearer {database[1]['alice']['token']}"}
    async with httpx.AsyncClient(base_url=node.http, timeout=20) as http:
        # the node works first (its hub is up), then Redis goes away
        params = {"topic": f"public.up-{uuid.uuid4().hex[:8]}"}
        async with http.stream("GET", "/realtime/sse/", params=params, headers=headers) as ok:
            assert ok.status_code == 200
            assert (await SSEReader(ok).frame())["type"] == "welcome"
        private_redis.stop()
        try:
            params = {"topic": f"public.down-{uuid.uuid4().hex[:8]}"}
            response = await http.get("/realtime/sse/", params=params, headers=headers)
            assert response.status_code == 503, response.text[:200]
            assert response.headers["Retry-After"].isdigit()
            assert response.json()["error"]["code"] == "unavailable"
        finally:
            private_redis.start()


# ---- the final event, without a server ---------------------------------------------------------


def drain(stream: SSEStream) -> list[str]:
    items = [event.decode() for event in stream.pending]
    stream.pending.clear()
    return items


async def test_a_slow_sse_reader_gets_a_final_close_event_4503(realtime_settings):
    realtime_settings(OUTBOUND_QUEUE_SIZE=3)
    stream = SSEStream()
    stream.start()
    for n in range(5):
        stream.send_text(f'{{"type":"notice","text":"{n}"}}')
    items = drain(stream)
    assert len(items) == 4 and stream.ended  # 3 events, then the close event
    assert items[3] == (
        f'event: close\ndata: {{"type":"close","code":{CloseCode.SLOW_CONSUMER},'
        '"reason":"slow consumer"}\n\n'
    )


async def test_an_sse_stream_closed_before_it_starts_ends_after_its_held_frames():
    stream = SSEStream()
    stream.send_text('{"type":"welcome"}')
    stream.close(CloseCode.DISCONNECTED, "bye")
    stream.send_text('{"type":"notice","text":"late"}')
    assert not stream.pending
    stream.start()
    items = drain(stream)
    assert items[0].startswith("event: welcome\n")
    assert '"code":4403' in items[1]
    assert len(items) == 2 and stream.ended
