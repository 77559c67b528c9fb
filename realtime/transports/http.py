"""What the HTTP transports (SSE, long-poll, POST) share: authentication of a request, the
consumer hooks, topic and cursor parameters, rate limits, and JSON error responses."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.utils.module_loading import import_string

from realtime import health, protocol, tickets
from realtime.acks import CONNECTION_SCOPE_PREFIX
from realtime.auth import aauthenticate_token, load_user, origin_allowed
from realtime.conf import get_config
from realtime.connection import Connection, check_subscribe
from realtime.exceptions import (
    AuthRequired,
    CloseCode,
    Forbidden,
    InvalidFrame,
    RealtimeError,
    TokenInvalid,
    TooManyTopics,
    http_status_for,
)
from realtime.proxies import forwarded_client
from realtime.ratelimit import ScopedBuckets
from realtime.topics import validate_topic
from realtime.transports.base import new_connection, new_hooks
from realtime.transports.refusal import try_later

logger = logging.getLogger("realtime.transports")


def error_response(error: RealtimeError) -> JsonResponse:
    """The documented JSON error body with the error's HTTP status; ``ref`` names the topic
    (or id) concerned, so a client can drop just that topic. A 401 carries the
    ``WWW-Authenticate: Bearer`` challenge HTTP requires (RFC 6750), which browsers never
    answer with a login prompt."""
    body: dict[str, Any] = {"code": error.code, "reason": error.reason}
    if error.ref is not None:
        body["ref"] = error.ref
    response = JsonResponse({"error": body}, status=http_status_for(error))
    if response.status_code == 401:
        challenge = 'Bearer realm="realtime"'
        if isinstance(error, TokenInvalid):
            challenge += ', error="invalid_token"'
        response["WWW-Authenticate"] = challenge
    return response


def unavailable() -> JsonResponse:
    """503 when a backend (Redis) failed: the client retries from its cursor."""
    return try_later("Try again shortly.")


def failure_response(error: Exception, component: str, what: str) -> HttpResponse:
    """The answer to a request that raised ``error``: a :class:`RealtimeError`'s documented
    error, Django's CSRF failure for :class:`CsrfRefused`, else 503 ``unavailable``, the
    failure recorded against ``component`` (see :func:`realtime.health.request_failed`;
    ``what`` names the request in the log)."""
    if isinstance(error, RealtimeError):
        return error_response(error)
    if isinstance(error, CsrfRefused):
        return error.response
    health.request_failed(component, error, logger, what)
    return unavailable()


class CsrfRefused(Exception):
    """A POST authenticated by the session cookie failed Django's CSRF check; ``response`` is
    Django's answer to it (``CSRF_FAILURE_VIEW``)."""

    def __init__(self, response: HttpResponse) -> None:
        super().__init__("CSRF check failed")
        self.response = response


@dataclass
class Caller:
    """Who made a request, and how they proved it."""

    user: Any
    via: str  # "session", "token" or "ticket" (a caller without credentials: "session")
    token_expires_at: float | None
    scope: str  # whose `send` ids these are (dedup): the user, else the session or request
    rate_scope: str  # whose rate-limit bucket the request spends


async def authenticate(request: HttpRequest) -> Caller:
    """Authenticate by bearer token, ticket, or session cookie (in that order); without any of
    them the caller is anonymous. Raises :class:`Forbidden` for a disallowed Origin and
    :class:`TokenInvalid` for bad credentials."""
    origin = request.headers.get("Origin")
    if origin is not None and not origin_allowed(origin):
        raise Forbidden("This Origin may not use realtime.")
    authorization = request.headers.get("Authorization", "")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise TokenInvalid("Use 'Authorization: Bearer <token>'.")
        user, expires_at = await aauthenticate_token(token.strip())
        return Caller(user, "token", expires_at, f"u:{user.pk}", f"u:{user.pk}")
    ticket = request.GET.get("ticket")
    if ticket is not None:
        user_pk = await tickets.redeem(ticket)
        if user_pk is None:
            raise TokenInvalid("The ticket is unknown, expired or already used.")
        user = await _ticket_user(user_pk)
        return Caller(user, "ticket", None, f"u:{user.pk}", f"u:{user.pk}")
    auser = getattr(request, "auser", None)  # set by AuthenticationMiddleware (check W003)
    user = await auser() if auser is not None else AnonymousUser()
    if user.is_authenticated:
        return Caller(user, "session", None, f"u:{user.pk}", f"u:{user.pk}")
    session = getattr(request, "session", None)
    session_key = getattr(session, "session_key", None)
    scope = f"s:{session_key}" if session_key else f"{CONNECTION_SCOPE_PREFIX}{uuid.uuid4().hex}"
    return Caller(AnonymousUser(), "session", None, scope, await _anonymous_rate_scope(request))


async def _anonymous_rate_scope(request: HttpRequest) -> str:
    """The bucket of a caller without credentials: its session's when the request carries a
    session that holds data, else its client address (:func:`client_address`). A made-up or
    expired session cookie loads as an empty session, so it cannot buy a fresh bucket."""
    session = getattr(request, "session", None)
    if session is not None and session.session_key and await session.aitems():
        return f"s:{session.session_key}"
    return f"a:{client_address(request)}"


def client_address(request: HttpRequest) -> str:
    """The caller's address: ``REMOTE_ADDR`` as the ASGI server reports it, or, when that is
    a proxy of ``TRUSTED_PROXIES``, the client's address from ``X-Forwarded-For``
    (:func:`realtime.proxies.forwarded_client`); empty when unknown."""
    peer = request.META.get("REMOTE_ADDR")
    forwarded = forwarded_client(peer, request.headers.get("X-Forwarded-For"))
    return forwarded or str(peer or "")


async def _ticket_user(user_pk: str) -> Any:
    return await database_sync_to_async(_load_ticket_user)(user_pk)


def _load_ticket_user(user_pk: str) -> Any:
    # A ticket was issued at most TICKET_TTL ago: taking the earliest possible issue time
    # refuses it when its user was deactivated since (fail closed, for TICKET_TTL at most).
    try:
        return load_user(user_pk, time.time() - get_config().ticket_ttl)
    except TokenInvalid:
        raise TokenInvalid(
            "The ticket's user no longer exists, is inactive or was deactivated since."
        ) from None


async def admit(
    request: HttpRequest,
    *,
    login_required: bool = False,
    csrf: bool = False,
    rate_limit: bool = True,
) -> Caller:
    """The start every HTTP transport's request shares: authenticate the caller (Origin, then
    credentials; see :func:`authenticate`); with ``login_required``, refuse a caller without
    credentials (:class:`AuthRequired`); with ``csrf``, check a caller authenticated by the
    session cookie against CSRF (:class:`CsrfRefused`); then, unless ``rate_limit`` is false
    (the request is charged later, see :func:`charge`), spend one request of the caller's rate
    limit (:class:`RateLimited`). :func:`failure_response` answers each refusal."""
    caller = await authenticate(request)
    if login_required and not caller.user.is_authenticated:  # before CSRF: nothing to protect
        raise AuthRequired("Log in or send a bearer token first.")
    # Cookies ride along on cross-site requests; bearer tokens and tickets do not.
    if csrf and caller.via == "session":
        failure = CsrfViewMiddleware(_no_view).process_view(request, _no_view, (), {})
        if failure is not None:
            raise CsrfRefused(failure)
    if rate_limit:
        buckets.take(caller.rate_scope)
    return caller


def charge(caller: Caller, *, ack: bool = False) -> None:
    """Spend one request of the caller's rate limit (:class:`RateLimited` when it is empty).
    A POST that only acknowledges (``ack``) spends a bucket of its own, of the same
    ``RATE``/``BURST``: it answers the server's own traffic, so acknowledging never takes
    from the budget of polls, streams and sends, nor they from it (docs/protocol.md)."""
    (ack_buckets if ack else buckets).take(caller.rate_scope)


def _no_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse()


@dataclass
class Opened:
    """A request for topics (SSE, long-poll), admitted: who asked, its connection (not yet
    authenticated), and the topics with the cursors the request gave."""

    caller: Caller
    connection: Connection
    topics: list[str]
    cursors: dict[str, protocol.Cursor]


async def open_topics(
    request: HttpRequest, transport: Any, name: str, *, register: bool = True
) -> Opened:
    """The start of an SSE or long-poll request: :func:`admit` it, read its topics and cursors
    (:func:`topics_and_cursors`), open its connection through ``transport`` with the
    consumer's hooks, and check the topics' permissions (:func:`check_topics`), so that a
    refusal is answered with its status before anything is subscribed. This is each topic's
    permission check for the request (a resume, when it carries a cursor): the transports then
    subscribe with ``checked=True``."""
    caller = await admit(request)
    topics, cursors = topics_and_cursors(request)
    connection, hooks = open_connection(request, caller, transport, name, register=register)
    await check_topics(hooks, caller, topics)
    return Opened(caller, connection, topics, cursors)


async def check_topics(hooks: Any, caller: Caller, topics: list[str]) -> None:
    """Run the consumer's ``can_subscribe`` hook for each topic before a stream or poll starts.
    Raises :class:`Forbidden` (HTTP 403) when an authenticated caller is refused a topic, and
    :class:`AuthRequired` (HTTP 401) when a caller without credentials is: "who are you" and
    "you may not" need different answers from a client, and an HTTP request has no
    ``welcome`` that would tell it it is anonymous. Both name the topic in ``ref``. A hook or
    permission that raises refuses its topic the same way (logged once, see
    :func:`realtime.connection.check_subscribe`)."""
    for topic in topics:
        try:
            await check_subscribe(hooks, topic)
        except Forbidden as refused:
            if caller.user.is_authenticated:
                raise
            raise AuthRequired(
                f"{refused.reason} Log in or send a bearer token.", ref=refused.ref or topic
            ) from None


def topics_and_cursors(request: HttpRequest) -> tuple[list[str], dict[str, protocol.Cursor]]:
    """The ``topic`` parameters (validated, at most ``MAX_TOPICS``) and the cursors from the
    ``cursor`` parameter or, failing that, the ``Last-Event-ID`` header."""
    topics = list(dict.fromkeys(request.GET.getlist("topic")))
    if not topics:
        raise InvalidFrame("Give at least one 'topic' parameter.")
    limit = get_config().max_topics
    if len(topics) > limit:
        raise TooManyTopics(f"At most {limit} topics.")
    for topic in topics:
        validate_topic(topic)
    text = request.GET.get("cursor") or request.headers.get("Last-Event-ID") or ""
    return topics, protocol.parse_cursors(text)


buckets = ScopedBuckets()
ack_buckets = ScopedBuckets()  # POSTs of `ack` frames only: see charge()


def limits_header() -> str:
    """The ``X-Realtime-Limits`` header of long-poll answers: the ``limits`` object of
    ``welcome`` (long-poll has no ``welcome``), so a client can pace its requests."""
    return json.dumps(protocol.limits(get_config()), separators=(",", ":"))


class CollectingTransport:
    """A transport that keeps frames in memory (long-poll, POST)."""

    def __init__(self) -> None:
        self.frames: list[str] = []
        self.arrived = asyncio.Event()
        self.closed_with: int | None = None

    def send_text(self, text: str) -> None:
        self.frames.append(text)
        self.arrived.set()

    def close(self, code: CloseCode, reason: str = "") -> None:
        self.closed_with = code
        self.arrived.set()


def hooks_for(request: HttpRequest, caller: Caller) -> Any:
    """An instance of the configured consumer class, to run its hooks for an HTTP transport.
    Its ``scope`` is an HTTP scope with the caller's ``user``."""
    scope = {
        "type": "http",
        "path": request.path,
        "headers": [(k.lower().encode(), v.encode()) for k, v in request.headers.items()],
        "user": caller.user,
        "client": (client_address(request) or None, None),
    }
    return new_hooks(import_string(get_config().consumer), scope)


def open_connection(
    request: HttpRequest, caller: Caller, transport: Any, name: str, *, register: bool = True
) -> tuple[Connection, Any]:
    """A connection for an HTTP transport, with the configured consumer's hooks."""
    hooks = hooks_for(request, caller)
    connection = new_connection(
        transport,
        hooks,
        user=caller.user,
        transport_name=name,
        anonymous_scope=caller.scope,
        heartbeat=False,
        register=register,
        client=client_address(request),
        user_agent=request.headers.get("User-Agent", ""),
    )
    return connection, hooks


def frame_type(text: str) -> str:
    """The ``type`` of an encoded server frame (always its first key)."""
    if text.startswith('{"type":"'):
        return text[9 : text.index('"', 9)]
    return str(json.loads(text).get("type"))
