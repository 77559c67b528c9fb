"""Tokens and Origin checks.

Tokens are signed with ``django.core.signing`` under their own salt and carry the user's pk,
their issue and expiry times and a fragment of the user's session auth hash: changing the
password invalidates every token issued before, and so does deactivating the user (the
deactivation time is kept in :class:`realtime.models.TokenCutoff`, so a reactivation does not
revive them). They use only characters allowed in a
``Sec-WebSocket-Protocol`` value, so a client may send one as the ``realtime.token.<token>``
subprotocol instead of in an ``auth`` frame; they never belong in a URL."""

from __future__ import annotations

import asyncio
import copy
import functools
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.core.exceptions import ValidationError
from django.http.request import validate_host

from realtime.conf import get_config
from realtime.exceptions import TokenExpired, TokenInvalid
from realtime.hub import get_hub
from realtime.user_cache import CachedUser, users
from realtime.user_loads import Found, loads_of

SALT = "realtime.token"


def _signer() -> signing.Signer:
    # one per process and key, not one per token: a signer derives its keys when made
    return _signer_for(settings.SECRET_KEY, tuple(getattr(settings, "SECRET_KEY_FALLBACKS", ())))


@functools.lru_cache(maxsize=4)
def _signer_for(key: str, fallbacks: tuple[str, ...]) -> signing.Signer:
    return signing.Signer(key=key, fallback_keys=list(fallbacks), salt=SALT, sep=".")


def _auth_hash(user: Any) -> str:
    return user.get_session_auth_hash()[:16] if hasattr(user, "get_session_auth_hash") else ""


def make_token(user: Any, *, expires_in: float | None = None) -> str:
    """A signed token that authenticates ``user`` for ``expires_in`` seconds (default
    ``TOKEN_MAX_AGE``; not capped by it; zero or less gives an already expired token). Give it
    to non-browser clients, or to browsers that connect from another site; browsers on the
    same site are authenticated by their session cookie. Pure computation: no query, so it may
    be called from async code. Raises :class:`ValueError` when ``user`` is ``None`` or
    anonymous."""
    if user is None or not user.is_authenticated:
        raise ValueError("make_token() needs an authenticated user.")
    now = time.time()
    lifetime = get_config().token_max_age if expires_in is None else expires_in
    payload = {
        "u": str(user.pk),
        "i": now,  # full precision: compared with the time of a later deactivation
        "x": round(now + lifetime, 3),
        "h": _auth_hash(user),
    }
    return _signer().sign_object(payload, compress=False)


@dataclass(frozen=True)
class TokenClaims:
    user_pk: str
    expires_at: float
    auth_hash: str
    # Tokens made before issue times were added carry none: 0.0, issued before any cutoff.
    issued_at: float = 0.0


def read_token(token: str) -> TokenClaims:
    """Check a token's signature and lifetime. Raises :class:`TokenInvalid` or
    :class:`TokenExpired`."""
    if not isinstance(token, str) or len(token) > 1024:
        raise TokenInvalid("The token is malformed.")
    try:
        payload = _signer().unsign_object(token)
        claims = TokenClaims(
            str(payload["u"]), float(payload["x"]), str(payload["h"]), float(payload.get("i", 0))
        )
    except (signing.BadSignature, AttributeError, KeyError, TypeError, ValueError):
        raise TokenInvalid("The token is malformed or its signature is wrong.") from None
    if claims.expires_at <= time.time():
        raise TokenExpired("The token has expired; fetch a new one.")
    return claims


CUTOFF = "realtime_token_cutoff"  # TokenCutoff's related name on the user model


def load_user(user_pk: str, issued_at: float) -> Any:
    """The active user with primary key ``user_pk``, for a credential issued at ``issued_at``
    (Unix time). One query: the user's :class:`~realtime.models.TokenCutoff` is joined in.
    Raises :class:`TokenInvalid` when the user does not exist, is inactive, or was deactivated
    after ``issued_at``. Sync: call it through ``database_sync_to_async``."""
    user, not_before = _user_and_cutoff(user_pk)
    _check_cutoff(not_before, issued_at)
    return user


def _user_and_cutoff(user_pk: str) -> tuple[Any, float | None]:
    found = _users_and_cutoffs([user_pk])[user_pk]
    if isinstance(found, Exception):
        raise found
    return found


def _users_and_cutoffs(user_pks: list[str]) -> dict[str, Found]:
    """For each primary key, the active user and its token cutoff (``None`` when it was
    never deactivated), or the :class:`TokenInvalid` that refuses it. One query."""
    model = get_user_model()
    valid: dict[Any, str] = {}
    answers: dict[str, Found] = {}
    for user_pk in user_pks:
        try:
            valid[model._meta.pk.to_python(user_pk)] = user_pk
        except (ValidationError, ValueError, TypeError):
            answers[user_pk] = TokenInvalid("The token's user does not exist.")
    users_by_pk = {
        user.pk: user
        for user in model._default_manager.select_related(CUTOFF).filter(pk__in=list(valid))
    }
    for pk, user_pk in valid.items():
        user = users_by_pk.get(pk)
        if user is None:
            answers[user_pk] = TokenInvalid("The token's user does not exist.")
        elif not getattr(user, "is_active", True):
            answers[user_pk] = TokenInvalid("The token's user is inactive.")
        else:
            cutoff = getattr(user, CUTOFF, None)  # None when the user was never deactivated
            answers[user_pk] = (user, None if cutoff is None else cutoff.not_before)
    return answers


def _check_cutoff(not_before: float | None, issued_at: float) -> None:
    if not_before is not None and issued_at < not_before:
        raise TokenInvalid("The token was issued before the user was deactivated.")


async def aauthenticate_token(token: str) -> tuple[Any, float]:
    """The user a token authenticates and its expiry time. Raises :class:`TokenInvalid`.

    The user of a token verified less than ``TOKEN_CACHE_TTL`` seconds ago in this process
    comes from :mod:`realtime.user_cache` (a copy, checked against the token's auth hash and
    the user's token cutoff as a database load is); the others are loaded in batches with
    the loads asked for at the same time (:mod:`realtime.user_loads`)."""
    claims = read_token(token)
    config = get_config()
    ttl = config.token_cache_ttl
    if ttl > 0:
        cached = users.get(claims.user_pk, ttl)
        if cached is not None and cached.auth_hash == claims.auth_hash:
            _check_cutoff(cached.not_before, claims.issued_at)
            return copy.copy(cached.user), claims.expires_at
    generation = users.generation()
    loads = loads_of(asyncio.get_running_loop(), _users_and_cutoffs)
    user, not_before = await loads.load(claims.user_pk)
    _check_cutoff(not_before, claims.issued_at)
    if _auth_hash(user) != claims.auth_hash:
        raise TokenInvalid("The token was issued before a password change.")
    # kept only while this process hears revocations from the whole cluster
    if ttl > 0 and config.token_cache_size > 0 and await get_hub().hears_revocations():
        entry = CachedUser(copy.copy(user), claims.auth_hash, not_before, users.clock())
        users.put(claims.user_pk, entry, generation, config.token_cache_size)
    return user, claims.expires_at


def allowed_origins() -> tuple[str, ...] | None:
    """The explicit allow-list, or None when origins are derived from ``ALLOWED_HOSTS``."""
    return get_config().allowed_origins


def origin_allowed(origin: str) -> bool:
    """Whether a browser ``Origin`` may connect. With ``REALTIME["ALLOWED_ORIGINS"]`` set,
    origins must match an entry (``scheme://host[:port]``, or ``*``); otherwise the origin's
    host must match ``ALLOWED_HOSTS`` the way Django matches the ``Host`` header."""
    explicit = allowed_origins()
    if explicit is not None:
        return "*" in explicit or origin.rstrip("/") in explicit
    try:
        parts = urlsplit(origin)
        host = parts.hostname
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not host:
        return False
    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    return validate_host(host if ":" not in host else f"[{host}]", allowed)
