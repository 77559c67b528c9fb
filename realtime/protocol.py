"""The versioned JSON envelope (docs/protocol.md): strict parsing of client frames, and the
server frames, each built by one function here. Pure functions, no I/O."""

from __future__ import annotations

import json
import math
import re
from typing import TYPE_CHECKING, Any, Literal, NotRequired, TypedDict

from django.core.serializers.json import DjangoJSONEncoder

from realtime.exceptions import InvalidFrame, InvalidJSON, UnknownType

if TYPE_CHECKING:
    from realtime.conf import Config

VERSION = 1
SUBPROTOCOL = f"realtime.v{VERSION}"
TOKEN_SUBPROTOCOL_PREFIX = "realtime.token."
SUBPROTOCOL_PREFIX = "realtime.v"
#: Offered next to ``realtime.v1`` by a client that unpacks ``batch`` frames (WebSocket only).
BATCH_SUBPROTOCOL = "realtime.batch"
#: At most this many frames in one ``batch`` frame, and at most this many bytes of UTF-8 in
#: the frames it holds (a frame larger than that by itself is sent alone).
MAX_BATCH_FRAMES = 100
MAX_BATCH_BYTES = 65536

MESSAGE_ID_RE = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
EVENT_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,63}")
MAX_ACK_IDS = 100
MAX_OFFSET_DIGITS = 18
MAX_OFFSET = 10**MAX_OFFSET_DIGITS

# A JSON escape of a UTF-16 surrogate (\ud800-\udfff). Valid JSON, but a lone one decodes
# to a str that no UTF-8 encoder accepts, so a frame holding one could never be answered.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


class Cursor(TypedDict):
    epoch: str
    offset: int


class AuthFrame(TypedDict):
    type: Literal["auth"]
    token: str


class SubscribeFrame(TypedDict):
    type: Literal["subscribe"]
    topic: str
    cursor: NotRequired[Cursor | None]


class UnsubscribeFrame(TypedDict):
    type: Literal["unsubscribe"]
    topic: str


class AckFrame(TypedDict):
    type: Literal["ack"]
    ids: list[str]


class SendFrame(TypedDict):
    type: Literal["send"]
    id: str
    event: str
    data: NotRequired[Any]


class PongFrame(TypedDict):
    type: Literal["pong"]


ClientFrame = AuthFrame | SubscribeFrame | UnsubscribeFrame | AckFrame | SendFrame | PongFrame

# type -> (required fields, optional fields)
_FIELDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "auth": (frozenset({"token"}), frozenset()),
    "subscribe": (frozenset({"topic"}), frozenset({"cursor"})),
    "unsubscribe": (frozenset({"topic"}), frozenset()),
    "ack": (frozenset({"ids"}), frozenset()),
    "send": (frozenset({"id", "event"}), frozenset({"data"})),
    "pong": (frozenset(), frozenset()),
}
CLIENT_TYPES = frozenset(_FIELDS)


def _string(frame: dict[str, Any], field: str, pattern: re.Pattern[str] | None = None) -> None:
    value = frame[field]
    if not isinstance(value, str) or not value:
        raise InvalidFrame(f"'{field}' must be a non-empty string.")
    if pattern is not None and not pattern.fullmatch(value):
        raise InvalidFrame(f"'{field}' {value[:64]!r} does not match {pattern.pattern}.")


def parse_cursor(value: object) -> Cursor | None:
    """Validate a cursor object; ``None`` stays ``None``."""
    if value is None:
        return None
    if (
        not isinstance(value, dict)
        or set(value) != {"epoch", "offset"}
        or not isinstance(value["epoch"], str)
        or not 0 < len(value["epoch"]) <= 64
        or isinstance(value["offset"], bool)
        or not isinstance(value["offset"], int)
        or not 0 <= value["offset"] < MAX_OFFSET
    ):
        raise InvalidFrame(
            '\'cursor\' must be {"epoch": string of 1 to 64 characters, "offset": integer '
            "from 0 to 10**18 - 1}."
        )
    return Cursor(epoch=value["epoch"], offset=value["offset"])


def _not_json(name: str) -> Any:
    # Python's json module reads NaN and Infinity, which JSON (RFC 8259) has not; echoing them
    # back would send the client frames that are not JSON either.
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # 1e999 and the like: out of the range of a double
        raise ValueError(f"{text[:32]} is out of range")
    return value


def parse_client_frame(text: str) -> ClientFrame:
    """Parse and validate one client frame. Raises :class:`InvalidJSON`,
    :class:`UnknownType` or :class:`InvalidFrame` with a reason fit for the client."""
    try:
        frame = json.loads(text, parse_constant=_not_json, parse_float=_finite_float)
    except (ValueError, RecursionError):
        raise InvalidJSON("The frame is not valid JSON.") from None
    if not isinstance(frame, dict):
        raise InvalidJSON("A frame must be a JSON object.")
    if _SURROGATE_ESCAPE.search(text) and not encodable(frame):
        raise InvalidFrame("A string of the frame holds a lone UTF-16 surrogate.")
    kind = frame.get("type")
    if not isinstance(kind, str):
        raise InvalidFrame("A frame needs a string 'type'.")
    if kind not in _FIELDS:
        raise UnknownType(f"Unknown frame type {kind[:32]!r}.", ref=kind[:32])
    required, optional = _FIELDS[kind]
    fields = set(frame) - {"type"}
    if missing := required - fields:
        raise InvalidFrame(f"'{kind}' frame is missing {', '.join(sorted(missing))}.")
    if unknown := fields - required - optional:
        raise InvalidFrame(f"'{kind}' frame has unknown field(s) {', '.join(sorted(unknown))}.")
    if kind == "auth":
        _string(frame, "token")
    elif kind in ("subscribe", "unsubscribe"):
        if not isinstance(frame["topic"], str):
            raise InvalidFrame("'topic' must be a string.")
        if kind == "subscribe":
            frame["cursor"] = parse_cursor(frame.get("cursor"))
    elif kind == "ack":
        ids = frame["ids"]
        if not isinstance(ids, list) or not 0 < len(ids) <= MAX_ACK_IDS:
            raise InvalidFrame(f"'ids' must be a list of 1 to {MAX_ACK_IDS} message ids.")
        if not all(isinstance(i, str) and MESSAGE_ID_RE.fullmatch(i) for i in ids):
            raise InvalidFrame("'ids' must hold message id strings.")
    elif kind == "send":
        _string(frame, "id", MESSAGE_ID_RE)
        _string(frame, "event", EVENT_RE)
    return frame  # type: ignore[return-value]


def encodable(value: Any) -> bool:
    """Whether every string in a decoded JSON value (keys included) can be encoded as UTF-8,
    i.e. holds no lone surrogate."""
    try:
        json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return False
    return True


def encode(frame: dict[str, Any]) -> str:
    """Encode a server frame compactly; payloads go through DjangoJSONEncoder. Raises
    ``TypeError`` for what JSON cannot hold and ``ValueError`` for NaN or an infinity (not
    JSON) or a string that UTF-8 cannot encode (a lone surrogate): such a frame could never
    be read as JSON, or not be sent at all."""
    text = json.dumps(
        frame,
        cls=DjangoJSONEncoder,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError as error:
            raise ValueError(
                f"A string holds a lone surrogate ({text[error.start : error.end]!a}), which "
                "UTF-8 cannot encode."
            ) from None
    return text


def _printable(text: str) -> str:
    # what the client sent may be echoed: lone surrogates become \udXXX escapes
    return text.encode("utf-8", "backslashreplace").decode()


def error_frame(code: str, reason: str, ref: str | None = None) -> str:
    """An ``error`` frame; always encodable, whatever ``reason`` and ``ref`` echo."""
    frame: dict[str, Any] = {"type": "error", "code": code, "reason": _printable(reason)}
    if ref is not None:
        frame["ref"] = _printable(ref)
    return encode(frame)


# The head of a message frame holds only strings validated at publish time (topic, event and
# id patterns, the log's epoch): plain ASCII, so :func:`encode`'s checks (Django types, NaN,
# lone surrogates) have nothing to find, and one shared encoder saves building one per message.
_HEAD_ENCODER = json.JSONEncoder(separators=(",", ":"))


def message_frame(
    topic: str, event: str, data_json: str, message_id: str, epoch: str, offset: int, ack: bool
) -> str:
    """Encode a ``message`` frame around an already encoded ``data`` payload, so the payload
    is serialized once at publish time and never again on the fan-out path."""
    head = _HEAD_ENCODER.encode(
        {"type": "message", "topic": topic, "event": event, "id": message_id, "epoch": epoch}
    )
    return f'{head[:-1]},"offset":{offset},"ack":{"true" if ack else "false"},"data":{data_json}}}'


# ---- server frames -------------------------------------------------------------------------

PING = '{"type":"ping"}'
#: The answer to it as the bundled client (``JSON.stringify``) writes it: what most frames of
#: an idle connection are, so the connection recognizes it without parsing.
PONG = '{"type":"pong"}'


class ErrorBody(TypedDict):
    """The ``error`` of an ``ack`` that refuses a client message."""

    code: str
    reason: str


def welcome_frame(
    connection_id: str, user: Any, heartbeat_interval: float, config: Config, batch: bool = False
) -> str:
    """The ``welcome`` frame: the connection's id, its user's pk (None when anonymous), the
    interval and grace of the client's silence deadline, and the limits it must keep; with
    ``batch``, the bounds of the ``batch`` frames the connection will get."""
    frame: dict[str, Any] = {
        "type": "welcome",
        "v": VERSION,
        "connection_id": connection_id,
        "user": user,
        "heartbeat_interval_ms": int(heartbeat_interval * 1000),
        "heartbeat_timeout_ms": int(config.heartbeat_timeout * 1000),
        "limits": limits(config),
    }
    if batch:
        frame["batch"] = {"max_frames": MAX_BATCH_FRAMES, "max_bytes": MAX_BATCH_BYTES}
    return encode(frame)


def batch_frame(frames: list[str]) -> str:
    """``batch``: several encoded server frames in one, in the order they were sent."""
    return '{"type":"batch","frames":[' + ",".join(frames) + "]}"


def limits(config: Config) -> dict[str, Any]:
    """What a client must keep to: ``welcome``'s ``limits`` (and long-poll's
    ``X-Realtime-Limits`` header)."""
    return {
        "max_frame_bytes": config.max_frame_bytes,
        "max_topics": config.max_topics,
        "rate": config.rate,
        "burst": config.burst,
    }


def subscribed_frame(topic: str, epoch: str, offset: int, recovered: bool) -> str:
    """``subscribed``: ``topic``'s messages follow ``(epoch, offset)``; ``recovered`` says
    that the client's cursor was honoured."""
    return encode(
        {
            "type": "subscribed",
            "topic": topic,
            "epoch": epoch,
            "offset": offset,
            "recovered": recovered,
        }
    )


def unsubscribed_frame(topic: str) -> str:
    """``unsubscribed``: no more messages of ``topic``."""
    return encode({"type": "unsubscribed", "topic": topic})


def reset_frame(topic: str, reason: str | None, epoch: str, offset: int) -> str:
    """``reset``: ``topic`` continues from ``(epoch, offset)``, and the messages in between
    are lost for ``reason`` (``epoch_changed``, ``too_old``, ``cursor_ahead``)."""
    return encode(
        {"type": "reset", "topic": topic, "reason": reason, "epoch": epoch, "offset": offset}
    )


def result_ack(message_id: str, result: Any) -> str:
    """The ``ack`` of client message ``message_id`` with its handler's ``result``. Raises
    what :func:`encode` raises when ``result`` is not JSON."""
    return encode({"type": "ack", "id": message_id, "result": result})


def error_ack(message_id: str, error: ErrorBody) -> str:
    """The ``ack`` of client message ``message_id`` refused with ``error``. Raises what
    :func:`encode` raises (a reason holding a lone surrogate)."""
    return encode({"type": "ack", "id": message_id, "error": error})


def acked_frame(ids: list[str]) -> str:
    """``acked``: the answer to a client ``ack`` frame; none of ``ids`` will be sent again."""
    return encode({"type": "acked", "ids": ids})


def notice_frame(text: str) -> str:
    """``notice``: an operator's message to the user."""
    return encode({"type": "notice", "text": text})


# The longest close reason sent, in characters, in a `close` frame or SSE event and in a
# WebSocket close: longer ones are cut (docs/protocol.md).
MAX_CLOSE_REASON = 100
# What a WebSocket close frame can carry of a reason, in UTF-8 bytes (RFC 6455: 125 - 2).
_MAX_CLOSE_REASON_BYTES = 123


def close_reason(reason: str) -> str:
    """``reason`` cut to :data:`MAX_CLOSE_REASON` characters (and to what a WebSocket close
    frame can carry), printable."""
    text = _printable(reason[:MAX_CLOSE_REASON])
    while len(text.encode()) > _MAX_CLOSE_REASON_BYTES:
        text = text[:-1]
    return text


def close_frame(code: int, reason: str, retry_after: float | None = None) -> str:
    """``close``: the server ends the connection with ``code`` and says why; with
    ``retry_after`` (seconds), when to try again (``retry_after_ms``)."""
    frame: dict[str, Any] = {"type": "close", "code": int(code), "reason": close_reason(reason)}
    if retry_after is not None:
        frame["retry_after_ms"] = round(retry_after * 1000)
    return encode(frame)


def token_expiring_frame(expires_in_ms: int) -> str:
    """``token-expiring``: send a fresh token in an ``auth`` frame within ``expires_in_ms``."""
    return encode({"type": "token-expiring", "expires_in_ms": expires_in_ms})


# ---- cursor strings --------------------------------------------------------------------------

CURSOR_SEPARATOR = ","
CURSOR_FIELD_SEPARATOR = "~"
MAX_CURSOR_STRING = 16384


def encode_cursors(positions: dict[str, tuple[str, int]]) -> str:
    """``{"order.42": ("k3Jx9Q", 7)}`` → ``"order.42~k3Jx9Q~7"`` (SSE ids, long-poll)."""
    return CURSOR_SEPARATOR.join(
        f"{topic}{CURSOR_FIELD_SEPARATOR}{epoch}{CURSOR_FIELD_SEPARATOR}{offset}"
        for topic, (epoch, offset) in positions.items()
    )


def parse_cursors(text: str) -> dict[str, Cursor]:
    """Parse a cursor string. Raises :class:`InvalidFrame` with a reason for the client."""
    if len(text) > MAX_CURSOR_STRING:
        raise InvalidFrame("The cursor string is too long.")
    cursors: dict[str, Cursor] = {}
    for part in filter(None, text.split(CURSOR_SEPARATOR)):
        fields = part.split(CURSOR_FIELD_SEPARATOR)
        if len(fields) != 3 or not fields[0] or not fields[1]:
            raise InvalidFrame(f"Bad cursor {part[:80]!r}: use topic~epoch~offset.")
        offset = fields[2]
        if not (offset.isascii() and offset.isdigit() and len(offset) <= MAX_OFFSET_DIGITS):
            # "-1", "²" and 5,000 digits are not offsets (nor ints Python parses by default)
            raise InvalidFrame(f"Bad cursor {part[:80]!r}: use topic~epoch~offset.")
        cursor = parse_cursor({"epoch": fields[1], "offset": int(offset)})
        if cursor is not None:
            cursors[fields[0]] = cursor
    return cursors
