"""Several relays racing on one outbox, each in its own process, on SQLite (a database file)
and on PostgreSQL (a database this module creates on the local server and drops): every row
reaches the real Redis log exactly once, each topic's rows in outbox id order, and the relays
together move each row once (their counts add up to the rows)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator

import pytest
import redis

from tests.servers import ROOT, delete_prefix, script_process

pytestmark = pytest.mark.e2e

PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"

FILL = """
import sys, time, django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from realtime.models import OutboxMessage
rows, topics = int(sys.argv[1]), int(sys.argv[2])
OutboxMessage.objects.bulk_create(
    [
        OutboxMessage(topic=f"topic{n % topics}", message_id=f"m{n}", event="e",
                      data=str(n), created=time.time())
        for n in range(rows)
    ],
    batch_size=1000,
)
print(OutboxMessage.objects.count())
"""

# One relay: ready once Django is set up, draining when told "go" on stdin; prints how many
# rows it moved.
RELAY = """
import sys, django
django.setup()
from realtime.publishing import new_relay
relay = new_relay()
print("ready", flush=True)
sys.stdin.readline()
print(relay.drain(), flush=True)
"""


def environment(database: dict[str, str], redis_url: str, prefix: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "RT_REDIS_URL": redis_url,
        "RT_PREFIX": prefix,
        **database,
    }


@pytest.fixture
def sqlite_database() -> Iterator[dict[str, str]]:
    path = tempfile.mktemp(prefix="rt-outbox-", suffix=".sqlite3")
    yield {"RT_TEST_DB": path}
    if os.path.exists(path):
        os.unlink(path)


@pytest.fixture
def postgres_database() -> Iterator[dict[str, str]]:
    """A fresh database on the local PostgreSQL server, dropped afterwards."""
    import psycopg  # only these tests need the driver

    name = f"rt_outbox_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {"RT_TEST_PG": name}
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def race(env: dict[str, str], rows: int, topics: int, relays: int) -> list[int]:
    """Fill the outbox with ``rows`` rows over ``topics`` topics, start ``relays`` relay
    processes, let them drain at the same moment; return what each moved."""
    fill = script_process(env.get("RT_TEST_DB", ""), FILL, str(rows), str(topics), env=env)
    assert fill.returncode == 0, fill.stderr
    assert fill.stdout.split()[-1] == str(rows)
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", RELAY],
            env=env,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(relays)
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "ready"
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        moved = []
        for process in processes:
            out, err = process.communicate(timeout=120)
            assert process.returncode == 0, err
            moved.append(int(out.split()[-1]))
        return moved
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def assert_logged_once_in_order(redis_url: str, prefix: str, rows: int, topics: int) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        for topic in range(topics):
            entries = client.xrange(f"{prefix}:log:{{topic{topic}}}")
            ids = [fields["i"] for _, fields in entries]
            assert ids == [f"m{n}" for n in range(topic, rows, topics)], f"topic{topic}"
    finally:
        client.close()


def check_race(
    database: dict[str, str], redis_url: str, rows: int, topics: int, relays: int
) -> None:
    prefix = f"rt-outbox-{uuid.uuid4().hex[:8]}"
    try:
        moved = race(environment(database, redis_url, prefix), rows, topics, relays)
        assert sum(moved) == rows, moved
        assert len([count for count in moved if count]) > 1, f"no race: {moved}"
        assert_logged_once_in_order(redis_url, prefix, rows, topics)
    finally:
        delete_prefix(redis_url, prefix)


def test_two_relays_on_sqlite_move_each_row_once_in_topic_order(sqlite_database, redis_url):
    check_race(sqlite_database, redis_url, rows=2000, topics=20, relays=2)


@pytest.mark.parametrize("relays", [2, 4])
def test_relays_on_postgresql_move_each_row_once_in_topic_order(
    postgres_database, redis_url, relays
):
    check_race(postgres_database, redis_url, rows=10_000, topics=50, relays=relays)


# On commit, the committing thread moves its own rows, but not one that another relay's
# claimed row of its topic precedes; prints what the log holds then, and at the end.
FAST_PATH = """
import json, sys, django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
import redis
from django.db import transaction
import realtime
from realtime.loop import run_sync
from realtime.outbox import store
from realtime.outbox.relay import stop_relays
from realtime.publishing import new_relay
client = redis.Redis.from_url(sys.argv[1], decode_responses=True)
def logged(topic):
    return [fields["i"] for _, fields in client.xrange(f"{sys.argv[2]}:log:{{{topic}}}")]
store.write({"topic": "a", "event": "e", "id": "m0", "ack": False, "data": "{}"}, None)
held = store.claim("other", 30, "default")
with transaction.atomic():
    realtime.publish("a", "e", {}, message_id="m1", durable=True)
    realtime.publish("b", "e", {}, message_id="m2", durable=True)
print(json.dumps([logged("a"), logged("b")]))
stop_relays()
relay = new_relay()
run_sync(relay.deliver([store.message_of(row) for row in held], 5.0))
store.finish([row.id for row in held], 0, "default")
print(relay.drain(), json.dumps(logged("a")))
"""


def test_on_postgresql_the_committing_thread_keeps_its_rows_behind_a_relays_claim(
    postgres_database, redis_url
):
    import json

    prefix = f"rt-outbox-{uuid.uuid4().hex[:8]}"
    env = environment(postgres_database, redis_url, prefix)
    try:
        done = script_process("", FAST_PATH, redis_url, prefix, env=env)
        assert done.returncode == 0, done.stderr
        at_commit, at_end = done.stdout.strip().splitlines()[-2:]
        assert json.loads(at_commit) == [[], ["m2"]]  # m1 waits for m0, another relay's
        assert at_end == '1 ["m0", "m1"]'
    finally:
        delete_prefix(redis_url, prefix)
