"""Redis fails under running nodes (issue 14): a restart costs live clients a `reset` at most,
publishing tells the truth (an id once the log has the message, `PublishTimeout` when the
outcome is unknown, idempotent retries by message id), a node born during the outage heals
and its readiness endpoint says so, and the logs stay short."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
import websockets
from asgiref.sync import sync_to_async
from django.db import transaction

import realtime
from realtime import signals
from realtime.backends import get_log
from realtime.log.memory import MemoryLog
from realtime.loop import close_publisher
from tests.conftest import RedisServer, free_port, realtime_on_redis
from tests.servers import Client, Daphne, SSEReader, make_database, running_nodes

PREFIX = "rt-failures"


@pytest.fixture(scope="module")
def db() -> Iterator[tuple[str, dict[str, Any]]]:
    path, users = make_database()
    yield path, users
    os.unlink(path)


# The nodes' "still down" reminder (realtime.health.REMINDER, 30 s in production), shortened so
# that a 20 s outage has the two reminders a 60 s one has in production (tests/asgi.py).
REMINDER = 10.0
OUTAGE = 2 * REMINDER + 1
DOWN = re.compile(r" Backend '([^']+)' is down: ")
REMINDER_LINE = re.compile(r" Backends still down: ")


def node_env(private_redis: RedisServer) -> dict[str, str]:
    return {
        "RT_REDIS_URL": private_redis.url,
        "RT_PREFIX": PREFIX,
        "RT_BACKEND_GRACE": "20",
        "RT_HEALTH_REMINDER": str(REMINDER),
    }


@pytest.fixture(scope="module")
def nodes(private_redis, db) -> Iterator[list[Daphne]]:
    with running_nodes(db[0], node_env(private_redis)) as servers:
        yield servers


@pytest.fixture
def publisher(private_redis) -> Iterator[None]:
    """This process publishes through the private Redis, as the nodes do."""
    with realtime_on_redis(private_redis.url, PREFIX, PUBLISH_TIMEOUT=1.0):
        yield


def broadcast_failures() -> float:
    """Broadcasts of this process that failed even after their retry on a fresh connection."""
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("realtime_publish_errors_total", {"step": "broadcast"}) or 0


async def publish(topic: str, data: Any, **kwargs: Any) -> str:
    return await sync_to_async(realtime.publish)(topic, "n", data, **kwargs)


class Reader:
    """Collects every frame of one client (WebSocket or SSE) in the background."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.frames: list[dict[str, Any]] = []
        self.ended: str | None = None
        self.task: asyncio.Task[None] | None = None

    def messages(self) -> list[str]:
        return [f["id"] for f in self.frames if f["type"] == "message"]

    def has_reset(self) -> bool:
        return any(f["type"] == "reset" for f in self.frames)


async def read_ws(client: Client, reader: Reader) -> None:
    try:
        while True:
            reader.frames.append(await client.receive(timeout=3600))
    except websockets.ConnectionClosed as closed:
        reader.ended = f"closed {closed.rcvd.code if closed.rcvd else None}"


async def read_sse(events: SSEReader, reader: Reader) -> None:
    try:
        while True:
            reader.frames.append(await events.frame(timeout=3600))
    except (EOFError, httpx.HTTPError) as error:
        reader.ended = f"sse ended: {error!r}"


async def follow_ws(
    stack: contextlib.AsyncExitStack, node: Daphne, topic: str, name: str
) -> Reader:
    """A WebSocket client subscribed to ``topic``, its frames collected in the background."""
    client = await Client.connect(node)
    stack.push_async_callback(client.close)
    subscribed = await client.subscribe(topic)
    assert subscribed["type"] == "subscribed"
    reader = Reader(name)
    reader.frames.append(subscribed)
    reader.task = asyncio.create_task(read_ws(client, reader))
    return reader


async def follow_sse(
    stack: contextlib.AsyncExitStack,
    node: Daphne,
    topic: str,
    headers: dict[str, str],
    name: str,
) -> Reader:
    """An SSE stream of ``topic``, its frames collected in the background."""
    http = await stack.enter_async_context(
        httpx.AsyncClient(base_url=node.http, timeout=httpx.Timeout(10, read=None))
    )
    response = await stack.enter_async_context(
        http.stream("GET", "/realtime/sse/", params={"topic": topic}, headers=headers)
    )
    assert response.status_code == 200
    reader = Reader(name)
    reader.task = asyncio.create_task(read_sse(SSEReader(response), reader))
    return reader


async def wait_for(condition: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


@pytest.mark.e2e
async def test_a_restart_costs_live_clients_a_reset_at_most(nodes, private_redis, db, publisher):
    topic = f"public.fail-{uuid.uuid4().hex[:6]}"
    quiet = f"public.quiet-{uuid.uuid4().hex[:6]}"  # one message right after the restart
    alice = {"Authorization": f"Bearer {db[1]['alice']['token']}"}
    readers: list[Reader] = []
    quiet_readers: list[Reader] = []
    async with contextlib.AsyncExitStack() as stack:
        for index, node in enumerate(nodes):
            quiet_readers.append(await follow_ws(stack, node, quiet, f"quiet@node{index}"))
            for number in range(3):
                readers.append(await follow_ws(stack, node, topic, f"ws{number}@node{index}"))
            readers.append(await follow_sse(stack, node, topic, alice, f"sse@node{index}"))
        await wait_for(
            lambda: all(any(f["type"] == "subscribed" for f in r.frames) for r in readers),
            10,
            "every client subscribed",
        )

        before = [await publish(topic, f"before-{n}") for n in range(3)]
        await wait_for(lambda: all(set(before) <= set(r.messages()) for r in readers), 10, "before")

        # A publisher at ~3 msg/s runs through the outage; failures during it are loud.
        outcomes: list[tuple[float, str | BaseException]] = []
        stop = asyncio.Event()

        async def publish_steadily() -> None:
            number = 0
            while not stop.is_set():
                number += 1
                started = time.monotonic()
                try:
                    outcomes.append((started, await publish(topic, f"steady-{number}")))
                except realtime.PublishError as error:
                    outcomes.append((started, error))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.3)

        steady = asyncio.create_task(publish_steadily())
        await asyncio.sleep(1)
        marks = [len(node.log) for node in nodes]
        private_redis.stop()
        down = time.monotonic()
        # clients arriving during the outage are answered with the documented codes, and
        # none of them costs the node's log a line of its own
        answers = await asyncio.gather(*(knock(node, alice) for node in nodes))
        assert all(a == [503, 503, 503, 4011] * 2 for a in answers), answers
        # the rest of the outage itself, not a synchronisation
        await asyncio.sleep(max(0.0, 10 - (time.monotonic() - down)))
        private_redis.start()
        back = time.monotonic()
        failures = broadcast_failures()
        right_after = await publish(topic, "right-after")  # an id, not PublishError
        quiet_id = await publish(quiet, "only")
        # the stale channel-layer connection was replaced: the broadcast went out live
        assert broadcast_failures() == failures
        await asyncio.sleep(2)
        stop.set()
        await steady
        last = await publish(topic, "last")

        await wait_for(
            lambda: all(last in r.messages() or r.ended for r in readers), 15, "the last message"
        )
        for reader in readers:
            assert reader.ended is None, f"{reader.name} was disconnected: {reader.ended}"
            ids = reader.messages()
            assert len(ids) == len(set(ids)), f"{reader.name} got a message twice"
            assert ids.count(right_after) == 1, reader.name
            assert set(before) <= set(ids)
            assert reader.has_reset(), f"{reader.name}: Redis lost the log, so a reset is due"
            # after the reset, everything published since Redis came back is there
            after = [i for s, i in outcomes if s > back and isinstance(i, str)]
            assert set(after) <= set(ids), reader.name
        assert all(isinstance(o, str) for s, o in outcomes if s > back), outcomes
        for node, mark in zip(nodes, marks, strict=True):
            lines = node.log[mark:]
            assert len(lines) < 10, "".join(lines)
            assert not any("Traceback" in line for line in lines), "".join(lines)
        # the quiet topic gets nothing more: its message still arrives (the nodes check their
        # topics against the log once their channel layer is back)
        await wait_for(
            lambda: all(quiet_id in r.messages() for r in quiet_readers), 10, "quiet message"
        )
        for reader in readers + quiet_readers:
            assert reader.task is not None
            reader.task.cancel()


async def knock(node: Daphne, headers: dict[str, str]) -> list[int | None]:
    """Twice: a long-poll, an SSE open, a POSTed send and a WebSocket subscribe, on a topic
    whose log cannot be read; their statuses and the WebSocket's close code."""
    answers: list[int | None] = []
    topic = f"public.knock-{uuid.uuid4().hex[:6]}"
    async with httpx.AsyncClient(base_url=node.http, timeout=10) as http:
        for _ in range(2):
            poll = await http.get("/realtime/poll/", params={"topic": topic}, headers=headers)
            sse = await http.get("/realtime/sse/", params={"topic": topic}, headers=headers)
            frame = {"type": "send", "id": uuid.uuid4().hex, "event": "echo", "data": 1}
            send = await http.post("/realtime/send/", json=frame, headers=headers)
            answers += [poll.status_code, sse.status_code, send.status_code]
            client = await Client.connect(node)
            await client.send({"type": "subscribe", "topic": topic})
            answers.append(await client.close_code(timeout=10))
    return answers


async def ready(node: Daphne) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(base_url=node.http, timeout=10) as http:
        response = await http.get("/realtime/ready/")
        return response.status_code, response.json()


@pytest.mark.e2e
async def test_a_node_born_during_an_outage_heals_and_says_when_it_is_ready(
    private_redis, db, publisher
):
    private_redis.stop()
    node = Daphne(db[0], node_env(private_redis))
    try:
        status, body = await ready(node)
        assert status == 503, body
        assert body["ready"] is False and "log" in body["failed"], body
        with contextlib.suppress(OSError, websockets.WebSocketException, TimeoutError):
            early = await Client.connect(node)  # whatever it gets, it must not break the node
            await early.subscribe("public.early")
            await early.close()

        private_redis.start()
        back = time.monotonic()
        deadline = back + 5
        while (await ready(node))[0] != 200:
            assert time.monotonic() < deadline, "the node never became ready"
            await asyncio.sleep(0.2)
        assert (await ready(node))[1] == {"ready": True, "failed": []}

        topic = f"public.heal-{uuid.uuid4().hex[:6]}"
        client = await Client.connect(node)
        assert (await client.subscribe(topic))["type"] == "subscribed"
        message_id = await publish(topic, "hello")
        frame = await client.receive()
        assert (frame["type"], frame["id"]) == ("message", message_id)
        assert time.monotonic() - back < 5 + 5  # ready within 5 s; the rest is this check
        await client.close()
    finally:
        node.stop()


@pytest.mark.e2e
async def test_a_paused_redis_makes_publish_time_out_and_a_retry_appends_once(
    private_redis, publisher
):
    topic = f"public.pause-{uuid.uuid4().hex[:6]}"
    await publish(topic, "warm-up")
    message_id = f"order-{uuid.uuid4().hex[:8]}"
    private_redis.pause()
    try:
        with pytest.raises(realtime.PublishTimeout) as raised:
            await publish(topic, "once", message_id=message_id)
        assert "unknown" in str(raised.value) and "same message id" in str(raised.value)
    finally:
        private_redis.resume()
    assert await publish(topic, "once", message_id=message_id) == message_id
    plain = redis.Redis.from_url(private_redis.url)
    stream = plain.xrange(f"{PREFIX}:log:{{{topic}}}")
    assert [fields[b"i"].decode() for _, fields in stream].count(message_id) == 1
    assert [fields[b"d"] for _, fields in stream] == [b'"warm-up"', b'"once"']


# ---- without daphne -------------------------------------------------------------------------


async def test_the_memory_log_appends_once_per_message_id():
    log = MemoryLog(size=3, ttl=60)
    first = await log.append("t", "a", "n", "1", False, time.time())
    assert await log.append("t", "a", "n", "other", False, time.time()) == first
    replay = await log.read_after("t", first[0], 0)
    assert [(e.message_id, e.data) for e in replay.entries] == [("a", "1")]
    for name in "bcd":  # "a" leaves the log, and with it its id
        await log.append("t", name, "n", "x", False, time.time())
    assert await log.append("t", "a", "n", "2", False, time.time()) == (first[0], 5)


async def test_the_redis_log_appends_once_per_message_id(use_redis):
    log = get_log()
    first = await log.append("t", "a", "n", "1", False, time.time())
    assert await log.append("t", "a", "n", "other", False, time.time()) == first
    second = await log.append("t", "b", "n", "2", False, time.time())
    assert second == (first[0], first[1] + 1)
    replay = await log.read_after("t", first[0], 0)
    assert [(e.message_id, e.data) for e in replay.entries] == [("a", "1"), ("b", "2")]


@pytest.mark.django_db(transaction=True)
def test_publish_takes_the_callers_message_id():
    assert realtime.publish("public.ids", "n", 1, message_id="order-42.v1") == "order-42.v1"
    assert realtime.publish("public.ids", "n", 1, message_id="order-42.v1") == "order-42.v1"
    replay = asyncio.run(get_log().read_after("public.ids", None, 0))
    assert replay.offset == 1
    with pytest.raises(ValueError, match="message_id"):
        realtime.publish("public.ids", "n", 1, message_id="not an id!")


@pytest.mark.django_db(transaction=True)
def test_a_failed_publish_on_commit_is_reported_not_raised(realtime_settings):
    realtime_settings(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", PUBLISH_TIMEOUT=2.0)
    seen: list[dict[str, Any]] = []

    def receiver(**kwargs: Any) -> None:
        seen.append(kwargs)

    signals.publish_failed.connect(receiver)
    try:
        with transaction.atomic():
            message_id = realtime.publish("public.commit", "n", 1)
        # the commit went through; the failure is a signal, not an exception
        assert [(s["topic"], s["message_id"]) for s in seen] == [("public.commit", message_id)]
        assert isinstance(seen[0]["error"], realtime.PublishError)
    finally:
        signals.publish_failed.disconnect(receiver)
        close_publisher()


def test_readiness_answers_200_when_the_backends_answer(client):
    response = client.get("/realtime/ready/")
    assert (response.status_code, response.json()) == (200, {"ready": True, "failed": []})
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]


def test_readiness_answers_503_naming_what_failed(client, realtime_settings, caplog, broker):
    realtime_settings(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    response = client.get("/realtime/ready/")
    assert response.status_code == 503
    # the log is on the dead Redis; so is the broker when it is the Redis broker (the channel
    # layer of this process is the in-memory one)
    failed = ["log", "layer"] if broker == "redis" else ["log"]
    assert response.json() == {"ready": False, "failed": failed}
    assert not [r for r in caplog.records if r.name == "django.request"], "an answer, no error"


async def test_apublish_takes_the_callers_message_id_and_appends_it_once():
    first = await realtime.apublish("public.aids", "n", 1, message_id="a:1")
    assert await realtime.apublish("public.aids", "n", 1, message_id="a:1") == first == "a:1"
    assert (await get_log().read_after("public.aids", None, 0)).offset == 1


def test_backend_health_logs_once_per_state_change(caplog, monkeypatch):
    from prometheus_client import REGISTRY

    from realtime import health

    component = f"test-{uuid.uuid4().hex[:6]}"
    errors = {"component": component}
    health.reset()  # no other component down: the reminder names this one alone
    caplog.set_level("INFO", logger="realtime.health")
    for _ in range(50):
        health.failed(component, ConnectionError("refused"))
    assert not health.is_up(component)
    assert REGISTRY.get_sample_value("realtime_backend_up", errors) == 0
    assert REGISTRY.get_sample_value("realtime_backend_errors_total", errors) == 50
    monkeypatch.setattr(health, "REMINDER", 0.0)  # the reminder is due now
    health.failed(component, ConnectionError("refused"))
    health.ok(component)
    health.ok(component)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", f"Backend {component!r} is down: ConnectionError: refused"),
        (
            "WARNING",
            f"Backends still down: {component!r} for 0 s (51 failures); "
            "last error: ConnectionError: refused",
        ),
        ("INFO", f"Backend {component!r} is back after 0 s (51 failures)"),
    ]
    assert health.is_up(component) and health.outages(component) == 1
    assert REGISTRY.get_sample_value("realtime_backend_up", errors) == 1


@pytest.mark.e2e
async def test_a_restart_with_persistence_costs_live_clients_nothing(
    nodes, private_redis, publisher
):
    # last of this module's daphne tests: the private Redis keeps AOF from here on
    private_redis.stop()
    private_redis.appendonly = True
    private_redis.start()
    for node in nodes:
        deadline = time.monotonic() + 10
        while (await ready(node))[0] != 200:
            assert time.monotonic() < deadline, "the node never became ready"
            await asyncio.sleep(0.2)
    topic = f"public.aof-{uuid.uuid4().hex[:6]}"
    readers: list[Reader] = []
    async with contextlib.AsyncExitStack() as stack:
        for index, node in enumerate(nodes):
            for number in range(2):
                client = await Client.connect(node)
                stack.push_async_callback(client.close)
                assert (await client.subscribe(topic))["type"] == "subscribed"
                reader = Reader(f"ws{number}@node{index}")
                reader.task = asyncio.create_task(read_ws(client, reader))
                readers.append(reader)
        published = [await publish(topic, "before")]
        private_redis.stop()
        with pytest.raises(realtime.PublishError):
            await publish(topic, "during")
        await asyncio.sleep(3)  # the outage itself, not a synchronisation
        private_redis.start()
        failures = broadcast_failures()
        published.append(await publish(topic, "right-after"))
        assert broadcast_failures() == failures, "broadcast retried on a fresh connection"
        published += [await publish(topic, f"after-{n}") for n in range(3)]
        await wait_for(
            lambda: all(published[-1] in r.messages() or r.ended for r in readers), 15, "last"
        )
        for reader in readers:
            assert reader.ended is None, f"{reader.name} was disconnected: {reader.ended}"
            assert not reader.has_reset(), f"{reader.name}: the log survived, no reset is due"
            assert reader.messages() == published, reader.name
            offsets = [f["offset"] for f in reader.frames if f["type"] == "message"]
            assert offsets == list(range(offsets[0], offsets[0] + len(published)))
            assert reader.task is not None
            reader.task.cancel()


async def long_poll(node: Daphne, topic: str, headers: dict[str, str], reader: Reader) -> None:
    """A long-poll client: it keeps its cursor, and after a 503 waits what ``Retry-After``
    says. Runs until cancelled."""
    cursor = ""
    async with httpx.AsyncClient(base_url=node.http, timeout=30) as http:
        while True:
            params = {"topic": topic, **({"cursor": cursor} if cursor else {})}
            response = await http.get("/realtime/poll/", params=params, headers=headers)
            if response.status_code == 200:
                body = response.json()
                reader.frames += [
                    json.loads(f) if isinstance(f, str) else f for f in body["frames"]
                ]
                cursor = body["cursor"]
            elif response.status_code == 503:
                await asyncio.sleep(float(response.headers["Retry-After"]))
            else:
                assert response.status_code == 204, response.text


@pytest.mark.e2e
async def test_a_long_outage_costs_each_node_a_few_log_lines(nodes, private_redis, db, publisher):
    """An outage of two reminders (60 s in production; :data:`OUTAGE` here, with the nodes'
    reminder at :data:`REMINDER`), with WebSocket, SSE and long-poll clients on both nodes and
    a publisher at 1 msg/s: each node logs fewer than 10 lines and no traceback, and every
    client gets the first message published after Redis is back."""
    topic = f"public.long-{uuid.uuid4().hex[:6]}"
    alice = {"Authorization": f"Bearer {db[1]['alice']['token']}"}
    readers: list[Reader] = []
    async with contextlib.AsyncExitStack() as stack:
        for index, node in enumerate(nodes):
            readers.append(await follow_ws(stack, node, topic, f"ws@node{index}"))
            readers.append(await follow_sse(stack, node, topic, alice, f"sse@node{index}"))
            reader = Reader(f"poll@node{index}")
            reader.task = asyncio.create_task(long_poll(node, topic, alice, reader))
            readers.append(reader)
        await wait_for(
            lambda: all(any(f["type"] == "subscribed" for f in r.frames) for r in readers),
            10,
            "every client subscribed",
        )
        marks = [len(node.log) for node in nodes]
        private_redis.stop()
        down = time.monotonic()
        failures = 0
        while time.monotonic() - down < OUTAGE:  # the outage itself, at 1 publish/s
            with contextlib.suppress(realtime.PublishError):
                await publish(topic, "during")
            failures += 1
            await asyncio.sleep(1)
        private_redis.start()
        after = await publish_until_it_works(topic)
        await wait_for(lambda: all(after in r.messages() for r in readers), 30, "after")
        for reader in readers:
            assert reader.task is not None
            reader.task.cancel()
    assert failures >= OUTAGE / 2, "the publisher kept trying through the outage"
    for node, mark in zip(nodes, marks, strict=True):
        lines = node.log[mark:]
        assert len(lines) < 10, "".join(lines)
        node.assert_no_tracebacks(since=mark)
        # what the lines are: a warning per component that went down (twice at most: one
        # may fail once more as Redis returns), the reminders shared by every component down
        # (one per REMINDER), and hardly anything else (a component that logs each failure
        # of its own, even every few seconds, fails this)
        downs = [m[1] for m in map(DOWN.search, lines) if m]
        reminders = [line for line in lines if REMINDER_LINE.search(line)]
        assert max(Counter(downs).values(), default=0) <= 2, "".join(lines)
        assert len(reminders) <= OUTAGE // REMINDER + 1, "".join(lines)
        assert len(lines) - len(downs) - len(reminders) <= 2, "".join(lines)


async def publish_until_it_works(topic: str, within: float = 15) -> str:
    deadline = time.monotonic() + within
    while True:
        try:
            return await publish(topic, "after")
        except realtime.PublishError:
            assert time.monotonic() < deadline, "publishing never recovered"
            await asyncio.sleep(0.2)
