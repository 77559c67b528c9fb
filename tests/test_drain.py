"""Graceful drain (realtime/drain.py) on real daphne and uvicorn nodes sharing the real Redis:
on SIGTERM a node sends its clients elsewhere with 4012, spread over ``DRAIN_WINDOW``, refuses
new connections meanwhile, then stops; clients that resume on the other node with their
cursors miss nothing and get nothing twice, with or without a drain."""

from __future__ import annotations

import asyncio
import configparser
import json
import shlex
import signal
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import websockets
from asgiref.sync import sync_to_async

import realtime
from bench.asgi_servers import server_command
from realtime.backends import get_registry
from realtime.drain import CLOSE_GRACE
from realtime.publishing import aget_cursors
from tests import markdown
from tests.pubsub import subscribed_on_redis
from tests.servers import ROOT, Client, Daphne, Gunicorn, SSEReader, Uvicorn, running_nodes

pytestmark = pytest.mark.e2e

WINDOW = 3.0
CLIENTS = 6
MESSAGES = 80
INTERVAL = 0.05  # a steady 20 messages/s, for about 4 s: through the whole window
MAX_MORE = 40
POLL_WINDOW = 1.0  # one waiting poll: answered at a random moment of the window


@pytest.fixture(params=[Daphne, Uvicorn], ids=["daphne", "uvicorn"])
def server(request: pytest.FixtureRequest) -> type[Daphne]:
    return request.param  # type: ignore[no-any-return]


@dataclass
class Follower:
    """One client: subscribed on node A, moves to node B when A closes it."""

    offsets: list[int] = field(default_factory=list)
    code: int | None = -1  # the close code A sent (None: no close frame)
    closed_at: float = 0.0
    recovered: bool = False
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)


async def follow(
    name: str, first: Daphne, second: Daphne, follower: Follower, closed_one: asyncio.Event
) -> None:
    client = await Client.connect(first)
    subscribed = await client.subscribe(name)
    cursor = {"epoch": subscribed["epoch"], "offset": subscribed["offset"]}
    follower.subscribed.set()
    try:
        while True:
            frame = await client.receive(timeout=30)
            if frame["type"] == "message":
                follower.offsets.append(frame["offset"])
                cursor = {"epoch": frame["epoch"], "offset": frame["offset"]}
    except websockets.ConnectionClosed as closed:
        follower.code = closed.rcvd.code if closed.rcvd else None
        follower.closed_at = asyncio.get_running_loop().time()
        closed_one.set()
    again = await Client.connect(second)
    answer = await again.subscribe(name, cursor)
    follower.recovered = answer["type"] == "subscribed" and answer["recovered"]
    while not follower.offsets or follower.offsets[-1] < MESSAGES:
        frame = await again.receive(timeout=15)
        if frame["type"] == "message":
            follower.offsets.append(frame["offset"])
    await again.close()


async def follow_sse(name: str, first: Daphne, second: Daphne, follower: Follower) -> None:
    """The same over SSE: A's stream ends with a `close` event; B's resumes from the last
    event's id."""
    last_id = ""
    async with httpx.AsyncClient(timeout=30) as http:
        url = f"{first.http}/realtime/sse/"
        async with http.stream("GET", url, params={"topic": name}) as response:
            events = SSEReader(response)
            follower.subscribed.set()
            while True:
                frame = await events.frame(timeout=30)
                last_id = frame["_id"] or last_id
                if frame["type"] == "message":
                    follower.offsets.append(frame["offset"])
                elif frame["type"] == "close":
                    follower.code = frame["code"]
                    break
        url = f"{second.http}/realtime/sse/"
        params = {"topic": name, "cursor": last_id}
        async with http.stream("GET", url, params=params) as response:
            events = SSEReader(response)
            while not follower.offsets or follower.offsets[-1] < MESSAGES:
                frame = await events.frame(timeout=15)
                if frame["type"] == "subscribed":
                    follower.recovered = frame["recovered"]
                elif frame["type"] == "message":
                    follower.offsets.append(frame["offset"])


async def publish_steadily(name: str) -> None:
    for n in range(MESSAGES):
        await sync_to_async(realtime.publish)(name, "tick", {"n": n})
        await asyncio.sleep(INTERVAL)


async def stop_under_load(
    nodes: list[Daphne],
    *,
    refused: list[Any] | None = None,
    streams: int = 0,
    clients: int = CLIENTS,
    more: Callable[[int], Awaitable[bool]] | None = None,
) -> tuple[list[Follower], int]:
    """CLIENTS clients on node A follow a topic published at a steady rate; A gets SIGTERM;
    each client resumes on node B from its cursor. Returns the clients and A's exit status;
    with ``refused``, what A answered meanwhile to a new handshake, stream and readiness check
    (taken once the first client was closed). ``streams`` more clients follow over SSE (after
    the WebSocket ones in the list). ``more``, given how many clients are subscribed, says
    whether to add one more WebSocket client (at most :data:`MAX_MORE`), before the first
    message."""
    first, second = nodes
    name = f"public.drain-{uuid.uuid4().hex[:8]}"
    followers = [Follower() for _ in range(clients)]
    closed_one = asyncio.Event()
    tasks = [asyncio.create_task(follow(name, first, second, f, closed_one)) for f in followers]
    for _ in range(streams):
        followers.append(Follower())
        tasks.append(asyncio.create_task(follow_sse(name, first, second, followers[-1])))
    # every client subscribed before the first message: each expects all of them
    async with asyncio.timeout(20):
        await asyncio.gather(*(f.subscribed.wait() for f in followers))
        for _ in range(MAX_MORE):
            if more is None or not await more(len(followers)):
                break
            followers.append(Follower())
            follower = follow(name, first, second, followers[-1], closed_one)
            tasks.append(asyncio.create_task(follower))
            await followers[-1].subscribed.wait()
        else:
            raise AssertionError(f"still more clients wanted after {MAX_MORE}")
    publisher = asyncio.create_task(publish_steadily(name))
    await asyncio.sleep(0.5)
    first.process.send_signal(signal.SIGTERM)
    if refused is not None:
        async with asyncio.timeout(WINDOW + 10):
            await closed_one.wait()
        refused.extend(await new_arrivals(first, name))
    async with asyncio.timeout(60):
        await asyncio.gather(publisher, *tasks)
    status = await asyncio.to_thread(first.process.wait, 30)
    return followers, status


async def new_arrivals(node: Daphne, name: str) -> list[Any]:
    """What a draining node answers to a WebSocket handshake, an SSE stream, a long-poll and
    its readiness check ("refused": the connection itself was refused)."""
    answers: list[Any] = []
    try:
        ws = await websockets.connect(node.url, origin=node.origin, open_timeout=5)  # type: ignore[arg-type]
    except websockets.InvalidStatus as refusal:
        answers.append(refusal.response.status_code)
    except ConnectionRefusedError:
        answers.append("refused")
    else:  # accepted, then a `close` frame and 4012
        frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
        answers.append((frame["type"], frame["code"], frame["retry_after_ms"]))
    async with httpx.AsyncClient(base_url=node.http, timeout=5) as http:
        for path in ("/realtime/sse/", "/realtime/poll/", "/realtime/ready/"):
            try:
                response = await http.get(path, params={"topic": name})
            except httpx.ConnectError:
                answers.append("refused")
                continue
            if path == "/realtime/ready/":
                answers.append((response.status_code, "draining" in response.json()["failed"]))
            else:
                answers.append((response.status_code, response.headers.get("Retry-After")))
    return answers


def assert_everything_once(followers: list[Follower]) -> None:
    for follower in followers:
        assert follower.offsets == list(range(1, MESSAGES + 1)), follower.offsets
        assert follower.recovered


async def test_a_draining_node_spreads_4012_over_the_window_and_loses_nothing(
    server, database, redis_url, use_redis
):
    env = {"RT_REDIS_URL": redis_url, "RT_PREFIX": use_redis["prefix"]}
    refused: list[Any] = []
    with running_nodes(database[0], {**env, "RT_DRAIN_WINDOW": str(WINDOW)}, node=server) as nodes:
        followers, status = await stop_under_load(nodes, refused=refused, streams=2)
        nodes[1].assert_no_tracebacks()
    # every WebSocket closed with 4012, every SSE stream ended with a `close` event saying 4012
    assert [f.code for f in followers] == [4012] * (CLIENTS + 2)
    # a ramp, not a wall: the closes came one by one (how far apart depends on the machine's
    # load: no bound on it here; bench/rolling.py measures the ramp)
    moments = sorted(f.closed_at for f in followers[:CLIENTS])
    assert moments[-1] - moments[0] > 0
    assert_everything_once(followers)
    # new connections were refused while it drained: daphne stopped listening (a proxy
    # passes a refused connection on); uvicorn refused the handshake, SSE and long-poll with
    # 503 and Retry-After, and was not ready
    if server is Uvicorn:
        assert refused == [503, (503, "1"), (503, "1"), (503, True)]
    else:
        assert refused == ["refused"] * 4
    assert status is not None


async def test_sigterm_without_a_drain_loses_nothing(server, database, redis_url, use_redis):
    env = {"RT_REDIS_URL": redis_url, "RT_PREFIX": use_redis["prefix"]}
    with running_nodes(database[0], env, node=server) as nodes:
        followers, _ = await stop_under_load(nodes)
        nodes[1].assert_no_tracebacks()
    # daphne drops its sockets without a close frame; uvicorn sends 1012
    assert {f.code for f in followers} == ({1012} if server is Uvicorn else {None})
    assert_everything_once(followers)


async def poll(node: Daphne, name: str, cursor: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=node.http, timeout=30) as http:
        return await http.get("/realtime/poll/", params={"topic": name, "cursor": cursor})


async def test_a_waiting_long_poll_gets_204_from_a_drain_and_its_cursor_resumes_elsewhere(
    database, redis_url, use_redis, broker
):
    """A long-poll waiting on node A when A starts draining is answered 204 within the window
    (its POLL_TIMEOUT is far longer); the client polls node B with the same cursor and gets
    every message once, those published before the 204 and after it."""
    prefix = use_redis["prefix"]
    env = {
        "RT_REDIS_URL": redis_url,
        "RT_PREFIX": prefix,
        "RT_DRAIN_WINDOW": str(POLL_WINDOW),
        "RT_POLL_TIMEOUT": "30",
    }
    name = f"public.drain-poll-{uuid.uuid4().hex[:8]}"
    epoch = (await aget_cursors([name]))[name]["epoch"]
    offsets: list[int] = []
    with running_nodes(database[0], env) as (first, second):
        for n in range(2):  # a first poll on A takes these two and gives the cursor after them
            await sync_to_async(realtime.publish)(name, "tick", {"n": n})
        answer = await poll(first, name, f"{name}~{epoch}~0")
        assert answer.status_code == 200, answer.text
        offsets += [frame["offset"] for frame in answer.json()["frames"]]
        cursor = answer.json()["cursor"]
        loop = asyncio.get_running_loop()
        waiting = asyncio.create_task(poll(first, name, cursor))
        await subscribed_on_redis(redis_url, prefix, broker, name)  # the poll waits on A
        signalled = loop.time()
        first.process.send_signal(signal.SIGTERM)
        drained = await waiting
        answered = loop.time() - signalled
        for n in range(2, 5):  # published once A answered, while the client moves to B
            await sync_to_async(realtime.publish)(name, "tick", {"n": n})
        for _ in range(5):  # B answers at once while the log holds more than the cursor
            if offsets[-1] == 5:
                break
            answer = await poll(second, name, cursor)
            assert answer.status_code == 200, answer.text
            offsets += [frame["offset"] for frame in answer.json()["frames"]]
            cursor = answer.json()["cursor"]
        status = await asyncio.to_thread(first.process.wait, 30)
        second.assert_no_tracebacks()
    assert drained.status_code == 204
    assert answered < POLL_WINDOW + CLOSE_GRACE
    assert offsets == [1, 2, 3, 4, 5]
    assert status is not None


async def test_gunicorn_with_uvicorn_workers_drains_in_each_worker(database, redis_url, use_redis):
    """docs/deployment.md's gunicorn command (two uvicorn workers on one port) as node A, a
    uvicorn node as B: WebSocket and SSE clients spread over both workers get every message;
    SIGTERM to the arbiter reaches each worker, whose drain closes its clients with 4012 (not
    uvicorn's 1012), and they resume on B missing nothing."""
    env = {
        "RT_REDIS_URL": redis_url,
        "RT_PREFIX": use_redis["prefix"],
        "RT_DRAIN_WINDOW": str(WINDOW),
    }
    workers: set[str] = set()
    clients, streams = 4, 2

    async def one_worker_only(subscribed: int) -> bool:
        """Whether every client so far is on one worker (the kernel hands a connection to
        whichever worker accepts first: not always both): read when the registry lists them
        all (nodes write it in batches)."""
        deadline = time.monotonic() + 10
        while True:
            entries = await get_registry().all()
            if len(entries) == subscribed:
                workers.update(entry.node for entry in entries)
                return len(workers) < 2
            assert time.monotonic() < deadline, f"{len(entries)} of {subscribed} registered"
            await asyncio.sleep(0.05)

    with running_nodes(database[0], env, count=1, node=Gunicorn) as [arbiter]:
        with running_nodes(database[0], env, count=1, node=Uvicorn) as [other]:
            followers, status = await stop_under_load(
                [arbiter, other], streams=streams, clients=clients, more=one_worker_only
            )
            other.assert_no_tracebacks()
        arbiter.assert_no_tracebacks()
    assert len(workers) == 2, workers
    assert {f.code for f in followers} == {4012}
    assert_everything_once(followers)
    assert status == 0  # the arbiter stopped once its workers had drained
    assert "SIGKILL" not in "".join(arbiter.log)  # no worker killed after the timeout


def test_gunicorn_waits_out_the_drain():
    argv = shlex.split(documented("gunicorn").strip())
    timeout = float(argv[argv.index("--graceful-timeout") + 1])
    assert timeout > documented_window() + CLOSE_GRACE


# ---- docs/deployment.md: the drain setting and the supervisors' configuration ---------------


def documented(name: str) -> str:
    return markdown.marked_block(
        (ROOT / "docs" / "deployment.md").read_text(), f"deployment: {name}"
    )


def documented_window() -> float:
    namespace: dict[str, Any] = {"REALTIME": {}}
    exec(documented("drain"), namespace)
    return float(namespace["REALTIME"]["DRAIN_WINDOW"])


def daphne_commands() -> list[list[str]]:
    """docs/deployment.md's daphne command lines (the ones tests/servers.py runs)."""
    return [shlex.split(line) for line in documented("daphne").strip().splitlines()]


def test_the_systemd_unit_waits_out_the_drain_and_runs_the_documented_daphne_command():
    unit = dict(
        line.split("=", 1)
        for line in documented("systemd").splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert unit["KillSignal"] == "SIGTERM"
    assert float(unit["TimeoutStopSec"]) > documented_window() + CLOSE_GRACE
    assert int(unit["LimitNOFILE"]) > 10_000
    command = shlex.split(unit["ExecStart"])
    assert command[0].endswith("/daphne")
    for documented_command in daphne_commands():  # the port is the instance's name
        assert ["daphne", *command[1:]] == [*documented_command[:4], "%i", *documented_command[5:]]


def test_the_supervisor_program_waits_out_the_drain_and_runs_the_documented_daphne_commands():
    config = configparser.ConfigParser(interpolation=None)
    config.read_string(documented("supervisor"))
    program = config["program:realtime"]
    assert program["stopsignal"] == "TERM"
    assert float(program["stopwaitsecs"]) > documented_window() + CLOSE_GRACE
    assert int(config["supervisord"]["minfds"]) > 10_000
    first = int(program["numprocs_start"])
    commands = [
        shlex.split(program["command"].replace("%(process_num)d", str(n)))
        for n in range(first, first + int(program["numprocs"]))
    ]
    assert [["daphne", *command[1:]] for command in commands] == daphne_commands()
    assert all(command[0].endswith("/daphne") for command in commands)


@pytest.mark.parametrize("name", ["daphne", "uvicorn"])
def test_the_tests_nodes_run_the_documented_commands_without_the_servers_own_pings(name):
    # docs/deployment.md: realtime's heartbeat finds dead sockets, so the server's WebSocket
    # ping (every 20 s by default, on every socket) is turned off; the nodes of the tests,
    # whose heartbeat tests then prove it enough, run exactly these commands
    for line in documented(name).strip().splitlines():
        words = shlex.split(line)
        port, application = (
            int(words[words.index("-p" if name == "daphne" else "--port") + 1]),
            words[-1],
        )
        assert server_command(name, port, application)[2:] == words
        assert ("--ping-interval" if name == "daphne" else "--ws-ping-interval") in words
