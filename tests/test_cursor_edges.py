"""Cursors at the edges (docs/protocol.md, "Cursors"): a cursor past the log's head in the
current epoch is answered `reset` `cursor_ahead` (not `epoch_changed`: the epoch is the same);
negative, non-ASCII or oversized offsets are `invalid_frame` (400 over HTTP)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async

import realtime
from realtime.exceptions import InvalidFrame
from realtime.protocol import parse_cursors
from realtime.testing import RealtimeCommunicator
from tests.asgi import application
from tests.servers import Daphne

pytestmark = pytest.mark.django_db(transaction=True)


async def connect() -> Any:
    client = RealtimeCommunicator(application)
    connected, _ = await client.connect()
    assert connected
    assert (await client.receive_frame())["type"] == "welcome"
    return client


async def publish(topic: str, data: Any) -> None:
    await sync_to_async(realtime.publish)(topic, "n", data)


async def test_a_cursor_past_the_head_is_reset_cursor_ahead_and_goes_on_live(backend):
    client = await connect()
    subscribed = await client.subscribe("public.ahead")
    epoch = subscribed["epoch"]
    await publish("public.ahead", 1)
    assert (await client.receive_frame())["offset"] == 1
    await client.disconnect()
    again = await connect()
    await again.send_frame(
        {"type": "subscribe", "topic": "public.ahead", "cursor": {"epoch": epoch, "offset": 9}}
    )
    reset = await again.receive_frame()
    assert (reset["type"], reset["reason"], reset["epoch"], reset["offset"]) == (
        "reset",
        "cursor_ahead",
        epoch,
        1,
    )
    answer = await again.receive_frame()
    assert (answer["type"], answer["recovered"], answer["offset"]) == ("subscribed", False, 1)
    await publish("public.ahead", 2)
    message = await again.receive_frame()
    assert (message["type"], message["offset"], message["data"]) == ("message", 2, 2)
    await again.disconnect()


@pytest.mark.parametrize("offset", [-1, 1.0, True, "1", None, 10**18])
async def test_a_cursor_offset_that_is_not_an_integer_from_zero_is_invalid_frame(offset):
    client = await connect()
    cursor = {"epoch": "e", "offset": offset}
    await client.send_frame({"type": "subscribe", "topic": "public.neg", "cursor": cursor})
    answer = await client.receive_frame()
    assert (answer["type"], answer["code"]) == ("error", "invalid_frame")
    await client.disconnect()


# ---- over HTTP, on a real daphne ---------------------------------------------------------------


@pytest.fixture(scope="module")
def node(database) -> Iterator[Daphne]:
    server = Daphne(database[0], {"RT_POLL_TIMEOUT": "0.5"})
    yield server
    server.stop()


@pytest.mark.e2e
@pytest.mark.parametrize("offset", ["-1", "\N{SUPERSCRIPT TWO}", "1" * 19, "", "1e3"])
@pytest.mark.parametrize("path", ["/realtime/sse/", "/realtime/poll/"])
async def test_a_bad_offset_in_a_cursor_string_is_400_invalid_frame(node, database, path, offset):
    headers = {"Authorization": f"Bearer {database[1]['alice']['token']}"}
    params = {"topic": "public.neg", "cursor": f"public.neg~abc~{offset}"}
    async with httpx.AsyncClient(base_url=node.http, timeout=10) as http:
        response = await http.get(path, params=params, headers=headers)
    assert response.status_code == 400, response.text[:200]
    assert response.json()["error"]["code"] == "invalid_frame"


def test_a_cursor_string_over_16384_characters_is_invalid_frame():
    # one requested topic's position, padded with positions of topics not requested
    padding = ",".join(f"public.pad{n:05}~abc~1" for n in range(745))
    cursor = f"public.long~abc~1,{padding}"
    assert 16384 < len(cursor) < 16384 + 64, len(cursor)
    with pytest.raises(InvalidFrame, match="too long"):
        parse_cursors(cursor)
    at_limit = cursor[:16384].rsplit(",", 1)[0]
    assert parse_cursors(at_limit)["public.long"] == {"epoch": "abc", "offset": 1}
