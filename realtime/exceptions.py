"""The exception tree. Each error carries the protocol ``code`` it is reported with, and is
mapped in one place (:data:`CLOSE_CODES`, :data:`HTTP_STATUSES`) to WebSocket close codes and
HTTP statuses; docs/protocol.md lists them all."""

from __future__ import annotations

import enum
from typing import TypeVar


class RealtimeError(Exception):
    """Base of every error this app raises on purpose."""

    code = "error"

    def __init__(self, reason: str = "", *, ref: str | None = None) -> None:
        super().__init__(reason or self.__class__.__doc__ or self.code)
        self.reason = reason or (self.__class__.__doc__ or self.code).strip()
        self.ref = ref


class InvalidFrame(RealtimeError):
    """A required field is missing or of the wrong type."""

    code = "invalid_frame"


class InvalidJSON(InvalidFrame):
    """The frame is not a JSON object."""

    code = "invalid_json"


class UnknownType(InvalidFrame):
    """The frame's type is not one the server knows."""

    code = "unknown_type"


class MessageTooLarge(RealtimeError):
    """The frame or payload is larger than the configured limit."""

    code = "too_large"


class AuthRequired(RealtimeError):
    """Authenticate with a token first."""

    code = "auth_required"


class TokenInvalid(RealtimeError):
    """The token is malformed or its signature is wrong."""

    code = "invalid_token"


class TokenExpired(TokenInvalid):
    """The token's lifetime is over."""

    code = "token_expired"


class InvalidTopic(RealtimeError, ValueError):
    """The topic name is not valid."""

    code = "invalid_topic"


class Forbidden(RealtimeError):
    """The user may not subscribe to this topic."""

    code = "forbidden"


class TooManyTopics(RealtimeError):
    """The connection holds the maximum number of topics."""

    code = "too_many_topics"


class NotSubscribed(RealtimeError):
    """The connection is not subscribed to this topic."""

    code = "not_subscribed"


class UnknownEvent(RealtimeError):
    """No handler for this event."""

    code = "unknown_event"


class Rejected(RealtimeError):
    """Raise from a message handler to refuse a client message with your own reason."""

    code = "rejected"


class InProgress(RealtimeError):
    """Another attempt with this id is still running; send it again with the same id."""

    code = "in_progress"


class RateLimited(RealtimeError):
    """More frames than the rate limit allows."""

    code = "rate_limited"


class PublishError(RealtimeError):
    """Publishing failed: the topic log did not take the message, so it was not sent.

    (In the rare case that the connection broke after Redis received the append, it may have
    been appended.) Publishing again with the same ``message_id`` is always safe: the log
    appends an id at most once. A failed live broadcast after a successful append is not an
    error: ``publish()`` returns the id and subscribers get the message from the log."""

    code = "publish_failed"


class PublishTimeout(PublishError):
    """The topic log did not confirm the append in time: the outcome is unknown.

    The append may still happen (e.g. when a paused Redis resumes) and the message then
    reaches its subscribers. Retrying with the same ``message_id`` is safe: it is appended at
    most once."""

    code = "publish_timeout"


class HookFailed(Exception):
    """The consumer's ``authenticate`` hook raised something other than a
    :class:`RealtimeError`: a bug in user code, already logged with its traceback where it
    happened. The connection is refused as a server error (WebSocket close 4011, HTTP 503
    ``unavailable``). Deliberately not a :class:`RealtimeError`: it is not the client's
    error, and must not be answered as one."""

    def __init__(self, hook: str) -> None:
        super().__init__(f"The consumer's {hook} hook raised.")
        self.hook = hook


class CloseCode(enum.IntEnum):
    """The WebSocket close codes the server sends, each with the reason it is sent with unless
    the close site gives a more precise one. docs/protocol.md's "Close codes" table lists
    exactly these (plus 1006, which no server sends); a test compares them.

    The RFC's 1009 (too big), 1011 (server error), 1012 (service restart) and 1013 (try again
    later) would fit, but daphne (autobahn) lets the server send only 1000 and 3000-4999, so
    their 4xxx mirrors are used instead."""

    NORMAL = 1000
    TOO_LARGE = 4009
    SERVER_ERROR = 4011
    SERVICE_RESTART = 4012
    TRY_AGAIN_LATER = 4013
    PROTOCOL_ERROR = 4400
    UNAUTHORIZED = 4401
    DISCONNECTED = 4403
    HEARTBEAT_TIMEOUT = 4408
    TOKEN_EXPIRED = 4419
    RATE_LIMITED = 4429
    SLOW_CONSUMER = 4503

    @property
    def reason(self) -> str:
        """The default close reason for this code."""
        return _REASONS[self]


_REASONS = {
    CloseCode.NORMAL: "",
    CloseCode.TOO_LARGE: "frame too large",
    CloseCode.SERVER_ERROR: "server error",
    CloseCode.SERVICE_RESTART: "service restart",
    CloseCode.TRY_AGAIN_LATER: "try again later",
    CloseCode.PROTOCOL_ERROR: "protocol error",
    CloseCode.UNAUTHORIZED: "unauthorized",
    CloseCode.DISCONNECTED: "disconnected",
    CloseCode.HEARTBEAT_TIMEOUT: "heartbeat timeout",
    CloseCode.TOKEN_EXPIRED: "token expired",
    CloseCode.RATE_LIMITED: "rate limited",
    CloseCode.SLOW_CONSUMER: "slow consumer",
}

CLOSE_CODES: dict[type[RealtimeError], CloseCode] = {
    MessageTooLarge: CloseCode.TOO_LARGE,
    AuthRequired: CloseCode.UNAUTHORIZED,
    TokenExpired: CloseCode.TOKEN_EXPIRED,
    TokenInvalid: CloseCode.UNAUTHORIZED,
    RateLimited: CloseCode.RATE_LIMITED,
}

HTTP_STATUSES: dict[type[RealtimeError], int] = {
    InvalidFrame: 400,
    InvalidTopic: 400,
    UnknownEvent: 400,
    Rejected: 422,
    MessageTooLarge: 413,
    AuthRequired: 401,
    TokenInvalid: 401,
    Forbidden: 403,
    TooManyTopics: 409,
    NotSubscribed: 409,
    InProgress: 409,
    RateLimited: 429,
}


_T = TypeVar("_T", bound=int)


def _lookup(table: dict[type[RealtimeError], _T], error: RealtimeError, default: _T) -> _T:
    for cls in type(error).__mro__:
        if cls in table:
            return table[cls]
    return default


def close_code_for(error: RealtimeError) -> CloseCode:
    """The WebSocket close code for an error that ends a connection."""
    return _lookup(CLOSE_CODES, error, CloseCode.PROTOCOL_ERROR)


def http_status_for(error: RealtimeError) -> int:
    """The HTTP status the SSE and long-poll transports answer an error with."""
    return _lookup(HTTP_STATUSES, error, 400)
