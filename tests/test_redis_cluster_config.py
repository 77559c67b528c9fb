"""The ``redis+cluster://`` form of ``REALTIME["REDIS_URL"]``: how it is read, the client it
gives, and the system checks (E013, E014, W007) with their exact messages."""

from __future__ import annotations

import pytest
from django.core.checks import Error
from django.core.management.base import CommandError
from django.test import override_settings
from redis.asyncio.cluster import RedisCluster

from realtime import checks
from realtime._redis import get_client
from realtime.management.errors import backend_failed
from realtime.redis_cluster import ClusterAddress, parse_cluster_url
from realtime.testing import aclose_redis

REDIS = {"default": {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer"}}
HINT = (
    "Use redis+cluster://[user:password@]host1:port1,host2:port2/ (rediss+cluster:// for TLS) "
    "and a KEY_PREFIX without { or }."
)


@pytest.mark.parametrize(
    ("url", "address"),
    [
        (
            "redis+cluster://r1:7000,r2:7001/",
            ClusterAddress((("r1", 7000), ("r2", 7001))),
        ),
        (
            "rediss+cluster://app:s%40cret@r1,[::1]:7002",
            ClusterAddress((("r1", 6379), ("::1", 7002)), "app", "s@cret", ssl=True),
        ),
        ("REDIS+CLUSTER://:pw@r1:7000/0", ClusterAddress((("r1", 7000),), None, "pw")),
    ],
)
def test_a_cluster_url_names_its_startup_nodes_and_credentials(url, address):
    assert parse_cluster_url(url) == address


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+cluster:///", "no node is given."),
        ("redis+cluster://r1:7000/3", "Redis Cluster has only database 0, not '3'."),
        ("redis+cluster://r1:seven/", "node 'r1:seven' has no valid port."),
        ("redis+cluster://r1:7000,:7001/", "node ':7001' has no host."),
        ("redis+cluster://r1:7000/?ssl_cert_reqs=none", "query parameters are not supported."),
    ],
)
def test_a_malformed_cluster_url_says_what_is_wrong(url, problem):
    with pytest.raises(ValueError) as raised:
        parse_cluster_url(url)
    assert str(raised.value) == problem


async def test_the_shared_client_of_a_cluster_url_is_a_cluster_client():
    client = get_client("redis+cluster://127.0.0.1:7000/")
    assert isinstance(client, RedisCluster)
    assert client is get_client("redis+cluster://127.0.0.1:7000/"), "one per URL and loop"
    await aclose_redis()


@pytest.mark.parametrize(
    ("realtime", "message", "hint", "check"),
    [
        (  # the password hidden
            {"BROKER": "redis", "REDIS_URL": "redis+cluster://app:secret@r1:7000,r2:seven/"},
            "REALTIME['REDIS_URL'] 'redis+cluster://app:***@r1:7000,r2:seven/' is not a Redis "
            "Cluster URL: node 'r2:seven' has no valid port.",
            HINT,
            "realtime.E014",
        ),
        (
            {"BROKER": "redis", "REDIS_URL": "redis+cluster://r1:7000/", "KEY_PREFIX": "site{1}"},
            "REALTIME['KEY_PREFIX'] 'site{1}' contains a brace: on a Redis Cluster it would "
            "take the place of realtime's hash tags.",
            HINT,
            "realtime.E014",
        ),
        (
            {"REDIS_URL": "redis+cluster://10.0.0.1:7000,10.0.0.2:7000/"},
            "REALTIME['REDIS_URL'] is a Redis Cluster, where the channel layer "
            "(REALTIME['BROKER'] = 'layer') cannot carry messages between processes.",
            "Set REALTIME['BROKER'] = 'redis': sharded pub/sub on the cluster (docs/scaling.md).",
            "realtime.E013",
        ),
    ],
    ids=["malformed-url", "brace-in-key-prefix", "layer-broker"],
)
def test_check_a_cluster_configuration(realtime, message, hint, check):
    with override_settings(REALTIME=realtime, CHANNEL_LAYERS=REDIS, DEBUG=True):
        assert checks.check_settings() == [Error(message, hint=hint, id=check)]


@override_settings(
    REALTIME={"BROKER": "redis", "REDIS_URL": "redis+cluster://r1:7000,r2:7001/"},
    CHANNEL_LAYERS=REDIS,
    DEBUG=True,
)
def test_check_a_well_formed_cluster_url_passes():
    assert checks.check_settings() == []


def test_deploy_check_a_cluster_that_does_not_answer():
    from tests.conftest import free_port

    url = f"redis+cluster://127.0.0.1:{free_port()}/"  # nothing listens there
    realtime = {"REDIS_URL": url}
    with override_settings(REALTIME=realtime, CHANNEL_LAYERS=REDIS, STATIC_ROOT="/srv/static"):
        [warning] = checks.check_deploy()
    assert warning.id == "realtime.W007"
    assert warning.msg.startswith(f"Redis at {url!r} does not answer: ")


def test_an_operator_command_names_the_clusters_nodes_not_its_password():
    url = "redis+cluster://app:secret@r1:7000,r2:7001/"
    with override_settings(REALTIME={"REDIS_URL": url}):
        error = backend_failed("the registry could not be read", ConnectionError("refused"))
    assert isinstance(error, CommandError)
    assert str(error) == (
        "The registry could not be read (Redis Cluster at r1:7000,r2:7001): ConnectionError: "
        "refused. Is Redis running, and is REALTIME['REDIS_URL'] right?"
    )
