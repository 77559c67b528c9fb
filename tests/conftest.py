"""Shared fixtures: a real Redis (REDIS_URL, else 127.0.0.1:6379, else a private
redis-server started here), per-test key prefixes, and settings switches."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import pytest
import redis
from channels.layers import get_channel_layer
from django.test import override_settings

from realtime import admission, backends, hub, hubs
from realtime._redis import get_client
from realtime.loop import close_publisher
from realtime.testing import aclose_redis, restore_topics
from realtime.user_cache import users

if TYPE_CHECKING:
    from tests.redis_topologies import LocalCluster
    from tests.servers import Daphne


# The suites that drive headless Chromium against real daphne servers.
BROWSER_SUITES = {"browser", "browser_admin", "browser_demo"}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--clean-server-log",
        action="store_true",
        help="fail every test during which a daphne node logged a traceback or an ERROR "
        "record (by default only tests marked clean_server_log)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "clean_server_log(allow=()): fail the test if a daphne node logs a traceback or an "
        "ERROR record while it runs, except those mentioning a string of allow "
        "(tests.servers.Daphne.assert_no_tracebacks)",
    )
    config.addinivalue_line(
        "markers",
        "server: starts a server (a daphne node, Chromium or a private redis-server); added "
        "by tests/conftest.py to every e2e or browser test and every test using a fixture of "
        "SERVER_FIXTURES. `make test-fast` runs the others: -m 'not server'",
    )


# The fixtures that start a server: the database daphne nodes share, the browser, and a
# module's own redis-server (the shared Redis of `redis_url` is not started per test).
SERVER_FIXTURES = frozenset({"database", "chromium", "private_redis", "redis_cluster"})


# Runs before pytest's own -m selection (registered first, so called last).
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.parent.name in BROWSER_SUITES:
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.e2e)
        fixtures = set(getattr(item, "fixturenames", ()))
        if item.get_closest_marker("e2e") or fixtures & SERVER_FIXTURES:
            item.add_marker(pytest.mark.server)


@pytest.fixture(autouse=True)
def _server_marked(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that starts a daphne node must be marked ``server`` (``e2e``, or a fixture of
    :data:`SERVER_FIXTURES`), so that ``make test-fast`` can leave it out."""
    if request.node.get_closest_marker("server"):
        yield
        return
    from tests.servers import Daphne

    before = len(Daphne.started)
    yield
    if len(Daphne.started) != before:
        pytest.fail(
            f"{request.node.nodeid} started a daphne node without the e2e marker, "
            "so `make test-fast` (-m 'not server') would run it."
        )


@pytest.fixture(autouse=True)
def _clean_server_log(request: pytest.FixtureRequest) -> Iterator[None]:
    """With the ``clean_server_log`` marker (or ``--clean-server-log``): after the test, no
    daphne node may have logged a traceback or an ERROR record since it started."""
    if not (
        request.node.get_closest_marker("clean_server_log")
        or request.config.getoption("--clean-server-log")
    ):
        yield
        return
    from tests.servers import Daphne

    marker = request.node.get_closest_marker("clean_server_log")
    allow = tuple(marker.kwargs.get("allow", ())) if marker else ()
    marks = {id(node): node.mark() for node in Daphne.started}
    yield
    for node in list(Daphne.started):
        node.assert_no_tracebacks(since=marks.get(id(node), 0), allow=allow)


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis that answers. Never skipped: without one the Redis tests fail loudly."""
    url = os.environ.get("REDIS_URL")
    if url:
        if not _answers(url):
            pytest.fail(f"REDIS_URL={url} does not answer PING")
        yield url
        return
    if _answers("redis://127.0.0.1:6379/0"):
        yield "redis://127.0.0.1:6379/0"
        return
    server = RedisServer()
    yield server.url
    server.stop()


class RedisServer:
    """A private redis-server on a free loopback port, without persistence unless
    ``appendonly`` (set it before a :meth:`start`): stopping and starting it again is a Redis
    restart that lost every key, or with AOF one that kept them."""

    def __init__(self, *, appendonly: bool = False) -> None:
        self.appendonly = appendonly
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("No redis-server: run `make test`, which installs it.")
        self.binary = binary
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.workdir = tempfile.mkdtemp(prefix="rt-redis-")
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes" if self.appendonly else "no",
                "--appendfsync",
                "always",
                "--dir",
                self.workdir,
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not _answers(self.url):
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.process.kill()
                pytest.fail("The private redis-server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a paused server cannot terminate
            self.process.terminate()
            self.process.wait(10)
        self.process = None

    def pause(self) -> None:
        """SIGSTOP: Redis hangs; connections stay open and commands wait unanswered."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT: Redis runs the commands that waited."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Hung (:meth:`pause`) inside the block, running again after it."""
        self.pause()
        try:
            yield
        finally:
            self.resume()

    @contextlib.contextmanager
    def down(self) -> Iterator[None]:
        """Stopped (connections refused) inside the block, started again (empty) after it."""
        self.stop()
        try:
            yield
        finally:
            self.start()


@pytest.fixture(scope="module")
def private_redis() -> Iterator[RedisServer]:
    """A module's own redis-server, for tests that stop, restart or pause Redis (never the
    shared one)."""
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalCluster]:
    """A three-master Redis Cluster on free loopback ports (tests/redis_topologies.py),
    started once per session by the first test that needs it (1-2 s)."""
    # lazy: the module imports this one (free_port), and only cluster tests need it
    from tests.redis_topologies import LocalCluster

    cluster = LocalCluster()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def database() -> Iterator[tuple[str, dict[str, Any]]]:
    """A migrated SQLite file shared by a module's daphne nodes, with users alice, bob and
    staff (their pks and tokens)."""
    from tests.servers import make_database

    path, users = make_database()
    yield path, users
    os.unlink(path)


# Module scope, not session: while Playwright's sync API is open it keeps an asyncio loop
# running in the main thread, which breaks every async test (and sync publish()) run after it.
@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    from tests.servers import launch_chromium

    try:
        with launch_chromium() as browser:
            yield browser
    except RuntimeError as missing:
        pytest.fail(str(missing))


@pytest.fixture(scope="module")
def cluster_prefix() -> str:
    """The Redis key and channel prefix a module's nodes share with the test process."""
    return f"rt-e2e-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    """The Redis key and channel prefix this test publishes under (``use_redis``): a fresh one,
    or, for a test that talks to its module's servers, theirs (``cluster_prefix``)."""
    if "cluster_prefix" in request.fixturenames:
        return str(request.getfixturevalue("cluster_prefix"))
    return f"rt-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def node_settings() -> dict[str, str]:
    """More ``RT_*`` settings (tests/settings.py) for this module's servers: a module that
    needs some overrides this fixture."""
    return {}


@pytest.fixture(scope="module")
def node_env(redis_url: str, cluster_prefix: str, node_settings: dict[str, str]) -> dict[str, str]:
    """The environment of this module's daphne servers: the test Redis under the module's
    ``cluster_prefix``, and ``node_settings``."""
    return {"RT_REDIS_URL": redis_url, "RT_PREFIX": cluster_prefix, **node_settings}


@pytest.fixture(scope="module")
def nodes(database: tuple[str, dict[str, Any]], node_env: dict[str, str]) -> Iterator[list[Daphne]]:
    """Two daphne nodes sharing one Redis (channel layer, log, dedup): a cluster."""
    from tests.servers import running_nodes

    with running_nodes(database[0], node_env) as servers:
        yield servers


@pytest.fixture
def alice(database: tuple[str, dict[str, Any]]) -> dict[str, str]:
    """HTTP headers that authenticate as the test user alice."""
    return {"Authorization": f"Bearer {database[1]['alice']['token']}"}


@contextlib.contextmanager
def realtime_on_redis(
    url: str, prefix: str, layer_host: str | dict[str, Any] | None = None, **realtime: Any
) -> Iterator[None]:
    """This process's realtime (log, dedup, registry, pub/sub layer) on the Redis at ``url``
    under key and channel ``prefix``, as the daphne nodes of a test see it; the pub/sub layer
    on ``layer_host`` instead when given, a URL or a channels_redis host entry (``url`` a Redis
    Cluster or Sentinel URL, which channels_redis does not take); ``realtime`` overrides more
    REALTIME keys. On exit the publisher loop is closed and every cached backend forgotten."""
    from django.conf import settings

    values = {**settings.REALTIME, "REDIS_URL": url, "KEY_PREFIX": prefix, **realtime}
    layers = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [layer_host or url], "prefix": prefix},
        }
    }
    with override_settings(REALTIME=values, CHANNEL_LAYERS=layers):
        _reset_channel_layers()
        try:
            yield
        finally:
            close_publisher()
    _reset_channel_layers()


async def _stop_background_tasks() -> None:
    """Cancel what is still running on this test's event loop, again until it ends. The loop's
    own shutdown cancels each task once and waits forever for one that lost its cancellation
    (a hang seen in tests/test_presence.py; see realtime/_tasks.py)."""
    current = asyncio.current_task()
    for _ in range(50):
        tasks = [task for task in asyncio.all_tasks() if task is not current and not task.done()]
        if not tasks:
            return
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=0.1)


@pytest.fixture(scope="module")
def broker() -> str:
    """``REALTIME["BROKER"]`` of ``use_redis`` (the test process): ``RT_BROKER`` if set (as
    the daphne nodes read it in tests/settings.py, so ``RT_BROKER=redis pytest …`` runs a
    suite on the Redis broker), else the layer; a module whose nodes use the Redis broker
    overrides it (and ``node_settings``)."""
    return os.environ.get("RT_BROKER", "layer")


@contextlib.asynccontextmanager
async def _realtime_switched(
    url: str, prefix: str, layer_url: str, broker: str
) -> AsyncIterator[None]:
    with realtime_on_redis(url, prefix, layer_url, BROKER=broker):
        yield
        await hub.get_hub().registry_written()  # background writes hold pool connections
        close_publisher()
        await aclose_redis()
        await get_channel_layer().flush()
        await _stop_background_tasks()
        # a task stopped just now may have opened a connection after the first close (an
        # ACK resend on a Redis Cluster did): close what this loop holds again
        await aclose_redis()


@pytest.fixture
async def use_redis(redis_url: str, prefix: str, broker: str) -> AsyncIterator[dict[str, Any]]:
    """Switch realtime to Redis (log, dedup, pub/sub layer, ``broker``) under a fresh key
    prefix."""
    async with _realtime_switched(redis_url, prefix, redis_url, broker):
        yield {"url": redis_url, "prefix": prefix}
    from tests.servers import delete_prefix

    delete_prefix(redis_url, prefix)


@pytest.fixture(scope="module")
def cluster_broker() -> str:
    """``REALTIME["BROKER"]`` of ``use_cluster``: the layer (on one Redis) for the in-process
    backend tests; a module whose nodes broadcast over the Cluster overrides it with
    ``"redis"``, so that this process publishes where they listen."""
    return "layer"


@pytest.fixture
async def use_cluster(
    redis_cluster: LocalCluster, redis_url: str, prefix: str, cluster_broker: str
) -> AsyncIterator[dict[str, Any]]:
    """Switch realtime to the Redis Cluster (log, registry, stores) under a fresh key prefix,
    with the broker ``cluster_broker``; the pub/sub layer on the one Redis of ``redis_url``
    (channels_redis has no Cluster support)."""
    async with _realtime_switched(redis_cluster.url, prefix, redis_url, cluster_broker):
        # A cluster client's first command reads the slot map and the command table (about
        # 0.5 s without hiredis): paid here, not inside a test's timing.
        await get_client(redis_cluster.url).ping()
        yield {"url": redis_cluster.url, "prefix": prefix}
    from tests.redis_topologies import delete_prefix

    client = redis_cluster.client()
    try:
        delete_prefix(client, prefix)
    finally:
        client.close()


# The Redis Cluster variant starts a cluster (once per session): `make test-fast` leaves it out.
BACKENDS = ["memory", "redis", pytest.param("cluster", marks=pytest.mark.server)]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Any:
    """Run the test three times: on the in-memory backends, on Redis (``use_redis``) and on a
    Redis Cluster (``use_cluster``)."""
    return use_backend(request, request.param)


def use_backend(request: pytest.FixtureRequest, name: str) -> Any:
    """The ``use_redis`` or ``use_cluster`` answer for a ``backend`` parameter; None for
    ``memory``."""
    if name == "memory":
        return None
    return request.getfixturevalue("use_redis" if name == "redis" else "use_cluster")


def _reset_channel_layers() -> None:
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    hubs.reset_hubs()
    backends.reset()


@pytest.fixture
def realtime_settings() -> Iterator[Any]:
    """Override REALTIME keys for one test: ``realtime_settings(ACK_TIMEOUT=0.1)``."""
    stack: list[Any] = []

    def apply(**values: Any) -> None:
        from django.conf import settings

        merged = {**getattr(settings, "REALTIME", {}), **values}
        override = override_settings(REALTIME=merged)
        override.enable()
        stack.append(override)

    yield apply
    for override in reversed(stack):
        override.disable()


@pytest.fixture(autouse=True)
def _fresh_state() -> Iterator[None]:
    """Each test starts with empty in-memory logs and hubs, and the test app's topics."""
    backends.reset()
    hubs.reset_hubs()
    users.clear()
    admission.reset()
    with restore_topics():
        yield
