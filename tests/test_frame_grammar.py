"""The grammar docs/protocol.md settles: a frame's `type` (missing or not a string is
`invalid_frame`, an unknown string `unknown_type`) and topic names (1 to 200 ASCII
characters: a letter or digit, then letters, digits, `_ . : @ -`)."""

from __future__ import annotations

from typing import Any

import pytest

from realtime import protocol
from realtime.exceptions import InvalidFrame, InvalidTopic, UnknownType
from realtime.testing import RealtimeCommunicator
from realtime.topics import validate_topic
from tests.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ('{"topic":"public.x"}', "invalid_frame"),
        ('{"type":null}', "invalid_frame"),
        ('{"type":7}', "invalid_frame"),
        ('{"type":["subscribe"]}', "invalid_frame"),
        ('{"type":"Subscribe","topic":"public.x"}', "unknown_type"),
        ('{"type":""}', "unknown_type"),
        ('["subscribe"]', "invalid_json"),
    ],
)
async def test_type_errors_have_their_documented_codes(text: str, code: str) -> None:
    expected = {"invalid_frame": InvalidFrame, "unknown_type": UnknownType}.get(code)
    if expected is not None:
        with pytest.raises(expected) as raised:
            protocol.parse_client_frame(text)
        assert raised.value.code == code
    client = RealtimeCommunicator(application)
    connected, _ = await client.connect()
    assert connected
    assert (await client.receive_frame())["type"] == "welcome"
    await client.send_to(text_data=text)
    answer = await client.receive_frame()
    assert (answer["type"], answer["code"]) == ("error", code)
    await client.disconnect()


VALID = ["a", "0", "order.42", "user:7@site", "a-b_c.d:e@f", "A" * 200, "9" + "x" * 199]
INVALID = [
    "",
    "a" * 201,
    "_a",
    ".a",
    "-a",
    "a b",
    "a~b",
    "a,b",
    "a/b",
    "caf\N{LATIN SMALL LETTER E WITH ACUTE}",
    "\N{DIGIT ONE}\N{ARABIC-INDIC DIGIT ONE}",
    "a\n",
]


@pytest.mark.parametrize("topic", VALID)
def test_valid_topics(topic: str) -> None:
    assert validate_topic(topic) == topic


@pytest.mark.parametrize("topic", INVALID)
def test_invalid_topics(topic: str) -> None:
    with pytest.raises(InvalidTopic):
        validate_topic(topic)


@pytest.mark.parametrize("topic", [INVALID[1], INVALID[6], INVALID[9]])
async def test_an_invalid_topic_is_answered_invalid_topic(topic: Any) -> None:
    client = RealtimeCommunicator(application)
    connected, _ = await client.connect()
    assert connected
    assert (await client.receive_frame())["type"] == "welcome"
    answer = await client.subscribe(topic)
    assert (answer["type"], answer["code"]) == ("error", "invalid_topic")
    await client.disconnect()
