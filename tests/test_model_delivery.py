"""A model-based test of delivery (Hypothesis stateful testing), against real daphne nodes on
one Redis.

Random sequences of: publish (several topics, with and without ``ack``), clients that connect,
resume, drop mid-stream and switch transport (WebSocket, SSE, long-poll) and node, with
several topics per stream, and a node killed with SIGKILL (a standby node takes its place).
The clients are well-behaved as docs/protocol.md and docs/client.md describe: each tracks a
position per topic from ``subscribed``/``reset``/``message`` frames, drops duplicates by
offset and acknowledges ``ack: true`` messages (an ``ack`` frame, a POST naming the SSE
stream, a POST for long-poll). Two kinds: a client like realtime.js resumes with its
positions on any transport; a bare ``EventSource`` knows only SSE and resumes with the last
``id:`` it saw as ``Last-Event-ID`` (it still tracks positions, for the checks).

The model is the log of each topic (the test publishes every message, so it knows each
topic's messages in order: offset n is the n-th). It checks, on every frame:

- a message is the one the log holds at its offset, and follows the client's position by
  exactly 1 (a gap is a loss); a message not ``ack: true`` is never sent twice on one
  connection, nor at or before the position the request resumed from;
- a ``subscribed`` never moves a client past its position without a ``reset`` first (a
  silent skip), and ``recovered: true`` only answers a request that carried a position;
- only documented frame types, ``reset`` reasons, close codes and HTTP statuses; no ``error``
  at all (the clients never do anything wrong);
- after every step each connected client catches up with the log (bounded wait), and at the
  end every client that ever connected resumes once more and must have every message of its
  topics exactly once, in order, or an explicit ``reset``;
- no node logged a traceback or an ERROR record.

Default: ``MODEL_EXAMPLES`` (20) sequences of at most ``MODEL_STEPS`` (15) steps per
variant from a fixed seed, without shrinking (a failure prints the sequence as generated and
the ``@reproduce_failure`` blob). A longer run, with shrinking (``--timeout 0`` lifts the
suite's 120 s per test)::

    RT_MODEL_EXAMPLES=500 RT_MODEL_SHRINK=1 python -m pytest tests/test_model_delivery.py \
        -p no:cacheprovider -q --timeout 0

``RT_MODEL_SEED`` picks another seed, ``RT_MODEL_STEPS`` the steps per sequence,
``RT_MODEL_KILLS`` the node kills per sequence (1; 0 shrinks faster), and ``-k eventsource``
or ``-k js_clients`` runs one of the two variants.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import websockets
from hypothesis import HealthCheck, Phase, Verbosity, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

import realtime
from realtime.protocol import parse_cursors
from tests import protocol_doc
from tests.conftest import realtime_on_redis
from tests.servers import Daphne, SSEReader, delete_prefix

pytestmark = pytest.mark.e2e

MODEL_EXAMPLES = int(os.environ.get("RT_MODEL_EXAMPLES", "20"))
MODEL_STEPS = int(os.environ.get("RT_MODEL_STEPS", "15"))
MODEL_SEED = int(os.environ.get("RT_MODEL_SEED", "3"))
MODEL_SHRINK = os.environ.get("RT_MODEL_SHRINK", "") not in ("", "0")

VERBOSE = bool(os.environ.get("RT_MODEL_VERBOSE"))

TOPICS = 3  # per sequence, fresh names
MAX_CLIENTS = 2
# per sequence: a kill costs a daphne start-up (hidden by the standby nodes)
MAX_KILLS = int(os.environ.get("RT_MODEL_KILLS", "1"))
SETTLE = 20.0  # seconds a client may take to catch up with the log after a step (a loaded box)

# docs/protocol.md
SERVER_TYPES = {
    "welcome",
    "subscribed",
    "reset",
    "message",
    "unsubscribed",
    "ack",
    "acked",
    "ping",
    "token-expiring",
    "error",
}
POSITION_TYPES = {"message", "subscribed", "reset"}
RESET_REASONS = {"epoch_changed", "too_old", "cursor_ahead"}
# the model's clients do not offer realtime.batch: their welcome has no `batch` field
WELCOME_FIELDS = protocol_doc.welcome_fields() - {"batch"}


# Found by this test, not by one sequence (a race): a frame sent to a WebSocket in the moment
# between the client's close frame and daphne noticing the disconnect logs "Sending a frame
# failed" with autobahn's Disconnected (realtime/consumers.py _pump). Reported; left out here,
# or it would fail random sequences.
ALLOWED = ("autobahn.exception.Disconnected",)


class Violation(AssertionError):
    """The server did something the model (docs/protocol.md) does not allow."""


# ---- the cluster ---------------------------------------------------------------------------


class Cluster:
    """Two live daphne nodes on one Redis, and standbys started in the background, so that
    a node killed with SIGKILL is replaced without waiting for a start-up. Kills come a
    sequence or two apart, less than a start-up under load: two standbys, the older one
    taking the place of a killed node."""

    STANDBYS = 2

    def __init__(self, database: str, env: dict[str, str]) -> None:
        self.database, self.env = database, env
        self._starter = concurrent.futures.ThreadPoolExecutor(1)
        self.nodes = [Daphne(database, env), Daphne(database, env)]
        self.standbys = [self._start() for _ in range(self.STANDBYS)]
        self.all = list(self.nodes)

    def _start(self) -> concurrent.futures.Future[Daphne]:
        return self._starter.submit(Daphne, self.database, self.env)

    def kill(self, index: int) -> Daphne:
        victim = self.nodes[index]
        victim.kill()
        self.nodes[index] = self.standbys.pop(0).result(60)
        self.all.append(self.nodes[index])
        self.standbys.append(self._start())
        return victim

    def stop(self) -> None:
        for standby in self.standbys:
            with contextlib.suppress(Exception):
                self.all.append(standby.result(60))
        self._starter.shutdown()
        for node in self.all:
            node.stop()


@pytest.fixture(scope="module")
def node_settings() -> dict[str, str]:
    return {
        "RT_ACK_TIMEOUT": "0.5",
        # a poll replays what is after its cursor before it waits (steps run one at a time:
        # nothing arrives while one is held), so the wait is only the 204 of a poll that is
        # caught up: a long-poll connect was ~0.5 s of the model's time
        "RT_POLL_TIMEOUT": "0.2",
        # one user for every client: no rate limit in the way of the model's traffic
        "RT_RATE": "10000",
        "RT_BURST": "10000",
    }


@pytest.fixture(scope="module")
def cluster(database, redis_url, cluster_prefix, node_env) -> Iterator[Cluster]:
    nodes = Cluster(database[0], node_env)
    yield nodes
    nodes.stop()
    delete_prefix(redis_url, cluster_prefix)


@pytest.fixture
def publisher(redis_url, cluster_prefix) -> Iterator[None]:
    """realtime.publish() in the test process, into the nodes' Redis namespace."""
    with realtime_on_redis(redis_url, cluster_prefix):
        yield


# ---- the clients -----------------------------------------------------------------------------


@dataclass
class Conn:
    """One connection (or one long-poll request) of a client."""

    transport: str
    node: Daphne
    sent: dict[str, tuple[str, int]]  # the positions the request resumed from
    ws: Any = None
    sse: SSEReader | None = None
    stack: contextlib.AsyncExitStack | None = None
    connection_id: str = ""
    welcomed: bool = False
    subscribed: set[str] = field(default_factory=set)
    reset_seen: set[str] = field(default_factory=set)
    delivered: set[tuple[str, int]] = field(default_factory=set)
    frames: int = 0  # frames handled after welcome

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 2)
        if self.stack is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.stack.aclose(), 2)


@dataclass
class ModelClient:
    name: str
    topics: list[str]
    eventsource: bool  # a bare EventSource: SSE only, resumes with Last-Event-ID
    cursors: dict[str, tuple[str, int]] = field(default_factory=dict)
    accepted: dict[str, list[tuple[str, int, str]]] = field(default_factory=dict)
    resets: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    start: dict[str, tuple[str, int]] = field(default_factory=dict)
    last_event_id: str | None = None
    conn: Conn | None = None


def step(method: Callable[..., None]) -> Callable[..., None]:
    """Remember that a step failed, so that teardown does not pile checks on top."""

    @functools.wraps(method)
    def run(self: DeliveryModel, *args: Any, **kwargs: Any) -> None:
        if VERBOSE:
            print(f"  {method.__name__}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})")
        try:
            method(self, *args, **kwargs)
        except BaseException:
            self.failed = True
            raise

    return run


class DeliveryModel(RuleBasedStateMachine):
    """See the module docstring. The class attributes below are set by the test."""

    cluster: Cluster
    token: str
    loop: asyncio.AbstractEventLoop
    eventsource: bool  # whether clients may be bare EventSources

    def __init__(self) -> None:
        super().__init__()
        run = uuid.uuid4().hex[:8]
        self.topics = [f"public.model-{run}-{n}" for n in range(TOPICS)]
        self.log: dict[str, list[tuple[str, bool]]] = {t: [] for t in self.topics}
        self.epochs: dict[str, str] = {}
        self.clients: list[ModelClient] = []
        self.kills = 0
        self.failed = False
        self.marks = {id(node): node.mark() for node in self.cluster.all}
        # no keep-alive: a pooled connection to a node that closed it would fail the next step
        self.http = httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_keepalive_connections=0))
        self.auth = {"Authorization": f"Bearer {self.token}"}

    def run(self, coroutine: Any, timeout: float = 30) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(coroutine, timeout))

    # ---- rules -------------------------------------------------------------------------

    @initialize(
        clients=st.lists(
            st.tuples(
                st.integers(1, TOPICS),
                st.booleans(),
            ),
            min_size=1,
            max_size=MAX_CLIENTS,
        )
    )
    def clients_and_their_topics(self, clients: list[tuple[int, bool]]) -> None:
        """Each client streams the first 1 to ``TOPICS`` topics (so that clients share
        some), as realtime.js or as a bare EventSource."""
        for n, (count, eventsource) in enumerate(clients):
            kind = eventsource and self.eventsource
            self.clients.append(ModelClient(f"c{n}", self.topics[:count], kind))

    @rule(
        topics=st.sets(st.integers(0, TOPICS - 1), min_size=1),
        ack=st.booleans(),
        count=st.integers(1, 3),
    )
    @step
    def publish(self, topics: set[int], ack: bool, count: int) -> None:
        """``count`` messages to each of ``topics``, then every connected client catches up."""
        for topic in sorted(topics):
            name = self.topics[topic]
            for _ in range(count):
                data = {"n": len(self.log[name]) + 1}
                message_id = realtime.publish(name, "model", data, ack=ack)
                self.log[name].append((message_id, ack))
        self.run(self.settle_all())

    @rule(
        client=st.integers(0, MAX_CLIENTS - 1),
        transport=st.sampled_from(["websocket", "sse", "longpoll"]),
        node=st.integers(0, 1),
        drop_after=st.one_of(st.none(), st.integers(0, 3)),
    )
    @step
    def connect(self, client: int, transport: str, node: int, drop_after: int | None) -> None:
        """(Re)connect a client: resume on a transport (an EventSource: SSE) and node, and
        catch up with the log; or drop the connection after ``drop_after`` frames (once
        caught up, if that comes first). A long-poll client catches up and stops. An
        EventSource client ignores ``transport``; ``client`` wraps around."""
        model = self.clients[client % len(self.clients)]
        self.run(self.reconnect(model, transport, self.cluster.nodes[node]))
        if model.conn is not None:
            self.run(self.settle(model, drop_after))
            if drop_after is not None:
                self.run(self.disconnect_client(model))

    @precondition(lambda self: self.kills < MAX_KILLS)
    @rule(node=st.integers(0, 1))
    @step
    def kill_node(self, node: int) -> None:
        """SIGKILL a node; its clients lose their connection (and resume later)."""
        self.kills += 1
        victim = self.cluster.kill(node)
        self.marks[id(self.cluster.nodes[node])] = 0
        for model in self.clients:
            if model.conn is not None and model.conn.node is victim:
                self.run(model.conn.close())
                model.conn = None

    def teardown(self) -> None:
        try:
            if not self.failed:
                self.run(self.final_check(), timeout=60)
                for node in self.cluster.all:
                    node.assert_no_tracebacks(since=self.marks.get(id(node), 0), allow=ALLOWED)
        finally:
            for model in self.clients:
                if model.conn is not None:
                    self.run(model.conn.close())
            self.run(self.http.aclose())

    # ---- connections ---------------------------------------------------------------------

    async def reconnect(self, model: ModelClient, transport: str, node: Daphne) -> None:
        """Resume: a client like realtime.js with its positions, a bare EventSource over SSE
        with the last ``id:`` it saw (if any)."""
        await self.disconnect_client(model)
        positions: Any = dict(model.cursors)
        if model.eventsource:
            transport = "sse"
            if model.last_event_id is not None:
                positions = model.last_event_id
        if transport == "websocket":
            await self.open_websocket(model, node, positions)
        elif transport == "sse":
            await self.open_sse(model, node, positions)
        else:
            await self.poll(model, node, positions)

    async def disconnect_client(self, model: ModelClient) -> None:
        if model.conn is not None:
            await model.conn.close()
            model.conn = None

    async def open_websocket(
        self, model: ModelClient, node: Daphne, positions: dict[str, tuple[str, int]]
    ) -> None:
        ws = await websockets.connect(
            node.url,
            subprotocols=["realtime.v1", f"realtime.token.{self.token}"],  # type: ignore[list-item]
            open_timeout=10,
            ping_interval=None,
            close_timeout=1,
        )
        model.conn = Conn("websocket", node, positions, ws=ws)
        for topic in model.topics:
            frame: dict[str, Any] = {"type": "subscribe", "topic": topic}
            if topic in positions:
                epoch, offset = positions[topic]
                frame["cursor"] = {"epoch": epoch, "offset": offset}
            await ws.send(json.dumps(frame))

    async def open_sse(self, model: ModelClient, node: Daphne, positions: Any) -> None:
        params: dict[str, Any] = {"topic": model.topics}
        headers = dict(self.auth)
        if isinstance(positions, str):
            headers["Last-Event-ID"] = positions
            sent = {t: (c["epoch"], c["offset"]) for t, c in parse_cursors(positions).items()}
        else:
            sent = positions
            if positions:
                params["cursor"] = cursor_string(positions)
        stack = contextlib.AsyncExitStack()
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=node.http, timeout=10))
        response = await stack.enter_async_context(
            http.stream("GET", "/realtime/sse/", params=params, headers=headers)
        )
        if response.status_code != 200:
            body = await response.aread()
            await stack.aclose()
            raise Violation(f"{model.name}: SSE answered {response.status_code}: {body[:300]!r}")
        model.conn = Conn("sse", node, sent, sse=SSEReader(response), stack=stack)

    async def poll(
        self, model: ModelClient, node: Daphne, positions: dict[str, tuple[str, int]]
    ) -> None:
        """Long-poll until caught up: each answer's frames are handled, then its cursor is
        the next request's."""
        for _ in range(20):
            params: dict[str, Any] = {"topic": model.topics}
            if positions:
                params["cursor"] = cursor_string(positions)
            response = await self.http.get(
                f"{node.http}/realtime/poll/", params=params, headers=self.auth
            )
            conn = Conn("longpoll", node, dict(positions))
            conn.welcomed = True
            if response.status_code == 204:
                if self.caught_up(model, conn, polling=True):
                    return
                raise Violation(
                    f"{model.name}: long-poll answered 204 with messages after its cursor "
                    f"{params.get('cursor')!r}: {self.behind(model)}"
                )
            if response.status_code != 200:
                raise Violation(f"{model.name}: long-poll answered {response.status_code}")
            body = response.json()
            for frame in body["frames"]:
                await self.handle(model, conn, frame)
            returned = {
                t: (c["epoch"], c["offset"]) for t, c in parse_cursors(body["cursor"]).items()
            }
            if returned != {t: model.cursors[t] for t in returned}:
                raise Violation(
                    f"{model.name}: long-poll returned cursor {body['cursor']!r} but its frames "
                    f"took the client to {model.cursors}"
                )
            positions = dict(model.cursors)
            if self.caught_up(model, conn, polling=True):
                return
        raise Violation(f"{model.name}: long-poll did not catch up in 20 polls")

    # ---- reading ---------------------------------------------------------------------------

    async def settle_all(self) -> None:
        for model in self.clients:
            if model.conn is not None:
                await self.settle(model, None)

    async def settle(self, model: ModelClient, drop_after: int | None) -> None:
        """Handle frames until the client has caught up with the log (or, with
        ``drop_after``, until it handled that many frames after ``welcome``)."""
        conn = model.conn
        assert conn is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SETTLE
        while not self.caught_up(model, conn):
            if drop_after is not None and conn.frames >= drop_after:
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise Violation(
                    f"{model.name} on {conn.transport} did not catch up in {SETTLE} s: "
                    f"{self.behind(model)}"
                )
            frame = await self.next_frame(model, conn, remaining)
            if frame is None:
                return  # the node is gone
            await self.handle(model, conn, frame)

    async def next_frame(
        self, model: ModelClient, conn: Conn, timeout: float
    ) -> dict[str, Any] | None:
        try:
            if conn.ws is not None:
                async with asyncio.timeout(timeout):
                    return dict(json.loads(await conn.ws.recv()))
            assert conn.sse is not None
            event = await conn.sse.frame(timeout)
        except TimeoutError:
            raise Violation(
                f"{model.name} on {conn.transport} did not catch up in {SETTLE} s: "
                f"{self.behind(model)}"
            ) from None
        except websockets.ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else None
            raise Violation(f"{model.name}: the server closed the WebSocket with {code}") from None
        except (EOFError, httpx.HTTPError) as error:
            raise Violation(f"{model.name}: the SSE stream ended: {error!r}") from None
        kind, event_id = event.pop("_event"), event.pop("_id")
        if kind != event.get("type"):
            raise Violation(f"{model.name}: SSE event {kind!r} carries a {event.get('type')!r}")
        if (event_id is not None) != (kind in POSITION_TYPES):
            raise Violation(f"{model.name}: SSE {kind!r} event with id {event_id!r}")
        if event_id is not None:
            model.last_event_id = event_id
        return event

    def caught_up(self, model: ModelClient, conn: Conn, polling: bool = False) -> bool:
        if not conn.welcomed:
            return False
        for topic in model.topics:
            if not polling and topic not in conn.subscribed:
                return False
            if model.cursors.get(topic) != (self.epochs.get(topic), len(self.log[topic])):
                return False
        return True

    def behind(self, model: ModelClient) -> str:
        return ", ".join(
            f"{t}: at {model.cursors.get(t)}, log has {len(self.log[t])}" for t in model.topics
        )

    async def handle(self, model: ModelClient, conn: Conn, frame: dict[str, Any]) -> None:
        """One frame, as a well-behaved client handles it, checked against the model."""
        kind = frame.get("type")
        where = f"{model.name} on {conn.transport}"
        if kind not in SERVER_TYPES:
            raise Violation(f"{where}: undocumented frame {frame}")
        if kind == "error":
            raise Violation(f"{where}: error frame {frame}")
        if kind == "ping":
            await conn.ws.send('{"type":"pong"}')
            return
        if kind in ("token-expiring", "acked"):
            return
        if kind == "welcome":
            if conn.welcomed or set(frame) != WELCOME_FIELDS:
                raise Violation(f"{where}: unexpected welcome {frame}")
            conn.welcomed, conn.connection_id = True, frame["connection_id"]
            return
        if not conn.welcomed:
            raise Violation(f"{where}: {kind} before welcome")
        conn.frames += 1
        topic = frame.get("topic")
        if topic not in model.topics:
            raise Violation(f"{where}: {kind} for a topic it did not ask for: {frame}")
        if kind == "subscribed":
            self.on_subscribed(model, conn, frame, where)
        elif kind == "reset":
            if frame["reason"] not in RESET_REASONS:
                raise Violation(f"{where}: undocumented reset reason {frame}")
            model.cursors[topic] = (frame["epoch"], frame["offset"])
            model.resets.setdefault(topic, []).append((frame["epoch"], frame["offset"]))
            conn.reset_seen.add(topic)
            self.epochs[topic] = frame["epoch"]
        elif kind == "message":
            await self.on_message(model, conn, frame, where)
        else:
            raise Violation(f"{where}: {kind} though it never asked for one: {frame}")

    def on_subscribed(
        self, model: ModelClient, conn: Conn, frame: dict[str, Any], where: str
    ) -> None:
        topic, epoch, offset = frame["topic"], frame["epoch"], frame["offset"]
        if topic in conn.subscribed:
            raise Violation(f"{where}: a second subscribed for {topic}")
        conn.subscribed.add(topic)
        if frame["recovered"] and topic not in conn.sent:
            raise Violation(f"{where}: recovered: true though it sent no position: {frame}")
        known = self.epochs.setdefault(topic, epoch)
        mine = model.cursors.get(topic)
        if mine is None:
            if epoch != known:
                raise Violation(f"{where}: epoch {epoch} of {topic} is not {known}, no reset")
            model.cursors[topic] = model.start[topic] = (epoch, offset)
            return
        if topic in conn.reset_seen:
            return
        if epoch != mine[0]:
            raise Violation(f"{where}: {topic} went to epoch {epoch} without a reset: {frame}")
        if offset > mine[1]:
            raise Violation(
                f"{where}: subscribed to {topic} at offset {offset} while the client was at "
                f"{mine[1]}, with no reset: messages {mine[1] + 1}..{offset} are lost "
                f"(the request resumed from {conn.sent.get(topic)})"
            )

    async def on_message(
        self, model: ModelClient, conn: Conn, frame: dict[str, Any], where: str
    ) -> None:
        topic, epoch, offset = frame["topic"], frame["epoch"], frame["offset"]
        if topic not in conn.subscribed and topic not in conn.sent:
            raise Violation(f"{where}: message before subscribed: {frame}")
        log = self.log[topic]
        if epoch == self.epochs.get(topic) and not (
            0 < offset <= len(log) and log[offset - 1] == (frame["id"], frame["ack"])
        ):
            raise Violation(f"{where}: message {frame} is not the log's offset {offset}")
        if frame["ack"]:
            await self.acknowledge(conn, frame["id"])
        mine = model.cursors.get(topic)
        if mine is None or epoch != mine[0]:
            raise Violation(f"{where}: message in epoch {epoch}, client at {mine}: {frame}")
        again = (topic, offset) in conn.delivered
        conn.delivered.add((topic, offset))
        if offset <= mine[1]:
            sent = conn.sent.get(topic)
            if not frame["ack"] and (again or (sent is not None and offset <= sent[1])):
                raise Violation(
                    f"{where}: message {topic}#{offset} (no ack) sent again"
                    + ("" if again else f", at or before the request's position {sent}")
                )
            return  # a duplicate: dropped
        if offset != mine[1] + 1:
            raise Violation(
                f"{where}: gap in {topic}: at {mine[1]}, got {offset}: "
                f"messages {mine[1] + 1}..{offset - 1} lost with no reset"
            )
        model.cursors[topic] = (epoch, offset)
        model.accepted.setdefault(topic, []).append((epoch, offset, frame["id"]))

    async def acknowledge(self, conn: Conn, message_id: str) -> None:
        if conn.transport == "websocket":
            await conn.ws.send(json.dumps({"type": "ack", "ids": [message_id]}))
            return
        headers = dict(self.auth)
        if conn.transport == "sse":
            headers["X-Realtime-Connection"] = conn.connection_id
        response = await self.http.post(
            f"{conn.node.http}/realtime/send/",
            json={"type": "ack", "ids": [message_id]},
            headers=headers,
        )
        if response.status_code != 204:
            raise Violation(f"POST ack answered {response.status_code}: {response.text[:300]}")

    # ---- the end -----------------------------------------------------------------------------

    async def final_check(self) -> None:
        """Every client that ever connected resumes once more (WebSocket, or SSE for an
        EventSource) and must then hold every message of its topics exactly once, in order,
        from where it started or from its last ``reset``."""
        for model in self.clients:
            if not model.cursors:
                continue
            await self.reconnect(model, "websocket", self.cluster.nodes[0])
            await self.settle(model, None)
            await self.disconnect_client(model)
            for topic in model.topics:
                epoch, begin = (model.resets.get(topic) or [model.start[topic]])[-1]
                got = [m for m in model.accepted.get(topic, []) if m[0] == epoch and m[1] > begin]
                want = [
                    (epoch, n, self.log[topic][n - 1][0])
                    for n in range(begin + 1, len(self.log[topic]) + 1)
                ]
                if got != want:
                    raise Violation(f"{model.name}: {topic}: got {got}, want {want}")


def cursor_string(positions: dict[str, tuple[str, int]]) -> str:
    return ",".join(f"{t}~{e}~{o}" for t, (e, o) in positions.items())


def run_model(cluster: Cluster, token: str, eventsource: bool) -> None:
    loop = asyncio.new_event_loop()
    attributes = {"cluster": cluster, "token": token, "loop": loop, "eventsource": eventsource}
    machine = type("DeliveryModelRun", (DeliveryModel,), attributes)
    phases = [Phase.explicit, Phase.generate] + ([Phase.shrink] if MODEL_SHRINK else [])
    try:
        run_state_machine_as_test(
            seed(MODEL_SEED)(machine),
            settings=settings(
                max_examples=MODEL_EXAMPLES,
                stateful_step_count=MODEL_STEPS,
                deadline=None,
                database=None,
                phases=phases,
                suppress_health_check=list(HealthCheck),
                print_blob=True,
                verbosity=Verbosity.verbose if VERBOSE else Verbosity.normal,
            ),
        )
    finally:
        loop.close()


def test_delivery_matches_the_model_js_clients(cluster, database, publisher):
    """Clients as realtime.js: positions of their own, any transport."""
    run_model(cluster, database[1]["alice"]["token"], eventsource=False)


# The default seed finds issue 7 item 1 in its first sequence (an SSE stream's `id:` drops the
# positions of the topics not yet subscribed while the request's topics are replayed one at a
# time, so an EventSource that resumes from such an id loses the other topics' messages, with
# no reset).
def test_delivery_matches_the_model_with_eventsource_clients(cluster, database, publisher):
    """Clients as realtime.js, and bare EventSources resuming with Last-Event-ID."""
    run_model(cluster, database[1]["alice"]["token"], eventsource=True)
