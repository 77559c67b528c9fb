"""A relay process SIGKILLed after its append to the topic log and before it finished its
outbox rows: the rows stay claimed until the lease passes, then another relay (``manage.py
realtime_relay --once``) takes them over and appends them again, which the log turns into
nothing. Each message is in the log once and reaches each connected client once.

The fault is injected in the relay's process only (tests/outbox_faults.py): its
``store.finish`` is replaced by one that reports the append and blocks, so the test can
SIGKILL the process at that point. The nodes run no relay (``DURABLE`` off), so the
dead relay's rows can only be taken over by the one the test starts."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest
import redis

from tests.servers import (
    ROOT,
    Client,
    Daphne,
    delete_prefix,
    running_nodes,
    script_process,
)

pytestmark = [pytest.mark.e2e, pytest.mark.clean_server_log]

COUNT = 20

# Publishes sys.argv[2] messages durably in one transaction; the process's own relay, woken
# on commit, moves them and stops at the fault (tests/outbox_faults.py).
STUCK_RELAY = """
import sys, threading, django
django.setup()
from tests.outbox_faults import stop_after_append
stop_after_append()
from django.db import transaction
import realtime
with transaction.atomic():
    for n in range(int(sys.argv[2])):
        realtime.publish(sys.argv[1], "n", {"n": n}, message_id=f"m{n}", durable=True)
threading.Event().wait()
"""

TAKEOVER = """
import django
django.setup()
from django.core.management import call_command
call_command("realtime_relay", "--once")
"""

MARKER = """
import sys, django
django.setup()
import realtime
realtime.publish(sys.argv[1], "marker", message_id="marker")
"""


@pytest.fixture(scope="module")
def path(database: tuple[str, dict[str, object]]) -> str:
    """The module's database file (tests/conftest.py)."""
    return database[0]


@pytest.fixture(scope="module")
def env(redis_url: str) -> Iterator[dict[str, str]]:
    prefix = f"rt-takeover-{uuid.uuid4().hex[:6]}"
    yield {"RT_REDIS_URL": redis_url, "RT_PREFIX": prefix, "RT_PUBLISH_TIMEOUT": "1"}
    delete_prefix(redis_url, prefix)


@pytest.fixture(scope="module")
def nodes(path: str, env: dict[str, str]) -> Iterator[list[Daphne]]:
    with running_nodes(path, env) as servers:
        yield servers


def outbox(database: str) -> tuple[int, float]:
    """How many rows wait in the outbox, and when the last of their leases ends."""
    with sqlite3.connect(database) as db:
        count, until = db.execute(
            "SELECT COUNT(*), MAX(claimed_until) FROM realtime_outboxmessage"
        ).fetchone()
    return count, until or 0.0


def killed_after_append(database: str, env: dict[str, str], topic: str) -> None:
    """Run the faulty relay until it has appended every message, then SIGKILL it."""
    full_env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "RT_TEST_DB": database}
    with subprocess.Popen(
        [sys.executable, "-c", STUCK_RELAY, topic, str(COUNT)],
        env={**full_env, **env},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()  # the fault's report, or "" if the process ended
            assert line.split() == ["appended", str(COUNT)], process.communicate(timeout=10)
            process.send_signal(signal.SIGKILL)
            assert process.wait(10) == -signal.SIGKILL
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


async def test_a_relay_killed_between_append_and_finish_is_taken_over_once(
    nodes, path, env, redis_url
):
    database = path
    topic = f"public.takeover-{uuid.uuid4().hex[:6]}"
    expected = [f"m{n}" for n in range(COUNT)]
    clients = [await Client.connect(node) for node in nodes]
    for client in clients:
        assert (await client.subscribe(topic))["type"] == "subscribed"

    await asyncio.to_thread(killed_after_append, database, env, topic)
    for client in clients:  # the dead relay's broadcast reached them
        assert [(await client.receive(timeout=10))["id"] for _ in expected] == expected
    waiting, lease_end = outbox(database)
    assert waiting == COUNT  # its rows are still claimed by it

    # the lease passing is what the next relay waits for
    await asyncio.sleep(max(0.0, lease_end - time.time()) + 0.2)
    takeover = await asyncio.to_thread(script_process, database, TAKEOVER, env=env)
    assert takeover.returncode == 0, takeover.stderr
    assert takeover.stdout.split() == [str(COUNT)]  # it moved every row again
    assert outbox(database)[0] == 0

    client_redis = redis.Redis.from_url(redis_url, decode_responses=True)
    entries = client_redis.xrange(f"{env['RT_PREFIX']}:log:{{{topic}}}")
    client_redis.close()
    logged = [fields["i"] for _, fields in entries]
    assert Counter(logged) == Counter(expected) and logged == expected

    # each client got each message once: the next frame is the next message
    marker = await asyncio.to_thread(script_process, database, MARKER, topic, env=env)
    assert marker.returncode == 0, marker.stderr
    for client in clients:
        frame = await client.receive(timeout=10)
        assert (frame["type"], frame["id"]) == ("message", "marker")
        await client.close()
