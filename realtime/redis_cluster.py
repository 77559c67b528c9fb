"""Redis Cluster: the ``redis+cluster://`` form of ``REALTIME["REDIS_URL"]`` and its client.

``redis+cluster://[user:password@]host1:port1,host2:port2/`` names a Cluster by some of its
nodes (the startup nodes: any reachable one is enough, the client learns the others and the
slot map from it); ``rediss+cluster://`` is the same over TLS. A node without a port is on
6379. Cluster has one database: the path is empty, ``/`` or ``/0``. Query parameters are
refused rather than silently ignored.

The client (:func:`cluster_client`) keeps the spirit of :func:`realtime._redis.get_client`: a
short connect timeout, a socket timeout above any blocking command, commands retried
:data:`realtime._redis.RETRIES` times on a connection or timeout error. redis-py's cluster
client has no blocking pool: past ``max_connections`` per node a command fails at once, so the
cap is higher than the one-Redis pool's (which waits instead). Every multi-key script and
``MULTI`` of realtime keeps its keys in one hash slot (docs/scaling.md, "Redis Cluster")."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

import redis.asyncio.cluster as aiocluster
import redis.cluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

CLUSTER_SCHEMES = frozenset({"redis+cluster", "rediss+cluster"})
URL_FORM = "redis+cluster://[user:password@]host1:port1,host2:port2/"
CLUSTER_HINT = f"Use {URL_FORM} (rediss+cluster:// for TLS) and a KEY_PREFIX without {{ or }}."
DEFAULT_PORT = 6379
# Per node and process; redis-py raises MaxConnectionsError past it (no blocking pool).
MAX_CONNECTIONS = 1024


@dataclass(frozen=True)
class ClusterAddress:
    """What a ``redis+cluster://`` URL says: the startup nodes and the credentials."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None
    ssl: bool = False

    def where(self) -> str:
        """``host1:port1,host2:port2``, for messages (never the password)."""
        return ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.nodes)


def is_cluster_url(url: str) -> bool:
    """Whether ``url`` names a Redis Cluster (its scheme is one of :data:`CLUSTER_SCHEMES`)."""
    return url.partition("://")[0].lower() in CLUSTER_SCHEMES


def _node(text: str) -> tuple[str, int]:
    if text.startswith("["):  # [IPv6]:port
        host, _, rest = text[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ValueError(f"node {text!r} is not host:port.")
        port_text = rest[1:]
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise ValueError(f"node {text!r} has no host.")
    if not port_text:
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"node {text!r} has no valid port.")
    return host, int(port_text)


def parse_cluster_url(url: str) -> ClusterAddress:
    """The :class:`ClusterAddress` of a ``redis+cluster://`` URL; :class:`ValueError` saying
    what is wrong otherwise."""
    scheme, separator, rest = url.partition("://")
    if scheme.lower() not in CLUSTER_SCHEMES or not separator:
        raise ValueError("the scheme must be redis+cluster:// or rediss+cluster://.")
    netloc, _, tail = rest.partition("/")
    path, question, _ = tail.partition("?")
    if question or "?" in netloc:
        raise ValueError("query parameters are not supported.")
    if "#" in rest:
        raise ValueError("a fragment is not supported.")
    if path not in ("", "0"):
        raise ValueError(f"Redis Cluster has only database 0, not {path!r}.")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    if not hosts:
        raise ValueError("no node is given.")
    nodes = tuple(_node(item.strip()) for item in hosts.split(","))
    return ClusterAddress(nodes, username, password, scheme.lower() == "rediss+cluster")


def cluster_problem(url: str, prefix: str, shown: str) -> str | None:
    """What is wrong with a Cluster configuration, as ``manage.py check`` says it (E014):
    ``url`` does not parse, or the key prefix holds a brace, which would take the place of
    realtime's hash tags (every key in one slot, or a topic's keys in several). ``shown`` is
    the URL as the message may show it (without its password). None when all is well."""
    try:
        parse_cluster_url(url)
    except ValueError as exc:
        return f"REALTIME['REDIS_URL'] {shown!r} is not a Redis Cluster URL: {exc}"
    if "{" in prefix or "}" in prefix:
        return (
            f"REALTIME['KEY_PREFIX'] {prefix!r} contains a brace: on a Redis Cluster it "
            "would take the place of realtime's hash tags."
        )
    return None


def cluster_client(url: str, retries: int) -> aiocluster.RedisCluster:
    """A new asyncio cluster client for ``url`` (not connected until its first command),
    retrying a command ``retries`` times; :func:`realtime._redis.get_client` caches one per
    event loop."""
    address = parse_cluster_url(url)
    return aiocluster.RedisCluster(
        startup_nodes=[aiocluster.ClusterNode(host, port) for host, port in address.nodes],
        username=address.username,
        password=address.password,
        ssl=address.ssl,
        max_connections=MAX_CONNECTIONS,
        socket_connect_timeout=5,
        socket_timeout=15,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )


def ping(url: str, timeout: float) -> None:
    """PING every master of the Cluster at ``url``, synchronously (the deploy check); raises
    :class:`redis.RedisError` or :class:`OSError` when the Cluster does not answer."""
    address = parse_cluster_url(url)
    nodes = [redis.cluster.ClusterNode(h, p) for h, p in address.nodes]  # type: ignore[no-untyped-call]
    client = redis.cluster.RedisCluster(
        startup_nodes=nodes,
        username=address.username,
        password=address.password,
        ssl=address.ssl,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
    )
    try:
        client.ping(target_nodes=redis.cluster.RedisCluster.PRIMARIES)
    finally:
        client.close()
