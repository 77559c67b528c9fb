"""The per-process cache of users of verified tokens (realtime/user_cache.py): a token whose
user was loaded recently costs no query; entries expire after ``TOKEN_CACHE_TTL`` and are
bounded by ``TOKEN_CACHE_SIZE``; a revocation empties them at once, in this process and, over
two real daphne nodes, on every node, so a revoked token is refused at the next connect."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import websockets
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model

import realtime
from realtime import auth
from realtime.auth import aauthenticate_token
from realtime.exceptions import TokenInvalid
from realtime.user_cache import users
from tests.conftest import realtime_on_redis
from tests.servers import Client, Daphne, script_process
from tests.test_cluster import listed


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The primary keys of the users loaded from the database, query by query."""
    queries: list[list[str]] = []
    real = auth._users_and_cutoffs

    def counting(user_pks: list[str]) -> Any:
        queries.append(list(user_pks))
        return real(user_pks)

    monkeypatch.setattr(auth, "_users_and_cutoffs", counting)
    return queries


@pytest.fixture
def loads(batches: list[list[str]]) -> Any:
    """The primary keys of the users loaded from the database, in order."""

    class Loaded:
        def __len__(self) -> int:
            return sum(len(batch) for batch in batches)

        def __eq__(self, other: object) -> bool:
            return [pk for batch in batches for pk in batch] == other

    return Loaded()


@sync_to_async
def _user(name: str) -> Any:
    return get_user_model().objects.create_user(name, password="pw")


@sync_to_async
def _save(user: Any, **fields: Any) -> None:
    for name, value in fields.items():
        setattr(user, name, value)
    user.save()


@sync_to_async
def _set_password(user: Any, password: str) -> None:
    user.set_password(password)
    user.save()


pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_recently_verified_tokens_user_costs_no_query(use_redis, loads):
    user = await _user("erin")
    token = realtime.make_token(user)
    first, _ = await aauthenticate_token(token)
    second, _ = await aauthenticate_token(realtime.make_token(user))  # another token: same
    assert loads == [str(user.pk)]
    assert first.pk == second.pk == user.pk
    assert first is not second  # each connection gets its own copy


async def test_entries_expire_after_the_ttl(use_redis, loads, realtime_settings):
    realtime_settings(TOKEN_CACHE_TTL=10.0)
    now = [1000.0]
    users.clock = lambda: now[0]
    try:
        user = await _user("fred")
        token = realtime.make_token(user)
        await aauthenticate_token(token)
        now[0] += 9.9
        await aauthenticate_token(token)
        assert len(loads) == 1
        now[0] += 0.2  # 10.1 s after the load
        await aauthenticate_token(token)
        assert len(loads) == 2
    finally:
        users.clock = time.monotonic


async def test_the_cache_is_bounded_and_can_be_turned_off(use_redis, loads, realtime_settings):
    realtime_settings(TOKEN_CACHE_SIZE=2)
    tokens = [realtime.make_token(await _user(name)) for name in ("gil", "hal", "ida")]
    for token in tokens:
        await aauthenticate_token(token)
    assert len(users) == 2
    await aauthenticate_token(tokens[0])  # the oldest was dropped
    assert len(loads) == 4
    realtime_settings(TOKEN_CACHE_TTL=0.0)
    await aauthenticate_token(tokens[0])
    await aauthenticate_token(tokens[0])
    assert len(loads) == 6


async def test_connects_of_many_users_at_once_share_queries(use_redis, batches):
    people = [await _user(f"lee{n}") for n in range(20)]
    tokens = [realtime.make_token(person) for person in people]
    tokens.append(tokens[0])  # the same user twice at once: one row for both
    answers = await asyncio.gather(*(aauthenticate_token(token) for token in tokens))
    assert [user.pk for user, _ in answers] == [p.pk for p in people] + [people[0].pk]
    assert answers[0][0] is not answers[-1][0]  # each its own copy
    # the first load runs alone; the others, asked for meanwhile, go together
    assert len(batches) < 5, batches
    assert sorted(pk for batch in batches for pk in batch) == sorted(str(p.pk) for p in people)


async def test_without_a_channel_layer_between_processes_nothing_is_cached(loads):
    # a revocation saved by another process could not reach this one
    user = await _user("jan")
    token = realtime.make_token(user)
    await aauthenticate_token(token)
    await aauthenticate_token(token)
    assert len(loads) == 2


@pytest.mark.parametrize("revoke", ["deactivate", "password"])
async def test_a_revocation_refuses_the_token_at_once_with_the_cache_warm(use_redis, revoke):
    user = await _user(f"kim-{revoke}")
    token = realtime.make_token(user)
    await aauthenticate_token(token)
    assert len(users) == 1
    if revoke == "deactivate":
        await _save(user, is_active=False)
    else:
        await _set_password(user, "changed")
    with pytest.raises(TokenInvalid):
        await aauthenticate_token(token)


# Deactivate bob through save(), as the admin does, in a process of its own on the nodes'
# database, Redis and prefix: its revocation reaches the nodes only through the layer.
DEACTIVATE_SCRIPT = """
import django
django.setup()
from django.contrib.auth import get_user_model
bob = get_user_model().objects.get(username="bob")
bob.is_active = False
bob.save()
print("done")
"""


async def _refusal(node: Daphne, token: str) -> int | None:
    """Connect with the token as subprotocol: the close code after the refusal, or None when
    the server said ``welcome``."""
    async with websockets.connect(
        node.url,
        subprotocols=["realtime.v1", f"realtime.token.{token}"],  # type: ignore[list-item]
        open_timeout=10,
    ) as ws:
        client = Client(ws)
        first = await client.receive()
        if first["type"] == "welcome":
            return None
        assert first["type"] == "error" and first["code"] == "invalid_token", first
        return await client.close_code()


@pytest.mark.e2e
async def test_a_revoked_token_is_refused_on_every_node_with_their_caches_warm(
    nodes, database, node_env, redis_url, cluster_prefix
):
    token = database[1]["bob"]["token"]
    with realtime_on_redis(redis_url, cluster_prefix):
        # each node verifies bob's token (caching bob) and keeps the socket open
        protocols = ["realtime.v1", f"realtime.token.{token}"]
        clients = [await Client.connect(n, origin=False, subprotocols=protocols) for n in nodes]
        await listed({c.welcome["connection_id"] for c in clients})
        assert [await _refusal(node, token) for node in nodes] == [None, None]  # cache hits
        done = script_process(database[0], DEACTIVATE_SCRIPT, env=node_env)
        assert done.returncode == 0, done.stderr
        # each node took the order to forget bob before the order to close his sockets
        assert [await client.close_code() for client in clients] == [4403, 4403]
        assert [await _refusal(node, token) for node in nodes] == [4401, 4401]
    for node in nodes:
        node.assert_no_tracebacks()
