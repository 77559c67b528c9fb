"""Tokens issued before a user's deactivation stay refused after the user is reactivated: in
process, and over real daphne nodes (one running through the change, one started after it)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.core import signing

import realtime
from realtime import auth
from realtime.auth import aauthenticate_token
from realtime.exceptions import TokenInvalid
from tests.servers import Daphne, make_database, run_script

CAROL_SCRIPT = """
import json, django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.contrib.auth import get_user_model
import realtime
carol = get_user_model().objects.create_user("carol", password="pw")
print(json.dumps({"pk": carol.pk, "token": realtime.make_token(carol)}))
"""

# Deactivate and reactivate carol through save(), as the admin does; print a fresh token.
TOGGLE_SCRIPT = """
import json, django
django.setup()
from django.contrib.auth import get_user_model
import realtime
carol = get_user_model().objects.get(username="carol")
carol.is_active = False
carol.save()
carol.is_active = True
carol.save()
print(json.dumps({"token": realtime.make_token(carol)}))
"""


def _toggle(database: str) -> str:
    return str(json.loads(run_script(database, TOGGLE_SCRIPT))["token"])


@sync_to_async
def _user(name: str) -> Any:
    return get_user_model().objects.create_user(name, password="pw")


@sync_to_async
def _set_active(user: Any, active: bool) -> None:
    user.is_active = active
    user.save()


@pytest.mark.django_db(transaction=True)
async def test_a_token_issued_before_a_deactivation_stays_refused_after_reactivation():
    user = await _user("dora")
    old = realtime.make_token(user)
    await _set_active(user, False)
    await _set_active(user, True)
    with pytest.raises(TokenInvalid, match="deactivat"):
        await aauthenticate_token(old)
    fresh = realtime.make_token(user)
    authenticated, _ = await aauthenticate_token(fresh)
    assert authenticated.pk == user.pk


@pytest.mark.django_db(transaction=True)
async def test_saves_without_a_deactivation_keep_tokens_valid():
    user = await _user("erin")
    token = realtime.make_token(user)
    await _set_active(user, True)  # saved, still active: nothing to revoke
    user.first_name = "Erin"
    await sync_to_async(user.save)()
    authenticated, _ = await aauthenticate_token(token)
    assert authenticated.pk == user.pk


@pytest.mark.django_db(transaction=True)
async def test_a_deactivation_rolled_back_revokes_nothing():
    from django.db import transaction

    user = await _user("finn")
    token = realtime.make_token(user)

    @sync_to_async
    def deactivate_then_roll_back() -> None:
        with contextlib.suppress(RuntimeError), transaction.atomic():
            user.is_active = False
            user.save()
            raise RuntimeError("roll back")

    await deactivate_then_roll_back()
    authenticated, _ = await aauthenticate_token(token)
    assert authenticated.pk == user.pk


def _old_format_token(user: Any) -> str:
    """A token as made before issue times were added: a current one without its "i"."""
    signer = signing.Signer(salt=auth.SALT, sep=".")
    payload = signer.unsign_object(realtime.make_token(user, expires_in=60))
    del payload["i"]
    return signer.sign_object(payload, compress=False)


@pytest.mark.django_db(transaction=True)
async def test_old_tokens_without_issue_time_count_as_issued_before_any_deactivation():
    kept, toggled = await _user("gail"), await _user("hank")
    kept_token, toggled_token = _old_format_token(kept), _old_format_token(toggled)
    await _set_active(toggled, False)
    await _set_active(toggled, True)
    authenticated, _ = await aauthenticate_token(kept_token)
    assert authenticated.pk == kept.pk
    with pytest.raises(TokenInvalid, match="deactivat"):
        await aauthenticate_token(toggled_token)


@pytest.mark.django_db(transaction=True)
async def test_a_ticket_is_refused_when_its_user_was_deactivated_since():
    from django.test import RequestFactory

    from realtime import tickets
    from realtime.transports.http import authenticate

    user = await _user("ivy")
    ticket = await tickets.issue(str(user.pk))
    await _set_active(user, False)
    await _set_active(user, True)
    with pytest.raises(TokenInvalid, match="deactivated"):
        await authenticate(RequestFactory().get("/realtime/sse/", {"ticket": ticket}))


# ---- over real daphne nodes ------------------------------------------------------------------


@pytest.fixture(scope="module")
def carol_database() -> Iterator[tuple[str, dict[str, Any]]]:
    path, carol = make_database(CAROL_SCRIPT)
    yield path, carol
    os.unlink(path)


async def _ws_close_code(node: Daphne, token: str) -> int | None:
    """Connect without Origin with the token as subprotocol; the close code, or None when the
    server said ``welcome``. A refused token is first answered with an ``error`` frame that
    says why (docs/protocol.md), then the close."""
    async with websockets.connect(
        node.url,
        subprotocols=["realtime.v1", f"realtime.token.{token}"],  # type: ignore[list-item]
        open_timeout=10,
    ) as ws:
        try:
            async with asyncio.timeout(5):
                first = json.loads(await ws.recv())
                if first["type"] == "error":
                    assert first["code"] == "invalid_token", first
                    await ws.recv()
        except websockets.ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None
        assert first["type"] == "welcome", first
        return None


async def _poll_status(node: Daphne, token: str) -> tuple[int, str | None]:
    async with httpx.AsyncClient(base_url=node.http, timeout=10) as http:
        response = await http.get(
            "/realtime/poll/",
            params={"topic": "public.revocation"},
            headers={"Authorization": f"Bearer {token}"},
        )
    code = response.json()["error"]["code"] if response.status_code >= 400 else None
    return response.status_code, code


@pytest.mark.e2e
async def test_reactivation_does_not_revive_old_tokens_on_any_node(carol_database):
    path, carol = carol_database
    env = {"RT_POLL_TIMEOUT": "0.2"}
    running = Daphne(path, env)  # up through the change: nothing cached per process
    try:
        assert await _ws_close_code(running, carol["token"]) is None  # valid before
        fresh = await sync_to_async(_toggle)(path)
        restarted = Daphne(path, env)  # started after it: the refusal is in the database
        try:
            for node in (running, restarted):
                assert await _ws_close_code(node, carol["token"]) == 4401
                assert await _poll_status(node, carol["token"]) == (401, "invalid_token")
                assert await _ws_close_code(node, fresh) is None
                assert (await _poll_status(node, fresh))[0] in (200, 204)
        finally:
            restarted.stop()
    finally:
        running.stop()
