"""tests/test_redis_restart.py's restart under load, with the Redis broker in the nodes and in
the publishing test process: its pub/sub connections come back by themselves, subscribe again,
and the hubs catch up from the log."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.conftest import realtime_on_redis
from tests.servers import Daphne, make_database, running_nodes
from tests.test_redis_restart import test_nodes_and_clients_survive_a_redis_restart

pytestmark = pytest.mark.e2e

__all__ = ["test_nodes_and_clients_survive_a_redis_restart"]

PREFIX = "rt-restart-broker"


@pytest.fixture(scope="module")
def nodes(private_redis) -> Iterator[list[Daphne]]:
    path, _ = make_database()
    env = {"RT_REDIS_URL": private_redis.url, "RT_PREFIX": PREFIX, "RT_BROKER": "redis"}
    with running_nodes(path, env) as servers:
        yield servers
    os.unlink(path)


@pytest.fixture
def publisher(private_redis) -> Iterator[None]:
    with realtime_on_redis(private_redis.url, PREFIX, BROKER="redis"):
        yield
